"""Overlay pictures of the local challenge run: orientation, content and files."""
import numpy as np

from local_challenge.overlay import coronal_mip, plot_case_overlay

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_coronal_mip_puts_the_head_on_top_and_i_across():
    volume = np.zeros((5, 4, 6), np.float32)  # [i, j, k], k feet -> head
    volume[1, 2, 5] = 7.0  # top slice (head end), i = 1
    volume[3, 0, 0] = 2.0  # bottom slice (feet end), i = 3
    mip = coronal_mip(volume)
    assert mip.shape == (6, 5)  # rows = k (head first), columns = i
    assert mip[0, 1] == 7.0 and mip[5, 3] == 2.0
    assert np.count_nonzero(mip) == 2


def test_overlay_png_marks_truth_prediction_and_clicks(tmp_path):
    shape = (32, 20, 40)
    pet = np.full(shape, 1.0, np.float32)
    label = np.zeros(shape, np.uint8)
    label[8:14, 8:12, 25:31] = 1
    pet[label > 0] = 8.0
    prediction = label.copy()
    clicks = {"tumor": [[11, 10, 28]], "background": [[20, 10, 5]]}
    out = plot_case_overlay(pet, label, {0: np.zeros(shape, np.uint8), 1: prediction}, clicks,
                            (2.0, 2.0, 3.0), tmp_path / "case.png", title="case")
    data = out.read_bytes()
    assert out == tmp_path / "case.png" and data.startswith(PNG_SIGNATURE)

    import matplotlib.image

    rgb = matplotlib.image.imread(str(out))[..., :3]
    green = (rgb[..., 1] > 0.5) & (rgb[..., 0] < 0.3) & (rgb[..., 2] < 0.4)   # truth contour
    red = (rgb[..., 0] > 0.7) & (rgb[..., 1] < 0.35) & (rgb[..., 2] < 0.35)   # prediction / tumor click
    blue = (rgb[..., 2] > 0.5) & (rgb[..., 0] < 0.3)                          # background click
    assert green.sum() > 20 and red.sum() > 20 and blue.sum() > 5
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, no temporary left

