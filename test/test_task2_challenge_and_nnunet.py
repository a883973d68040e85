"""Task 2: local challenge run through the entrypoint, nnU-Net dataset conversion and trainer."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autopet_common.image_io import read_image
from autopet_common.phantoms import write_task2_cohort

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    return write_task2_cohort(tmp_path_factory.mktemp("task2_tiny"), n_pairs=1, size="tiny", seed=3)


def test_challenge_run_scores_both_steps(tiny_cohort, tmp_path):
    from local_challenge.task2 import run_task2_cohort

    summary = run_task2_cohort(tiny_cohort, tmp_path / "run", progress=False)
    assert summary["failed_runs"] == []
    assert summary["entrypoint"] == str(REPO / "inference.py")
    assert [(r["pair"], r["step"]) for r in summary["runs"]] == [("PHANTOM_CT_0000", 1), ("PHANTOM_CT_0000", 2)]
    assert all(r["seconds"] > 0 and r["peak_rss_mb"] > 50 and r["within_budget"] for r in summary["runs"])
    for step in (1, 2):
        pred, _ = read_image(tmp_path / "run" / "predictions" / f"PHANTOM_CT_0000_pred{step}.mha")
        assert pred.dtype == np.uint8 and pred.min() == 0 and pred.max() >= 1  # voxel values: lesion ids
    metrics = summary["metrics"]
    assert metrics["mode"] == "task2" and metrics["n_cases"] == 1
    dice1, dice2 = metrics["per_step_means"]["dice"]
    assert dice2 is not None and dice2 > 0.5
    assert (tmp_path / "run" / "metrics" / "metrics_per_step.csv").is_file()
    assert (tmp_path / "run" / "runs.csv").read_text().startswith("pair,step,seconds,peak_rss_mb")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["n_pairs"] == 1
    assert not (tmp_path / "run" / "work").exists()


def test_convert_dataset_builds_four_channels(tiny_cohort, tmp_path):
    from Task2.convert_dataset import convert_cohort

    dataset = convert_cohort(tiny_cohort, tmp_path / "raw", dataset_id=502, progress=False)
    meta = json.loads((dataset / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT", "1": "CT", "2": "noNorm", "3": "noNorm"}
    assert meta["numTraining"] == 1 and meta["labels"] == {"background": 0, "lesion": 1}
    case = "PHANTOM_CT_0000"
    channels = [read_image(dataset / "imagesTr" / f"{case}_{c:04d}.nii.gz") for c in range(4)]
    label, label_geometry = read_image(dataset / "labelsTr" / f"{case}.nii.gz")
    pair = tiny_cohort / case
    fu_ct, fu_geometry = read_image(next((pair / "input" / "images" / "primary-followup-ct").iterdir()))
    truth, _ = read_image(pair / "truth" / "followup-tumor-lesion-seg.mha")
    assert all(g.shape == fu_geometry.shape for _, g in channels) and label_geometry.shape == fu_geometry.shape
    np.testing.assert_allclose(channels[0][0], fu_ct, atol=0.5)
    np.testing.assert_array_equal(label, (truth > 0).astype(np.uint8))
    # The registered baseline CT resembles the follow-up much more than the unregistered one.
    registered = channels[1][0]
    body = fu_ct > -500
    assert np.corrcoef(registered[body], fu_ct[body])[0, 1] > 0.9
    # Registered mask is binary; click map peaks (1) at every follow-up click.
    assert set(np.unique(channels[2][0])) <= {0, 1}
    points = json.loads((pair / "input" / "primary-followup-lesion-clicks.json").read_text())["points"]
    for entry in points:
        idx = tuple(int(round(v)) for v in entry["point"])
        assert channels[3][0][idx] == pytest.approx(1.0)


def test_trainer_found_by_nnunet_and_blanks_clicks():
    sys.path.insert(0, str(REPO / "Task2" / "trainers"))
    try:
        from autoPETLongitudinalTrainers import BlankClickChannelTransform
    finally:
        sys.path.remove(str(REPO / "Task2" / "trainers"))
    image = np.ones((4, 3, 3, 3), np.float32)
    out = BlankClickChannelTransform(channel=3, p=1.0)(image=image.copy(), segmentation=None)
    assert out["image"][3].max() == 0 and out["image"][:3].min() == 1
    out = BlankClickChannelTransform(channel=3, p=0.0)(image=image.copy(), segmentation=None)
    assert out["image"][3].min() == 1

    env = dict(os.environ, nnUNet_extTrainer=str(REPO / "Task2" / "trainers"),
               PYTHONPATH=os.pathsep.join([str(REPO / "autopet_common" / "compat"), os.environ.get("PYTHONPATH", "")]))
    code = ("from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as f\n"
            "t = f('autoPETTrainerLongitudinal'); print('FOUND', t.__name__, t.p_no_clicks)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert "FOUND autoPETTrainerLongitudinal 0.5" in done.stdout, done.stderr[-2000:]


def test_proposal_noise_grows_or_shrinks_only_the_proposal_channel():
    import torch

    sys.path.insert(0, str(REPO / "Task2" / "trainers"))
    try:
        from autoPETLongitudinalTrainers import (PROPOSAL_CHANNEL, ProposalNoiseTransform,
                                                 autoPETTrainerLongitudinalPatches_cpu,
                                                 autoPETTrainerLongitudinalPatches_cpuProposalNoise)
    finally:
        sys.path.remove(str(REPO / "Task2" / "trainers"))
    from Task2.lesion_patches import PROPOSAL_CHANNEL as HOME

    # the trainers' copy (nnU-Net loads that file alone, so it cannot import the home)
    assert PROPOSAL_CHANNEL == HOME == 5
    image = torch.zeros((6, 16, 16, 16))
    image[5, 4:12, 4:12, 4:12] = 1  # an 8^3 proposal
    image[:5] = torch.arange(1, 6, dtype=torch.float32)[:, None, None, None]
    unchanged = ProposalNoiseTransform(p=0.0)(image=image.clone(), segmentation=None)["image"]
    assert torch.equal(unchanged, image)
    np.random.seed(0)
    volumes = set()
    for _ in range(20):
        out = ProposalNoiseTransform(p=1.0, max_voxels=3)(image=image.clone(), segmentation=None)["image"]
        assert torch.equal(out[:5], image[:5])  # only the proposal channel moves
        volumes.add(int(out[5].sum()))
    # grown or shrunk by 1..3 voxels on each side: cubes of side 8 +- 2r
    assert volumes <= {side ** 3 for side in (2, 4, 6, 10, 12, 14)} and len(volumes) >= 3, volumes
    np.random.seed(5)
    first = ProposalNoiseTransform(p=1.0)(image=image.clone(), segmentation=None)["image"]
    np.random.seed(5)
    assert torch.equal(first, ProposalNoiseTransform(p=1.0)(image=image.clone(), segmentation=None)["image"])
    # the named variant changes this one attribute of the shipped schedule
    variant, base = autoPETTrainerLongitudinalPatches_cpuProposalNoise, autoPETTrainerLongitudinalPatches_cpu
    assert variant.p_proposal_noise == 0.5 and base.p_proposal_noise == 0.0
    assert (variant.epochs, variant.learning_rate, variant.training_seed) == (base.epochs, base.learning_rate,
                                                                             base.training_seed)


def test_non_task2_model_falls_back_to_model_free(tmp_path):
    from Task2.nnunet_predict import is_task2_model

    task1 = tmp_path / "task1_model"
    task1.mkdir()
    (task1 / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT", "1": "PET"}}))
    task2 = tmp_path / "task2_model"
    task2.mkdir()
    (task2 / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT", "1": "CT", "2": "noNorm",
                                                                      "3": "noNorm"}}))
    assert not is_task2_model(task1) and not is_task2_model(tmp_path / "missing") and is_task2_model(task2)


def test_model_path_plumbing_with_a_stand_in_predictor(tiny_cohort, tmp_path, monkeypatch):
    """The --model path builds the 4 channels in nnU-Net's (c, z, y, x) order with spacing
    (z, y, x), and maps the prediction back to [i, j, k]: a stand-in predictor that returns
    its click channel must give back the click balls at the follow-up clicks."""
    import Task2.nnunet_predict as nnunet_predict
    from Task2.inference import run_task2

    seen = {}

    class ClickEcho:
        def predict_single_npy_array(self, data, properties, *args):
            seen["shape"], seen["spacing"] = data.shape, properties["spacing"]
            return (data[3] > 0.5).astype(np.uint8)

    monkeypatch.setattr(nnunet_predict, "load_predictor", lambda model_dir, device="auto": ClickEcho())
    model = tmp_path / "model"
    model.mkdir()
    (model / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT", "1": "CT", "2": "noNorm",
                                                                      "3": "noNorm"}}))
    pair = tiny_cohort / "PHANTOM_CT_0000"
    written = run_task2(pair / "input", tmp_path / "out", model_dir=model)
    mask, geometry = read_image(written[0])
    fu_ct, fu_geometry = read_image(next((pair / "input" / "images" / "primary-followup-ct").iterdir()))
    assert geometry == fu_geometry
    assert seen["shape"] == (4,) + tuple(fu_geometry.shape[::-1])
    assert list(seen["spacing"]) == list(fu_geometry.spacing[::-1])
    points = json.loads((pair / "input" / "primary-followup-lesion-clicks.json").read_text())["points"]
    assert points
    for entry in points:  # each blob carries the id of the click it is around
        assert mask[tuple(int(round(v)) for v in entry["point"])] == int(entry["name"])
    assert (mask > 0).sum() <= 19 * len(points)  # ball radius 3, value > 0.5: d < 1.5 voxels = 19 voxels


def test_task2_evaluation_tracks_lesions_by_id(tmp_path):
    """Per-lesion scores by id and the tracking summary: with the model-free pipeline the id at
    step 2 is the truth id for every lesion it finds; a lesion that vanished has no truth voxel
    and is not counted; predicted ids absent from the truth are 'new'."""
    import csv

    from autopet_common.phantoms import write_task2_cohort
    from local_challenge.task2 import run_task2_cohort

    cohort = write_task2_cohort(tmp_path / "cohort", n_pairs=2, size="tiny", seed=6)
    summary = run_task2_cohort(cohort, tmp_path / "run", progress=False)
    tracking = summary["metrics"]["tracking"]
    assert [t["step"] for t in tracking] == [1, 2]
    assert tracking[1]["id_accuracy"] == 1.0 and tracking[1]["n_kept"] >= 3
    rows = list(csv.DictReader((tmp_path / "run" / "metrics" / "lesions.csv").open()))
    assert {r["status"] for r in rows} <= {"kept", "swapped", "lost", "new"}
    step2 = [r for r in rows if r["step"] == "2" and r["status"] == "kept"]
    assert step2 and all(r["lesion_id"] == r["predicted_id"] and float(r["dice"]) > 0.3 for r in step2)


def test_task2_tracking_with_merging_and_splitting_lesions(tmp_path):
    """Phantom pairs with two baseline lesions merging into one follow-up lesion and one lesion
    splitting in two: at step 2 every follow-up lesion found carries its truth id (the merged
    lesion the larger one's, the split-off part its new id); per-lesion FPV and FNV are in
    lesions.csv; the merged-away lesion has no truth voxel, so it is not scored."""
    import csv

    from autopet_common.phantoms import write_task2_cohort
    from local_challenge.task2 import run_task2_cohort

    cohort = write_task2_cohort(tmp_path / "cohort", n_pairs=1, size="small", seed=3, n_merging=1, n_splitting=1)
    meta = json.loads(next(cohort.glob("*/transform.json")).read_text())
    statuses = {lesion["status"] for lesion in meta["lesions"]}
    assert {"merged", "split"} <= statuses
    merged = next(lesion for lesion in meta["lesions"] if lesion["status"] == "merged")
    split = next(lesion for lesion in meta["lesions"] if lesion["status"] == "split")
    summary = run_task2_cohort(cohort, tmp_path / "run", progress=False)
    tracking = summary["metrics"]["tracking"]
    assert tracking[1]["id_accuracy"] >= 0.95 and tracking[1]["n_swapped"] == 0
    rows = list(csv.DictReader((tmp_path / "run" / "metrics" / "lesions.csv").open()))
    step2 = {int(r["lesion_id"]): r for r in rows if r["step"] == "2"}
    assert merged["id"] not in step2 and merged["merged_into"] in step2
    assert step2[split["id"]]["status"] == "kept" and step2[split["split_from"]]["status"] == "kept"
    for row in rows:
        assert float(row["fpv_ml"]) >= 0 and float(row["fnv_ml"]) >= 0
