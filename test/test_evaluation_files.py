"""File, folder, Task 2 and command-line evaluation on small masks written to disk."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autopet_common.errors import GridMismatchError, InputError
from autopet_common.image_io import Geometry, write_image, write_mask
from evaluation_metrics import (compute_interactive_metrics, compute_metrics, evaluate_folder,
                                evaluate_task2, plot_interactive_curves)
from evaluation_metrics.evaluate import MissingPredictionError, NonBinaryMaskWarning
from evaluation_metrics.reference import reference_auc, reference_metrics

REPO = Path(__file__).resolve().parents[1]
SHAPE = (20, 18, 12)
SPACING = (2.04, 2.04, 3.0)
VOXEL_ML = 2.04 * 2.04 * 3.0 / 1000


def geometry(shape=SHAPE, spacing=SPACING):
    return Geometry(shape, spacing, (-10.0, 5.0, 2.0))


def lesion_mask(rng, n):
    mask = np.zeros(SHAPE, np.uint8)
    for _ in range(n):
        c = rng.integers(2, np.array(SHAPE) - 2)
        mask[c[0] - 1:c[0] + 2, c[1] - 1:c[1] + 1, c[2]:c[2] + 2] = 1
    return mask


def perturb(rng, gt, step):
    """A prediction improving with the step: drop part of the lesions, add a false blob."""
    pred = gt.copy()
    if step < 2:
        pred[: SHAPE[0] // 2] = 0
    if step % 2 == 0:
        pred[1:3, 1:3, 1:3] = 1
    return pred


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """3 cases (one without lesions) with static, interactive (4 steps) and Task 2 predictions."""
    root = tmp_path_factory.mktemp("cohort")
    rng = np.random.default_rng(5)
    gt_dir, pred_dir = root / "gt", root / "pred"
    masks = {"case_a": lesion_mask(rng, 4), "case_b": lesion_mask(rng, 2),
             "case_c": np.zeros(SHAPE, np.uint8)}
    preds = {}
    for case, gt in masks.items():
        suffix = ".mha" if case == "case_b" else ".nii.gz"
        write_mask(gt, geometry(), gt_dir / f"{case}{suffix}")
        preds[case] = [perturb(rng, gt, s) for s in range(4)]
        write_mask(preds[case][2], geometry(), pred_dir / f"{case}{suffix}")
        for s in range(4):
            write_mask(preds[case][s], geometry(), pred_dir / f"{case}_pred{s}{suffix}")
    return {"root": root, "gt": gt_dir, "pred": pred_dir, "masks": masks, "preds": preds}


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_single_pair_with_anisotropic_pixdim(cohort):
    gt_path = cohort["gt"] / "case_a.nii.gz"
    fast = compute_metrics(gt_path, cohort["pred"] / "case_a.nii.gz")
    ref = reference_metrics(cohort["masks"]["case_a"], cohort["preds"]["case_a"][2], VOXEL_ML)
    assert fast[0] == pytest.approx(ref[0], rel=1e-6)
    assert fast[1] == pytest.approx(ref[1], rel=1e-6) and fast[1] > 0
    assert fast[2] == pytest.approx(ref[2], rel=1e-6)


def test_interactive_file_api(cohort):
    paths = [cohort["pred"] / f"case_a_pred{s}.nii.gz" for s in range(4)]
    values = compute_interactive_metrics(cohort["gt"] / "case_a.nii.gz", paths)
    per_step = [reference_metrics(cohort["masks"]["case_a"], p, VOXEL_ML) for p in cohort["preds"]["case_a"]]
    expected = [reference_auc([r[i] for r in per_step]) for i in range(3)] + list(per_step[-1])
    assert values == pytest.approx(expected, rel=1e-6)


def test_static_folder_outputs(cohort, tmp_path):
    summary = evaluate_folder(cohort["gt"], cohort["pred"], tmp_path, progress=False)
    rows = read_csv(tmp_path / "metrics.csv")
    assert list(rows[0]) == ["gt_name", "dice_sc", "false_pos_vol", "false_neg_vol"]
    assert [r["gt_name"] for r in rows] == ["case_a.nii.gz", "case_b.mha", "case_c.nii.gz"]
    ref = reference_metrics(cohort["masks"]["case_b"], cohort["preds"]["case_b"][2], VOXEL_ML)
    assert [float(rows[1][k]) for k in ("dice_sc", "false_pos_vol", "false_neg_vol")] == \
        pytest.approx(ref, rel=1e-6)
    assert rows[2]["dice_sc"] == "nan" and rows[2]["false_neg_vol"] == "nan"
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["mode"] == "static" and on_disk["n_cases"] == 3
    assert on_disk["n_cases_without_lesions"] == 1 and on_disk["n_missing_predictions"] == 0
    dice = [float(r["dice_sc"]) for r in rows[:2]]
    assert on_disk["means"]["dice_sc"] == pytest.approx(np.mean(dice))  # NaN-aware mean
    assert set(on_disk["std"]) == set(on_disk["means"]) == {"dice_sc", "false_pos_vol", "false_neg_vol"}
    assert on_disk["detection"]["per_step"][0]["step"] is None
    assert on_disk["plot"] is None
    det = read_csv(tmp_path / "detection.csv")
    assert sum(int(r["tp"]) for r in det) == on_disk["detection"]["per_step"][0]["tp"]
    assert summary["means"] == on_disk["means"]


def test_interactive_folder_parallel_plot_and_csvs(cohort, tmp_path):
    serial = evaluate_folder(cohort["gt"], cohort["pred"], tmp_path / "serial", n_clicks=4,
                             progress=False)
    parallel = evaluate_folder(cohort["gt"], cohort["pred"], tmp_path / "par", n_clicks=4,
                               num_processes=2, plot=True, progress=False)
    assert (tmp_path / "serial" / "metrics_interactive.csv").read_text() == \
        (tmp_path / "par" / "metrics_interactive.csv").read_text()
    rows = read_csv(tmp_path / "par" / "metrics_interactive.csv")
    assert list(rows[0]) == ["gt_name", "dice_auc", "fpv_auc", "fnv_auc", "dice_final", "fpv_final", "fnv_final"]
    per_step = read_csv(tmp_path / "par" / "metrics_per_step.csv")
    assert len(per_step) == 3 * 4 and [int(r["step"]) for r in per_step[:4]] == [0, 1, 2, 3]
    expected_auc = reference_auc([float(r["dice"]) for r in per_step[:4]])
    assert float(rows[0]["dice_auc"]) == pytest.approx(expected_auc, rel=1e-9)
    summary = json.loads((tmp_path / "par" / "summary.json").read_text())
    assert summary["mode"] == "interactive" and summary["plot"] == "interactive_curves.png"
    assert len(summary["per_step_means"]["dice"]) == 4
    assert [d["step"] for d in summary["detection"]["per_step"]] == [0, 1, 2, 3]
    png = (tmp_path / "par" / "interactive_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert serial["means"] == parallel["means"]


def test_plot_from_csv(cohort, tmp_path):
    evaluate_folder(cohort["gt"], cohort["pred"], tmp_path, n_clicks=4, progress=False)
    out = plot_interactive_curves(tmp_path / "metrics_per_step.csv", tmp_path / "curves.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(InputError, match="lacks column"):
        plot_interactive_curves(tmp_path / "detection.csv", tmp_path / "bad.png")


def test_task2_two_steps(cohort, tmp_path):
    summary = evaluate_task2(cohort["gt"], cohort["pred"], tmp_path, progress=False)
    assert summary["mode"] == "task2" and summary["steps"] == [1, 2]
    rows = read_csv(tmp_path / "metrics_per_step.csv")
    assert [int(r["step"]) for r in rows[:2]] == [1, 2]
    case_rows = read_csv(tmp_path / "metrics_interactive.csv")
    d1, d2 = float(rows[0]["dice"]), float(rows[1]["dice"])
    assert float(case_rows[0]["dice_auc"]) == pytest.approx((d1 + d2) / 2)
    assert float(case_rows[0]["dice_final"]) == d2


def test_missing_predictions(cohort, tmp_path):
    pred = tmp_path / "pred"
    pred.mkdir()
    for name in ("case_a.nii.gz", "case_b.mha"):
        (pred / name).write_bytes((cohort["pred"] / name).read_bytes())
    out = tmp_path / "out"
    with pytest.raises(MissingPredictionError, match="case_c.nii.gz"):
        evaluate_folder(cohort["gt"], pred, out, progress=False)
    assert not out.exists()  # nothing written
    summary = evaluate_folder(cohort["gt"], pred, out, allow_missing=True, progress=False)
    assert summary["n_missing_predictions"] == 1 and summary["missing_predictions"] == ["case_c.nii.gz"]
    assert summary["n_cases"] == 2


def test_bad_inputs_name_the_files(cohort, tmp_path):
    gt_path = cohort["gt"] / "case_a.nii.gz"
    other = tmp_path / "other_grid.nii.gz"
    write_mask(cohort["masks"]["case_a"], geometry(spacing=(1.0, 1.0, 1.0)), other)
    with pytest.raises(GridMismatchError) as info:
        compute_metrics(gt_path, other)
    assert "case_a.nii.gz" in str(info.value) and "other_grid.nii.gz" in str(info.value)
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"not an image")
    with pytest.raises(InputError, match="corrupt.nii.gz"):
        compute_metrics(gt_path, corrupt)
    with pytest.raises(InputError, match="missing_file"):
        compute_metrics(gt_path, tmp_path / "missing_file.nii.gz")
    nan_pred = cohort["preds"]["case_a"][3].astype(np.float32)
    nan_pred[0, 0, 0] = np.nan
    # .mha: SimpleITK's NIfTI reader turns NaN into 0 before any check could see it.
    write_image(nan_pred, geometry(), tmp_path / "nan_pred.mha")
    with pytest.raises(InputError, match="nan_pred.mha"):
        compute_metrics(gt_path, tmp_path / "nan_pred.mha")


def test_non_binary_prediction_is_binarised_with_warning(cohort, tmp_path):
    gt_path = cohort["gt"] / "case_a.nii.gz"
    probabilities = cohort["preds"]["case_a"][2].astype(np.float32) * 0.7
    write_image(probabilities, geometry(), tmp_path / "soft.nii.gz")
    with pytest.warns(NonBinaryMaskWarning, match="soft.nii.gz"):
        soft = compute_metrics(gt_path, tmp_path / "soft.nii.gz")
    assert soft == compute_metrics(gt_path, cohort["pred"] / "case_a.nii.gz")


def run_cli(*args):
    return subprocess.run([sys.executable, str(REPO / "evaluation_metrics" / "evaluation_metrics.py"),
                           *map(str, args), "--quiet"], capture_output=True, text=True, cwd=REPO)


def test_cli_modes_and_errors(cohort, tmp_path):
    single = run_cli("-g", cohort["gt"] / "case_a.nii.gz", "-p", cohort["pred"] / "case_a.nii.gz")
    assert single.returncode == 0, single.stderr
    dice = compute_metrics(cohort["gt"] / "case_a.nii.gz", cohort["pred"] / "case_a.nii.gz")[0]
    assert f"dice_sc: {dice!r}" in single.stdout
    folder = run_cli("-g", cohort["gt"], "-p", cohort["pred"], "-o", tmp_path / "o", "--n_clicks", "4")
    assert folder.returncode == 0, folder.stderr
    assert "| dice_auc |" in folder.stdout and (tmp_path / "o" / "metrics_per_step.csv").is_file()
    missing = run_cli("-g", cohort["gt"], "-p", tmp_path / "o", "-o", tmp_path / "m")
    assert missing.returncode != 0 and ("error: " in missing.stderr.splitlines()[0])
    assert "case_a.nii.gz" in missing.stderr and not (tmp_path / "m").exists()


def test_simulated_predictions_improve_and_are_scored_by_module_cli(tmp_path):
    from evaluation_metrics.simulate_predictions import main as simulate_main, simulate_prediction_steps

    rng = np.random.default_rng(11)
    label = lesion_mask(rng, 5)
    steps = simulate_prediction_steps(label, 11, seed=3)
    assert len(steps) == 11 and all(s.shape == label.shape for s in steps)
    from evaluation_metrics import lesion_detection
    found = [lesion_detection(label, s)["tp"] for s in steps]
    assert found == sorted(found) and found[-1] == lesion_detection(label, label)["tp"]
    gt_dir = tmp_path / "gt"
    write_mask(label, geometry(), gt_dir / "case_x.nii.gz")
    assert simulate_main(["-g", str(gt_dir), "-o", str(tmp_path / "pred"), "--task", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["case_x_pred1.nii.gz", "case_x_pred2.nii.gz"]
    result = subprocess.run([sys.executable, "-m", "evaluation_metrics", "-g", str(gt_dir), "-p",
                             str(tmp_path / "pred"), "-o", str(tmp_path / "out"), "--task", "2",
                             "--min_overlap", "0.5", "--quiet"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["mode"] == "task2" and [d["step"] for d in summary["detection"]["per_step"]] == [1, 2]
