"""File- and folder-level evaluation: the challenge metrics of whole cohorts, in parallel.

File names (``<case>`` = the GT file name without its suffix; ``.nii.gz``, ``.nii`` or ``.mha``):

- static (Task 1 without clicks): GT ``GT/<case>.nii.gz``, prediction ``PRED/<case>.nii.gz``;
- interactive (Task 1, ``n_clicks`` steps, usually 11): ``PRED/<case>_pred0 ... _pred{n-1}``,
  step s having seen s tumor and s background clicks;
- Task 2 (follow-up mask, 2 steps): ``PRED/<case>_pred1`` (no follow-up click) and
  ``PRED/<case>_pred2`` (one click per follow-up lesion); the GT is the follow-up mask.

Arrays are read with :mod:`autopet_common.image_io` (NIfTI order ``[i, j, k]``); the voxel volume
(ml) comes from the GT header (``pixdim[1..3] / 1000`` for NIfTI, the spacing for ``.mha``).
Nothing is written until every case has been evaluated, so bad input leaves no partial output.
"""
from __future__ import annotations

import csv
import io
import math
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from autopet_common.errors import InputError
from autopet_common.image_io import (atomic_write_json, atomic_write_text, check_same_grid,
                                     image_suffix, list_images, read_image, strip_image_suffix)

from .metrics import CONNECTIVITY, detection_rates, interactive_auc, measure_case

GT_SUFFIXES = (".nii.gz", ".nii", ".mha")
STATIC_COLUMNS = ["dice_sc", "false_pos_vol", "false_neg_vol"]
INTERACTIVE_COLUMNS = ["dice_auc", "fpv_auc", "fnv_auc", "dice_final", "fpv_final", "fnv_final"]
PER_STEP_COLUMNS = ["gt_name", "step", "dice", "fpv", "fnv"]
DETECTION_COLUMNS = ["gt_name", "step", "tp", "fn", "fp", "sensitivity", "precision", "f1"]
LESION_COLUMNS = ["gt_name", "step", "lesion_id", "status", "dice", "fpv_ml", "fnv_ml", "truth_ml", "predicted_id"]
PLOT_NAME = "interactive_curves.png"
TASK2_STEPS = (1, 2)


class MissingPredictionError(InputError):
    """Predictions are missing for some ground-truth cases."""


class NonBinaryMaskWarning(UserWarning):
    """A mask held values other than 0 and 1; it was binarised with > 0."""


# ----------------------------------------------------------------------------- reading

def read_mask(path: str | os.PathLike, what: str) -> tuple[np.ndarray, object, str | None]:
    """Read a mask as a boolean array ``[i, j, k]`` (foreground ``> 0``) with its geometry.

    Returns ``(mask, geometry, warning)``: ``warning`` is a message when the file held values
    other than 0 and 1 (it is binarised), else None. NaN or infinite values raise an
    :class:`~autopet_common.errors.InputError` naming the file.
    """
    array, geometry = read_image(path, check_finite=True, what=what)
    warning = None
    if array.dtype != bool and array.size:
        low, high = array.min(), array.max()
        non_binary = low < 0 or high > 1
        if not non_binary and np.issubdtype(array.dtype, np.floating):
            non_binary = bool(np.any((array != 0) & (array != 1)))
        if non_binary:
            warning = (f"{what} {path} is not binary (values from {low:g} to {high:g}); "
                       "binarised as > 0")
    return array > 0, geometry, warning


def header_voxel_volume_ml(path: str | os.PathLike, geometry) -> float:
    """Voxel volume in ml: NIfTI ``pixdim[1]*pixdim[2]*pixdim[3]/1000`` as the published script
    reads it, the spacing of other formats (``.mha``)."""
    if image_suffix(path) in (".nii.gz", ".nii"):
        import nibabel  # header only; the array was read by SimpleITK

        pixdim = nibabel.load(str(path)).header["pixdim"]
        return float(pixdim[1]) * float(pixdim[2]) * float(pixdim[3]) / 1000.0
    return float(geometry.voxel_volume_ml)


# ----------------------------------------------------------------------------- one case

@dataclass(frozen=True)
class CaseJob:
    case: str
    gt_path: Path
    steps: tuple                  # (step, prediction path) pairs; step None in static mode
    min_overlap: float = 0.0
    lesion_ids: bool = False      # Task 2: integer lesion ids are expected (no "not binary" warning)


