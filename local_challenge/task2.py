"""Local Task 2 challenge run: both steps for every pair of a cohort, timed, then scored.

For each pair folder ``<cohort>/<pair>/`` holding ``input/`` (Grand Challenge Task 2 layout)
and ``truth/followup-tumor-lesion-seg.mha`` (as written by
``autopet_common.phantoms.write_task2_cohort``), the repository's entrypoint ``inference.py``
runs as a separate process, as on Grand Challenge:

- step 1: the input with an empty ``primary-followup-lesion-clicks.json``;
- step 2: the input as given (one click per follow-up lesion).

Wall time and peak memory (max RSS of the process) are recorded per run, predictions are
collected as ``predictions/<pair>_pred1.mha`` / ``_pred2.mha`` and scored with
``evaluation_metrics.evaluate_task2`` against ``labels/<pair>.mha``.

Usage::

    python -m local_challenge.task2 --cohort COHORT --output OUT [--model DIR] [--make_phantoms N]
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

from autopet_common.cli import ArgumentParser, entrypoint, positive_float, positive_int, seed
from autopet_common.contract import TASK2_PREFIXES, TIME_BUDGET_SECONDS, task2_output_subdir, task2_points_file
from autopet_common.errors import InputError
from autopet_common.image_io import atomic_write_json, atomic_write_text, find_single_image, read_image, write_image
from autopet_common.click_io import task2_points_to_json
from Task2.cohort import TRUTH_NAME, find_pairs
from Task2.lesion_ids import label_dtype

REPO_ROOT = Path(__file__).resolve().parent.parent
EMPTY_POINTS = task2_points_to_json({})  # step 1: the follow-up's points file with no point


def run_entrypoint(entrypoint: Path, input_dir: Path, output_dir: Path, model: str | None,
                   log_path: Path, timeout: float | None) -> dict[str, Any]:
    """Run ``entrypoint`` on one input as a child process; wall time, peak RSS (MB), exit code."""
    cmd = [sys.executable, str(entrypoint), "--input", str(input_dir), "--output", str(output_dir)]
    if entrypoint.name == "inference.py" and entrypoint.parent == REPO_ROOT:
        cmd += ["--task", "2"]
    if model:
        cmd += ["--model", str(model)]
    # The shared runner measures the child's own peak memory (a child forked straight from
    # this process would report at least this process's RSS).
    from .process import run_process

    seconds, peak_mb, exit_code, timed_out = run_process(cmd, log_path, timeout)
    return {"seconds": seconds, "peak_rss_mb": peak_mb, "exit_code": exit_code, "timed_out": timed_out,
            "command": " ".join(cmd)}


def _step_input(pair: Path, work: Path, step: int) -> Path:
    """The input folder for ``step``: step 2 is the pair's input; step 1 a copy without clicks."""
    source = pair / "input"
    if step == 2:
        return source
    target = work / pair.name / "step1_input"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    for name in (task2_points_file(p, "followup") for p in TASK2_PREFIXES):
        if (target / name).exists():
            atomic_write_json(target / name, EMPTY_POINTS)
    return target


