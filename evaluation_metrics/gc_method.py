"""The challenge's scoring as a Grand Challenge evaluation method: predictions.json in, metrics.json out.

    python -m evaluation_metrics.gc_method [--input /input] [--output /output]
        [--ground_truth /opt/ml/input/data/ground_truth]

The platform's runtime (grand-challenge-forge's ``example-evaluation-method``):

- ``/input/predictions.json`` lists the submission's algorithm jobs, in no order. Each job has a
  ``pk`` (a uuid), a ``status``, an ``exec_duration`` (ISO 8601, e.g. ``PT22M17S``) and ``inputs``
  / ``outputs``: socket values with the descriptor under ``socket`` (today's files) or
  ``interface`` (older ones), an image ``name``, a ``file`` reference or an inline JSON ``value``
  (one reader for both shapes: :mod:`autopet_common.socket_values`).
- A job's outputs are under ``/input/<pk>/output/<relative path>``, the path its output
  descriptor gives (else the contract's); an image socket is a folder with one ``.mha`` / ``.tif``.
- The phase's ground truth is the uploaded tarball, at ``/opt/ml/input/data/ground_truth/``
  (layout: :mod:`evaluation_metrics.ground_truth`).
- The result is ``/output/metrics.json``: ``results`` (one entry per case) and ``aggregates``.

Per job the interface is the sorted tuple of its input socket slugs, looked up in the socket
tables of :mod:`autopet_common.contract` (Task 1 or Task 2); the case comes from the input image
names (the ground truth lists them). The step: where the ground truth records each step's input
image names (``steps``), from those; else from the inline click input: Task 1 the number of
points of the longer kind (a case without lesions has background clicks only), Task 2 step 2
when the follow-up clicks are not empty, else step 1. A job that neither places (its clicks are
not inline and the ground truth records no per-step names) is listed under ``unmatched_jobs``
with its case and the reason, and its step is scored as the rules below say.

Scoring uses the project's own metric functions (:mod:`evaluation_metrics.metrics`, 18-connected
components, voxel volume from the ground truth's header), so per-case values equal
``evaluation_metrics`` on the same files. The rule for what goes wrong, per case and step: a
step whose job failed, has no output, an unreadable output, an output on another grid, or no
job at all is scored as an empty mask (Dice 0 where the case has lesions, its whole lesion volume
as FNV, FPV 0) and listed in the case's ``problems`` and in ``aggregates.n_problem_steps``; two
jobs for one case and step: the first by pk is scored, the other listed. Jobs whose status is not
``Succeeded`` are also listed under ``failed_jobs`` (pk, status, case, step). Jobs that match no
case or interface, or whose socket values are malformed, are listed under ``unmatched_jobs``.
Each step row carries the job's ``exec_seconds``; ``aggregates.max_exec_seconds`` is the
longest. Nothing of this stops the evaluation; only an
unreadable ``predictions.json`` or ground truth does (exit 2).

Aggregates: Task 1, the leaderboard's six measures (``dsc_last``, ``fpv_last``, ``fnv_last``,
``auc_dsc``, ``auc_fpv``, ``auc_fnv``) as NaN-aware means over cases; per tracer x centre subset
when the ground truth gives them, and then ``overall`` is the mean of the subsets (as the
challenge's), else the mean over cases. Task 2: ``dice``, ``fpv``, ``fnv`` of the click step
(step 2) and ``*_step1`` of the no-click step.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from autopet_common.cli import ArgumentParser, entrypoint
from autopet_common.contract import INPUT_DIR, OUTPUT_DIR, TASK1_N_STEPS, TASK1_SOCKETS, TASK2_SOCKETS, task_of_interface
from autopet_common.errors import InputError
from autopet_common.image_io import atomic_write_json, read_json
from autopet_common.socket_values import SocketValue, parse_socket_values, relative_path_of, slugs_of, value_for

from .ground_truth import GroundTruth, load_ground_truth
from .metrics import interactive_auc, measure_case

GROUND_TRUTH_DIR = Path("/opt/ml/input/data/ground_truth")
TASK1_MEASURES = ("dsc_last", "fpv_last", "fnv_last", "auc_dsc", "auc_fpv", "auc_fnv")
TASK2_MEASURES = ("dice", "fpv", "fnv", "dice_step1", "fpv_step1", "fnv_step1")
SUCCEEDED = ("Succeeded", "succeeded", "SUCCESS", None)
_ISO_DURATION = re.compile(r"P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?")


# ----------------------------------------------------------------------------- reading jobs
def _image_names(inputs: Sequence[SocketValue], table: dict, roles: Sequence[str]) -> list[str]:
    return [v.image_name for v in inputs
            if v.slug in table and table[v.slug]["role"] in roles and v.image_name]


def _inline_json(inputs: Sequence[SocketValue], slug: str, pk: str) -> Any:
    """The inline JSON of input ``slug``; :class:`InputError` when the job does not inline it."""
    value = value_for(inputs, slug)
    if value is None:
        raise InputError(f"job {pk} has no {slug} input")
    if not value.has_value:
        raise InputError(f"the {slug} input of job {pk} is not inline (file {value.file!r})")
    return value.value


def step_from_clicks(inputs: Sequence[SocketValue], task: int, pk: str = "?") -> int:
    """Task 1: the number of clicks of the longer kind; Task 2: 2 with follow-up clicks, else 1.
    :class:`InputError` when the click input is missing, not inline, or malformed."""
    if task == 1:
        from autopet_common.click_io import gc_format_to_clicks

        clicks = gc_format_to_clicks(_inline_json(inputs, "lesion-clicks", pk), source=f"lesion-clicks of job {pk}")
        # step s gives the first s clicks of each kind; a list shorter than s (no tumor in the
        # case) is given whole, so the longer list tells the step
        return max(len(clicks["tumor"]), len(clicks["background"]))
    points = _inline_json(inputs, "primary-followup-lesion-clicks", pk)
    has_points = isinstance(points, dict) and bool(points.get("points"))
    return 2 if has_points else 1


def _output_image(input_dir: Path, pk: str, outputs: Sequence[SocketValue], table: dict, role: str) -> Path:
    slug = next(s for s, spec in table.items() if spec["role"] == role)
    folder = input_dir / pk / "output" / relative_path_of(value_for(outputs, slug), slug, table)
    if folder.is_file():
        return folder
    images = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".mha", ".tif", ".tiff")
                    or p.name.lower().endswith(".nii.gz")) if folder.is_dir() else []
    if len(images) != 1:
        raise InputError(f"expected one image in {folder}, found {len(images)}")
    return images[0]


def iso_duration_seconds(text: Any) -> float | None:
    """Seconds of an ISO 8601 duration as the platform writes ``exec_duration`` ("PT22M17S",
    "P1DT2H", "PT0.5S"); None for anything else."""
    match = _ISO_DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or not any(match.groups()):
        return None
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


# ----------------------------------------------------------------------------- scoring
def _score_case(gt_case, predictions: dict[int, Path], steps: Sequence[int]) -> dict:
    """Per step Dice / FPV / FNV; steps without a usable prediction are scored as empty masks."""
    from autopet_common.image_io import check_same_grid

    from .evaluate import header_voxel_volume_ml, read_mask

    gt, gt_geometry, _ = read_mask(gt_case.label, "ground truth")
    voxel_ml = header_voxel_volume_ml(gt_case.label, gt_geometry)
    rows, problems = [], []
    for step in steps:
        pred = None
        path = predictions.get(step)
        if path is not None:
            try:
                pred, geometry, _ = read_mask(path, f"prediction of step {step}")
                check_same_grid(gt_geometry, geometry, "ground truth", f"prediction of step {step} {path.name}")
            except (InputError, OSError) as exc:
                problems.append(f"step {step}: {exc}; scored as an empty mask")
                pred = None
        scored_empty = pred is None
        if scored_empty:
            pred = np.zeros(gt.shape, bool)
        dice, fpv, fnv = measure_case(gt, pred).metrics(voxel_ml)
        rows.append({"step": step, "dice": dice, "fpv": fpv, "fnv": fnv, "scored_empty": scored_empty})
    return {"steps": rows, "problems": problems, "has_lesions": bool(gt.any())}


def _nanmean(values) -> float | None:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(values)) if values else None


def _case_measures(task: int, rows: list[dict]) -> dict[str, float]:
    series = {key: [r[key] for r in rows] for key in ("dice", "fpv", "fnv")}
    if task == 1:
        return {"dsc_last": series["dice"][-1], "fpv_last": series["fpv"][-1], "fnv_last": series["fnv"][-1],
                "auc_dsc": interactive_auc(series["dice"]), "auc_fpv": interactive_auc(series["fpv"]),
                "auc_fnv": interactive_auc(series["fnv"])}
    return {"dice": series["dice"][1], "fpv": series["fpv"][1], "fnv": series["fnv"][1],
            "dice_step1": series["dice"][0], "fpv_step1": series["fpv"][0], "fnv_step1": series["fnv"][0]}


def _aggregate(task: int, results: list[dict], ground_truth: GroundTruth) -> dict:
    measures = TASK1_MEASURES if task == 1 else TASK2_MEASURES
    all_cases = {m: _nanmean(r[m] for r in results) for m in measures}
    aggregates: dict[str, Any] = {"all_cases": all_cases}
    subsets = sorted({ground_truth.cases[r["case"]].subset for r in results} - {None})
    if subsets and all(ground_truth.cases[r["case"]].subset for r in results):
        per_subset = {s: {m: _nanmean(r[m] for r in results if ground_truth.cases[r["case"]].subset == s)
                          for m in measures} for s in subsets}
        aggregates["subsets"] = per_subset
        aggregates["overall"] = {m: _nanmean(per_subset[s][m] for s in subsets) for m in measures}
        aggregates["overall_rule"] = "mean of the tracer x centre subsets"
    else:
        aggregates["overall"] = dict(all_cases)
        aggregates["overall_rule"] = "mean over cases (no tracer x centre metadata)"
    aggregates.update({m: aggregates["overall"][m] for m in measures})  # flat keys for the leaderboard
    return aggregates


def evaluate_submission(input_dir: str | os.PathLike = INPUT_DIR, output_dir: str | os.PathLike | None = OUTPUT_DIR,
                        ground_truth_dir: str | os.PathLike = GROUND_TRUTH_DIR) -> dict:
    """Score one submission laid out as on the platform; writes ``metrics.json`` to
    ``output_dir`` (unless None) and returns it. See the module docstring for the rules."""
    input_dir = Path(input_dir)
    ground_truth = load_ground_truth(ground_truth_dir)
    jobs = read_json(input_dir / "predictions.json", "predictions.json")
    if not isinstance(jobs, list):
        raise InputError(f"{input_dir / 'predictions.json'}: expected a list of algorithm jobs")
    task = ground_truth.task
    table = TASK1_SOCKETS if task == 1 else TASK2_SOCKETS
    steps = list(range(TASK1_N_STEPS)) if task == 1 else [1, 2]
    found: dict[str, dict[int, Path]] = {case: {} for case in ground_truth.cases}
    problems: dict[str, list[str]] = {case: [] for case in ground_truth.cases}
    unmatched: list[dict] = []
    exec_seconds: dict[str, dict[int, float | None]] = {case: {} for case in ground_truth.cases}
    failed: list[dict] = []
    source = input_dir / "predictions.json"
    roles = ("ct", "pet") if task == 1 else ("primary followup ct",)
    for index, job in enumerate(jobs):
        if not isinstance(job, dict):
            unmatched.append({"pk": None, "reason": f"{source}: entry {index} is not a job object"})
    for job in sorted((j for j in jobs if isinstance(j, dict)), key=lambda j: str(j.get("pk"))):
        pk = str(job.get("pk"))
        try:
            inputs = parse_socket_values(job.get("inputs"), f"{source}: job {pk} inputs")
            outputs = parse_socket_values(job.get("outputs"), f"{source}: job {pk} outputs") if job.get("outputs") else []
        except InputError as exc:
            unmatched.append({"pk": pk, "reason": str(exc)})
            continue
        slugs = slugs_of(inputs)
        if task_of_interface(slugs) != task:
            unmatched.append({"pk": pk, "reason": f"interface {list(slugs)} is not a Task {task} interface"})
            continue
        names = _image_names(inputs, table, roles)
        placed = ground_truth.step_of(names)
        case = placed[0] if placed else ground_truth.case_of(names)
        if case is None:
            unmatched.append({"pk": pk, "reason": f"input images {names} match no case"})
            continue
        if placed:
            step = placed[1]  # the ground truth records this job's images for one step
        else:
            try:
                step = step_from_clicks(inputs, task, pk)
            except InputError as exc:
                reason = (f"case {case}: could not place job {pk} at a step: {exc}, and the ground truth records "
                          f"no per-step input image names for {names}")
                unmatched.append({"pk": pk, "case": case, "reason": reason})
                problems[case].append(reason)
                continue
        if step not in steps:
            problems[case].append(f"job {pk}: step {step} is not one of {steps}")
            continue
        if step in found[case] or any(p.startswith(f"step {step}: job ") for p in problems[case]):
            problems[case].append(f"job {pk}: a second job for step {step}; the first by pk is scored")
            continue
        exec_seconds[case][step] = iso_duration_seconds(job.get("exec_duration"))
        if job.get("status") not in SUCCEEDED:
            failed.append({"pk": pk, "status": job.get("status"), "case": case, "step": step})
            problems[case].append(f"step {step}: job {pk} {job.get('status')}; scored as an empty mask")
            continue
        try:
            found[case][step] = _output_image(input_dir, pk, outputs, table,
                                              "prediction" if task == 1 else "primary prediction")
        except (InputError, OSError, KeyError) as exc:
            problems[case].append(f"step {step}: job {pk}: {exc}; scored as an empty mask")
    results = []
    for case in sorted(ground_truth.cases):
        gt_case = ground_truth.cases[case]
        for step in steps:
            if step not in found[case] and not any(p.startswith(f"step {step}:") for p in problems[case]):
                problems[case].append(f"step {step}: no job; scored as an empty mask")
        scored = _score_case(gt_case, found[case], steps)
        for row in scored["steps"]:
            row["exec_seconds"] = exec_seconds[case].get(row["step"])
        entry = {"case": case, "tracer": gt_case.tracer, "centre": gt_case.centre,
                 "has_lesions": scored["has_lesions"], "steps": scored["steps"],
                 **_case_measures(task, scored["steps"]), "problems": problems[case] + scored["problems"]}
        results.append(entry)
    aggregates = _aggregate(task, results, ground_truth)
    aggregates["n_cases"] = len(results)
    aggregates["n_jobs"] = len(jobs)
    aggregates["n_problem_steps"] = sum(sum(1 for s in r["steps"] if s["scored_empty"]) for r in results)
    aggregates["n_failed_jobs"] = len(failed)
    durations = [row["exec_seconds"] for r in results for row in r["steps"] if row["exec_seconds"] is not None]
    aggregates["max_exec_seconds"] = max(durations) if durations else None
    metrics = {"task": task, "results": results, "aggregates": aggregates, "failed_jobs": failed,
               "unmatched_jobs": unmatched}
    if output_dir is not None:
        atomic_write_json(Path(output_dir) / "metrics.json", _json_ready(metrics))
    return metrics


def _json_ready(obj):
    """NaN -> null (JSON has no NaN; the platform's leaderboard reads null as missing)."""
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


@entrypoint("python -m evaluation_metrics.gc_method")
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m evaluation_metrics.gc_method",
                            description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n", 2)[2])
    parser.add_argument("--input", type=Path, default=INPUT_DIR, help="folder with predictions.json and <pk>/output/")
    parser.add_argument("--output", type=Path, default=OUTPUT_DIR, help="metrics.json goes here")
    parser.add_argument("--ground_truth", type=Path, default=GROUND_TRUTH_DIR,
                        help=f"extracted ground-truth tarball (default {GROUND_TRUTH_DIR})")
    args = parser.parse_args(argv)
    metrics = evaluate_submission(args.input, args.output, args.ground_truth)
    aggregates = metrics["aggregates"]
    measures = TASK1_MEASURES if metrics["task"] == 1 else TASK2_MEASURES
    print(f"Task {metrics['task']}: {aggregates['n_cases']} case(s), {aggregates['n_jobs']} job(s), "
          f"{aggregates['n_problem_steps']} step(s) scored as empty, {len(metrics['unmatched_jobs'])} unmatched job(s)")
    for measure in measures:
        value = aggregates[measure]
        print(f"  {measure}: {'n/a' if value is None or (isinstance(value, float) and math.isnan(value)) else f'{value:.4f}'}")
    print(f"wrote {args.output / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