def evaluate_case(job: CaseJob) -> dict:
    """All measures of one case at every step: ``{"gt_name", "case", "has_lesions", "steps":
    [{"step", "dice", "fpv", "fnv", "tp", "fn", "fp", "sensitivity", "precision", "f1"}],
    "warnings": [...]}``. Raises InputError on unreadable files or mismatched grids."""
    messages = []
    if job.lesion_ids:  # Task 2: label maps of lesion ids, read once; measures on > 0
        gt_ids, gt_geometry = read_image(job.gt_path, what="ground truth")
        gt = gt_ids > 0
    else:
        gt, gt_geometry, warning = read_mask(job.gt_path, "ground truth")
        messages += [warning] if warning else []
    voxel_ml = header_voxel_volume_ml(job.gt_path, gt_geometry)
    rows = []
    for step, pred_path in job.steps:
        if job.lesion_ids:
            pred_ids, pred_geometry = read_image(pred_path, what="prediction")
            pred = pred_ids > 0
        else:
            pred, pred_geometry, warning = read_mask(pred_path, "prediction")
            messages += [warning] if warning else []
        check_same_grid(gt_geometry, pred_geometry, f"ground truth {job.gt_path}",
                        f"prediction {pred_path}")
        measures = measure_case(gt, pred)
        dice, fpv, fnv = measures.metrics(voxel_ml)
        row = {"step": step, "dice": dice, "fpv": fpv, "fnv": fnv, **measures.detection(job.min_overlap)}
        if job.lesion_ids:
            row.update(lesion_tracking(gt_ids, pred_ids, voxel_ml))
        rows.append(row)
    return {"gt_name": job.gt_path.name, "case": job.case, "has_lesions": bool(gt.any()),
            "steps": rows, "warnings": messages}


def lesion_tracking(truth: np.ndarray, pred: np.ndarray, voxel_ml: float) -> dict:
    """Task 2 per lesion, by id (voxel values are lesion ids in both label maps).

    Each truth lesion: its Dice against the prediction's voxels of the same id, its false
    negative volume (its voxels not predicted with its id) and false positive volume (voxels
    predicted with its id outside it), its volume, the id most of its predicted voxels carry,
    and a status: ``kept`` (that id is its own),
    ``swapped`` (another id), ``lost`` (no predicted voxel on it). Predicted ids that are not
    truth ids are ``new`` (they count their volume). ``id_accuracy`` = kept / (kept + swapped).
    """
    truth = np.asarray(truth).astype(np.int64, copy=False)
    pred = np.asarray(pred).astype(np.int64, copy=False)
    lesions = []
    truth_ids = sorted(int(v) for v in np.unique(truth) if v > 0)
    for lesion in truth_ids:
        inside = truth == lesion
        values = pred[inside]
        values = values[values > 0]
        same = pred == lesion
        overlap = int(np.count_nonzero(inside & same))
        size, pred_size = int(np.count_nonzero(inside)), int(np.count_nonzero(same))
        dice = 2.0 * overlap / (size + pred_size) if size + pred_size else float("nan")
        majority = int(np.bincount(values).argmax()) if values.size else None
        status = "lost" if majority is None else ("kept" if majority == lesion else "swapped")
        lesions.append({"id": lesion, "status": status, "dice": dice, "truth_ml": size * voxel_ml,
                        "predicted_id": majority, "fpv_ml": (pred_size - overlap) * voxel_ml,
                        "fnv_ml": (size - overlap) * voxel_ml})
    new = []
    for v in np.unique(pred):
        if v > 0 and int(v) not in truth_ids:
            volume = float(np.count_nonzero(pred == v)) * voxel_ml
            new.append({"id": int(v), "status": "new", "dice": None, "truth_ml": 0.0, "predicted_id": int(v),
                        "predicted_ml": volume, "fpv_ml": volume, "fnv_ml": 0.0})
    matched = sum(entry["status"] in ("kept", "swapped") for entry in lesions)
    kept = sum(entry["status"] == "kept" for entry in lesions)
    return {"lesions": lesions + new, "id_accuracy": kept / matched if matched else float("nan"),
            "n_kept": kept, "n_swapped": matched - kept, "n_lost": len(lesions) - matched, "n_new": len(new)}


def compute_metrics(gt_path: str | os.PathLike, pred_path: str | os.PathLike) -> tuple[float, float, float]:
    """(Dice, FPV ml, FNV ml) of one prediction file against one ground-truth file."""
    result = evaluate_case(CaseJob(strip_image_suffix(gt_path), Path(gt_path), ((None, Path(pred_path)),)))
    _emit_warnings([result])
    row = result["steps"][0]
    return row["dice"], row["fpv"], row["fnv"]


