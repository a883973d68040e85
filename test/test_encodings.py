"""Gaussian and ball click encodings: peaks, fall-off, max-combination, anisotropy, borders."""
import numpy as np
import pytest
from scipy import ndimage

from clicks.encodings import ball_heatmap, encode_clicks, gaussian_heatmap


def test_gaussian_peak_and_profile():
    heat = gaussian_heatmap((21, 21, 21), [[10, 10, 10]], sigma=3.0)
    assert heat.dtype == np.float32
    assert heat[10, 10, 10] == pytest.approx(1.0)
    assert heat[13, 10, 10] == pytest.approx(np.exp(-0.5), rel=1e-6)
    assert heat[10, 12, 9] == pytest.approx(np.exp(-5 / 18), rel=1e-6)
    assert 0.0 <= heat.min() and heat.max() <= 1.0
    # shape equals a normalised Gaussian filter of a delta (the reference's heatmap) up to scale
    delta = np.zeros((21, 21, 21))
    delta[10, 10, 10] = 1
    ref = ndimage.gaussian_filter(delta, 3.0, truncate=4.0)
    np.testing.assert_allclose(heat, ref / ref.max(), atol=2e-3)


def test_ball_values_and_radius():
    heat = ball_heatmap((9, 9, 9), [[4, 4, 4]], radius=2.0)
    assert heat[4, 4, 4] == 1.0
    assert heat[5, 4, 4] == pytest.approx(0.5)
    assert heat[5, 5, 4] == pytest.approx(1 - np.sqrt(2) / 2)
    assert heat[6, 4, 4] == 0.0
    assert np.count_nonzero(heat) == 1 + 6 + 12 + 8  # all voxels with distance < 2
    # equals 1 - EDT/r of the complement of the click, clipped
    seed = np.ones((9, 9, 9), bool)
    seed[4, 4, 4] = False
    np.testing.assert_allclose(heat, np.clip(1 - ndimage.distance_transform_edt(seed) / 2, 0, 1), atol=1e-6)


def test_max_combination_and_border_and_outside():
    heat = ball_heatmap((6, 6, 6), [[0, 0, 0], [1, 0, 0], [99, 0, 0], [-1, 2, 2]], radius=2.0)
    assert heat[0, 0, 0] == 1.0 and heat[1, 0, 0] == 1.0
    assert heat[2, 0, 0] == pytest.approx(0.5)
    assert heat[0, 2, 2] == 0.0  # the point outside the grid is ignored
    assert gaussian_heatmap((5, 5, 5), []).max() == 0.0


def test_radius_in_mm_is_anisotropic():
    heat = ball_heatmap((11, 11, 11), [[5, 5, 5]], radius=4.0, spacing=(1.0, 2.0, 4.0), radius_in_mm=True)
    assert heat[7, 5, 5] == pytest.approx(0.5)   # 2 mm along x
    assert heat[5, 6, 5] == pytest.approx(0.5)   # 2 mm along y
    assert heat[5, 5, 6] == 0.0                  # 4 mm along z
    g = gaussian_heatmap((11, 11, 11), [[5, 5, 5]], sigma=2.0, spacing=(1.0, 2.0, 4.0), sigma_in_mm=True)
    assert g[7, 5, 5] == pytest.approx(np.exp(-0.5), rel=1e-6)
    assert g[5, 6, 5] == pytest.approx(np.exp(-0.5), rel=1e-6)
    with pytest.raises(ValueError, match="spacing"):
        ball_heatmap((5, 5, 5), [[2, 2, 2]], radius=2.0, radius_in_mm=True)


def test_encode_clicks():
    clicks = {"tumor": [[1, 1, 1]], "background": [[3, 3, 3], [0, 4, 0]]}
    tumor, background = encode_clicks((5, 5, 5), clicks)
    assert tumor.shape == background.shape == (5, 5, 5)
    assert tumor[1, 1, 1] == 1 and background[3, 3, 3] == 1 and background[0, 4, 0] == 1
    assert tumor[3, 3, 3] == 0
    g_tumor, _ = encode_clicks((5, 5, 5), clicks, encoding="gaussian", size=1.0)
    assert g_tumor[2, 1, 1] == pytest.approx(np.exp(-0.5), rel=1e-6)
    with pytest.raises(ValueError, match="unknown click encoding"):
        encode_clicks((5, 5, 5), clicks, encoding="disk")
