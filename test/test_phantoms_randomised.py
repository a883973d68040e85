"""The domain-randomised training phantoms and the second anatomy (issues 33 and 34)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from autopet_common.phantoms.randomised import randomised_petct_case
from autopet_common.phantoms.second_anatomy import second_anatomy_case


@pytest.fixture(scope="module")
def randomised_cases():
    # small caps keep the module fast; the grid is still drawn per case
    return [randomised_petct_case(("FDG", "PSMA")[n % 2], [3, n], max_inplane=96, max_slices=96) for n in range(10)]


def test_randomised_case_is_deterministic_in_its_seed():
    a = randomised_petct_case("PSMA", [7, 1], max_inplane=64, max_slices=64)
    b = randomised_petct_case("PSMA", [7, 1], max_inplane=64, max_slices=64)
    c = randomised_petct_case("PSMA", [7, 2], max_inplane=64, max_slices=64)
    for name in ("ct", "pet", "label"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.geometry == b.geometry
    assert a.geometry != c.geometry or not np.array_equal(a.pet, c.pet)


def test_randomised_cases_vary_grid_bones_and_organs(randomised_cases):
    spacings = [c.geometry.spacing for c in randomised_cases]
    assert min(s[0] for s in spacings) < 3.0 and max(s[0] for s in spacings) > 4.5
    assert len({c.geometry.spacing for c in randomised_cases}) == len(randomised_cases)
    # bones are drawn per case: some cases have none in view (nothing denser than a lesion + noise)
    dense = [float(c.ct.max()) > 400 for c in randomised_cases]
    assert any(dense) and not all(dense)
    # organ positions move: the liver's centre (mm, relative to the body's extent) is not fixed
    organ_values = [set(np.unique(c.organ_map()).tolist()) for c in randomised_cases]
    assert any(18 in v for v in organ_values), "bowel loops (small_bowel) in the organ maps"
    for c in randomised_cases:
        assert c.ct.dtype == np.float32 and c.pet.dtype == np.float32 and c.label.dtype == np.uint8
        assert c.ct.shape == c.pet.shape == c.label.shape == c.geometry.shape
        assert np.isfinite(c.pet).all() and c.pet.min() >= 0
        assert -1024 <= c.ct.min() and c.ct.max() <= 3071


def test_randomised_lesions_are_labelled_and_described(randomised_cases):
    with_lesions = [c for c in randomised_cases if c.label.any()]
    assert len(with_lesions) >= 7
    for c in with_lesions:
        assert c.lesions, c.case_id
        assert sum(les["n_voxels"] for les in c.lesions) >= int(c.label.sum())  # overlaps count twice
        # lesions are hotter than the body on average, after blur and noise
        body = c.ct > -500
        assert c.pet[c.label > 0].mean() > c.pet[body & (c.label == 0)].mean()


def test_second_anatomy_is_deterministic_boneless_and_not_a_training_set():
    from Task1.train_phantom_model import PHANTOM_SETS

    a = second_anatomy_case("FDG", [5000, 0], size=None, shape=(64, 64, 80), spacing=(8.0, 8.0, 12.0))
    b = second_anatomy_case("FDG", [5000, 0], size=None, shape=(64, 64, 80), spacing=(8.0, 8.0, 12.0))
    assert np.array_equal(a.pet, b.pet) and np.array_equal(a.label, b.label)
    assert a.ct.max() < 400, "the second anatomy has no bones"
    assert a.label.any() and a.lesions
    assert {"brain", "heart", "bladder", "liver"} <= set(a.organ_boxes)
    # an organ the training anatomy does not have
    assert "stomach" in a.organ_boxes
    assert "second" not in PHANTOM_SETS


def test_cohort_writer_and_cli_take_an_anatomy(tmp_path):
    from autopet_common.phantoms.cli import main

    assert main(["task1", "--out", str(tmp_path / "second"), "--n_cases", "2", "--tracer", "mixed",
                 "--anatomy", "second", "--no_gc"]) == 0
    meta = json.loads((tmp_path / "second" / "dataset.json").read_text())
    assert "second anatomy" in meta["description"]
    assert len(list((tmp_path / "second" / "labelsTr").glob("*.nii.gz"))) == 2
    with pytest.raises(SystemExit):
        main(["task1", "--out", str(tmp_path / "x"), "--anatomy", "other"])


def test_mixed_training_set_alternates_generators(tmp_path):
    from autopet_common.image_io import read_image
    from Task1.train_phantom_model import PHANTOM_SETS, varied_phantom, write_training_phantoms

    assert set(PHANTOM_SETS) == {"varied", "randomised", "mixed", "mostly_varied", "small_lesions", "organ_decoys",
                                "bone_free_half"}
    source = write_training_phantoms(tmp_path / "source", 2, seed=0, progress=False, organs=True, phantoms="mixed")
    # case 0 is the varied set's case 0, case 1 a randomised one (its own grid)
    label0, geometry0 = read_image(source / "labelsTr" / "phantom_000.nii.gz")
    reference = varied_phantom(0, 0)
    assert geometry0.shape == reference.geometry.shape and np.array_equal(label0, reference.label)
    organs1, geometry1 = read_image(source / "organsTr" / "phantom_001.nii.gz")
    assert geometry1.shape == PHANTOM_SETS["randomised"](0, 1).geometry.shape
    assert organs1.any()


def test_mostly_varied_set_randomises_every_third_case():
    from Task1.train_phantom_model import PHANTOM_SETS, randomised_phantom, varied_phantom

    make = PHANTOM_SETS["mostly_varied"]
    for n, reference in ((0, varied_phantom), (1, varied_phantom), (2, randomised_phantom)):
        case, expected = make(3, n), reference(3, n)
        assert case.geometry.shape == expected.geometry.shape and np.array_equal(case.label, expected.label)


def test_second_anatomy_pair_keeps_its_records():
    """Task 2 pairs of the second anatomy: deterministic; every record's status is what the label
    maps hold (vanished: baseline only; new: follow-up only; else both, grown larger, shrunk
    smaller); each id one blob; every lesion differs from the tissue around it; and the training
    generator's pair of the same seed and grid is another pair."""
    import cc3d
    from scipy import ndimage as ndi

    from autopet_common.phantoms import make_longitudinal_pair
    from autopet_common.phantoms.second_anatomy import second_anatomy_pair

    grid = {"size": None, "shape": (96, 96, 80), "spacing": (4.0, 4.0, 6.0)}
    pairs = [second_anatomy_pair([6000, n], **grid) for n in range(4)]
    again = second_anatomy_pair([6000, 0], **grid)
    assert np.array_equal(again.followup_ct, pairs[0].followup_ct) and again.lesions == pairs[0].lesions
    statuses = set()
    for pair in pairs:
        assert pair.baseline_ct.max() < 400, "no bones"
        for record in pair.lesions:
            lesion_id, status = record["id"], record["status"]
            statuses.add(status)
            base, follow = pair.baseline_labels == lesion_id, pair.followup_labels == lesion_id
            assert base.any() == (status != "new") and follow.any() == (status != "vanished"), record
            for mask, ct, labels in ((base, pair.baseline_ct, pair.baseline_labels),
                                     (follow, pair.followup_ct, pair.followup_labels)):
                if mask.any():
                    assert cc3d.connected_components(mask.astype(np.uint8), connectivity=26).max() == 1
                    ring = ndi.binary_dilation(mask, iterations=2) & (labels == 0)
                    assert abs(float(np.median(ct[mask])) - float(np.median(ct[ring]))) > 10.0, record
            if status in ("grown", "shrunk") and base.sum() > 20:
                assert (follow.sum() > base.sum()) == (status == "grown"), record
    assert {"vanished", "new"} <= statuses
    plain = make_longitudinal_pair(seed=[6000, 0], **grid)
    assert not np.array_equal(plain.baseline_ct, pairs[0].baseline_ct)