def compute_interactive_metrics(gt_path: str | os.PathLike,
                                pred_paths: Sequence[str | os.PathLike]) -> tuple[float, ...]:
    """(dice_auc, fpv_auc, fnv_auc, dice_final, fpv_final, fnv_final) of one case.

    ``pred_paths``: one prediction per step in step order (11 for Task 1: step 0..10; 2 for
    Task 2). AUC = trapezoid over x = 0..n-1 (NaN stays NaN); final = the last step.
    """
    if len(pred_paths) < 2:
        raise InputError(f"interactive metrics need at least 2 predictions, got {len(pred_paths)}")
    steps = tuple((s, Path(p)) for s, p in enumerate(pred_paths))
    result = evaluate_case(CaseJob(strip_image_suffix(gt_path), Path(gt_path), steps))
    _emit_warnings([result])
    return _interactive_row(result["steps"])


def _interactive_row(step_rows: list[dict]) -> tuple[float, ...]:
    series = {key: [r[key] for r in step_rows] for key in ("dice", "fpv", "fnv")}
    return (interactive_auc(series["dice"]), interactive_auc(series["fpv"]),
            interactive_auc(series["fnv"]), series["dice"][-1], series["fpv"][-1], series["fnv"][-1])


def _emit_warnings(results: Iterable[dict]) -> None:
    for result in results:
        for message in result["warnings"]:
            warnings.warn(message, NonBinaryMaskWarning, stacklevel=3)


# ----------------------------------------------------------------------------- cohorts

RESULT_TABLES = ("metrics.csv", "metrics_interactive.csv", "metrics_per_step.csv", "detection.csv", "lesions.csv")


def _ground_truth_files(gt: Path) -> list[Path]:
    if gt.is_file():
        return [gt]
    if not gt.is_dir():
        raise InputError(f"ground truth not found: {gt}")
    files = list_images(gt, GT_SUFFIXES)
    if not files:
        raise InputError(f"ground truth folder {gt} holds no .nii.gz, .nii or .mha file")
    by_case: dict[str, Path] = {}
    for path in files:
        case = strip_image_suffix(path)
        if case in by_case:
            raise InputError(f"two ground-truth files for case {case!r}: {by_case[case]} and {path}")
        by_case[case] = path
    return [by_case[c] for c in sorted(by_case)]


def _find_prediction(pred_dir: Path, stem: str) -> Path | None:
    found = [pred_dir / f"{stem}{suffix}" for suffix in GT_SUFFIXES if (pred_dir / f"{stem}{suffix}").is_file()]
    if len(found) > 1:  # which one is the prediction? never choose silently
        raise InputError(f"prediction folder {pred_dir} has {len(found)} files for {stem}: "
                         f"{', '.join(p.name for p in found)}; keep one")
    return found[0] if found else None


def _mode_steps(mode: str, n_clicks: int | None) -> list:
    if mode == "static":
        return [None]
    if mode == "interactive":
        if n_clicks is None or n_clicks < 2:
            raise InputError(f"--n_clicks must be at least 2 (11 for the challenge), got {n_clicks}")
        return list(range(n_clicks))
    if mode == "task2":
        return list(TASK2_STEPS)
    raise ValueError(f"unknown mode {mode!r}")


def _collect_jobs(gt: Path, pred: Path, mode: str, steps: list,
                  min_overlap: float) -> tuple[list[CaseJob], list[str]]:
    jobs, missing = [], []
    gt_files = _ground_truth_files(gt)
    if pred.is_file():
        if not (mode == "static" and gt.is_file()):
            raise InputError(f"prediction {pred} is a file: give a folder of predictions "
                             "(a single prediction file only pairs with a single GT file, static mode)")
        return [CaseJob(strip_image_suffix(gt), gt, ((None, pred),), min_overlap)], []
    if not pred.is_dir():
        raise InputError(f"prediction folder not found: {pred}")
    for gt_path in gt_files:
        case = strip_image_suffix(gt_path)
        pairs, case_missing = [], []
        for step in steps:
            stem = case if step is None else f"{case}_pred{step}"
            path = _find_prediction(pred, stem)
            if path is None:
                case_missing.append(f"{stem}{image_suffix(gt_path)}")
            else:
                pairs.append((step, path))
        if case_missing:
            missing.extend(case_missing)
        else:
            jobs.append(CaseJob(case, gt_path, tuple(pairs), min_overlap, lesion_ids=mode == "task2"))
    return jobs, missing


