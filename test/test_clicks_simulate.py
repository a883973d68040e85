"""Click simulation: identical to a plain full-volume reference written from the published
algorithm, on phantoms and hand-made arrays; perturbation; bad input."""
import warnings

import numpy as np
import pytest
from scipy import ndimage

from click_reference import reference_clicks
from clicks.simulate import (EmptyRegionError, LabelValueWarning, _component, _labelled_components,
                             background_threshold, lesion_centre_points, reference_percentile,
                             simulate_clicks)
from autopet_common.errors import GridMismatchError, InputError


def _blobs(shape, n, rng, max_radius=3, border=False):
    label = np.zeros(shape, np.uint8)
    for _ in range(n):
        centre = [rng.integers(0, s) for s in shape]
        if border:  # push the blob onto a face of the volume
            axis = rng.integers(0, 3)
            centre[axis] = 0 if rng.random() < 0.5 else shape[axis] - 1
        r = rng.integers(0, max_radius + 1, size=3)
        box = tuple(slice(max(0, c - q), c + q + 1) for c, q in zip(centre, r))
        label[box] = 1
    return label


def _pet(shape, rng, label=None, smooth=0.0):
    pet = rng.random(shape).astype(np.float32)
    if smooth:
        pet = ndimage.gaussian_filter(pet, smooth).astype(np.float32)
    if label is not None:
        pet[label > 0] += 2.0
    return pet


def _assert_same(label, pet, **kwargs):
    budget = kwargs.pop("click_budget", 10)
    with_background = kwargs.pop("with_background", True)
    in_component = kwargs.pop("background_in_component", False)
    dataset = "FDG-PETCT" if with_background else "Longitudinal-CT"
    fast = simulate_clicks(label, pet if with_background else None, dataset, click_budget=budget,
                           background_in_component=in_component)
    # The published script gets nibabel's Fortran-ordered arrays; the fast path must give its
    # clicks whatever the layout of the arrays it is handed.
    slow = reference_clicks(np.asfortranarray(label), None if pet is None else np.asfortranarray(pet),
                            budget, with_background, in_component)
    assert fast == slow
    assert len(fast["tumor"]) == (budget if np.any(label) else 0)
    assert len(fast["background"]) == (budget if with_background else 0)
    for point in fast["tumor"]:
        assert label[tuple(point)]
    for point in fast["background"]:
        assert not label[tuple(point)]
    return fast


@pytest.mark.parametrize("n_lesions", [0, 1, 3, 14])
@pytest.mark.parametrize("layout", ["C", "F"])
def test_exact_on_hand_made_arrays(n_lesions, layout):
    rng = np.random.default_rng(100 + n_lesions)
    shape = (23, 19, 17)
    label = _blobs(shape, n_lesions, rng)
    pet = _pet(shape, rng, label, smooth=0.7)
    if layout == "F":
        label, pet = np.asfortranarray(label), np.asfortranarray(pet)
    for in_component in (False, True):
        _assert_same(label, pet, background_in_component=in_component)


def test_exact_many_random_cases_budgets_and_longitudinal():
    rng = np.random.default_rng(7)
    for trial in range(12):
        shape = tuple(int(s) for s in rng.integers(6, 22, size=3))
        label = _blobs(shape, int(rng.integers(0, 16)), rng, border=bool(trial % 3 == 0))
        pet = _pet(shape, rng, label if trial % 2 else None, smooth=float(trial % 3) * 0.5)
        if trial % 4 == 1:
            label, pet = np.asfortranarray(label), np.asfortranarray(pet)
        _assert_same(label, pet, click_budget=int(rng.integers(1, 13)))
        _assert_same(label, pet, with_background=False, click_budget=2)


def test_exact_lesions_touching_the_border():
    shape = (12, 14, 10)
    label = np.zeros(shape, np.uint8)
    label[:4, :5, :3] = 1            # corner
    label[8:, 3:9, 4:7] = 1          # face
    label[5:7, :, 8:] = 1            # spans a whole axis
    pet = _pet(shape, np.random.default_rng(1), label)
    clicks = _assert_same(label, pet)
    # the corner block's centre is at the volume's corner side: the border is not background
    assert [0, 0, 0] in clicks["tumor"] or any(p[0] <= 1 for p in clicks["tumor"])


