"""Exactness of the fast array metrics against a plain per-component reference."""
import math

import numpy as np
import pytest
from scipy import integrate

from evaluation_metrics.metrics import (compute_metrics_arrays, dice_score, false_negative_volume,
                                        false_positive_volume, interactive_auc, lesion_detection,
                                        measure_case)
from evaluation_metrics.reference import (reference_auc, reference_detection, reference_metrics)


def assert_same(fast, ref, rel=1e-6):
    for a, b in zip(fast, ref):
        if isinstance(b, float) and math.isnan(b):
            assert math.isnan(a), (fast, ref)
        else:
            assert a == pytest.approx(b, rel=rel, abs=1e-12), (fast, ref)


def random_mask(rng, shape, density):
    """Sparse random voxels: many components touching by faces, edges and corners."""
    return rng.random(shape) < density


def blobby_mask(rng, shape, n_blobs):
    mask = np.zeros(shape, dtype=np.uint8)
    for _ in range(n_blobs):
        c = rng.integers(0, shape)
        r = rng.integers(0, 4, size=3)
        mask[tuple(slice(max(0, ci - ri), ci + ri + 1) for ci, ri in zip(c, r))] = 1
    return mask


def test_random_inputs_match_reference():
    rng = np.random.default_rng(1234)
    n_checked = 0
    for trial in range(60):
        shape = tuple(rng.integers(4, 17, size=3))
        kind = trial % 3
        if kind == 0:
            gt = random_mask(rng, shape, rng.uniform(0.0, 0.25))
            pred = random_mask(rng, shape, rng.uniform(0.0, 0.25))
        elif kind == 1:
            gt = blobby_mask(rng, shape, rng.integers(0, 6))
            pred = blobby_mask(rng, shape, rng.integers(0, 6))
        else:  # prediction = perturbed ground truth, integer labels > 1 and float dtype
            gt = blobby_mask(rng, shape, rng.integers(1, 6)) * rng.integers(1, 4)
            pred = (np.roll(gt, 1, axis=trial % 3) > 0).astype(np.float32) * 2.5
        voxel_ml = float(np.prod(rng.uniform(0.5, 4.0, size=3)) / 1000.0)  # anisotropic spacing
        assert_same(compute_metrics_arrays(gt, pred, voxel_ml), reference_metrics(gt, pred, voxel_ml))
        for min_overlap in (0.0, 0.5):
            fast = lesion_detection(gt, pred, min_overlap)
            ref = reference_detection(gt, pred, min_overlap)
            assert {k: fast[k] for k in ("tp", "fn", "fp")} == ref
        n_checked += 1
    assert n_checked == 60


def test_eighteen_not_twenty_six_connectivity():
    # Two ground-truth voxels touching only at a corner are two lesions under 18-connectivity
    # (26 would merge them); the prediction hits one of them.
    gt = np.zeros((6, 6, 6), np.uint8)
    gt[2, 2, 2] = gt[3, 3, 3] = 1
    pred = np.zeros_like(gt)
    pred[2, 2, 2] = 1
    assert false_negative_volume(gt, pred, 1.0) == 1.0
    assert lesion_detection(gt, pred) == {"tp": 1, "fn": 1, "fp": 0, "sensitivity": 0.5,
                                          "precision": 1.0, "f1": pytest.approx(2 / 3)}
    # Touching along an edge: one lesion, so nothing is missed.
    gt2 = np.zeros_like(gt)
    gt2[2, 2, 2] = gt2[3, 3, 2] = 1
    assert false_negative_volume(gt2, pred, 1.0) == 0.0
    # Same for false positives: a predicted voxel touching a hit voxel by a corner only is false.
    pred3 = pred.copy()
    pred3[1, 1, 1] = 1
    gt3 = np.zeros_like(gt)
    gt3[2, 2, 2] = 1
    assert false_positive_volume(gt3, pred3, 0.25) == 0.25
    assert_same(compute_metrics_arrays(gt3, pred3, 0.25), reference_metrics(gt3, pred3, 0.25))


