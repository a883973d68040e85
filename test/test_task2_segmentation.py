"""Task 2's model-free segmentation of one lesion: how the carried shape's scale is chosen."""
import numpy as np
import pytest

from Task2 import segmentation
from Task2.segmentation import SCALES, LesionModel, fit_scale


def _ball(shape, centre, radius):
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum((g - c) ** 2 for g, c in zip(grids, centre)) <= radius ** 2


@pytest.fixture()
def shrunk_lesion_in_bone():
    """A baseline lesion of radius 8 voxels (50 HU, sd 5, in 40 HU tissue) that shrank to radius
    4; a thin ring of that tissue is left around it, and bone (300 HU) fills the rest: the
    shapes of every scale, centred on the lesion, and the noisy follow-up CT."""
    rng = np.random.default_rng(7)
    shape, centre = (41, 41, 41), (20, 20, 20)
    raw = np.full(shape, 300.0, dtype=np.float32)
    raw[_ball(shape, centre, 5.5)] = 40.0
    raw[_ball(shape, centre, 4.0)] = 50.0
    raw += rng.normal(0.0, 5.0, shape).astype(np.float32)
    shapes = {s: _ball(shape, centre, 8.0 * s) for s in SCALES}
    model = LesionModel(mean_hu=50.0, sd_hu=5.0, surround_hu=40.0, volume_mm3=4.0 / 3.0 * np.pi * 8.0 ** 3)
    return raw, shapes, model


def test_bone_around_a_shrunk_lesion_does_not_count_as_lesion(shrunk_lesion_in_bone, monkeypatch):
    raw, shapes, model = shrunk_lesion_in_bone
    scale, _ = fit_scale(raw, shapes, model)
    assert 3.0 <= 8.0 * scale <= 5.5, f"fitted radius {8.0 * scale:.1f} voxels; the lesion's is 4"
    # the reason: with a one-sided vote the bone, far brighter than the lesion, is the most
    # lesion-like of all, and the largest shape wins
    monkeypatch.setattr(segmentation, "beyond_lesion", lambda values, model: np.zeros(np.shape(values), bool))
    one_sided, _ = fit_scale(raw, shapes, model)
    assert one_sided == max(SCALES)


def test_a_lesion_brighter_than_its_mean_by_noise_still_keeps_its_size():
    """Noise alone (lesion voxels a few sds above their mean) must not shrink an unchanged
    lesion: only voxels farther past the lesion than its surround lies before it vote against."""
    rng = np.random.default_rng(3)
    shape, centre = (41, 41, 41), (20, 20, 20)
    raw = np.full(shape, 40.0, dtype=np.float32)
    raw[_ball(shape, centre, 8.0)] = 50.0
    raw += rng.normal(0.0, 5.0, shape).astype(np.float32)
    shapes = {s: _ball(shape, centre, 8.0 * s) for s in SCALES}
    model = LesionModel(mean_hu=50.0, sd_hu=5.0, surround_hu=40.0, volume_mm3=4.0 / 3.0 * np.pi * 8.0 ** 3)
    scale, _ = fit_scale(raw, shapes, model)
    assert scale == 1.0


def test_a_darker_lesion_is_judged_the_same_way_round(shrunk_lesion_in_bone):
    """Mirror the intensities: a lesion darker than its tissue, with air (far darker) around."""
    raw, shapes, model = shrunk_lesion_in_bone
    mirrored = LesionModel(mean_hu=-model.mean_hu, sd_hu=model.sd_hu, surround_hu=-model.surround_hu,
                           volume_mm3=model.volume_mm3)
    scale, _ = fit_scale(-raw, shapes, mirrored)
    assert 3.0 <= 8.0 * scale <= 5.5


def test_an_unchanged_lesion_against_bone_is_not_judged_vanished():
    """Step 1 asks whether the carried shape still shows the baseline contrast against the ring
    around it. Bone touching the lesion is not its surround: counted in the ring, it made the
    lesion look darker than its surroundings, so gone."""
    from Task2.segmentation import CarriedLesion, segment_with_prior

    rng = np.random.default_rng(11)
    shape, centre = (41, 41, 41), (20, 20, 20)
    lesion = _ball(shape, centre, 4.0)
    ct = np.full(shape, 40.0, dtype=np.float32)
    ct[:, :, 23:] = 400.0  # bone from one voxel past the lesion's edge on
    ct[lesion] = 50.0
    ct += rng.normal(0.0, 5.0, shape).astype(np.float32)
    region = tuple(slice(c - 6, c + 7) for c in centre)
    prior = CarriedLesion(1, region, lesion[region], np.asarray(centre, dtype=float),
                          LesionModel(mean_hu=50.0, sd_hu=5.0, surround_hu=40.0, volume_mm3=float(lesion.sum())))
    found = segment_with_prior(ct, (1.0, 1.0, 1.0), prior, centre, detect=True)
    assert found.any(), "the lesion was judged vanished"
    dice = 2 * (found & lesion).sum() / (found.sum() + lesion.sum())
    assert dice > 0.8, dice