def _run_jobs(jobs: list[CaseJob], num_processes: int, progress: bool) -> list[dict]:
    from tqdm import tqdm

    bar = dict(total=len(jobs), desc="cases", unit="case", disable=not progress or len(jobs) < 2,
               file=sys.stderr)
    if num_processes <= 1 or len(jobs) < 2:
        return [evaluate_case(job) for job in tqdm(jobs, **bar)]
    import multiprocessing

    # spawn: safe even when the caller holds threads (torch); imap keeps case order.
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes=min(num_processes, len(jobs))) as pool:
        return list(tqdm(pool.imap(evaluate_case, jobs, chunksize=1), **bar))


def _nan_to_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _stats(values: Sequence[float]) -> tuple[float | None, float | None]:
    """NaN-aware mean and sample standard deviation (None when undefined)."""
    finite = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    mean = float(finite.mean()) if finite.size else None
    std = float(finite.std(ddof=1)) if finite.size >= 2 else None
    return mean, std


def _csv_text(header: list[str], rows: Iterable[Sequence]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        # repr() of a Python float is the shortest string that reads back to the same double.
        writer.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else
                         ("" if v is None else v) for v in row])
    return buffer.getvalue()


def _summarise(results: list[dict], mode: str, steps: list, missing: list[str]) -> tuple[dict, dict]:
    """The summary dict and the CSV texts (file name -> text)."""
    files: dict[str, str] = {}
    if mode == "static":
        columns = STATIC_COLUMNS
        case_rows = [[r["gt_name"], r["steps"][0]["dice"], r["steps"][0]["fpv"], r["steps"][0]["fnv"]]
                     for r in results]
        files["metrics.csv"] = _csv_text(["gt_name"] + columns, case_rows)
    else:
        columns = INTERACTIVE_COLUMNS
        case_rows = [[r["gt_name"], *_interactive_row(r["steps"])] for r in results]
        files["metrics_interactive.csv"] = _csv_text(["gt_name"] + columns, case_rows)
        files["metrics_per_step.csv"] = _csv_text(
            PER_STEP_COLUMNS, ([r["gt_name"], s["step"], s["dice"], s["fpv"], s["fnv"]]
                               for r in results for s in r["steps"]))
    files["detection.csv"] = _csv_text(
        DETECTION_COLUMNS, ([r["gt_name"], s["step"], *(s[k] for k in DETECTION_COLUMNS[2:])]
                            for r in results for s in r["steps"]))

    means, stds = {}, {}
    for index, column in enumerate(columns, start=1):
        means[column], stds[column] = _stats([row[index] for row in case_rows])
    detection = []
    for index, step in enumerate(steps):
        tp = sum(r["steps"][index]["tp"] for r in results)
        fn = sum(r["steps"][index]["fn"] for r in results)
        fp = sum(r["steps"][index]["fp"] for r in results)
        rates = {k: _nan_to_none(v) for k, v in detection_rates(tp, fn, fp).items()}
        detection.append({"step": step, "tp": tp, "fn": fn, "fp": fp, **rates})
    summary = {
        "mode": mode,
        "n_cases": len(results),
        "n_cases_without_lesions": sum(not r["has_lesions"] for r in results),
        "n_missing_predictions": len(missing),
        "missing_predictions": list(missing),
        "connectivity": CONNECTIVITY,
        "steps": steps,
        "means": means,
        "std": stds,
        "detection": {"per_step": detection},
        "plot": None,
    }
    if mode != "static":
        summary["per_step_means"] = {
            key: [_stats([r["steps"][i][key] for r in results])[0] for i in range(len(steps))]
            for key in ("dice", "fpv", "fnv")}
    if mode == "task2" and results and "lesions" in results[0]["steps"][0]:
        files["lesions.csv"] = _csv_text(
            LESION_COLUMNS, ([r["gt_name"], s["step"], lesion["id"], lesion["status"], lesion["dice"],
                              lesion["fpv_ml"], lesion["fnv_ml"], lesion["truth_ml"], lesion["predicted_id"]]
                             for r in results for s in r["steps"] for lesion in s["lesions"]))
        summary["tracking"] = [{"step": step, **{key: sum(r["steps"][i][key] for r in results)
                                                 for key in ("n_kept", "n_swapped", "n_lost", "n_new")}}
                               for i, step in enumerate(steps)]
        for entry in summary["tracking"]:
            matched = entry["n_kept"] + entry["n_swapped"]
            entry["id_accuracy"] = entry["n_kept"] / matched if matched else None
    return summary, files