def test_bounding_box_distances_equal_full_volume():
    rng = np.random.default_rng(3)
    for layout in ("C", "F"):
        label = _blobs((20, 16, 12), 9, rng, max_radius=4, border=True).astype(bool)
        label = np.asfortranarray(label) if layout == "F" else label
        labels, unique, bbox = _labelled_components(label)
        for lab in unique:
            comp = _component(labels, int(lab), bbox(int(lab)))
            full = ndimage.distance_transform_edt(labels == lab)
            box = tuple(slice(o, o + s) for o, s in zip(comp.offset, comp.dist2.shape))
            np.testing.assert_array_equal(np.sqrt(comp.dist2.astype(np.float64)), full[box])
            assert np.count_nonzero(full) == np.count_nonzero(comp.dist2)


def test_thin_noisy_uptake_regions_use_the_quirk():
    """White-noise PET: every high-uptake component is a voxel or a thin cluster (all voxels at
    distance 1), so the published fill-up picks voxels outside the component."""
    rng = np.random.default_rng(11)
    shape = (30, 30, 24)
    label = _blobs(shape, 2, rng)
    pet = rng.random(shape).astype(np.float32)
    default = _assert_same(label, pet)
    fixed = _assert_same(label, pet, background_in_component=True)
    threshold = np.percentile(pet[label == 0].astype(np.float64), 99.75)
    region = (pet > threshold) & (label == 0)
    n_components = ndimage.label(region, np.ones((3, 3, 3)))[1]
    assert n_components >= 10  # centres fill the budget, no fill-up...
    # ...so use a budget beyond the component count to force fill-up clicks
    sparse = np.zeros(shape, np.float32)
    sparse[rng.integers(0, 30, 4), rng.integers(0, 30, 4), rng.integers(0, 24, 4)] = 5.0
    default = _assert_same(label, sparse)
    fixed = _assert_same(label, sparse, background_in_component=True)
    region = (sparse > np.percentile(sparse[label == 0], 99.75)) & (label == 0)
    assert all(region[tuple(p)] for p in fixed["background"])
    assert not all(region[tuple(p)] for p in default["background"])
    assert default["background"][:4] == fixed["background"][:4]  # same centres


def test_quirk_redraws_when_it_lands_on_tumor():
    shape = (6, 6, 6)
    label = np.ones(shape, np.uint8)
    label[0, 0, :] = 0
    label[5, 5, 5] = 0
    pet = np.zeros(shape, np.float32)
    pet[5, 5, 5] = 3.0
    clicks = _assert_same(label, pet)
    assert clicks["background"][0] == [5, 5, 5]
    assert all(p[:2] == [0, 0] or p == [5, 5, 5] for p in clicks["background"])


def test_exact_on_phantoms():
    from autopet_common.phantoms import make_petct_case

    for seed, tracer, n_lesions, empty in [(0, "FDG", 12, False), (1, "PSMA", 3, False),
                                           (2, "FDG", None, True), (3, "PSMA", 1, False)]:
        case = make_petct_case(size="tiny", tracer=tracer, seed=seed, n_lesions=n_lesions, empty=empty)
        if n_lesions == 12:  # Fortran order (as files are read) and fill-up clicks past 10 lesions
            _assert_same(np.asfortranarray(case.label), np.asfortranarray(case.pet), click_budget=13)
            _assert_same(np.ascontiguousarray(case.label), np.ascontiguousarray(case.pet), click_budget=13)
        else:
            _assert_same(case.label, case.pet)


def test_perturbation_is_reproducible_and_stays_in_region():
    rng = np.random.default_rng(5)
    shape = (30, 30, 20)
    label = _blobs(shape, 3, rng, max_radius=5)
    pet = _pet(shape, rng, label, smooth=1.0)
    plain = simulate_clicks(label, pet)
    a = simulate_clicks(label, pet, center_offset=3, edge_offset=2, seed=42)
    b = simulate_clicks(label, pet, center_offset=3, edge_offset=2, seed=42)
    assert a == b
    assert a != plain
    for kind, inside in (("tumor", True), ("background", False)):
        for n, (p, q) in enumerate(zip(a[kind], plain[kind])):
            offset = np.subtract(p, q)
            n_centres = 3 if kind == "tumor" else 10
            assert offset.min() >= 0 and offset.max() <= (3 if n < n_centres else 2)
            assert bool(label[tuple(p)]) == inside
    other = simulate_clicks(label, pet, center_offset=3, edge_offset=2, seed=7)
    assert other != a


