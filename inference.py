#!/usr/bin/env python
"""Grand Challenge entrypoint for autoPET/CT IV (Task 1 PET/CT; Task 2 dispatched to Task2).

Container contract (Task 1), one run per case and click step:

    /input/images/ct/<uuid>.mha          CT in HU
    /input/images/pet/<uuid>.mha         PET in SUV (another uuid; normally the same grid)
    /input/lesion-clicks.json            "Multiple points" clicks; absent or empty = step 0
 -> /output/images/tumor-lesion-segmentation/<CT uuid>.mha
                                         exactly one binary uint8 mask on the PET grid
                                         (= the input grid; written atomically)

The task comes from ``/input/inputs.json`` when the platform writes one, else from the folder
layout. If CT and PET grids differ, CT is resampled (linear, -1024 HU outside) onto the PET grid
and the log says so; clicks are voxel indices [i, j, k] on that grid. Clicks outside the image
are skipped with a warning.

This script only routes: read the inputs, open the Task 1 method (:mod:`Task1.session`: the
model-free baseline, one nnU-Net or MONAI network, or a submission recipe), prepare the case,
predict within the time budget, write the mask. Which Task 1 model runs (first match):
``--model DIR`` or ``--model model-free``; the team's model at ``/opt/ml/model``; a model baked
into the image at ``$AUTOPET_MODEL_DIR``; then, only outside a submission, the phantom demo model
``models/task1_phantom_organs`` and, without it, the model-free baseline (either fallback is
announced on stderr). With ``AUTOPET_REQUIRE_MODEL=1`` (set in the Dockerfile) there is no
fallback. ``--explain`` prints a recipe's plan for an input without running it.

``--report FILE`` (or ``$AUTOPET_REPORT``) writes what ran as JSON (:class:`Task1.session.
PredictionReport`: models, folds, device, what the budget dropped, the recipe's route,
post-processing, timings); the local challenge's run log and the paper read that file, never the
log lines. Nothing is written into ``/output`` but the mask unless asked.

Bad input (missing or corrupt image, two images in one folder, malformed click JSON, unknown
point names, NaN voxels) prints ``error: <message>`` to stderr, exits with status 2 and writes
no output file.
"""
from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from autopet_common.cli import ArgumentParser, configure_logging, entrypoint, non_negative_float, positive_float
# The contract's paths have one home, autopet_common/contract.py (a constant module: no work).
from autopet_common.contract import INPUT_DIR as DEFAULT_INPUT
from autopet_common.contract import MODEL_FREE
from autopet_common.contract import OUTPUT_DIR as DEFAULT_OUTPUT
from autopet_common.contract import TASK1_OUTPUT_SUBDIR, TIME_BUDGET_SECONDS
from autopet_common.socket_values import detect_task  # the task of a job: inputs.json, else the folder layout

REPORT_ENV = "AUTOPET_REPORT"  # where to write the run report, when --report is not given
# Seconds kept back from the budget for writing the mask, process exit and container teardown.
DEFAULT_MARGIN_SECONDS = 30.0

log = logging.getLogger("inference")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports ru_maxrss in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def peak_gpu_mb() -> float | None:
    """Peak GPU memory allocated by torch in this process, in MB; None when torch or CUDA is
    not in use (torch is never imported just to ask)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return None
        return torch.cuda.max_memory_allocated() / 2 ** 20
    except Exception:  # a broken CUDA setup must not break the log line
        return None


class Phase:
    """Context manager that logs a phase's wall time and the peak memory after it."""

    def __init__(self, name: str, timings: dict[str, float]):
        self.name, self.timings = name, timings

    def __enter__(self) -> "Phase":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        seconds = time.perf_counter() - self.start
        self.timings[self.name] = round(seconds, 3)
        gpu = peak_gpu_mb()
        gpu_text = f", peak GPU {gpu:.0f} MB" if gpu is not None else ""
        log.info("phase %-10s %7.2f s  (peak RSS %.0f MB%s)%s", self.name, seconds, peak_rss_mb(),
                 gpu_text, "  [failed]" if exc[0] else "")


# ----------------------------------------------------------------------------- task & model

def resolve_model(model: str | os.PathLike | None, task: int = 1) -> Path | None:
    """The model folder to run (None: model-free): each task's one rule,
    :func:`Task1.session.resolve_task1_model` and :func:`Task2.inference.resolve_task2_model`."""
    if task == 1:
        from Task1.session import resolve_task1_model

        return resolve_task1_model(model)
    from Task2.inference import resolve_task2_model

    return resolve_task2_model(model)


# ----------------------------------------------------------------------------- Task 1

