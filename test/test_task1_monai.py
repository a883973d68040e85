"""The MONAI backend (issue 18): both families train with one command, their folders load through
the one predictor factory, and run through inference.py, the recipe, batch prediction and the
local challenge; bad folders fail with the file and the key named."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autopet_common.image_io import list_images, read_image

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "test" / "input"


@pytest.fixture(scope="module")
def monai_models(tmp_path_factory, tiny_task1_cohort):
    """Both families trained for a few iterations on the tiny cohort with the stock command."""
    work = tmp_path_factory.mktemp("monai")
    out = {}
    for family in ("dynunet", "segresnetds"):
        folder = work / family
        run = subprocess.run([sys.executable, "-m", "Task1.monai_backend.train", "--family", family, "--out",
                              str(folder), "--source", str(tiny_task1_cohort), "--epochs", "1", "--iterations", "2",
                              "--no_progress", "--device", "cpu"], capture_output=True, text=True, cwd=REPO,
                             timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        assert f"model folder {folder}" in run.stdout
        out[family] = folder
    return out


def test_training_writes_a_small_weights_only_folder_with_its_record(monai_models):
    import torch

    from Task1.monai_backend.config import read_model_config

    for family, folder in monai_models.items():
        config = read_model_config(folder)
        assert config.family == family and config.in_channels == 4
        record = config.training
        assert record["command"].startswith("python -m Task1.monai_backend.train --family " + family)
        assert record["epochs"] == 1 and record["iterations_per_epoch"] == 2 and record["seed"] == 0
        assert record["training_cases"] + len(record["validation_cases"]) == record["cases"] == 3
        assert set(record["validation_dice"]) == {"step_0", "step_10"}
        state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
        assert all(isinstance(v, torch.Tensor) for v in state.values())
        assert (folder / "model.pt").stat().st_size <= 10 * 1024 * 1024
        import hashlib

        card = (folder / "MODEL_CARD.md").read_text()
        assert hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest() in card
        assert record["command"] in card
    assert read_model_config(monai_models["segresnetds"]).deep_supervision
    assert read_model_config(monai_models["dynunet"]).clicks.encoding == "gaussian"


def test_seeded_training_repeats_itself(tmp_path, tiny_task1_cohort):
    import torch

    from Task1.monai_backend.config import family_defaults
    from Task1.monai_backend.train import train_monai_model

    weights = []
    for run in ("a", "b"):
        train_monai_model(family_defaults("dynunet"), tiny_task1_cohort, tmp_path / run, epochs=1, iterations=2,
                          seed=3, device="cpu", progress=False)
        weights.append(torch.load(tmp_path / run / "model.pt", weights_only=True))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_preprocessing_maps_clicks_and_returns_to_the_input_grid():
    """Clicks land on the model-grid voxel that holds the same point in mm, and a map resampled
    to the model grid and back keeps its place."""
    from Task1.monai_backend.config import family_defaults
    from Task1.monai_backend.data import back_to_input_grid, map_points, preprocess_case

    config = family_defaults("segresnetds")
    spacing = (3.0, 2.0, 5.0)
    shape = (40, 50, 24)
    ct = np.full(shape, -1000.0, np.float32)
    pet = np.zeros(shape, np.float32)
    pet[18:24, 20:30, 10:14] = 8.0          # a block around (63, 49, 57.5) mm
    data, suv, affine = preprocess_case(ct, pet, spacing, config)
    assert data.shape[0] == 2 and float(data[0].max()) == 0.0 and 0.0 <= float(data[1].min())
    assert float(data[1].max()) == pytest.approx(0.8, abs=1e-5)   # 8 SUV of the [0, 10] range
    (point,) = map_points([[21, 25, 12]], spacing, affine, data.shape[1:])
    assert point == [round(21 * 3 / 4), round(25 * 2 / 4), round(12 * 5 / 4)]
    assert float(suv[tuple(point)]) == pytest.approx(8.0)
    back = back_to_input_grid(data[1], affine, spacing, shape)
    assert back.shape == shape and back[21, 25, 12] > 0.7 and back[2, 2, 2] == 0.0


def test_entrypoint_recipe_batch_and_local_challenge_run_monai_models(monai_models, tmp_path, tiny_task1_cohort):
    from autopet_common.click_io import read_clicks_json
    from local_challenge.runner import run_local_challenge
    from Task1.check_model import check_model_folder
    from Task1.model_folder import load_predictor
    from Task1.session import open_method, predict_steps
    from Task1.monai_backend.predict import MonaiPredictor

    folder = monai_models["segresnetds"]
    assert isinstance(load_predictor(folder, device="cpu"), MonaiPredictor)
    checked = check_model_folder(folder)
    assert checked["trainer"] == "monai:segresnetds" and checked["size_mb"] < 10
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("AUTOPET_")}
    run = subprocess.run([sys.executable, str(REPO / "inference.py"), "--input", str(SAMPLE), "--output",
                          str(tmp_path / "out"), "--model", str(folder), "--device", "cpu", "--report",
                          str(tmp_path / "report.json")], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads((tmp_path / "report.json").read_text())["models_run"][0]["framework"] == "MONAI"
    (mask_path,) = list_images(tmp_path / "out" / "images" / "tumor-lesion-segmentation")
    mask, _ = read_image(mask_path)
    pet, pet_geometry = read_image(list_images(SAMPLE / "images" / "pet")[0], np.float32)
    assert mask.shape == pet.shape and set(np.unique(mask)) <= {0, 1}  # on the PET grid

    # batch prediction over steps equals one prediction per step
    ct, _ = read_image(list_images(SAMPLE / "images" / "ct")[0], np.float32)
    clicks = read_clicks_json(SAMPLE / "lesion-clicks.json")
    method = open_method(folder, device="cpu")
    masks = predict_steps(method, method.prepare(ct, pet, pet_geometry), clicks, [0, 10])
    assert np.array_equal(masks[10][0], mask)

    # a recipe naming the MONAI folder and an nnU-Net folder, ensembled
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "monai").symlink_to(folder)
    (recipe / "nnunet").symlink_to(REPO / "models" / "task1_phantom")
    (recipe / "autopet_recipe.json").write_text(json.dumps(
        {"version": 1, "tracer": {"classify": False},
         "routes": [{"models": [{"folder": "monai"}, {"folder": "nnunet"}]}]}))
    assert check_model_folder(recipe)["model monai"].startswith("monai:segresnetds")
    recipe_method = open_method(recipe, device="cpu")
    recipe_mask, report = predict_steps(recipe_method, recipe_method.prepare(ct, pet, pet_geometry), clicks, [10])[10]
    assert recipe_mask.shape == mask.shape and len(report.models_run) == 2

    result = run_local_challenge(tiny_task1_cohort, tmp_path / "lc", model=str(monai_models["dynunet"]),
                                 max_cases=1, n_steps=2, progress=False, overlays=False, in_process=True)
    assert result.run_log["n_failed"] == 0 and result.run_log["trainer"] == "monai:dynunet"


@pytest.mark.parametrize("change, message", [
    ({"format": "other"}, "format"),
    ({"family": "unet"}, "family"),
    ({"spacing": [4, 4]}, "spacing"),
    ({"patch_size": [48, 48, 4]}, "patch_size"),
    ({"sw_overlap": 1.5}, "sw_overlap"),
    ({"extra": 1}, "unknown key"),
    ({"clicks": {"trainer": "x", "encoding": "laser", "version": 2}}, "encoding"),
    ({"network": {"filters": [1]}}, "cannot build"),
])
def test_bad_model_folders_name_the_file_and_key(monai_models, tmp_path, change, message):
    from autopet_common.errors import InputError
    from Task1.monai_backend.predict import MonaiPredictor

    folder = tmp_path / "bad"
    shutil.copytree(monai_models["dynunet"], folder)
    record = json.loads((folder / "monai_model.json").read_text())
    (folder / "monai_model.json").write_text(json.dumps({**record, **change}))
    with pytest.raises(InputError, match=message) as caught:
        MonaiPredictor(folder, device="cpu")
    assert "monai_model.json" in str(caught.value) or "network arguments" in str(caught.value)


def test_a_damaged_weights_file_fails_the_entrypoint_without_output(monai_models, tmp_path):
    folder = tmp_path / "damaged"
    shutil.copytree(monai_models["dynunet"], folder)
    (folder / "model.pt").write_bytes(b"not a checkpoint")
    run = subprocess.run([sys.executable, str(REPO / "inference.py"), "--input", str(SAMPLE), "--output",
                          str(tmp_path / "out"), "--model", str(folder)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "model.pt" in run.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.mha"))