def test_percentiles_match_numpy():
    rng = np.random.default_rng(0)
    for n in list(range(1, 60)) + [401, 1999, 40_000, 123_457]:
        values = (rng.random(n) * 10).astype(np.float32)
        expected = np.percentile(values.astype(np.float64), 99.75)
        assert reference_percentile(values.copy()) == expected
        ints = (values * 7).astype(np.int16)
        assert reference_percentile(ints.copy()) == np.percentile(ints.astype(np.float64), 99.75)
    for shape in [(4, 5, 6), (70, 60, 50), (90, 80, 70)]:
        pet = rng.gamma(2.0, size=shape).astype(np.float32)
        pet[rng.random(shape) < 0.3] = 1.5  # heavy ties
        tumor = rng.random(shape) < 0.05
        for layout in ("C", "F"):
            p = np.asfortranarray(pet) if layout == "F" else pet
            t = np.asfortranarray(tumor) if layout == "F" else tumor
            assert background_threshold(p, t) == np.percentile(pet[~tumor].astype(np.float64), 99.75)


def test_bad_input_messages_name_the_case():
    label = np.zeros((8, 8, 8), np.uint8)
    label[2:4, 2:4, 2:4] = 1
    pet = np.random.default_rng(0).random((8, 8, 8)).astype(np.float32)
    with pytest.raises(GridMismatchError, match="case-7"):
        simulate_clicks(label, pet[:, :, :7], case="case-7")
    with pytest.raises(InputError, match="case-7.*PET image is needed"):
        simulate_clicks(label, None, case="case-7")
    bad = pet.copy()
    bad[1, 1, 1] = np.nan
    with pytest.raises(InputError, match="case-7: PET contains 1 NaN"):
        simulate_clicks(label, bad, case="case-7")
    with pytest.raises(EmptyRegionError, match="case-7.*no high-uptake region"):
        simulate_clicks(label, np.ones((8, 8, 8), np.float32), case="case-7")
    with pytest.raises(EmptyRegionError, match="covers the whole image"):
        simulate_clicks(np.ones((8, 8, 8), np.uint8), pet, case="case-7")
    with pytest.raises(ValueError, match="unknown dataset name"):
        simulate_clicks(label, pet, dataset_name="FDG")
    # no PET needed without background clicks
    assert len(simulate_clicks(label, None, "Longitudinal-CT")["tumor"]) == 2


def test_non_binary_labels_are_binarised_with_a_warning():
    rng = np.random.default_rng(2)
    label = _blobs((16, 16, 16), 4, rng)
    pet = _pet((16, 16, 16), rng, label)
    multi = label * 3
    with pytest.warns(LabelValueWarning, match="case-x.*values other than 0 and 1"):
        clicks = simulate_clicks(multi, pet, case="case-x")
    assert clicks == simulate_clicks(label, pet)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        simulate_clicks(label, pet)  # a binary label gives no warning


def test_lesion_centre_points():
    mask = np.zeros((10, 10, 10), np.uint8)
    mask[1:3, 1:3, 1:3] = 1
    mask[6, 6, 6:9] = 1
    points = lesion_centre_points(mask)
    assert sorted(points.values()) == [(1.5, 1.5, 1.5), (6.0, 6.0, 7.0)]
    multi = np.zeros((10, 10, 10), np.uint8)
    multi[0:2, 0, 0] = 4
    multi[5, 5, 5] = 2
    assert lesion_centre_points(multi) == {2: (5.0, 5.0, 5.0), 4: (0.5, 0.0, 0.0)}
    assert lesion_centre_points(np.zeros((4, 4, 4))) == {}


def test_clicks_do_not_depend_on_memory_layout():
    """The same image as a C- or Fortran-ordered array gives the same clicks (the file's)."""
    from autopet_common.phantoms import make_petct_case

    case = make_petct_case(size="tiny", tracer="FDG", seed=4, n_lesions=8)
    c_order = simulate_clicks(np.ascontiguousarray(case.label), np.ascontiguousarray(case.pet))
    f_order = simulate_clicks(np.asfortranarray(case.label), np.asfortranarray(case.pet))
    assert c_order == f_order
    assert len(c_order["tumor"]) == 10 and len(c_order["background"]) == 10
