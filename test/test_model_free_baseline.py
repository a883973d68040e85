"""Model-free click-guided PET baseline (Task1/model_free_baseline.py) on small synthetic arrays."""
import numpy as np
import pytest

from Task1.model_free_baseline import ModelFreeParams, auto_detect, grow_from_click, segment_model_free

SHAPE = (60, 60, 50)
SPACING = (4.0, 4.0, 5.0)


def _grid_mm():
    return np.meshgrid(*[np.arange(n) * s for n, s in zip(SHAPE, SPACING)], indexing="ij")


def _ball(center_vox, radius_mm):
    ii, jj, kk = _grid_mm()
    c = [c * s for c, s in zip(center_vox, SPACING)]
    return (ii - c[0]) ** 2 + (jj - c[1]) ** 2 + (kk - c[2]) ** 2 <= radius_mm ** 2


def _scene(seed=0):
    """Background SUV ~1, a compact lesion (SUV 9), a small faint lesion (SUV 3) and a large hot
    'organ' (SUV 12, ~900 ml) touching nothing."""
    rng = np.random.default_rng(seed)
    pet = rng.normal(1.0, 0.1, SHAPE).astype(np.float32)
    lesion = _ball((15, 15, 15), 14.0)
    faint = _ball((45, 15, 15), 9.0)
    organ = _ball((35, 42, 32), 60.0)
    pet[lesion] = 9.0
    pet[faint] = 3.0
    pet[organ] = 12.0
    return pet, lesion, faint, organ


def _dice(a, b):
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_tumor_click_grows_the_lesion_not_the_organ():
    pet, lesion, faint, organ = _scene()
    mask = segment_model_free(pet, {"tumor": [[15, 15, 15], [45, 15, 15]], "background": []}, SPACING)
    assert mask.dtype == np.uint8 and mask.shape == SHAPE
    assert set(np.unique(mask)) <= {0, 1}
    assert _dice(mask > 0, lesion | faint) > 0.95
    assert not (mask.astype(bool) & organ).any()


def test_click_on_the_lesion_rim_still_finds_its_peak():
    pet, lesion, _, _ = _scene()
    rim_click = [15 + 3, 15, 15]  # 12 mm from the centre, inside the 14 mm lesion
    assert lesion[tuple(rim_click)]
    region = grow_from_click(pet, rim_click, SPACING)
    assert _dice(region, lesion) > 0.95


def test_click_beside_a_hotter_organ_does_not_flood_it():
    rng = np.random.default_rng(1)
    pet = rng.normal(1.0, 0.1, SHAPE).astype(np.float32)
    organ = _ball((30, 30, 25), 40.0)
    lesion = _ball((30, 30 + 12, 25), 10.0) & ~organ  # lesion touching the organ
    pet[organ] = 20.0
    pet[lesion] = 8.0
    click = [30, 30 + 13, 25]
    assert lesion[tuple(click)]
    region = grow_from_click(pet, click, SPACING)
    assert np.count_nonzero(region & organ) == 0
    assert np.count_nonzero(region & lesion) >= 0.9 * np.count_nonzero(lesion)


def test_background_click_vetoes_a_region():
    pet, lesion, faint, _ = _scene()
    clicks = {"tumor": [[15, 15, 15], [45, 15, 15]], "background": [[45, 15, 15]]}
    mask = segment_model_free(pet, clicks, SPACING, params=ModelFreeParams(auto_detect="never"))
    assert not (mask.astype(bool) & faint).any()
    assert _dice(mask > 0, lesion) > 0.95


def test_step0_detection_is_conservative():
    pet, lesion, faint, organ = _scene()
    mask = segment_model_free(pet, None, SPACING).astype(bool)
    assert _dice(mask, lesion) > 0.95  # compact, hot, 11 ml: found
    assert not (mask & organ).any()  # ~900 ml: physiological, excluded
    assert not (mask & faint).any()  # SUV 3: below the detection threshold (4), left to clicks
    seeds = auto_detect(pet, SPACING)
    assert all(lesion[s] for s in seeds)


def test_auto_detection_vetoed_by_background_click_and_can_be_disabled():
    pet, lesion, _, _ = _scene()
    assert not segment_model_free(pet, {"tumor": [], "background": [[15, 15, 15]]}, SPACING).any()
    assert not segment_model_free(pet, None, SPACING, params=ModelFreeParams(auto_detect="never")).any()


def test_clicks_outside_ignored_and_deterministic():
    pet, lesion, _, _ = _scene()
    clicks = {"tumor": [[15, 15, 15], [-1, 3, 3], [60, 0, 0]], "background": [[0, 0, 999]]}
    first = segment_model_free(pet, clicks, SPACING)
    second = segment_model_free(pet.copy(), clicks, SPACING)
    assert np.array_equal(first, second)
    assert _dice(first > 0, lesion) > 0.95


def test_threshold_fraction_changes_the_volume():
    ii, jj, kk = _grid_mm()
    c = [30 * 4.0, 30 * 4.0, 25 * 5.0]
    r = np.sqrt((ii - c[0]) ** 2 + (jj - c[1]) ** 2 + (kk - c[2]) ** 2)
    pet = np.maximum(10.0 * np.exp(-(r / 15.0) ** 2), 0.2).astype(np.float32)  # smooth blob
    params = ModelFreeParams(auto_detect="never")
    low = segment_model_free(pet, {"tumor": [[30, 30, 25]]}, SPACING, threshold_fraction=0.3, params=params)
    high = segment_model_free(pet, {"tumor": [[30, 30, 25]]}, SPACING, threshold_fraction=0.6, params=params)
    assert low.sum() > high.sum() > 0
    # 41 % of SUVmax on a Gaussian profile: r = 15 mm * sqrt(ln(1/0.41))
    mid = segment_model_free(pet, {"tumor": [[30, 30, 25]]}, SPACING, params=params)
    expected = np.count_nonzero(r <= 15.0 * np.sqrt(np.log(1 / 0.41)))
    assert abs(int(mid.sum()) - expected) <= 0.05 * expected


def test_bad_arguments():
    with pytest.raises(ValueError, match="3D"):
        segment_model_free(np.zeros((4, 4)), None, (1, 1))
    with pytest.raises(ValueError, match="spacing"):
        segment_model_free(np.zeros((4, 4, 4)), None, (1, 0, 1))
    with pytest.raises(ValueError, match="threshold_fraction"):
        ModelFreeParams(threshold_fraction=1.5)