def run_task2_cohort(cohort_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                     model_dir: str | os.PathLike | None = None, model: str | None = None,
                     time_budget: float = TIME_BUDGET_SECONDS, entrypoint: str | os.PathLike | None = None,
                     max_pairs: int | None = None, progress: bool = True,
                     keep_work: bool = False) -> dict[str, Any]:
    """Run steps 1 and 2 on every pair of ``cohort_dir`` through the entrypoint, then score.

    ``model_dir`` / ``model``: passed as ``--model`` (a trained nnU-Net folder or
    ``model-free``); default the entrypoint's own default. ``entrypoint`` defaults to the
    repository's ``inference.py`` (which dispatches Task 2 inputs to :mod:`Task2.inference`).
    Writes under ``out_dir``: ``predictions/``, ``labels/``, ``logs/``, ``runs.csv``,
    ``metrics/`` (evaluation_metrics files) and ``summary.json``; returns the summary."""
    from tqdm import tqdm

    from evaluation_metrics import evaluate_task2

    out = Path(out_dir)
    pairs = find_pairs(cohort_dir)[: max_pairs or None]
    entry = Path(entrypoint) if entrypoint else REPO_ROOT / "inference.py"
    if not entry.is_file():
        entry = REPO_ROOT / "Task2" / "inference.py"
    chosen_model = str(model_dir) if model_dir is not None else model
    if chosen_model not in (None, "model-free") and not Path(chosen_model).is_dir():
        raise InputError(f"model folder not found: {chosen_model} (a trained Task 2 nnU-Net folder or 'model-free')")
    work = out / "work"
    runs = []
    for pair in tqdm(pairs, desc="task2 pairs", unit="pair", disable=not progress):
        truth, geometry = read_image(pair / TRUTH_NAME, what=f"truth of {pair.name}")
        # lesion ids kept: the binary measures take > 0, the per-lesion tracking the ids
        write_image(truth.astype(label_dtype(truth)), geometry, out / "labels" / f"{pair.name}.mha")
        for step in (1, 2):
            input_dir = _step_input(pair, work, step)
            output_dir = work / pair.name / f"step{step}_output"
            if output_dir.exists():
                shutil.rmtree(output_dir)
            run = run_entrypoint(entry, input_dir, output_dir, chosen_model,
                                 out / "logs" / f"{pair.name}_step{step}.log", timeout=time_budget)
            run.update(pair=pair.name, step=step, within_budget=run["seconds"] <= time_budget)
            if run["exit_code"] == 0:
                produced = find_single_image(output_dir / task2_output_subdir("primary"),
                                             f"step {step} output of {pair.name}")
                (out / "predictions").mkdir(parents=True, exist_ok=True)
                shutil.copyfile(produced, out / "predictions" / f"{pair.name}_pred{step}.mha")
            runs.append(run)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    buffer = io.StringIO()
    columns = ["pair", "step", "seconds", "peak_rss_mb", "exit_code", "timed_out", "within_budget"]
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(runs)
    atomic_write_text(out / "runs.csv", buffer.getvalue())
    failed = [f"{r['pair']} step {r['step']}" for r in runs if r["exit_code"] != 0]
    metrics = evaluate_task2(out / "labels", out / "predictions", out_dir=out / "metrics",
                             allow_missing=bool(failed), progress=progress) if len(failed) < len(runs) else None
    summary = {
        "cohort": str(cohort_dir), "n_pairs": len(pairs), "entrypoint": str(entry), "model": chosen_model,
        "failed_runs": failed,
        "max_seconds": max(r["seconds"] for r in runs), "max_peak_rss_mb": max((r["peak_rss_mb"] for r in runs if r["peak_rss_mb"] is not None), default=None),
        "runs": runs,
        "metrics": None if metrics is None else {k: v for k, v in metrics.items() if k != "results"},
    }
    atomic_write_json(out / "summary.json", summary)
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m local_challenge.task2",
        description="Local Task 2 challenge run: for every longitudinal pair, run the entrypoint as a "
                    "separate process for step 1 (no follow-up clicks) and step 2 (one click per follow-up "
                    "lesion), record time and peak memory, and score both steps with evaluation_metrics.")
    parser.add_argument("--cohort", type=Path, help="cohort folder of pairs (<pair>/input, <pair>/truth)")
    parser.add_argument("--output", type=Path, required=True, help="results folder")
    parser.add_argument("--model", default=None, help="passed to the entrypoint's --model (default model-free)")
    parser.add_argument("--make_phantoms", type=positive_int, default=None, metavar="N",
                        help="first write N phantom pairs to OUTPUT/cohort and run on them")
    parser.add_argument("--phantom_size", default="small", choices=["tiny", "small", "medium", "full", "ct_real"],
                        help="phantom size for --make_phantoms (default small)")
    parser.add_argument("--seed", type=seed, default=0, help="phantom seed (default 0)")
    parser.add_argument("--time_budget", type=positive_float, default=TIME_BUDGET_SECONDS, help="seconds per run (default 300)")
    parser.add_argument("--entrypoint", type=Path, default=None, help="entrypoint script (default: inference.py)")
    parser.add_argument("--keep_work", action="store_true", help="keep the per-step input/output folders")
    parser.add_argument("--platform_layout", type=Path, default=None, metavar="DIR",
                        help="also write the run as Grand Challenge hands it to an evaluation method "
                             "(score it with python -m evaluation_metrics.gc_method)")
    return parser


@entrypoint("python -m local_challenge.task2")
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cohort = args.cohort
    if args.make_phantoms:
        from autopet_common.phantoms import write_task2_cohort

        cohort = write_task2_cohort(args.output / "cohort", args.make_phantoms, size=args.phantom_size,
                                    seed=args.seed, progress=True)
    if cohort is None:
        raise InputError("give --cohort DIR (or --make_phantoms N)")
    summary = run_task2_cohort(cohort, args.output, model=args.model, time_budget=args.time_budget,
                               entrypoint=args.entrypoint, keep_work=args.keep_work)
    if args.platform_layout is not None:
        from .platform_layout import export_task2

        export_task2(args.output, cohort, args.platform_layout)
        print(f"platform layout: {args.platform_layout}")
    means = (summary["metrics"] or {}).get("per_step_means", {})
    print(f"pairs: {summary['n_pairs']}; failed runs: {len(summary['failed_runs'])}; "
          f"max time {summary['max_seconds']:.1f} s; max peak RSS "
          + ("n/a" if summary["max_peak_rss_mb"] is None else f"{summary['max_peak_rss_mb']:.0f} MB"))
    for key in ("dice", "fpv", "fnv"):
        if key in means:
            print(f"{key}: step 1 {_fmt(means[key][0])}, step 2 {_fmt(means[key][1])}")
    print(f"results in {args.output}")
    return 0 if not summary["failed_runs"] else 1


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