def run_task1(input_dir: Path, output_dir: Path, model_dir: Path | None, *, time_budget: float, margin: float,
              started: float, timings: dict[str, float], method_options: dict[str, Any] | None = None):
    """Read, open the method, prepare, predict within what is left of the budget, write the mask.
    Returns (the written mask, the :class:`Task1.session.PredictionReport`)."""
    import numpy as np
    from autopet_common.image_io import strip_image_suffix, write_mask
    from autopet_common.output_folder import check_inside, remove_stale_files
    from Task1.inputs import read_task1_inputs
    from Task1.session import open_method

    with Phase("read", timings):
        ct_path, ct, pet, geometry, clicks = read_task1_inputs(input_dir)
    with Phase("load", timings):
        method = open_method(model_dir, **(method_options or {}))
        log.info("method: %s", method.name)
    with Phase("prepare", timings):
        case = method.prepare(ct, pet, geometry)
    # what is left of the budget after reading, loading and preparing, less the margin for writing
    remaining = max(time_budget - margin - (time.perf_counter() - started), 1.0)
    log.info("%.0f s of the %.0f s budget left for prediction", remaining, time_budget)
    with Phase("predict", timings):
        mask, report = method.predict(case, clicks, budget=remaining)
    if report.plan is not None:
        log.info("recipe route %s for tracer %s at step %s", report.plan.get("route"),
                 (report.plan.get("tracer") or {}).get("used"), report.plan.get("step"))
    log.info("device: %s; ran %s", report.device,
             ", ".join(str(m.get("model_dir", m.get("folder"))) for m in report.models_run) or MODEL_FREE)
    if report.dropped:
        log.warning("dropped to fit the time budget: %s", ", ".join(report.dropped))
    log.info("post-processing: %s", "; ".join(f"{p['op']} {p['voxels_before']} -> {p['voxels_after']} voxels"
                                              for p in report.postprocessing) or "none")
    mask = np.asarray(mask) > 0
    if mask.shape != tuple(geometry.shape):
        raise RuntimeError(f"prediction shape {mask.shape} does not match the input grid {geometry.shape}")
    log.info("mask: %d voxel(s), %.2f ml", int(mask.sum()), float(mask.sum()) * geometry.voxel_volume_ml)
    out_path = output_dir / TASK1_OUTPUT_SUBDIR / f"{strip_image_suffix(ct_path)}.mha"
    with Phase("write", timings):
        check_inside(output_dir, out_path.relative_to(output_dir))  # a link planted during the run, too
        write_mask(mask, geometry, out_path)
        # the mask folder is the entrypoint's: an older mask under another name would make two
        remove_stale_files(out_path.parent, keep=[out_path])
    log.info("wrote %s", out_path)
    return out_path, report


# ----------------------------------------------------------------------------- entry points

def run_inference(input_dir: str | os.PathLike = DEFAULT_INPUT, output_dir: str | os.PathLike = DEFAULT_OUTPUT,
                  model: str | os.PathLike | None = None, task: str | int = "auto",
                  time_budget: float = TIME_BUDGET_SECONDS, margin: float = DEFAULT_MARGIN_SECONDS, *,
                  method_options: dict[str, Any] | None = None, binary: bool = False,
                  report_path: str | os.PathLike | None = None) -> list[Path]:
    """Run one challenge step: read ``input_dir``, write the mask(s) under ``output_dir``.

    ``model``: a folder, ``"model-free"``, or None for the default chain (:func:`resolve_model`).
    ``task``: "auto", 1 or 2. ``time_budget``: seconds for the whole run; prediction gets what is
    left after reading, loading and preparing, minus ``margin``. ``method_options``: Task 1's
    :func:`Task1.session.open_method` keywords (device, post-processing flags, predictor
    options; :func:`Task1.session.method_options` makes them from the flags). ``binary``: Task 2
    writes 0/1 instead of lesion ids. ``report_path``: write the run report there (JSON). Returns
    the written file(s). Raises :class:`autopet_common.errors.InputError` on bad input, before
    writing anything; masks an earlier run left in the output's mask folders are removed first,
    so a failed run leaves none."""
    from autopet_common.contract import OUTPUT_FOLDERS
    from autopet_common.output_folder import clear_owned_folders

    started = time.perf_counter()
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    timings: dict[str, float] = {}
    # before anything can fail: no mask of an earlier run stays to read as this run's, and no
    # output folder that is a link out of the output is written through
    clear_owned_folders(output_dir, OUTPUT_FOLDERS)
    task_number = detect_task(input_dir) if str(task) == "auto" else int(task)
    if task_number not in (1, 2):
        raise ValueError(f"task must be 'auto', 1 or 2, got {task!r}")
    model_dir = resolve_model(model, task_number)
    log.info("task %d; input %s; output %s; model %s; budget %.0f s (margin %.0f s)", task_number, input_dir,
             output_dir, model_dir or MODEL_FREE, time_budget, margin)
    report = None
    if task_number == 2:
        from Task2.inference import run_task2

        device = (method_options or {}).get("device", "auto")
        with Phase("task2", timings):
            written = [Path(p) for p in run_task2(
                input_dir, output_dir, model_dir=model_dir, device=device, binary=binary,
                time_budget=max(time_budget - margin - (time.perf_counter() - started), 1.0))]
    else:
        path, report = run_task1(input_dir, output_dir, model_dir, time_budget=time_budget, margin=margin,
                                 started=started, timings=timings, method_options=method_options)
        written = [path]
    total = time.perf_counter() - started
    log.info("total %.2f s (budget %.0f s)%s; peak RSS %.0f MB", total, time_budget,
             "  OVER BUDGET" if total > time_budget else "", peak_rss_mb())
    report_path = report_path or os.environ.get(REPORT_ENV) or None
    if report_path:
        from autopet_common.image_io import atomic_write_json
        from Task1.session import write_report

        extra = {"task": task_number, "timings": timings, "total_seconds": round(total, 3),
                 "peak_rss_mb": round(peak_rss_mb(), 1), "outputs": [str(p) for p in written]}
        if report is not None:
            write_report(report, report_path, **extra)
        else:  # Task 2: what ran, in the same fields
            atomic_write_json(report_path, {**extra, "method": "network" if model_dir else MODEL_FREE,
                                            "model": str(model_dir) if model_dir else None})
    return written