def _evaluate(gt, pred, mode: str, out_dir=None, n_clicks: int | None = None, num_processes: int = 1,
              plot: bool = False, allow_missing: bool = False, min_overlap: float = 0.0,
              progress: bool = True) -> dict:
    if not 0.0 <= float(min_overlap) <= 1.0:
        raise InputError(f"min_overlap must lie in [0, 1], got {min_overlap}")
    gt, pred = Path(gt), Path(pred)
    steps = _mode_steps(mode, n_clicks)
    jobs, missing = _collect_jobs(gt, pred, mode, steps, float(min_overlap))
    if missing and not allow_missing:
        shown = ", ".join(missing[:20]) + (f", ... ({len(missing)} in all)" if len(missing) > 20 else "")
        raise MissingPredictionError(f"{len(missing)} prediction(s) missing in {pred}: {shown} "
                                     "(use --allow_missing / allow_missing=True to score the rest)")
    results = _run_jobs(jobs, num_processes, progress)
    _emit_warnings(results)
    summary, files = _summarise(results, mode, steps, missing)
    summary["results"] = results  # per-case detail for callers; not written to summary.json
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if plot and mode != "static" and results:
            from .plotting import plot_interactive_curves

            rows = [{"gt_name": r["gt_name"], "step": s["step"], "dice": s["dice"], "fpv": s["fpv"],
                     "fnv": s["fnv"]} for r in results for s in r["steps"]]
            plot_interactive_curves(rows, out_dir / PLOT_NAME,
                                    title=f"{'Task 2' if mode == 'task2' else 'Task 1'}: "
                                          f"{len(results)} case(s), "
                                          f"{summary['n_cases_without_lesions']} without lesions "
                                          "(no Dice, no FNV)")
            summary["plot"] = PLOT_NAME
        elif plot:
            warnings.warn("--plot needs per-step predictions (--n_clicks or --task 2); no plot written")
        for name, text in files.items():
            atomic_write_text(out_dir / name, text)
        atomic_write_json(out_dir / "summary.json", _json_ready(summary))
        # the other mode's tables from an earlier run in this folder would read as this run's
        for name in sorted(set(RESULT_TABLES) - set(files)):
            if (out_dir / name).is_file():
                warnings.warn(f"removed {out_dir / name}: a table of an earlier run in another mode")
                (out_dir / name).unlink()
        if not summary.get("plot") and (out_dir / PLOT_NAME).is_file():
            (out_dir / PLOT_NAME).unlink()
    return summary


def _json_ready(summary: dict) -> dict:
    def clean(obj):
        if isinstance(obj, dict):
            return {k: clean(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [clean(v) for v in obj]
        if isinstance(obj, (float, np.floating)):
            return _nan_to_none(float(obj))
        return obj

    return clean({k: v for k, v in summary.items() if k != "results"})


def evaluate_folder(gt, pred, out_dir=None, n_clicks: int | None = None, num_processes: int = 1,
                    plot: bool = False, allow_missing: bool = False, min_overlap: float = 0.0,
                    progress: bool = True) -> dict:
    """Score a cohort (Task 1) and return the summary (the dict written to ``summary.json``,
    undefined means as None, plus ``"results"``: every case's per-step measures, NaN as NaN).

    ``gt``: a folder of ``<case>.nii.gz`` / ``.mha`` masks or a single file. ``pred``: a folder
    (or, static mode with a single GT file, a file). Without ``n_clicks``: predictions
    ``<case>.nii.gz``; with ``n_clicks`` = N: ``<case>_pred0 ... _pred{N-1}``. With ``out_dir``
    it writes ``metrics.csv`` (static) or ``metrics_interactive.csv`` + ``metrics_per_step.csv``,
    ``detection.csv``, ``summary.json`` and, with ``plot``, ``interactive_curves.png``.
    Missing predictions raise :class:`MissingPredictionError` (nothing written) unless
    ``allow_missing``. Cases run in ``num_processes`` processes; output order is case order.
    """
    mode = "static" if n_clicks is None else "interactive"
    return _evaluate(gt, pred, mode, out_dir, n_clicks, num_processes, plot, allow_missing,
                     min_overlap, progress)


def evaluate_task2(gt, pred, out_dir=None, num_processes: int = 1, plot: bool = False,
                   allow_missing: bool = False, min_overlap: float = 0.0, progress: bool = True) -> dict:
    """Score Task 2: ``gt`` = follow-up masks ``<case>.nii.gz`` (or ``.mha``), ``pred`` = a folder
    with ``<case>_pred1`` (step 1, no follow-up click) and ``<case>_pred2`` (step 2). AUC =
    trapezoid of the 2 points ((v1 + v2) / 2), final = step 2. Outputs as in
    :func:`evaluate_folder` (interactive files), ``"mode": "task2"``."""
    return _evaluate(gt, pred, "task2", out_dir, None, num_processes, plot, allow_missing,
                     min_overlap, progress)
