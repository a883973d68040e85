"""Task 2, step 2: a click with a new id inside a clicked baseline lesion's carried mask splits
that lesion's shape between the clicks (Task2.lesion_splits), for both methods."""
import numpy as np
import pytest

from Task2.segmentation import CarriedLesion, LesionModel


def _elongated(region_start=(10, 20, 5)) -> CarriedLesion:
    """A carried lesion 21 voxels long on axis 0 (3 across), on a region of the follow-up grid."""
    mask = np.zeros((25, 7, 7), dtype=bool)
    mask[2:23, 2:5, 2:5] = True
    region = tuple(slice(s, s + n) for s, n in zip(region_start, mask.shape))
    centre = np.array([region_start[0] + 12.0, region_start[1] + 3.0, region_start[2] + 3.0])
    return CarriedLesion(4, region, mask, centre, LesionModel(50.0, 10.0, 0.0, 1000.0))


def test_split_divides_the_carried_shape_between_the_clicks():
    from Task2.lesion_splits import split_priors

    lesion = _elongated()
    other = CarriedLesion(1, (slice(60, 63), slice(60, 63), slice(60, 63)), np.ones((3, 3, 3), bool),
                          np.array([61.0, 61.0, 61.0]), LesionModel(50.0, 10.0, 0.0, 27.0))
    lesions, ids = {4: lesion, 1: other}, {4: 7, 1: 2}
    # lesion 7 clicked near one end, new lesion 9 near the other end, new lesion 12 far away
    clicks = {7: [15.0, 23.0, 8.0], 9: [29.0, 23.0, 8.0], 2: [61.0, 61.0, 61.0], 12: [80.0, 5.0, 5.0]}
    priors, splits = split_priors(lesions, ids, clicks, (1.0, 1.0, 2.0))
    assert splits == [(9, 7)]
    assert priors[2] is other and not other.split  # untouched lesions are the carried ones
    assert 12 not in priors  # a new lesion elsewhere starts from nothing
    parent, part = priors[7], priors[9]
    assert parent.split and part.split and parent.label == part.label == 4
    # the shares are disjoint, and together they are the carried shape
    assert not np.any(parent.mask & part.mask)
    np.testing.assert_array_equal(parent.mask | part.mask, lesion.mask)
    # each voxel went to the nearer click: the boundary is halfway (axis 0 index 22)
    voxels = np.argwhere(parent.mask)[:, 0] + lesion.region[0].start
    assert voxels.max() == 22 and (np.argwhere(part.mask)[:, 0] + lesion.region[0].start).min() == 23
    # each share's centre lies on its side
    assert parent.centre[0] < 22 < part.centre[0]
    # the carried lesion itself is unchanged
    assert lesion.mask.sum() == 21 * 9 and not lesion.split


def test_a_new_click_outside_every_carried_lesion_splits_nothing():
    from Task2.lesion_splits import split_priors

    lesion = _elongated()
    # one voxel beyond the mask's end still counts (a click rounds to a voxel); two do not
    near, far = [10.0 + 23.0, 23.0, 8.0], [10.0 + 24.0, 23.0, 8.0]
    _, splits = split_priors({4: lesion}, {4: 7}, {7: [15.0, 23.0, 8.0], 9: near}, (1.0, 1.0, 1.0))
    assert splits == [(9, 7)]
    priors, splits = split_priors({4: lesion}, {4: 7}, {7: [15.0, 23.0, 8.0], 9: far}, (1.0, 1.0, 1.0))
    assert splits == [] and priors == {7: lesion}


@pytest.fixture(scope="module")
def split_pair():
    from autopet_common.phantoms import make_longitudinal_pair

    pair = make_longitudinal_pair(size="small", seed=3, n_splitting=1)
    split = next(lesion for lesion in pair.lesions if lesion["status"] == "split")
    return pair, split["id"], split["split_from"]


def test_both_methods_find_the_split_and_give_each_part_its_own_voxels(split_pair):
    """A phantom pair whose elongated baseline lesion splits in two: step 2 finds the split, and
    the pipeline gives each part's truth mostly its own id (the whole shape on the first click
    covered the split-off part, which then kept only the leftovers)."""
    from Task2.lesion_patches import PatchMaker
    from Task2.pipeline import carry_baseline, segment_followup

    pair, part_id, parent_id = split_pair
    args = (pair.baseline_ct, pair.baseline_geometry, pair.baseline_labels, pair.followup_ct,
            pair.followup_geometry, dict(pair.baseline_centres), dict(pair.followup_centres))
    carried = carry_baseline(*args)
    assert carried.splits == [(part_id, parent_id)]
    result = segment_followup(*args)
    for lesion_id in (part_id, parent_id):
        truth = pair.followup_labels == lesion_id
        assert np.count_nonzero(result.labels[truth] == lesion_id) > 0.5 * truth.sum()
    # the learned model's patches start from the same shares (channel 2 is the share)
    patches = {p.lesion_id: p for p in PatchMaker(carried, pair.baseline_geometry, pair.followup_ct,
                                                   pair.followup_geometry).step_patches()}
    for lesion_id in (part_id, parent_id):
        patch, share = patches[lesion_id], carried.priors[lesion_id]
        assert patch.kind == "clicked"
        pasted = np.zeros(pair.followup_ct.shape, dtype=bool)
        pasted[share.region] = share.mask
        np.testing.assert_array_equal(patch.channels[2] > 0, pasted[patch.region])
        # the baseline point blob sits at the share's own centre
        start = np.array([s.start for s in patch.region])
        peak = np.unravel_index(np.argmax(patch.channels[4]), patch.shape)
        assert np.all(np.abs(np.asarray(peak) + start - share.centre) <= 1)