def build_parser() -> argparse.ArgumentParser:
    from Task1.session import add_method_arguments

    parser = ArgumentParser(
        prog="inference.py",
        description=__doc__.split("\n\n")[0] + "\n\n" + "\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="input folder (default /input)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="output folder (default /output)")
    parser.add_argument("--model", default=None,
                        help="trained nnU-Net, MONAI or recipe folder, or 'model-free' to force the classical "
                             "baseline (default: /opt/ml/model, $AUTOPET_MODEL_DIR, then outside a submission "
                             "the shipped phantom model models/task1_phantom_organs, then model-free)")
    parser.add_argument("--task", default="auto", choices=["auto", "1", "2"],
                        help="challenge task; auto detects it from inputs.json or the input layout (default auto)")
    parser.add_argument("--time_budget", type=positive_float, default=TIME_BUDGET_SECONDS,
                        help="seconds for the whole run; the challenge allows 300 (default 300)")
    parser.add_argument("--margin", type=non_negative_float, default=DEFAULT_MARGIN_SECONDS,
                        help=f"seconds kept back from the budget for writing and exit (default {DEFAULT_MARGIN_SECONDS:g})")
    add_method_arguments(parser)
    parser.add_argument("--binary", action="store_true",
                        help="Task 2: write 0/1 masks instead of lesion ids (default: voxel value = lesion id, "
                             "as the challenge's Task 2 baseline writes)")
    parser.add_argument("--report", type=Path, default=None, metavar="FILE",
                        help=f"write what ran as JSON to FILE (default: ${REPORT_ENV} if set; never into /output "
                             "unless asked)")
    parser.add_argument("--explain", action="store_true",
                        help="Task 1 with a recipe model folder (autopet_recipe.json): print what the recipe runs for "
                             "this input (tracer call, route, models, post-processing) and exit without writing")
    parser.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    return parser


def explain_task1(input_dir: Path, model: str | None) -> str:
    """The recipe plan for a Task 1 input (``--explain``); the same plan a run records."""
    from autopet_common.errors import InputError
    from Task1.inputs import read_task1_clicks, read_task1_pet
    from Task1.recipe import explain, find_recipe

    model_dir = resolve_model(model, 1)
    recipe = find_recipe(model_dir)
    if recipe is None:
        raise InputError(f"--explain needs a recipe model folder ({MODEL_FREE if model_dir is None else model_dir} "
                         "has no autopet_recipe.json)")
    _, pet, geometry = read_task1_pet(input_dir)  # the plan needs the PET and the clicks, not the CT
    return explain(recipe, pet, geometry.spacing, read_task1_clicks(input_dir, geometry.shape))


@entrypoint("inference.py")
def main(argv: Sequence[str] | None = None) -> int:
    from Task1.session import method_options

    args = build_parser().parse_args(argv)
    configure_logging(args.quiet)
    # matplotlib (imported with nnU-Net's trainer module) wants a writable config folder; on the
    # platform HOME is not writable and /tmp is a fresh volume
    os.environ.setdefault("MPLCONFIGDIR", os.path.join(tempfile.gettempdir(), "matplotlib"))
    if args.explain:
        print(explain_task1(args.input, args.model))
        return 0
    run_inference(args.input, args.output, model=args.model, task=args.task, time_budget=args.time_budget,
                  margin=args.margin, method_options=method_options(args), binary=args.binary,
                  report_path=args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
