"""Bad input, class by class, for every command line that takes it (issue 15).

The rule checked everywhere: a one-line ``error:`` message naming the input, exit code 2 (1 only
for a batch that reports per-case failures), no traceback, and nothing partial or stale written.
Tools run in-process through their ``main(argv)`` (the same code as the console scripts), so the
whole file runs in seconds. JSON readers are also fuzzed with hypothesis: any JSON value gives
either a valid result or the reader's own error, never another exception.
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autopet_common.errors import InputError
from autopet_common.image_io import read_image, write_image, write_mask

SHAPE = (24, 22, 20)


# ----------------------------------------------------------------------------- helpers
def run_tool(module: str, argv: list, capsys) -> tuple[int, str]:
    main = importlib.import_module(module).main
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file()) if Path(folder).exists() else []


def corrupt_compressed_mha(path: Path) -> None:
    """Flip one bit in the middle of the compressed voxel data (ITK reads such a file without error)."""
    data = bytearray(path.read_bytes())
    start = data.find(b"ElementDataFile = LOCAL\n") + len(b"ElementDataFile = LOCAL\n")
    data[start + (len(data) - start) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def nan_nifti(path: Path, array: np.ndarray) -> None:
    """A float NIfTI with one NaN voxel (SimpleITK reads NaN in NIfTI as 0)."""
    import nibabel

    data = np.asarray(array, dtype=np.float32).copy()
    data[0, 0, 0] = np.nan
    nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), str(path))


@pytest.fixture(scope="module")
def case():
    from autopet_common.phantoms import make_petct_case

    return make_petct_case(tracer="FDG", seed=3, n_lesions=3, shape=SHAPE, spacing=(8.0, 8.0, 10.0))


@pytest.fixture
def task1_input(tmp_path, case):
    """A Grand Challenge Task 1 input folder with 2 + 2 clicks."""
    from autopet_common.click_io import write_clicks_json
    from clicks import simulate_clicks

    root = tmp_path / "input"
    write_image(case.ct.astype(np.float32), case.geometry, root / "images" / "ct" / "ct-uuid.mha")
    write_image(case.pet.astype(np.float32), case.geometry, root / "images" / "pet" / "pet-uuid.mha")
    clicks = simulate_clicks(case.label, case.pet, click_budget=2)
    write_clicks_json(root / "lesion-clicks.json", clicks, gc_format=True)
    return root


@pytest.fixture
def task2_input(tmp_path):
    from autopet_common.phantoms import write_task2_cohort

    cohort = write_task2_cohort(tmp_path / "t2cohort", n_pairs=1, size="tiny", seed=5)
    return cohort / "PHANTOM_CT_0000" / "input"


@pytest.fixture
def autopet_source(tmp_path, case):
    """An autoPET-layout folder (imagesTr/<case>_0000, _0001, labelsTr/<case>) with 2 cases."""
    root = tmp_path / "source"
    for n in range(2):
        write_image(case.ct.astype(np.float32), case.geometry, root / "imagesTr" / f"c{n}_0000.nii.gz")
        write_image(case.pet.astype(np.float32), case.geometry, root / "imagesTr" / f"c{n}_0001.nii.gz")
        write_mask(case.label, case.geometry, root / "labelsTr" / f"c{n}.nii.gz")
    return root


# ----------------------------------------------------------------------------- corrupt compressed .mha
def test_corrupt_compressed_mha_is_refused_by_the_reader(tmp_path, case):
    path = write_image(case.pet.astype(np.float32), case.geometry, tmp_path / "pet.mha")
    assert np.array_equal(read_image(path)[0], case.pet.astype(np.float32))
    corrupt_compressed_mha(path)
    with pytest.raises(InputError, match="corrupt compressed image data"):
        read_image(path, what="PET")
    # a truncated one, too
    data = write_image(case.pet.astype(np.float32), case.geometry, tmp_path / "pet2.mha").read_bytes()
    (tmp_path / "pet2.mha").write_bytes(data[:-300])
    with pytest.raises(InputError):
        read_image(tmp_path / "pet2.mha")


def test_corrupt_mha_entrypoint_task1(task1_input, tmp_path, capsys):
    corrupt_compressed_mha(next((task1_input / "images" / "ct").iterdir()))
    code, err = run_tool("inference", ["--input", task1_input, "--output", tmp_path / "out", "--model",
                                       "model-free", "--quiet"], capsys)
    assert code == 2 and "corrupt compressed" in err and "CT" in err
    assert files_under(tmp_path / "out") == []


def test_corrupt_mha_entrypoint_task2(task2_input, tmp_path, capsys):
    corrupt_compressed_mha(next((task2_input / "images" / "primary-followup-ct").iterdir()))
    code, err = run_tool("Task2.inference", ["--input", task2_input, "--output", tmp_path / "out", "--quiet"],
                         capsys)
    assert code == 2 and "corrupt compressed" in err and "follow-up CT" in err
    assert files_under(tmp_path / "out") == []


def test_corrupt_mha_evaluation_and_lesion_points(tmp_path, case, capsys):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    write_mask(case.label, case.geometry, gt / "c0.mha")
    write_mask(case.label, case.geometry, pred / "c0.mha")
    corrupt_compressed_mha(pred / "c0.mha")
    code, err = run_tool("evaluation_metrics.evaluation_metrics", ["-g", gt, "-p", pred, "-o", tmp_path / "o"],
                         capsys)
    assert code == 2 and "corrupt compressed" in err and "c0.mha" in err
    assert files_under(tmp_path / "o") == []
    code, err = run_tool("clicks.lesion_points", [pred / "c0.mha", tmp_path / "points.json"], capsys)
    assert code == 2 and "corrupt compressed" in err and not (tmp_path / "points.json").exists()


# ----------------------------------------------------------------------------- output paths that are files
@pytest.mark.parametrize("module, argv", [
    ("inference", ["--input", "{t1}", "--output", "{file}", "--model", "model-free", "--quiet"]),
    ("Task2.inference", ["--input", "{t2}", "--output", "{file}", "--quiet"]),
    ("evaluation_metrics.evaluation_metrics", ["-g", "{gt}", "-p", "{gt}", "-o", "{file}"]),
    ("clicks.simulate_clicks", ["-i", "{src}/labelsTr", "-d", "FDG-PETCT", "--json_output", "{file}", "--quiet"]),
    ("clicks.lesion_points", ["{gt}/c0.nii.gz", "{file}/points.json"]),
    ("Task1.convert_dataset", ["{src}", "--nnunet_raw", "{file}", "--dataset_id", "7", "--no_progress"]),
    ("Task1.batch_predict", ["-i", "{src}/imagesTr", "-o", "{file}", "-m", "model-free", "--steps", "0",
                             "--no_progress"]),
    ("autopet_common.phantoms.cli", ["task1", "--out", "{file}", "--n_cases", "1"]),
    ("local_challenge.__main__", ["--cohort", "{src}", "--output", "{file}", "--no_progress"]),
    ("publication_template.fill_paper", ["--task1", "{gt}", "-o", "{file}"]),
])
def test_an_output_path_that_is_a_file(module, argv, tmp_path, task1_input, task2_input, autopet_source, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    gt = autopet_source / "labelsTr"
    argv = [a.format(t1=task1_input, t2=task2_input, file=a_file, gt=gt, src=autopet_source) for a in argv]
    code, err = run_tool(module, argv, capsys)
    assert code == 2, err
    assert "error:" in err and str(a_file) in err, err
    assert a_file.read_text() == "keep me"


# ----------------------------------------------------------------------------- hostile JSON
HUGE = "1" * 400
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("text, message", [
    ('{"version": {"major": 1, "minor": 0}, "type": "Multiple points", "points": [{"name": "tumor", '
     f'"point": [{HUGE}, 1, 1]}}]}}', "finite numbers"),
    (DEEP, "nested too deeply"),
    ('{"tumor": [[1, 2, 3]], "background": [[1e999, 2, 3]]}', "finite numbers"),
    ("\udcff".encode("utf-8", "surrogateescape").decode("latin-1"), ""),
])
def test_hostile_click_json_entrypoint(task1_input, tmp_path, capsys, text, message):
    (task1_input / "lesion-clicks.json").write_bytes(text.encode("utf-8", "surrogatepass"))
    code, err = run_tool("inference", ["--input", task1_input, "--output", tmp_path / "out", "--model",
                                       "model-free", "--quiet"], capsys)
    assert code == 2 and "lesion-clicks.json" in err and message in err, err
    assert len(err) < 2000  # the 400-digit number is not echoed whole
    assert files_under(tmp_path / "out") == []


def test_hostile_points_json_task2(task2_input, tmp_path, capsys):
    (task2_input / "primary-followup-lesion-clicks.json").write_text(
        '{"type": "Points of interest", "points": [{"name": "1", "point": [' + HUGE + ', 1, 1]}]}')
    code, err = run_tool("Task2.inference", ["--input", task2_input, "--output", tmp_path / "out", "--quiet"],
                         capsys)
    assert code == 2 and "primary-followup-lesion-clicks.json" in err and "finite numbers" in err
    assert files_under(tmp_path / "out") == []


def test_hostile_summary_json_fill_paper(tmp_path, capsys):
    (tmp_path / "t1").mkdir()
    (tmp_path / "t1" / "summary.json").write_text(DEEP)
    code, err = run_tool("publication_template.fill_paper", ["--task1", tmp_path / "t1", "-o", tmp_path / "o"],
                         capsys)
    assert code == 2 and "summary.json" in err and "nested too deeply" in err
    assert files_under(tmp_path / "o") == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-10 ** 500, max_value=10 ** 500)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["points", "point", "name", "tumor", "background", "version", "type", "x"]) | st.text(max_size=6),
        children, max_size=4),
    max_leaves=25)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values)
def test_any_json_gives_clicks_or_a_click_format_error(tmp_path, value):
    from autopet_common.click_io import ClickFormatError, read_clicks_json, read_task2_points

    path = tmp_path / "clicks.json"
    path.write_text(json.dumps(value))
    for reader in (read_clicks_json, read_task2_points):
        try:
            result = reader(path)
        except ClickFormatError as exc:
            assert str(path) in str(exc) and len(str(exc)) < 1000
            continue
        assert isinstance(result, dict)  # a result holds plain finite numbers only
        points = result.values() if reader is read_task2_points else [p for v in result.values() for p in v]
        assert all(len(p) == 3 and all(np.isfinite(float(c)) for c in p) for p in points)


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_any_json_gives_a_click_config_or_its_error(value):
    from Task1.click_config import ClickConfig, ClickConfigError

    try:
        ClickConfig.from_dict(value, source="fuzz")
    except ClickConfigError as exc:
        assert str(exc).startswith("fuzz")


# ----------------------------------------------------------------------------- NaN in labels and masks
def test_nan_label_click_simulator_and_lesion_points(autopet_source, tmp_path, case, capsys):
    nan_nifti(autopet_source / "labelsTr" / "c1.nii.gz", case.label)
    code, err = run_tool("clicks.simulate_clicks", ["-i", autopet_source / "labelsTr", "-d", "FDG-PETCT",
                                                    "--json_output", tmp_path / "clicks", "--quiet"], capsys)
    assert code == 1 and "c1" in err and "NaN" in err  # a batch: c0 done, c1 reported as failed
    assert not (tmp_path / "clicks" / "c1_clicks.json").exists() and (tmp_path / "clicks" / "c0_clicks.json").exists()
    code, err = run_tool("clicks.lesion_points", [autopet_source / "labelsTr" / "c1.nii.gz", tmp_path / "p.json"],
                         capsys)
    assert code == 2 and "NaN" in err and "c1.nii.gz" in err and not (tmp_path / "p.json").exists()


def test_nan_ground_truth_evaluation(autopet_source, tmp_path, case, capsys):
    nan_nifti(autopet_source / "labelsTr" / "c1.nii.gz", case.label)
    code, err = run_tool("evaluation_metrics.evaluation_metrics",
                         ["-g", autopet_source / "labelsTr", "-p", autopet_source / "labelsTr", "-o", tmp_path / "o"],
                         capsys)
    assert code == 2 and "NaN" in err and "c1.nii.gz" in err
    assert files_under(tmp_path / "o") == []


def test_nan_baseline_mask_task2(task2_input, tmp_path, capsys):
    import SimpleITK as sitk

    mask_path = next((task2_input / "images" / "primary-baseline-ct-tumor-lesion-seg").iterdir())
    mask = sitk.Cast(sitk.ReadImage(str(mask_path)), sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(mask)
    array[0, 0, 0] = np.nan
    nan_image = sitk.GetImageFromArray(array)
    nan_image.CopyInformation(mask)
    sitk.WriteImage(nan_image, str(mask_path), True)
    code, err = run_tool("Task2.inference", ["--input", task2_input, "--output", tmp_path / "out", "--quiet"],
                         capsys)
    assert code == 2 and "NaN" in err and "baseline lesion mask" in err
    assert files_under(tmp_path / "out") == []


# ----------------------------------------------------------------------------- Task1.convert_dataset
@pytest.mark.parametrize("damage, message", [
    ("nan_pet", "NaN"),
    ("truncated_pet", "truncated"),
    ("label_0_2", "values {0, 2}"),
    ("label_2d", "dimensions"),
])
def test_convert_dataset_checks_every_voxel(autopet_source, tmp_path, case, capsys, damage, message):
    pet = autopet_source / "imagesTr" / "c1_0001.nii.gz"
    label = autopet_source / "labelsTr" / "c1.nii.gz"
    if damage == "nan_pet":
        nan_nifti(pet, case.pet)
    elif damage == "truncated_pet":
        pet.write_bytes(pet.read_bytes()[: pet.stat().st_size // 2])
    elif damage == "label_0_2":
        write_image(case.label.astype(np.uint8) * 2, case.geometry, label)
    else:
        import SimpleITK as sitk

        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((22, 24), np.uint8)), str(label))
    raw = tmp_path / "raw"
    code, err = run_tool("Task1.convert_dataset", [autopet_source, "--nnunet_raw", raw, "--dataset_id", "9",
                                                   "--no_progress"], capsys)
    assert code == 2 and message in err and "c1" in err, err
    assert files_under(raw) == []


def test_convert_dataset_folder_is_readable_by_others(autopet_source, tmp_path, capsys):
    old = os.umask(0o022)
    try:
        code, _ = run_tool("Task1.convert_dataset", [autopet_source, "--nnunet_raw", tmp_path / "raw",
                                                     "--dataset_id", "9", "--no_progress"], capsys)
    finally:
        os.umask(old)
    assert code == 0
    dataset = tmp_path / "raw" / "Dataset009_autoPETClicks"
    assert (dataset.stat().st_mode & 0o777) == 0o755  # not mkdtemp's 0700


# ----------------------------------------------------------------------------- folders written whole
def test_task2_convert_leaves_nothing_after_a_bad_second_pair(tmp_path, capsys):
    from autopet_common.phantoms import write_task2_cohort

    cohort = write_task2_cohort(tmp_path / "cohort", n_pairs=2, size="tiny", seed=1)
    followup = next((cohort / "PHANTOM_CT_0001" / "input" / "images" / "primary-followup-ct").iterdir())
    followup.write_bytes(followup.read_bytes()[:200])
    code, err = run_tool("Task2.convert_dataset", ["--cohort", cohort, "--output", tmp_path / "raw"], capsys)
    assert code == 2 and "PHANTOM_CT_0001" in err or "follow-up CT" in err
    assert files_under(tmp_path / "raw") == []


@pytest.mark.parametrize("module, argv", [
    ("Task2.convert_dataset", ["--cohort", "{cohort}", "--output", "{out}", "--name", "../../escape"]),
    ("Task1.convert_dataset", ["{src}", "--nnunet_raw", "{out}", "--dataset_id", "9", "--name", "../escape"]),
    ("autopet_common.phantoms.cli", ["task1", "--out", "{out}", "--dataset_id", "9", "--dataset_name", "../escape"]),
])
def test_names_cannot_leave_the_output_folder(module, argv, tmp_path, autopet_source, capsys):
    from autopet_common.phantoms import write_task2_cohort

    cohort = write_task2_cohort(tmp_path / "cohort", n_pairs=1, size="tiny", seed=1)
    out = tmp_path / "deep" / "er" / "out"
    argv = [a.format(cohort=cohort, out=out, src=autopet_source) for a in argv]
    code, err = run_tool(module, argv, capsys)
    assert code == 2 and "plain folder name" in err
    assert not list(tmp_path.rglob("*escape*"))


def test_phantom_rerun_with_fewer_cases_leaves_no_stale_case(tmp_path, capsys):
    out = tmp_path / "cohort"
    (out / "notes.txt").parent.mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    assert run_tool("autopet_common.phantoms.cli", ["task1", "--out", out, "--n_cases", "3", "--no_gc"], capsys)[0] == 0
    assert run_tool("autopet_common.phantoms.cli", ["task1", "--out", out, "--n_cases", "2", "--no_gc"], capsys)[0] == 0
    assert len(list((out / "labelsTr").iterdir())) == 2 == json.loads((out / "dataset.json").read_text())["numTraining"]
    assert (out / "notes.txt").read_text() == "mine"  # what the writer does not own stays
    assert run_tool("autopet_common.phantoms.cli", ["task2", "--out", tmp_path / "t2", "--n_pairs", "2"], capsys)[0] == 0
    assert run_tool("autopet_common.phantoms.cli", ["task2", "--out", tmp_path / "t2", "--n_pairs", "1"], capsys)[0] == 0
    assert sorted(p.name for p in (tmp_path / "t2").iterdir()) == ["PHANTOM_CT_0000"]


# ----------------------------------------------------------------------------- command-line values
@pytest.mark.parametrize("module, argv, flag", [
    ("local_challenge.__main__", ["--output", "{out}", "--steps", "0"], "--steps"),
    ("local_challenge.__main__", ["--output", "{out}", "--steps", "12"], "--steps"),
    ("local_challenge.__main__", ["--output", "{out}", "--max_cases", "-1"], "--max_cases"),
    ("local_challenge.__main__", ["--output", "{out}", "--time_budget", "0"], "--time_budget"),
    ("local_challenge.__main__", ["--output", "{out}", "--time_budget", "-5"], "--time_budget"),
    ("local_challenge.__main__", ["--output", "{out}", "--timeout", "nan"], "--timeout"),
    ("inference", ["--output", "{out}", "--remove_below_suv", "nan"], "--remove_below_suv"),
    ("inference", ["--output", "{out}", "--folds", "a,b"], "--folds"),
    ("inference", ["--output", "{out}", "--time_budget", "inf"], "--time_budget"),
    ("autopet_common.phantoms.cli", ["task1", "--out", "{out}", "--seed", "-1"], "--seed"),
    ("clicks.simulate_clicks", ["-i", "{out}", "-d", "FDG-PETCT", "--json_output", "{out}", "--encoding_size", "0"],
     "--encoding_size"),
    ("Task1.batch_predict", ["-i", "{out}", "-o", "{out}", "-m", "model-free", "--remove_below_suv", "-1"],
     "--remove_below_suv"),
    ("evaluation_metrics.evaluation_metrics", ["-g", "{out}", "-p", "{out}", "--n_clicks", "0"], "--n_clicks"),
    ("Task1.convert_dataset", ["{out}", "--dataset_id", "1000"], "--dataset_id"),
])
def test_bad_values_are_usage_errors(module, argv, flag, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run_tool(module, [a.format(out=out) for a in argv], capsys)
    assert code == 2 and flag in err and "expected" in err, err
    assert not out.exists()


def test_a_missing_model_is_reported_before_the_first_run(tiny_task1_cohort, tmp_path, capsys):
    code, err = run_tool("local_challenge.__main__", ["--cohort", tiny_task1_cohort, "--output", tmp_path / "o",
                                                      "--model", tmp_path / "nonexistent", "--no_progress"], capsys)
    assert code == 2 and "model folder not found" in err and str(tmp_path / "nonexistent") in err
    assert files_under(tmp_path / "o") == []


def test_a_corrupt_plans_json_names_the_file(tmp_path, task1_input, capsys):
    model = tmp_path / "model"
    shutil.copytree(Path(__file__).resolve().parents[1] / "models" / "task1_phantom", model)
    (model / "plans.json").write_text('{"plans_name": ')
    code, err = run_tool("inference", ["--input", task1_input, "--output", tmp_path / "out", "--model", model,
                                       "--quiet"], capsys)
    assert code == 2 and "plans.json" in err and "not valid JSON" in err
    assert files_under(tmp_path / "out") == []


# ----------------------------------------------------------------------------- stale and ambiguous files
def test_the_entrypoint_leaves_one_mask(task1_input, tmp_path, capsys):
    old = tmp_path / "out" / "images" / "tumor-lesion-segmentation" / "older-run.mha"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"an older mask")
    code, _ = run_tool("inference", ["--input", task1_input, "--output", tmp_path / "out", "--model", "model-free",
                                     "--quiet"], capsys)
    assert code == 0
    assert [p.name for p in old.parent.iterdir()] == ["ct-uuid.mha"]


def test_evaluation_removes_the_other_modes_tables_and_refuses_ambiguous_predictions(tmp_path, case, capsys):
    gt, pred, out = tmp_path / "gt", tmp_path / "pred", tmp_path / "o"
    write_mask(case.label, case.geometry, gt / "c0.nii.gz")
    for step in range(2):
        write_mask(case.label, case.geometry, pred / f"c0_pred{step}.nii.gz")
    write_mask(case.label, case.geometry, pred / "c0.nii.gz")
    assert run_tool("evaluation_metrics.evaluation_metrics", ["-g", gt, "-p", pred, "-o", out], capsys)[0] == 0
    assert (out / "metrics.csv").is_file()
    with pytest.warns(UserWarning, match="earlier run in another mode"):
        code, _ = run_tool("evaluation_metrics.evaluation_metrics",
                           ["-g", gt, "-p", pred, "-o", out, "--n_clicks", "2"], capsys)
    assert code == 0 and (out / "metrics_interactive.csv").is_file() and not (out / "metrics.csv").exists()
    write_mask(case.label, case.geometry, pred / "c0_pred1.mha")
    code, err = run_tool("evaluation_metrics.evaluation_metrics", ["-g", gt, "-p", pred, "--n_clicks", "2"], capsys)
    assert code == 2 and "c0_pred1" in err and "keep one" in err


def test_all_zero_images_are_warned_about(task1_input, tmp_path, case, caplog):
    import logging

    pet_path = next((task1_input / "images" / "pet").iterdir())
    write_image(np.zeros(SHAPE, np.float32), case.geometry, pet_path)
    caplog.set_level(logging.WARNING)
    import inference

    inference.run_inference(task1_input, tmp_path / "out", model="model-free")
    assert any("PET image pet-uuid.mha is all zero" in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------- permissions
# The suite runs as root in CI, where modes do not stop reads or writes; the operating system's
# PermissionError is raised where the tools list and write instead.
def test_an_unlistable_input_folder(autopet_source, tmp_path, capsys, monkeypatch):
    locked = autopet_source / "labelsTr"
    real_iterdir = Path.iterdir

    def iterdir(self):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    monkeypatch.setattr(os, "listdir", lambda p=".": (_ for _ in ()).throw(PermissionError(13, "Permission denied",
                                                                                         str(p))))
    code, err = run_tool("evaluation_metrics.evaluation_metrics", ["-g", locked, "-p", locked, "-o", tmp_path / "o"],
                         capsys)
    assert code == 2 and "permission denied" in err and str(locked) in err
    assert files_under(tmp_path / "o") == []


def test_an_unwritable_output_folder(task1_input, tmp_path, capsys, monkeypatch):
    import tempfile

    def mkstemp(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", str(dir))

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    code, err = run_tool("inference", ["--input", task1_input, "--output", tmp_path / "out", "--model", "model-free",
                                       "--quiet"], capsys)
    assert code == 2 and "permission denied" in err and str(tmp_path / "out") in err
    assert files_under(tmp_path / "out") == []


def test_two_labels_for_one_case(autopet_source, tmp_path, case, capsys):
    write_mask(case.label, case.geometry, autopet_source / "labelsTr" / "c0.mha")
    for module, argv in (("clicks.simulate_clicks", ["-i", autopet_source / "labelsTr", "-d", "FDG-PETCT",
                                                     "--json_output", tmp_path / "clicks", "--quiet"]),
                         ("evaluation_metrics.evaluation_metrics", ["-g", autopet_source / "labelsTr", "-p",
                                                                    autopet_source / "labelsTr", "-o", tmp_path / "o"])):
        code, err = run_tool(module, argv, capsys)
        assert code == 2 and "c0" in err and ("two labels" in err or "two ground-truth files" in err), err
    assert files_under(tmp_path / "clicks") == [] and files_under(tmp_path / "o") == []


# ----------------------------------------------------------------------------- round two (issue 32)
def _gc_points(n: int) -> dict:
    return {"version": {"major": 1, "minor": 0}, "type": "Multiple points",
            "points": [{"name": "tumor", "point": [1, 2, 3]}] * n}


@pytest.mark.parametrize("n_points, message", [(1_000_000, "a click file is at most"), (5_000, "5000 points; at most")])
def test_a_huge_point_list_is_refused_in_seconds(task1_input, task2_input, tmp_path, capsys, n_points, message):
    import time

    (task1_input / "lesion-clicks.json").write_text(json.dumps(_gc_points(n_points)))
    started = time.perf_counter()
    code, err = run_tool("inference", ["--input", task1_input, "--output", tmp_path / "out", "--model", "model-free",
                                       "--quiet"], capsys)
    assert code == 2 and "lesion-clicks.json" in err and message in err, err
    assert time.perf_counter() - started < 10
    assert files_under(tmp_path / "out") == []
    points = {"name": "Points of interest", "points": [{"name": str(n + 1), "point": [1.0, 2.0, 3.0]}
                                                       for n in range(n_points)]}
    (task2_input / "primary-followup-lesion-clicks.json").write_text(json.dumps(points))
    code, err = run_tool("Task2.inference", ["--input", task2_input, "--output", tmp_path / "out2", "--quiet"], capsys)
    assert code == 2 and "primary-followup-lesion-clicks.json" in err and ("at most" in err), err
    assert files_under(tmp_path / "out2") == []


@pytest.mark.parametrize("task", [1, 2])
def test_the_mask_folder_as_a_link_out_of_the_output_is_refused(task, task1_input, task2_input, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not the entrypoint's")
    out = tmp_path / "out"
    folder = "tumor-lesion-segmentation" if task == 1 else "primary-followup-ct-tumor-lesion-seg"
    (out / "images").mkdir(parents=True)
    (out / "images" / folder).symlink_to(elsewhere, target_is_directory=True)
    argv = ["--input", task1_input if task == 1 else task2_input, "--output", out, "--quiet"]
    code, err = run_tool("inference", argv + (["--model", "model-free"] if task == 1 else []), capsys)
    assert code == 2 and str(out / "images" / folder) in err and "leads out of the output folder" in err, err
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.txt"]
    if task == 2:  # Task 2's own command line too
        code, err = run_tool("Task2.inference", argv, capsys)
        assert code == 2 and "leads out of the output folder" in err
        assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.txt"]


def test_a_decompression_bomb_is_refused_naming_the_file(task1_input, tmp_path, capsys):
    """A 4.7 MB .nii.gz that inflates to 1 GiB of voxels (4 GiB as float32): refused from its
    header, before any voxel is read."""
    import gzip
    import time

    import nibabel

    header = nibabel.Nifti1Header()
    header.set_data_shape((1024, 1024, 1024))
    header.set_data_dtype(np.uint8)
    bomb = task1_input / "images" / "pet" / "pet-uuid.nii.gz"
    (task1_input / "images" / "pet" / "pet-uuid.mha").unlink()
    with gzip.open(bomb, "wb", compresslevel=1) as handle:
        handle.write(header.binaryblock + bytes(4))
        block = bytes(64 * 2 ** 20)
        for _ in range(16):
            handle.write(block)
    assert bomb.stat().st_size < 10 * 2 ** 20
    started = time.perf_counter()
    code, err = run_tool("inference", ["--input", task1_input, "--output", tmp_path / "out", "--model", "model-free",
                                       "--quiet"], capsys)
    assert code == 2 and str(bomb) in err and "1024 x 1024 x 1024" in err, err
    assert time.perf_counter() - started < 10
    assert files_under(tmp_path / "out") == []


@pytest.mark.parametrize("task", [1, 2])
def test_a_failed_run_leaves_no_mask_of_an_earlier_run(task, task1_input, task2_input, tmp_path, capsys):
    input_dir = task1_input if task == 1 else task2_input
    argv = ["--input", input_dir, "--output", tmp_path / "out", "--quiet"] + (["--model", "model-free"] * (task == 1))
    code, _ = run_tool("inference", argv, capsys)
    assert code == 0 and len(files_under(tmp_path / "out")) == 1
    clicks = "lesion-clicks.json" if task == 1 else "primary-followup-lesion-clicks.json"
    (input_dir / clicks).write_text("{not json")
    code, err = run_tool("inference", argv, capsys)
    assert code == 2 and clicks in err
    assert files_under(tmp_path / "out") == []  # the first run's mask is gone: nothing reads as this run's


def test_degenerate_images_are_warned_about(task1_input, task2_input, tmp_path, case, caplog):
    import logging

    import inference

    caplog.set_level(logging.WARNING)
    pet_path = task1_input / "images" / "pet" / "pet-uuid.mha"
    write_image(-np.abs(case.pet.astype(np.float32)) - 0.5, case.geometry, pet_path)  # negative everywhere
    inference.run_inference(task1_input, tmp_path / "out1", model="model-free")
    assert any("PET image pet-uuid.mha has no positive value" in r.getMessage() for r in caplog.records)
    caplog.clear()
    followup = next((task2_input / "images" / "primary-followup-ct").iterdir())
    ct, geometry = read_image(followup)
    noise = np.random.default_rng(0).normal(0, 400, ct.shape).astype(np.float32)
    write_image(noise, geometry, followup)
    inference.run_inference(task2_input, tmp_path / "out2")
    messages = [r.getMessage() for r in caplog.records]
    assert any("follow-up CT" in m and followup.name in m and "shows no anatomy" in m for m in messages), messages
    # the bundled sample's and a phantom's real CTs raise no such warning
    caplog.clear()
    inference.run_inference(Path(__file__).resolve().parent / "input", tmp_path / "out3", model="model-free")
    assert not [r for r in caplog.records if "shows no anatomy" in r.getMessage() or "no positive" in r.getMessage()]


def test_a_folder_where_the_baseline_points_file_should_be(task2_input, tmp_path, capsys):
    points = task2_input / "primary-baseline-lesion-clicks.json"
    points.unlink()
    points.mkdir()
    code, err = run_tool("inference", ["--input", task2_input, "--output", tmp_path / "out", "--quiet"], capsys)
    assert code == 2 and str(points) in err and "is a folder" in err, err
    assert files_under(tmp_path / "out") == []


def test_seed_and_device_messages_name_the_flag(autopet_source, task1_input, tmp_path, capsys):
    for seed_value in ("4294967296", "99999999999999999999"):
        code, err = run_tool("clicks.simulate_clicks", ["-i", autopet_source / "labelsTr", "-d", "FDG-PETCT",
                                                        "--json_output", tmp_path / "j", "--seed", seed_value], capsys)
        assert code == 2 and "--seed" in err and "0..4294967295" in err, err
    for module in ("inference", "Task1.batch_predict"):
        argv = ["--device", "garbage"] + (["--input", task1_input, "--output", tmp_path / "o"] if module == "inference"
                                          else ["-i", task1_input, "-o", tmp_path / "o", "-m", "model-free"])
        code, err = run_tool(module, argv, capsys)
        assert code == 2 and "--device" in err and "garbage" in err, err
    assert files_under(tmp_path / "j") == [] and files_under(tmp_path / "o") == []


@pytest.mark.parametrize("field, value", [("trainer_name", "zzz_NotATrainer"), ("trainer_name", 17),
                                          ("init_args.configuration", "3d_nonexistent"),
                                          ("network_weights", None)])
def test_a_checkpoint_with_a_garbage_field_names_it(field, value, task1_input, tmp_path, capsys):
    import torch

    model = tmp_path / "model"
    shutil.copytree(Path(__file__).resolve().parents[1] / "models" / "task1_phantom", model)
    (model / "checkpoint.sha256").unlink(missing_ok=True)
    path = model / "fold_0" / "checkpoint_final.pth"
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if "." in field:
        outer, inner = field.split(".")
        checkpoint[outer][inner] = value
    else:
        checkpoint[field] = value
    torch.save(checkpoint, path)
    code, err = run_tool("inference", ["--input", task1_input, "--output", tmp_path / "out", "--model", model,
                                       "--quiet"], capsys)
    assert code == 2 and f"field '{field}'" in err and str(path) in err, err
    assert files_under(tmp_path / "out") == []
