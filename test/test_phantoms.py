"""Tests of the synthetic PET/CT and longitudinal CT phantoms (autopet_common.phantoms)."""
import json
import subprocess
import sys
from pathlib import Path

import cc3d
import numpy as np
import pytest
from scipy.ndimage import center_of_mass

from autopet_common.errors import InputError
from autopet_common.image_io import read_image
from autopet_common.phantoms import (PRESETS, baseline_to_followup, followup_to_baseline,
                                     make_longitudinal_pair, make_petct_case, write_task1_cohort,
                                     write_task2_cohort)
from autopet_common.phantoms.anatomy import HOT_ORGANS, body_r2
from autopet_common.phantoms.cli import main as cli_main
from autopet_common.phantoms.task2 import resample_through


# ---------------------------------------------------------------------------------- Task 1
def test_same_seed_same_case_different_seed_different_case():
    a = make_petct_case("tiny", "FDG", seed=7)
    b = make_petct_case("tiny", "FDG", seed=7)
    c = make_petct_case("tiny", "FDG", seed=8)
    for name in ("ct", "pet", "label"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.lesions == b.lesions
    assert not np.array_equal(a.pet, c.pet)
    assert not np.array_equal(a.ct, c.ct)


def test_global_numpy_rng_is_untouched():
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    make_petct_case("tiny", "PSMA", seed=1, n_lesions=2)
    assert np.random.random() == expected


def test_case_arrays_types_and_grid(tiny_case):
    shape, spacing = PRESETS["tiny"]
    assert tiny_case.ct.shape == tiny_case.pet.shape == tiny_case.label.shape == shape
    assert tiny_case.geometry.shape == shape and tiny_case.geometry.spacing == spacing
    assert tiny_case.ct.dtype == np.float32 and tiny_case.pet.dtype == np.float32
    assert tiny_case.label.dtype == np.uint8
    assert set(np.unique(tiny_case.label)) == {0, 1}
    assert np.isfinite(tiny_case.ct).all() and np.isfinite(tiny_case.pet).all()


def test_ct_and_pet_values_are_realistic(tiny_case):
    ct, pet = tiny_case.ct, tiny_case.pet
    r2 = body_r2(ct.shape)
    air = r2 > 1.5
    assert abs(np.median(ct[air]) + 1000) < 15
    assert np.median(pet[air]) < 0.05
    lungs = tiny_case.organ_mask("lung_left") | tiny_case.organ_mask("lung_right")
    lungs &= tiny_case.label == 0
    assert -900 < np.median(ct[lungs]) < -800
    spine = tiny_case.organ_mask("spine") & (tiny_case.label == 0)
    assert 400 <= np.median(ct[spine]) <= 1000
    any_organ = np.zeros(ct.shape, bool)
    for name in tiny_case.organ_boxes:
        any_organ |= tiny_case.organ_mask(name)
    soft = (r2 < 0.5) & ~any_organ & (tiny_case.label == 0)
    assert 20 < np.median(ct[soft]) < 60
    fat = (r2 > 0.9) & (r2 < 0.97)
    assert -130 < np.median(ct[fat]) < -70
    body_background = (r2 <= 1) & ~any_organ & (tiny_case.label == 0)
    assert 0.5 <= np.median(pet[body_background]) <= 1.5
    assert np.percentile(pet[body_background], 5) > 0.3


def test_lesions_have_tumour_uptake_and_soft_tissue_ct(tiny_case):
    assert len(tiny_case.lesions) == 6
    for lesion in tiny_case.lesions:
        assert 3.0 <= lesion["suv_max"] <= 20.0
        assert -20 < lesion["ct_hu"] < 150
    biggest = max(tiny_case.lesions, key=lambda l: l["n_voxels"])
    i, j, k = np.round(biggest["centre"]).astype(int)
    # Blur and noise change the peak a little, not its order of magnitude.
    assert 0.5 * biggest["suv_max"] < tiny_case.pet[i, j, k] < 1.5 * biggest["suv_max"]
    assert tiny_case.label[i, j, k] == 1


def test_lesion_sizes_span_few_voxels_to_centimetres():
    sizes, radii = [], []
    for seed in range(4):
        case = make_petct_case("tiny", "FDG", seed=seed, n_lesions=10)
        sizes += [l["n_voxels"] for l in case.lesions]
        radii += [l["radius_mm"] for l in case.lesions]
    assert min(sizes) <= 30
    assert 2 * max(radii) >= 30.0


def test_touching_and_near_organ_lesions(tiny_case):
    # Lesion 2 is placed touching lesion 1: they form one 26-connected component.
    n_components = cc3d.connected_components(tiny_case.label, connectivity=26).max()
    assert n_components < len(tiny_case.lesions)
    assert 1 in tiny_case.lesions[1]["touching"] and 2 in tiny_case.lesions[0]["touching"]
    near = [l for l in tiny_case.lesions if l["near_organ"]]
    assert near and all(l["near_organ"] in HOT_ORGANS["FDG"] for l in near)


def test_empty_case_has_no_lesion():
    case = make_petct_case("tiny", "PSMA", seed=3, empty=True)
    assert case.lesions == [] and not case.label.any()


def test_tracer_specific_physiological_uptake():
    fdg = make_petct_case("tiny", "FDG", seed=2, n_lesions=0)
    psma = make_petct_case("tiny", "PSMA", seed=2, n_lesions=0)
    brain = fdg.organ_mask("brain")
    parotid = fdg.organ_mask("parotid_left") | fdg.organ_mask("parotid_right")
    kidney = fdg.organ_mask("kidney_left")
    assert np.median(fdg.pet[brain]) > 5 and np.median(psma.pet[brain]) < 1
    assert np.median(psma.pet[parotid]) > 5 and np.median(fdg.pet[parotid]) < 3
    assert np.median(psma.pet[kidney]) > 2 * np.median(fdg.pet[kidney])
    bladder = fdg.organ_mask("bladder")
    assert np.median(fdg.pet[bladder]) > 8 and np.median(psma.pet[bladder]) > 8


def test_bad_arguments_raise_input_error():
    with pytest.raises(InputError, match="unknown tracer"):
        make_petct_case("tiny", "FLT")
    with pytest.raises(InputError, match="unknown phantom size"):
        make_petct_case("huge")


def test_task1_cohort_layout(tiny_task1_cohort):
    root = Path(tiny_task1_cohort)
    dataset = json.loads((root / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "CT", "1": "PET"}
    assert dataset["labels"] == {"background": 0, "lesion": 1}
    assert dataset["numTraining"] == 3 and dataset["file_ending"] == ".nii.gz"
    meta = json.loads((root / "lesions.json").read_text())
    assert list(meta) == ["PHANTOM_FDG_0000", "PHANTOM_FDG_0001", "PHANTOM_FDG_0002"]
    assert meta["PHANTOM_FDG_0002"]["empty"] and meta["PHANTOM_FDG_0002"]["lesions"] == []
    for case, entry in meta.items():
        ct, g_ct = read_image(root / "imagesTr" / f"{case}_0000.nii.gz")
        pet, g_pet = read_image(root / "imagesTr" / f"{case}_0001.nii.gz")
        label, g_label = read_image(root / "labelsTr" / f"{case}.nii.gz")
        assert g_ct.shape == g_pet.shape == g_label.shape == tuple(entry["geometry"]["shape"])
        assert int(label.sum()) == sum(l["n_voxels"] for l in entry["lesions"]) or entry["lesions"]
        assert bool(label.any()) == bool(entry["lesions"])
        gc_ct, gc_pet = root / entry["gc"]["ct"], root / entry["gc"]["pet"]
        assert gc_ct.parent == root / "gc" / case / "images" / "ct"
        assert gc_ct.stem != gc_pet.stem
        gc_pet_array, _ = read_image(gc_pet)
        assert np.array_equal(gc_pet_array, pet)


class _SerialPool:
    """Stands in for nnU-Net's spawn pool: same checks, run in this process (saves ~10 s per call)."""

    def __init__(self, *args):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def starmap(self, func, iterable):
        return [func(*args) for args in iterable]


class _SerialMultiprocessing:
    @staticmethod
    def get_context(method):
        return type("_Context", (), {"Pool": _SerialPool})


def test_dataset_id_folder_and_nnunet_integrity_check(tmp_path, tiny_task1_cohort, monkeypatch):
    from nnunetv2.experiment_planning import verify_dataset_integrity as verify_module

    root = write_task1_cohort(tmp_path, n_cases=2, tracer="mixed", seed=5, dataset_id=987,
                              gc_layout=False, n_lesions=2)
    assert root.name == "Dataset987_PhantomPETCT" and not (root / "gc").exists()
    assert sorted(p.name for p in (root / "labelsTr").iterdir()) == ["PHANTOM_FDG_0000.nii.gz",
                                                                    "PHANTOM_PSMA_0001.nii.gz"]
    # The stock check that `nnUNetv2_extract_fingerprint --verify_dataset_integrity` runs,
    # once as shipped (spawn pool) ...
    verify_module.verify_dataset_integrity(str(root), 1)
    # ... then in-process for the shared fixture cohort (with an empty case) and a broken copy.
    monkeypatch.setattr(verify_module, "multiprocessing", _SerialMultiprocessing)
    verify_module.verify_dataset_integrity(str(tiny_task1_cohort), 1)
    # The check is real: a label with an undeclared value fails it.
    from autopet_common.image_io import write_image
    label, geom = read_image(root / "labelsTr" / "PHANTOM_FDG_0000.nii.gz")
    write_image(np.where(label > 0, 2, 0).astype(np.uint8), geom,
                root / "labelsTr" / "PHANTOM_FDG_0000.nii.gz")
    with pytest.raises(RuntimeError, match="unexpected labels"):
        verify_module.verify_dataset_integrity(str(root), 1)


def test_cli_help_and_errors(tmp_path, capsys):
    result = subprocess.run([sys.executable, "-m", "autopet_common.phantoms", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "task1" in result.stdout and "task2" in result.stdout
    out = tmp_path / "bad"
    with pytest.raises(SystemExit) as caught:
        cli_main(["task1", "--out", str(out), "--n_cases", "0"])
    assert caught.value.code == 2
    assert "--n_cases: expected a whole number >= 1" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit):
        cli_main(["task1", "--out", str(out), "--size", "gigantic"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as caught:
        cli_main(["task2", "--out", str(out), "--vanish_probability", "1.5"])
    assert caught.value.code == 2
    assert "--vanish_probability: expected a probability 0..1" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit) as caught:
        cli_main(["task2", "--out", str(out), "--n_merging", "1", "--event_every", "0"])
    assert caught.value.code == 2
    assert "--event_every: expected a whole number >= 1" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------------------------- Task 2
def _physical(geometry, index):
    return geometry.index_to_physical(np.asarray(index, dtype=float))


def test_pair_is_deterministic():
    a = make_longitudinal_pair("tiny", seed=4, n_lesions=2, n_new=1)
    b = make_longitudinal_pair("tiny", seed=4, n_lesions=2, n_new=1)
    assert np.array_equal(a.followup_ct, b.followup_ct) and np.array_equal(a.followup_labels, b.followup_labels)
    assert a.transform == b.transform and a.lesions == b.lesions


def test_transform_round_trip_and_size(tiny_longitudinal_pair):
    pair = tiny_longitudinal_pair
    rng = np.random.default_rng(0)
    points = rng.uniform(-150, 150, size=(20, 3))
    back = baseline_to_followup(followup_to_baseline(points, pair.transform), pair.transform)
    assert np.abs(back - points).max() < 1e-6
    moved = np.linalg.norm(followup_to_baseline(points, pair.transform) - points, axis=1)
    assert moved.max() > 1.0  # a real motion, not the identity
    assert all(abs(a) <= 3 for a in pair.transform["rotation_deg"])
    assert all(abs(t) <= 10 for t in pair.transform["translation_mm"])


def test_followup_grid_differs_like_a_repeat_scan(tiny_longitudinal_pair):
    base, fu = tiny_longitudinal_pair.baseline_geometry, tiny_longitudinal_pair.followup_geometry
    assert base.spacing == fu.spacing
    assert base.shape != fu.shape or base.origin != fu.origin


def test_followup_anatomy_follows_the_stored_transform(tiny_longitudinal_pair):
    pair = tiny_longitudinal_pair
    identity = dict(pair.transform, rotation_deg=[0, 0, 0], translation_mm=[0, 0, 0],
                    bump_amplitudes_mm=[[0, 0, 0]] * len(pair.transform["bump_amplitudes_mm"]))
    known = resample_through(pair.baseline_ct, pair.baseline_geometry, pair.followup_geometry,
                             pair.transform, fill=-1000)
    naive = resample_through(pair.baseline_ct, pair.baseline_geometry, pair.followup_geometry,
                             identity, fill=-1000)
    body = (pair.followup_ct > -500) | (naive > -500)
    err_known = np.mean(np.abs(known - pair.followup_ct)[body])
    err_naive = np.mean(np.abs(naive - pair.followup_ct)[body])
    assert err_known < 0.5 * err_naive


def test_persisting_lesions_keep_ids_and_move_with_the_transform(tiny_longitudinal_pair):
    pair = tiny_longitudinal_pair
    status = {l["id"]: l["status"] for l in pair.lesions}
    base_ids = set(np.unique(pair.baseline_labels)) - {0}
    fu_ids = set(np.unique(pair.followup_labels)) - {0}
    assert base_ids == {i for i, s in status.items() if s != "new"}
    assert fu_ids == {i for i, s in status.items() if s != "vanished"}
    new_ids = {i for i, s in status.items() if s == "new"}
    assert new_ids and min(new_ids) > max(base_ids)
    persisting = base_ids & fu_ids
    assert persisting
    spacing = np.asarray(pair.baseline_geometry.spacing)
    for lesion_id in persisting:
        base_mm = _physical(pair.baseline_geometry, pair.baseline_centres[lesion_id])
        fu_mm = _physical(pair.followup_geometry, pair.followup_centres[lesion_id])
        error_vox = np.abs(followup_to_baseline(fu_mm, pair.transform) - base_mm) / spacing
        assert error_vox.max() < 0.75, (lesion_id, error_vox)
    for lesion in pair.lesions:
        n_base = int((pair.baseline_labels == lesion["id"]).sum())
        n_fu = int((pair.followup_labels == lesion["id"]).sum())
        if lesion["status"] == "grown":
            assert n_fu > n_base
        elif lesion["status"] == "shrunk":
            assert n_fu < n_base


def test_task2_cohort_files_and_points(tmp_path):
    from autopet_common.click_io import read_task2_points

    out = write_task2_cohort(tmp_path, n_pairs=1, size="tiny", seed=1)
    pair = out / "PHANTOM_CT_0000"
    images = pair / "input" / "images"
    for folder in ("primary-baseline-ct", "primary-baseline-ct-tumor-lesion-seg", "primary-followup-ct"):
        assert len(list((images / folder).glob("*.mha"))) == 1
    base_seg, _ = read_image(next((images / "primary-baseline-ct-tumor-lesion-seg").glob("*.mha")))
    truth, _ = read_image(pair / "truth" / "followup-tumor-lesion-seg.mha")
    transform = json.loads((pair / "transform.json").read_text())
    assert set(transform["transform"]) >= {"rotation_deg", "translation_mm", "bump_centres_mm"}
    for labels, name in ((base_seg, "primary-baseline-lesion-clicks.json"),
                         (truth, "primary-followup-lesion-clicks.json")):
        raw = json.loads((pair / "input" / name).read_text())
        assert raw["name"] == "Points of interest"
        points = read_task2_points(pair / "input" / name)
        assert set(points) == set(np.unique(labels)) - {0}
        for lesion_id, point in points.items():
            assert np.allclose(point, center_of_mass(labels == lesion_id), atol=1e-3)


def test_task2_grid_sets_coarse_fine_and_mixed():
    from autopet_common.phantoms.task2 import GRID_SETS, fine_grid, pair_grid, varied_grid

    assert GRID_SETS == ("varied", "varied_fine", "mixed")
    for n in range(12):
        shape, spacing = varied_grid(0, n)
        assert spacing[0] >= 2.4 and max(shape) <= 160  # coarser in-plane than the model's 2 mm
        fine_shape, fine_spacing = fine_grid(0, n)
        assert 0.7 <= fine_spacing[0] == fine_spacing[1] <= 2.0 and 1.5 <= fine_spacing[2] <= 3.5
        assert fine_shape[0] <= 512 and fine_shape[2] <= 240
        fov = np.multiply(fine_shape, fine_spacing)
        assert 370 <= fov[0] <= 530 and 290 <= fov[2] <= 610  # the same bodies as the varied set
        assert fine_grid(0, n) == (fine_shape, fine_spacing)  # deterministic
        mixed = pair_grid("mixed", 0, n)
        expected = fine_grid(0, n) if n % 3 == 2 else varied_grid(0, n)
        assert (mixed["shape"], mixed["spacing"]) == expected
    assert fine_grid(1, 0) != fine_grid(0, 0)
    assert pair_grid("small", 0, 0) == {"size": "small"}


def test_vanish_probability_changes_only_the_statuses():
    default = make_longitudinal_pair("tiny", seed=[5, 1], n_lesions=4, n_new=0)
    gone = make_longitudinal_pair("tiny", seed=[5, 1], n_lesions=4, n_new=0, vanish_probability=1.0)
    kept = make_longitudinal_pair("tiny", seed=[5, 1], n_lesions=4, n_new=0, vanish_probability=0.0)
    assert np.array_equal(gone.baseline_ct, default.baseline_ct)  # same baseline, same draws
    assert np.array_equal(gone.baseline_labels, default.baseline_labels)
    assert [r["status"] for r in gone.lesions] == ["vanished"] * len(default.lesions)
    assert not gone.followup_labels.any()
    assert "vanished" not in [r["status"] for r in kept.lesions]
    assert set(np.unique(kept.followup_labels)) - {0} == {r["id"] for r in kept.lesions}
    with pytest.raises(InputError, match="vanish_probability"):
        make_longitudinal_pair("tiny", seed=0, vanish_probability=1.5)


# ---------------------------------------------------------------------------- committed sample
def test_committed_sample_is_what_make_sample_writes():
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from make_sample import make_input_case
    finally:
        sys.path.pop(0)
    test_dir = Path(__file__).parent
    ct_files = list((test_dir / "input" / "images" / "ct").glob("*.mha"))
    pet_files = list((test_dir / "input" / "images" / "pet").glob("*.mha"))
    assert len(ct_files) == len(pet_files) == 1 and ct_files[0].stem != pet_files[0].stem
    case = make_input_case()
    ct, g_ct = read_image(ct_files[0])
    pet, g_pet = read_image(pet_files[0])
    assert g_ct == g_pet == case.geometry
    assert np.array_equal(ct, np.round(case.ct).astype(np.int16))
    assert np.array_equal(pet, case.pet)
    assert 3 <= len(case.lesions) <= 6
    label, _ = read_image(test_dir / "sample_cohort" / "test_input_case" / "label.nii.gz")
    assert np.array_equal(label, case.label)
    dataset = json.loads((test_dir / "sample_cohort" / "dataset.json").read_text())
    assert dataset["numTraining"] == 2
    tracers = {p.name.split("_")[1] for p in (test_dir / "sample_cohort" / "labelsTr").glob("*.nii.gz")}
    assert tracers == {"FDG", "PSMA"}


def test_merging_and_splitting_lesions():
    """Opt-in events: two baseline lesions (apart, 26-connected) become one follow-up lesion with
    the larger one's id; one baseline lesion becomes two follow-up lesions, the second with a new
    id. Without the events the pair is unchanged."""
    import cc3d

    from autopet_common.phantoms import make_longitudinal_pair

    pair = make_longitudinal_pair(size="small", seed=3, n_merging=1, n_splitting=1)
    by_status = {lesion["status"]: lesion for lesion in pair.lesions}
    merged, split = by_status["merged"], by_status["split"]
    into, parent = merged["merged_into"], split["split_from"]
    components = lambda mask: int(cc3d.connected_components(mask.astype(np.uint8), connectivity=26).max())
    assert components(np.isin(pair.baseline_labels, [into, merged["id"]])) == 2
    assert not (pair.followup_labels == merged["id"]).any() and components(pair.followup_labels == into) == 1
    assert not (pair.baseline_labels == split["id"]).any() and components(pair.baseline_labels == parent) == 1
    assert components(np.isin(pair.followup_labels, [parent, split["id"]])) == 2
    plain = make_longitudinal_pair(size="tiny", seed=4)
    again = make_longitudinal_pair(size="tiny", seed=4, n_merging=0, n_splitting=0)
    assert np.array_equal(plain.followup_labels, again.followup_labels) and plain.lesions == again.lesions


def test_events_on_every_kth_pair_only(tmp_path):
    """``event_every`` puts the merging and splitting lesions on the pairs n with (n + 1) % k == 0
    (the benchmark's odd pairs for 2); the other pairs are the plain pairs."""
    from autopet_common.phantoms.task2 import pair_events, write_task2_cohort

    assert [pair_events(n, 1, 2, every=2)["n_splitting"] for n in range(4)] == [0, 2, 0, 2]
    assert all(pair_events(n, 1, 1)["n_merging"] == 1 for n in range(3))
    with pytest.raises(InputError, match="every"):
        write_task2_cohort(tmp_path / "bad", n_pairs=2, n_merging=1, event_every=0)
    assert not (tmp_path / "bad").exists()
    root = write_task2_cohort(tmp_path / "cohort", n_pairs=2, size="small", seed=3, n_merging=1, n_splitting=1,
                              event_every=2)
    statuses = [{r["status"] for r in json.loads((root / f"PHANTOM_CT_{n:04d}" / "transform.json").read_text())["lesions"]}
                for n in range(2)]
    assert not statuses[0] & {"merged", "split"} and {"merged", "split"} <= statuses[1]
    plain = make_longitudinal_pair(size="small", seed=[3, 0])
    written, _ = read_image(next((root / "PHANTOM_CT_0000" / "truth").glob("*.mha")))
    assert np.array_equal(written, plain.followup_labels)
