"""Grand Challenge entrypoint (inference.py): contract, geometry, clicks, logging, bad input."""
import importlib.util
import functools
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from autopet_common.image_io import Geometry, read_image, write_image
from Task1.postprocessing import PostprocessOptions

REPO = Path(__file__).resolve().parents[1]
CT_UUID = "1b8c4c39-0f1e-4f0e-9d44-6a6c0d1e2f30"
PET_UUID = "7d1e2f3a-4b5c-4d6e-8f90-a1b2c3d4e5f6"
OUT_SUBDIR = Path("images") / "tumor-lesion-segmentation"


def _load_inference():
    spec = importlib.util.spec_from_file_location("inference_under_test", REPO / "inference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


inference = _load_inference()

# An oblique, anisotropic grid: a mask written with the wrong geometry or axis order shows.
DIRECTION = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def _arrays(shape=(40, 36, 30)):
    rng = np.random.default_rng(0)
    pet = rng.normal(1.0, 0.1, shape).astype(np.float32)
    ii, jj, kk = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    lesion = (ii - 12) ** 2 + (jj - 20) ** 2 + (kk - 9) ** 2 <= 9  # off-centre: axis order matters
    pet[lesion] = 8.0
    ct = np.full(shape, 40.0, np.float32)
    return ct, pet, lesion


def make_gc_input(root: Path, clicks=None, shape=(40, 36, 30), ct_geometry=None) -> tuple[Path, Geometry, np.ndarray]:
    ct, pet, lesion = _arrays(shape)
    geometry = Geometry(shape, (4.0, 3.0, 5.0), (-80.0, 12.5, 300.0), DIRECTION)
    write_image(ct if ct_geometry is None else np.full(ct_geometry.shape, 40.0, np.float32),
                ct_geometry or geometry, root / "images" / "ct" / f"{CT_UUID}.mha")
    write_image(pet, geometry, root / "images" / "pet" / f"{PET_UUID}.mha")
    if clicks is not None:
        text = clicks if isinstance(clicks, str) else json.dumps(clicks)
        (root / "lesion-clicks.json").write_text(text)
    return root, geometry, lesion


def gc_clicks(tumor=(), background=()):
    points = [{"point": list(p), "name": "tumor"} for p in tumor]
    points += [{"point": list(p), "name": "background"} for p in background]
    return {"version": {"major": 1, "minor": 0}, "type": "Multiple points", "points": points}


def _files(folder: Path):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_task1_writes_one_mask_on_the_input_grid(tmp_path, caplog):
    caplog.set_level("INFO")
    input_dir, geometry, lesion = make_gc_input(tmp_path / "in", gc_clicks([[12, 20, 9]], [[2, 2, 2]]))
    written = inference.run_inference(input_dir, tmp_path / "out", model="model-free")
    assert written == [tmp_path / "out" / OUT_SUBDIR / f"{CT_UUID}.mha"]
    assert _files(tmp_path / "out") == [f"{OUT_SUBDIR.as_posix()}/{CT_UUID}.mha"]
    mask, mask_geometry = read_image(written[0])
    assert mask.dtype == np.uint8
    assert mask_geometry.shape == geometry.shape
    assert np.allclose(mask_geometry.spacing, geometry.spacing)
    assert np.allclose(mask_geometry.origin, geometry.origin)
    assert np.allclose(mask_geometry.direction, geometry.direction)
    assert np.array_equal(mask.astype(bool), lesion)  # [i, j, k] order kept end to end
    text = caplog.text
    for expected in ("phase read", "phase predict", "phase write", "peak RSS", "model-free", "device"):
        assert expected in text


@pytest.mark.parametrize("clicks_text", [None, "", '{"version": {"major": 1, "minor": 0}, "type": "Multiple points", "points": []}'])
def test_absent_or_empty_clicks_is_step0(tmp_path, caplog, clicks_text):
    caplog.set_level("INFO")
    input_dir, _, lesion = make_gc_input(tmp_path / "in", clicks_text)
    (path,) = inference.run_inference(input_dir, tmp_path / "out", model="model-free")
    assert "step 0" in caplog.text
    mask, _ = read_image(path)
    assert np.array_equal(mask.astype(bool), lesion)  # found by the automatic detection


def test_clicks_outside_are_skipped_with_a_warning(tmp_path, caplog):
    input_dir, _, lesion = make_gc_input(tmp_path / "in", gc_clicks([[12, 20, 9], [400, 0, 0]], [[0, -3, 0]]))
    (path,) = inference.run_inference(input_dir, tmp_path / "out", model="model-free")
    assert "skipping 2 click(s) outside the image" in caplog.text
    assert path.is_file()


def test_ct_on_another_grid_is_resampled_onto_pet(tmp_path, caplog):
    ct_geometry = Geometry((20, 18, 15), (8.0, 6.0, 10.0), (-80.0, 12.5, 300.0), DIRECTION)
    input_dir, geometry, _ = make_gc_input(tmp_path / "in", gc_clicks([[12, 20, 9]]), ct_geometry=ct_geometry)
    (path,) = inference.run_inference(input_dir, tmp_path / "out", model="model-free")
    assert "grids differ: resampling CT" in caplog.text
    assert read_image(path)[1].shape == geometry.shape


def test_remove_below_suv_postprocessing(tmp_path):
    input_dir, _, lesion = make_gc_input(tmp_path / "in", gc_clicks([[12, 20, 9]]))
    (path,) = inference.run_inference(input_dir, tmp_path / "out", model="model-free",
                                      method_options={"postprocess": PostprocessOptions(remove_below_suv=100.0)})
    assert not read_image(path)[0].any()


def test_cli_subprocess_contract_and_help(tmp_path):
    input_dir, _, _ = make_gc_input(tmp_path / "in", gc_clicks([[12, 20, 9]]))
    run = subprocess.run([sys.executable, str(REPO / "inference.py"), "--input", str(input_dir),
                          "--output", str(tmp_path / "out"), "--model", "model-free"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "total" in run.stderr and "peak RSS" in run.stderr
    assert (tmp_path / "out" / OUT_SUBDIR / f"{CT_UUID}.mha").is_file()
    help_run = subprocess.run([sys.executable, str(REPO / "inference.py"), "--help"], capture_output=True, text=True)
    assert help_run.returncode == 0 and "tumor-lesion-segmentation" in help_run.stdout


def test_model_free_path_does_not_import_torch(tmp_path):
    input_dir, _, _ = make_gc_input(tmp_path / "in", gc_clicks([[12, 20, 9]]))
    code = ("import sys, importlib.util as u\n"
            "spec = u.spec_from_file_location('entrypoint', sys.argv[3])\n"
            "module = u.module_from_spec(spec); spec.loader.exec_module(module)\n"
            "rc = module.main(['--input', sys.argv[1], '--output', sys.argv[2], '--model', 'model-free', '--quiet'])\n"
            "print('torch' in sys.modules, rc)")
    run = subprocess.run([sys.executable, "-c", code, str(input_dir), str(tmp_path / "out"), str(REPO / "inference.py")],
                         capture_output=True, text=True, timeout=120)
    assert run.stdout.split() == ["False", "0"], run.stderr


# ----------------------------------------------------------------------------- bad input

def _corrupt(root: Path):
    (root / "images" / "pet" / f"{PET_UUID}.mha").write_bytes(b"ObjectType = Image\nNDims = 3\ngarbage")


def _truncate(root: Path):
    path = root / "images" / "ct" / f"{CT_UUID}.mha"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _two_images(root: Path):
    src = root / "images" / "ct" / f"{CT_UUID}.mha"
    (root / "images" / "ct" / "another.mha").write_bytes(src.read_bytes())


def _remove(sub: str):
    def remove(root: Path):
        import shutil
        shutil.rmtree(root / "images" / sub)
    return remove


def _nan_pet(root: Path):
    _, pet, _ = _arrays()
    pet[3, 4, 5] = np.nan
    geometry = Geometry(pet.shape, (4.0, 3.0, 5.0), (-80.0, 12.5, 300.0), DIRECTION)
    write_image(pet, geometry, root / "images" / "pet" / f"{PET_UUID}.mha")


def _clicks(text: str):
    def write(root: Path):
        (root / "lesion-clicks.json").write_text(text)
    return write


BAD_INPUTS = {
    "corrupt PET": (_corrupt, "PET"),
    "truncated CT": (_truncate, f"{CT_UUID}.mha"),
    "missing CT folder": (_remove("ct"), "CT"),
    "missing PET folder": (_remove("pet"), "PET"),
    "two CT images": (_two_images, "exactly one image"),
    "NaN in PET": (_nan_pet, "NaN"),
    "malformed JSON": (_clicks('{"points": [{"point": [1, 2'), "lesion-clicks.json"),
    "unknown point name": (_clicks(json.dumps({"points": [{"point": [1, 2, 3], "name": "lesion"}]})), "unknown name"),
    "point not 3D": (_clicks(json.dumps({"points": [{"point": [1, 2], "name": "tumor"}]})), "lesion-clicks.json"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_clearly_without_output(tmp_path, capsys, case):
    damage, expected = BAD_INPUTS[case]
    input_dir, _, _ = make_gc_input(tmp_path / "in", gc_clicks([[12, 20, 9]]))
    damage(input_dir)
    output = tmp_path / "out"
    output.mkdir()
    code = inference.main(["--input", str(input_dir), "--output", str(output), "--model", "model-free", "--quiet"])
    err = capsys.readouterr().err
    assert code != 0
    assert ("error: " in err.splitlines()[0]) and expected in err, err
    assert _files(output) == []


def test_bad_input_subprocess_exit_code(tmp_path):
    input_dir, _, _ = make_gc_input(tmp_path / "in", '{"points": 5}')
    run = subprocess.run([sys.executable, str(REPO / "inference.py"), "--input", str(input_dir),
                          "--output", str(tmp_path / "out"), "--model", "model-free"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "error: " in run.stderr and "lesion-clicks.json" in run.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_layout_and_bad_model(tmp_path, capsys):
    (tmp_path / "in" / "images" / "something").mkdir(parents=True)
    assert inference.main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]) == 2
    assert "cannot tell the task" in capsys.readouterr().err
    input_dir, _, _ = make_gc_input(tmp_path / "in2")
    assert inference.main(["--input", str(input_dir), "--output", str(tmp_path / "out"),
                           "--model", str(tmp_path / "nope")]) == 2
    assert "--model folder not found" in capsys.readouterr().err
    (tmp_path / "empty_model").mkdir()
    assert inference.main(["--input", str(input_dir), "--output", str(tmp_path / "out"),
                           "--model", str(tmp_path / "empty_model")]) == 2
    assert "no trained nnU-Net folder" in capsys.readouterr().err
    assert _files(tmp_path / "out") == []


# ----------------------------------------------------------------------------- task and model dispatch

def test_task_detection(tmp_path):
    task1, _, _ = make_gc_input(tmp_path / "t1")
    assert inference.detect_task(task1) == 1
    (tmp_path / "t2" / "images" / "primary-followup-ct").mkdir(parents=True)
    assert inference.detect_task(tmp_path / "t2") == 2


def test_task2_is_dispatched(tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("Task2.inference")
    fake.is_task2_input = lambda d: (Path(d) / "images" / "primary-followup-ct").is_dir()

    fake.resolve_task2_model = lambda model: None

    def run_task2(input_dir, output_dir, model_dir=None, device="auto", time_budget=None, binary=False):
        calls.append((Path(input_dir), Path(output_dir), model_dir, device))
        assert 200 < time_budget <= 270  # 300 s budget - 30 s margin - time spent so far
        return [Path(output_dir) / "x.mha"]

    fake.run_task2 = run_task2
    monkeypatch.setitem(sys.modules, "Task2.inference", fake)
    (tmp_path / "in" / "images" / "primary-followup-ct").mkdir(parents=True)
    written = inference.run_inference(tmp_path / "in", tmp_path / "out", model="model-free")
    assert calls == [(tmp_path / "in", tmp_path / "out", None, "auto")]
    assert written == [tmp_path / "out" / "x.mha"]


def _fake_model_folder(root: Path) -> Path:
    folder = root / "Dataset501_X" / "autoPETTrainerClicks__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True)
    (folder / "plans.json").write_text("{}")
    (folder / "dataset.json").write_text("{}")
    return folder


def test_nnunet_path_gets_the_remaining_budget(tmp_path, monkeypatch, caplog):
    """The nnU-Net path (with a stand-in predictor): lazily imported, told the remaining budget,
    its description and what it dropped are logged."""
    caplog.set_level("INFO")
    seen = {}

    class FakePredictor:
        def __init__(self, model_dir, device="auto", **options):
            seen["model_dir"], seen["options"] = Path(model_dir), options
            self.time_budget = None

            self.model_dir = Path(model_dir)

        def prepare(self, ct, pet, geometry):
            return pet

        def predict_prepared(self, pet, clicks):
            seen["budget"], seen["clicks"] = self.time_budget, clicks
            return (pet > 4).astype(np.uint8)

        def describe(self):
            return {"model_dir": str(self.model_dir), "device": "cpu", "trainer": "autoPETTrainerClicks",
                    "folds": [0], "dropped": ["mirroring (8 passes -> 1)"]}

    fake = types.ModuleType("Task1.predict")
    fake.Task1Predictor = FakePredictor
    monkeypatch.setitem(sys.modules, "Task1.predict", fake)
    model = _fake_model_folder(tmp_path / "model")
    input_dir, _, lesion = make_gc_input(tmp_path / "in", gc_clicks([[12, 20, 9]], [[1, 1, 1]]))
    (path,) = inference.run_inference(input_dir, tmp_path / "out", model=tmp_path / "model", time_budget=120, margin=20,
                                      method_options={"predictor_options": {"use_mirroring": True}},
                                      report_path=tmp_path / "report.json")
    assert seen["model_dir"] == model  # found three levels down
    assert 90 < seen["budget"] <= 100  # 120 s - 20 s margin - the time spent reading
    assert seen["clicks"] == {"tumor": [[12, 20, 9]], "background": [[1, 1, 1]]}
    assert np.array_equal(read_image(path)[0].astype(bool), lesion)
    assert "dropped to fit the time budget: mirroring" in caplog.text
    report = json.loads((tmp_path / "report.json").read_text())  # the run as data, not a log line
    assert report["model_fields"]["trainer"] == "autoPETTrainerClicks" and report["dropped"] == ["mirroring (8 passes -> 1)"]
    assert report["task"] == 1 and report["method"] == "network" and not list((tmp_path / "out").glob("*.json"))


def test_default_model_resolution_chain(tmp_path, monkeypatch, capsys):
    """/opt/ml/model, then $AUTOPET_MODEL_DIR, then (outside a submission) the shipped phantom
    model, then model-free; each fallback says so in one stderr line; Task 2 never gets the
    Task 1 phantom model; AUTOPET_REQUIRE_MODEL=1 turns the fallbacks into an error."""
    from autopet_common.errors import InputError

    import Task1.session
    import Task2.inference

    monkeypatch.setattr(Task1.session, "MODEL_DIR", tmp_path / "opt_ml_model")
    monkeypatch.setattr(Task1.session, "SHIPPED_MODEL_DIR", tmp_path / "shipped")
    monkeypatch.setattr(Task2.inference, "resolve_task2_model",
                        functools.partial(Task2.inference.resolve_task2_model, model_dir=tmp_path / "opt_ml_model"))
    monkeypatch.delenv("AUTOPET_MODEL_DIR", raising=False)
    monkeypatch.delenv("AUTOPET_REQUIRE_MODEL", raising=False)
    assert inference.resolve_model(None) is None  # nothing anywhere: model-free, said on stderr
    assert "running the model-free baseline" in capsys.readouterr().err
    shipped = _fake_model_folder(tmp_path / "shipped")
    assert inference.resolve_model(None) == shipped
    err = capsys.readouterr().err
    assert "phantom demo model" in err and len(err.strip().splitlines()) == 1
    assert inference.resolve_model(None, task=2) is None  # Task 2: its own model-free default
    baked = _fake_model_folder(tmp_path / "baked")
    monkeypatch.setenv("AUTOPET_MODEL_DIR", str(baked))
    assert inference.resolve_model(None) == baked
    monkeypatch.delenv("AUTOPET_MODEL_DIR")
    monkeypatch.setenv("AUTOPET_REQUIRE_MODEL", "1")
    with pytest.raises(InputError, match="no Task 1 model"):
        inference.resolve_model(None)
    assert inference.resolve_model("model-free") is None  # on purpose: allowed
    folder = _fake_model_folder(tmp_path / "opt_ml_model")
    assert inference.resolve_model(None) == folder


def test_default_resolution_takes_recipe_and_monai_folders(tmp_path, monkeypatch, capsys):
    """The shipped folder may carry its own recipe (then the folder itself runs); a MONAI model
    folder (monai_model.json) at /opt/ml/model is a Task 1 model, never a Task 2 one."""
    import Task1.session
    import Task2.inference

    monkeypatch.setattr(Task1.session, "MODEL_DIR", tmp_path / "opt_ml_model")
    monkeypatch.setattr(Task1.session, "SHIPPED_MODEL_DIR", tmp_path / "shipped")
    monkeypatch.setattr(Task2.inference, "resolve_task2_model",
                        functools.partial(Task2.inference.resolve_task2_model, model_dir=tmp_path / "opt_ml_model"))
    monkeypatch.delenv("AUTOPET_MODEL_DIR", raising=False)
    monkeypatch.delenv("AUTOPET_REQUIRE_MODEL", raising=False)
    _fake_model_folder(tmp_path / "shipped")
    (tmp_path / "shipped" / "autopet_recipe.json").write_text("{}")
    assert inference.resolve_model(None) == tmp_path / "shipped"
    assert "phantom demo model" in capsys.readouterr().err
    (tmp_path / "opt_ml_model").mkdir()
    (tmp_path / "opt_ml_model" / "monai_model.json").write_text("{}")
    assert inference.resolve_model(None) == tmp_path / "opt_ml_model"
    assert inference.resolve_model(None, task=2) is None


def test_required_model_missing_exits_nonzero_without_output(tmp_path, monkeypatch):
    input_dir, _, _ = make_gc_input(tmp_path / "in", gc_clicks([[12, 20, 9]]))
    env = {**__import__("os").environ, "AUTOPET_REQUIRE_MODEL": "1"}
    env.pop("AUTOPET_MODEL_DIR", None)
    run = subprocess.run([sys.executable, str(REPO / "inference.py"), "--input", str(input_dir),
                          "--output", str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert run.returncode == 2 and "no Task 1 model" in run.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.mha"))


def _inputs_json(folder: Path, slugs) -> None:
    from autopet_common.contract import TASK1_SOCKETS, TASK2_SOCKETS

    table = {**TASK1_SOCKETS, **TASK2_SOCKETS}
    values = [{"interface": {"slug": s, "relative_path": table.get(s, {}).get("relative_path", s)}} for s in slugs]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "inputs.json").write_text(json.dumps(values))


def test_the_interface_comes_from_inputs_json(tmp_path, caplog):
    from autopet_common.contract import INTERFACES

    caplog.set_level("INFO")
    assert sorted(INTERFACES.values()) == [1, 2, 2, 2, 2]  # Task 1 and the four Task 2 interfaces
    for n, (slugs, task) in enumerate(INTERFACES.items()):
        folder = tmp_path / f"i{n}"
        _inputs_json(folder, reversed(slugs))  # any order
        assert inference.detect_task(folder) == task
    assert "from inputs.json" in caplog.text
    # a Task 1 folder layout with a Task 2 inputs.json: inputs.json decides
    task1, _, _ = make_gc_input(tmp_path / "t1")
    _inputs_json(task1, next(s for s, t in INTERFACES.items() if t == 2))
    assert inference.detect_task(task1) == 2
    # without inputs.json the folder layout decides, and the log says so
    caplog.clear()
    (task1 / "inputs.json").unlink()
    assert inference.detect_task(task1) == 1 and "from the folder layout" in caplog.text


def test_an_unknown_interface_is_an_input_error(tmp_path, capsys):
    _inputs_json(tmp_path / "in", ["ct-image", "mystery-socket"])
    assert inference.main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown interface" in err and "mystery-socket" in err and not (tmp_path / "out").exists()


def test_inputs_json_that_is_not_socket_values_is_an_input_error(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    for text in ('["ct-image"]', '{"interface": {}}', "[]"):
        (tmp_path / "in" / "inputs.json").write_text(text)
        assert inference.main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "inputs.json" in err and ("socket value" in err or "list of socket values" in err), err
