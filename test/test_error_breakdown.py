"""evaluation_metrics.breakdown: every wrong voxel in exactly one kind, agreeing with the
challenge's metrics where they overlap, and with a full-volume reference on random masks."""
import math

import numpy as np
import pytest

from evaluation_metrics.breakdown import ERROR_KINDS, error_breakdown
from evaluation_metrics.metrics import dice_score, false_negative_volume, false_positive_volume


def _cube(shape, lo, hi):
    mask = np.zeros(shape, dtype=bool)
    mask[lo:hi, lo:hi, lo:hi] = True
    return mask


def test_a_shrunken_lesion_and_a_spurious_blob():
    gt = _cube((20, 20, 20), 5, 12)                 # 7^3 = 343 voxels
    pred = _cube((20, 20, 20), 6, 11)               # 5^3 = 125 voxels inside
    pred[15:17, 15:17, 15:17] = True                # 8 voxels far from the lesion
    b = error_breakdown(gt, pred, (1.0, 1.0, 1.0))
    assert b.boundary_mm == 1.0
    assert b.true_positive == pytest.approx(0.125)
    assert b.boundary_fn == pytest.approx(0.218)   # the one-voxel shell 343 - 125
    assert b.inner_fn == 0 and b.missed == 0
    assert b.spurious == pytest.approx(0.008)
    assert b.boundary_fp == 0 and b.spread_fp == 0
    assert b.dice() == pytest.approx(dice_score(gt, pred))
    assert b.dice_without("spurious") == pytest.approx(2 * 125 / (2 * 125 + 218))
    assert b.dice_without(*ERROR_KINDS) == pytest.approx(1.0)


def test_kinds_partition_the_errors_and_match_fpv_fnv():
    rng = np.random.default_rng(3)
    from scipy import ndimage

    gt = ndimage.binary_opening(rng.random((30, 28, 26)) > 0.55, iterations=1)
    pred = ndimage.binary_dilation(gt, iterations=1) & (rng.random(gt.shape) > 0.2)
    pred[:3] = rng.random((3, 28, 26)) > 0.7
    spacing = (2.0, 1.5, 3.0)
    voxel_ml = np.prod(spacing) / 1000
    b = error_breakdown(gt, pred, spacing)
    assert b.boundary_mm == 3.0
    assert b.missed == pytest.approx(false_negative_volume(gt, pred, voxel_ml))
    assert b.spurious == pytest.approx(false_positive_volume(gt, pred, voxel_ml))
    wrong_fn = np.count_nonzero(gt & ~pred) * voxel_ml
    wrong_fp = np.count_nonzero(pred & ~gt) * voxel_ml
    assert b.missed + b.boundary_fn + b.inner_fn == pytest.approx(wrong_fn)
    assert b.spurious + b.boundary_fp + b.spread_fp == pytest.approx(wrong_fp)
    assert b.dice() == pytest.approx(dice_score(gt, pred))
    cost = b.dice_cost()
    assert set(cost) == set(ERROR_KINDS) and all(v >= 0 for v in cost.values())


def _reference(gt, pred, spacing, boundary):
    """Full-volume reference: scipy distance transforms, no cropping."""
    import cc3d
    from scipy import ndimage

    voxel_ml = np.prod(spacing) / 1000
    gl = cc3d.connected_components(gt.astype(np.uint8), connectivity=18)
    pl = cc3d.connected_components(pred.astype(np.uint8), connectivity=18)
    found = set(np.unique(gl[gt & pred])) - {0}
    touching = set(np.unique(pl[gt & pred])) - {0}
    # pad with one layer of lesion so the image border does not count as "outside" for the depth
    # (as error_breakdown treats it)
    depth = ndimage.distance_transform_edt(np.pad(gt, 1, constant_values=True), sampling=spacing)[1:-1, 1:-1, 1:-1]
    outside = ndimage.distance_transform_edt(~gt, sampling=spacing)
    fn, fp = gt & ~pred, pred & ~gt
    missed = fn & ~np.isin(gl, list(found))
    spurious = fp & ~np.isin(pl, list(touching))
    partial, attached = fn & ~missed, fp & ~spurious
    count = lambda m: np.count_nonzero(m) * voxel_ml  # noqa: E731
    return {"missed": count(missed), "boundary_fn": count(partial & (depth <= boundary)),
            "inner_fn": count(partial & (depth > boundary)), "spurious": count(spurious),
            "boundary_fp": count(attached & (outside <= boundary)), "spread_fp": count(attached & (outside > boundary))}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_a_full_volume_reference(seed):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    shape = (24, 22, 20)
    gt = ndimage.binary_closing(rng.random(shape) > 0.7, iterations=2)
    pred = ndimage.binary_dilation(gt, iterations=int(rng.integers(0, 3))) & (rng.random(shape) > 0.1)
    pred = pred if seed != 2 else ndimage.binary_erosion(pred, iterations=1)
    spacing = tuple(rng.uniform(0.8, 4.0, size=3))
    for boundary in (None, 5.0):
        b = error_breakdown(gt, pred, spacing, boundary_mm=boundary)
        expected = _reference(gt, pred, spacing, max(spacing) if boundary is None else boundary)
        for kind in ERROR_KINDS:
            assert getattr(b, kind) == pytest.approx(expected[kind]), kind


def test_empty_cases():
    empty = np.zeros((8, 8, 8), dtype=np.uint8)
    b = error_breakdown(empty, empty, (1, 1, 1))
    assert all(getattr(b, k) == 0 for k in ERROR_KINDS) and math.isnan(b.dice())
    pred = empty.copy()
    pred[2:4, 2:4, 2:4] = 1
    b = error_breakdown(empty, pred, (2, 2, 2))
    assert b.spurious == pytest.approx(8 * 8 / 1000) and math.isnan(b.dice())


def test_bad_input_is_named():
    gt = np.zeros((5, 5, 5), dtype=bool)
    with pytest.raises(ValueError, match="different shapes"):
        error_breakdown(gt, np.zeros((5, 5, 4)), (1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        error_breakdown(gt, gt, (1, 0, 1))
    with pytest.raises(ValueError, match="spacing"):
        error_breakdown(gt, gt, (1, float("nan"), 1))
    with pytest.raises(ValueError, match="boundary_mm"):
        error_breakdown(gt, gt, (1, 1, 1), boundary_mm=-1)
    b = error_breakdown(gt, gt, (1, 1, 1))
    with pytest.raises(ValueError, match="unknown error kind"):
        b.dice_without("halo")


def test_package_exports_the_function():
    import evaluation_metrics

    from evaluation_metrics import error_breakdown as exported

    assert exported is error_breakdown and evaluation_metrics.error_breakdown is error_breakdown