def test_empty_cases_follow_the_challenge():
    empty = np.zeros((5, 5, 5), np.uint8)
    lesion = empty.copy()
    lesion[1:3, 1:3, 1:3] = 1
    dice, fpv, fnv = compute_metrics_arrays(empty, empty, 0.01)
    assert math.isnan(dice) and fpv == 0.0 and math.isnan(fnv)
    dice, fpv, fnv = compute_metrics_arrays(empty, lesion, 0.01)  # only false positives
    assert math.isnan(dice) and fpv == pytest.approx(0.08) and math.isnan(fnv)
    dice, fpv, fnv = compute_metrics_arrays(lesion, empty, 0.01)  # everything missed
    assert dice == 0.0 and fpv == 0.0 and fnv == pytest.approx(0.08)
    assert math.isnan(dice_score(empty, lesion))
    d = lesion_detection(empty, empty)
    assert (d["tp"], d["fn"], d["fp"]) == (0, 0, 0) and all(math.isnan(d[k]) for k in ("sensitivity", "precision", "f1"))
    d = lesion_detection(empty, lesion)
    assert d["fp"] == 1 and math.isnan(d["sensitivity"]) and d["precision"] == 0.0 and d["f1"] == 0.0


def test_min_overlap_criterion():
    gt = np.zeros((12, 4, 4), np.uint8)
    gt[0:10, 1, 1] = 1  # one lesion of 10 voxels
    pred = np.zeros_like(gt)
    pred[0:3, 1, 1] = 1  # 30 % of it predicted
    assert lesion_detection(gt, pred, 0.0)["tp"] == 1
    assert lesion_detection(gt, pred, 0.3)["tp"] == 1
    d = lesion_detection(gt, pred, 0.5)
    assert (d["tp"], d["fn"]) == (0, 1)
    assert d["fp"] == 0  # the predicted component lies entirely inside the lesion
    with pytest.raises(ValueError):
        lesion_detection(gt, pred, 1.5)


def test_counts_and_bbox_crop_do_not_change_components():
    rng = np.random.default_rng(7)
    gt = blobby_mask(rng, (30, 20, 25), 8)
    pred = blobby_mask(rng, (30, 20, 25), 8)
    m = measure_case(gt, pred)
    assert m.gt_voxels == int(gt.sum()) and m.pred_voxels == int(pred.sum())
    assert m.overlap_voxels == int(((gt > 0) & (pred > 0)).sum())
    assert m.gt_sizes.sum() == m.gt_voxels and m.pred_sizes.sum() == m.pred_voxels
    # Fortran-ordered input (as image_io returns) gives the same result.
    assert_same(compute_metrics_arrays(np.asfortranarray(gt), np.asfortranarray(pred), 1.0),
                compute_metrics_arrays(gt, pred, 1.0))


def test_shape_mismatch_and_dimensions_raise():
    with pytest.raises(ValueError, match="different shapes"):
        compute_metrics_arrays(np.zeros((3, 3, 3)), np.zeros((3, 3, 4)), 1.0)
    with pytest.raises(ValueError, match="3D"):
        dice_score(np.zeros((3, 3)), np.zeros((3, 3)))


def test_interactive_auc_matches_published_trapezoid():
    rng = np.random.default_rng(3)
    for n in (2, 3, 11):
        values = list(rng.uniform(0, 50, size=n))
        expected = integrate.cumulative_trapezoid(values, np.arange(n))[-1]
        assert interactive_auc(values) == pytest.approx(expected, rel=1e-12)
        assert interactive_auc(values) == pytest.approx(reference_auc(values), rel=1e-12)
    assert math.isnan(interactive_auc([0.5, math.nan, 0.7]))
    assert interactive_auc([0.2, 0.6]) == pytest.approx(0.4)  # Task 2: (v1 + v2) / 2
    with pytest.raises(ValueError):
        interactive_auc([0.3])
