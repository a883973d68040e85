"""Command line of the challenge evaluation (and the published script's function names).

    python evaluation_metrics/evaluation_metrics.py -g GT -p PRED [-o OUT] [--n_clicks N]
        [--task 2] [--num_processes K] [--plot] [--allow_missing] [--min_overlap F]

Also runs as ``python -m evaluation_metrics``. See ``evaluation_metrics/README.md``.
"""
if __name__ == "__main__":  # run as a script: this file's folder would shadow the package
    import os as _os
    import sys as _sys

    _here = _os.path.dirname(_os.path.abspath(__file__))
    _sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _here]
    _sys.path.insert(0, _os.path.dirname(_here))

import argparse
import math
import sys
from pathlib import Path

from autopet_common.cli import ArgumentParser, entrypoint, non_negative_float, positive_int
from autopet_common.errors import InputError

from evaluation_metrics.evaluate import (INTERACTIVE_COLUMNS, STATIC_COLUMNS, compute_interactive_metrics,
                                         compute_metrics, evaluate_folder, evaluate_task2)
from evaluation_metrics.metrics import (compute_metrics_arrays, dice_score, false_negative_volume,
                                        false_positive_volume, interactive_auc, lesion_detection)
from evaluation_metrics.plotting import plot_interactive_curves

__all__ = ["compute_metrics", "compute_interactive_metrics", "evaluate_folder", "evaluate_task2",
           "plot_interactive_curves", "dice_score", "false_positive_volume", "false_negative_volume",
           "compute_metrics_arrays", "lesion_detection", "interactive_auc", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="evaluation_metrics",
        description="Score autoPET/CT IV predictions with the challenge metrics: Dice, false positive "
                    "volume (FPV, ml) and false negative volume (FNV, ml) with 18-connected components, "
                    "their AUC over the interactive steps, and lesion-level detection.",
        epilog="Outputs in OUT: static mode metrics.csv; interactive / Task 2 metrics_interactive.csv "
               "and metrics_per_step.csv; always detection.csv and summary.json (NaN-aware means). "
               "A single GT file with a single prediction file prints its metrics.")
    parser.add_argument("-g", "--gt_path", required=True,
                        help="ground-truth mask file, or a folder of <case>.nii.gz / <case>.mha")
    parser.add_argument("-p", "--prediction_path", required=True,
                        help="prediction folder (<case>.nii.gz; <case>_pred0.._pred{N-1} with --n_clicks N; "
                             "<case>_pred1, <case>_pred2 with --task 2), or one file for a single GT file")
    parser.add_argument("-o", "--output_path", default=None,
                        help="folder for the CSVs, summary.json and the plot (default: the current "
                             "folder when GT is a folder; nothing is written for a single GT file "
                             "unless given)")
    parser.add_argument("--n_clicks", type=positive_int, default=None,
                        help="number of interactive steps including step 0 (11 for Task 1)")
    parser.add_argument("--task", type=int, choices=(1, 2), default=1,
                        help="2: score follow-up masks of Task 2 over its 2 steps (_pred1, _pred2)")
    parser.add_argument("--num_processes", type=positive_int, default=1, help="cases scored in parallel")
    parser.add_argument("--plot", action="store_true",
                        help="write interactive_curves.png (Dice, FPV, FNV against clicks)")
    parser.add_argument("--allow_missing", action="store_true",
                        help="score the cases that have predictions; exit 0 despite missing ones")
    parser.add_argument("--min_overlap", type=_fraction, default=0.0,
                        help="detection: fraction of a lesion that must be predicted for it to count "
                             "as found (0 = any voxel, the default)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def format_summary(summary: dict) -> str:
    """Markdown table of the summary's means, standard deviations and detection."""
    lines = [f"mode: {summary['mode']}, cases: {summary['n_cases']} "
             f"({summary['n_cases_without_lesions']} without lesions), "
             f"missing predictions: {summary['n_missing_predictions']}", "",
             "| metric | mean | std |", "|---|---|---|"]
    for key, mean in summary["means"].items():
        lines.append(f"| {key} | {_fmt(mean)} | {_fmt(summary['std'][key])} |")
    lines += ["", "| step | lesions found | missed | false | sensitivity | precision | F1 |",
              "|---|---|---|---|---|---|---|"]
    for d in summary["detection"]["per_step"]:
        step = "-" if d["step"] is None else d["step"]
        lines.append(f"| {step} | {d['tp']} | {d['fn']} | {d['fp']} | {_fmt(d['sensitivity'])} | "
                     f"{_fmt(d['precision'])} | {_fmt(d['f1'])} |")
    return "\n".join(lines)


def _fraction(text: str) -> float:
    value = non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1], got {text!r}")
    return value


@entrypoint("evaluation_metrics")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    gt, pred = Path(args.gt_path), Path(args.prediction_path)
    mode = "task2" if args.task == 2 else ("static" if args.n_clicks is None else "interactive")
    if args.task == 2 and args.n_clicks not in (None, 2):
        raise InputError("--task 2 has exactly 2 steps; drop --n_clicks")
    out_dir = args.output_path
    if out_dir is None and gt.is_dir():
        out_dir = "."
    common = dict(out_dir=out_dir, num_processes=args.num_processes, plot=args.plot,
                  allow_missing=args.allow_missing, min_overlap=args.min_overlap,
                  progress=not args.quiet)
    if mode == "task2":
        summary = evaluate_task2(gt, pred, **common)
    else:
        summary = evaluate_folder(gt, pred, n_clicks=args.n_clicks, **common)
    if gt.is_file() and summary["results"]:
        result = summary["results"][0]
        if mode == "static":
            s = result["steps"][0]
            values = dict(zip(STATIC_COLUMNS, (s["dice"], s["fpv"], s["fnv"])))
        else:
            from evaluation_metrics.evaluate import _interactive_row

            values = dict(zip(INTERACTIVE_COLUMNS, _interactive_row(result["steps"])))
        for key, value in values.items():
            print(f"{key}: {value!r}")
        last = result["steps"][-1]
        print(f"lesions found: {last['tp']}, missed: {last['fn']}, false: {last['fp']}")
    else:
        print(format_summary(summary))
    if out_dir is not None:
        print(f"written to {Path(out_dir).resolve()}", file=sys.stderr)
    if summary["n_missing_predictions"]:
        print(f"warning: {summary['n_missing_predictions']} missing prediction(s): "
              + ", ".join(summary["missing_predictions"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
