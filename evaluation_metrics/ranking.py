"""The challenge's leaderboard: rank submissions' ``metrics.json`` files per measure, combine.

    python -m evaluation_metrics.ranking team_a/metrics.json team_b/metrics.json ... \\
        [--names A B ...] [--out leaderboard]   # writes leaderboard.md and leaderboard.csv

Each measure of the task is ranked separately over the submissions (Dice and AUC-Dice: higher
is better; volumes and their AUCs: lower is better), and the ranks are combined with the
challenge's weights (Task 1: DSC@last 0.25, AUC-DSC 0.25, FPV@last, FNV@last, AUC-FPV, AUC-FNV
0.125 each; Task 2: Dice 0.5, FPV 0.25, FNV 0.25). The submission with the lowest weighted rank
sum is first. Ties: equal values share the best of their ranks ("1224" competition ranking), in
each measure and in the final order; a missing or NaN value ranks last in its measure.
"""
from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Sequence

from autopet_common.cli import ArgumentParser, entrypoint
from autopet_common.errors import InputError
from autopet_common.image_io import atomic_write_text, read_json

# measure -> (weight, which is better)
WEIGHTS = {
    1: {"dsc_last": (0.25, "higher"), "auc_dsc": (0.25, "higher"), "fpv_last": (0.125, "lower"),
        "fnv_last": (0.125, "lower"), "auc_fpv": (0.125, "lower"), "auc_fnv": (0.125, "lower")},
    2: {"dice": (0.5, "higher"), "fpv": (0.25, "lower"), "fnv": (0.25, "lower")},
}


def competition_ranks(values: Sequence[float | None], better: str) -> list[int]:
    """1-based ranks; ties share the best rank ("1224"); None / NaN rank after every number."""
    def key(value):
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        return (1, 0.0) if missing else (0, -value if better == "higher" else value)

    keys = [key(v) for v in values]
    return [1 + sum(other < mine for other in keys) for mine in keys]


def rank_submissions(aggregates: dict[str, dict], task: int) -> list[dict]:
    """Leaderboard rows, best first: ``{"submission", "rank", "score", "<measure>",
    "<measure>_rank", ...}`` from ``{name: metrics.json aggregates}``."""
    if task not in WEIGHTS:
        raise InputError(f"unknown task {task!r}")
    names = list(aggregates)
    rows = {name: {"submission": name} for name in names}
    for measure, (weight, better) in WEIGHTS[task].items():
        values = [aggregates[name].get(measure) for name in names]
        for name, value, rank in zip(names, values, competition_ranks(values, better)):
            rows[name][measure] = value
            rows[name][f"{measure}_rank"] = rank
    for row in rows.values():
        row["score"] = sum(weight * row[f"{measure}_rank"] for measure, (weight, _) in WEIGHTS[task].items())
    final = competition_ranks([rows[n]["score"] for n in names], "lower")
    for name, rank in zip(names, final):
        rows[name]["rank"] = rank
    return sorted(rows.values(), key=lambda r: (r["rank"], r["submission"]))


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def leaderboard_markdown(rows: list[dict], task: int) -> str:
    measures = list(WEIGHTS[task])
    header = ["rank", "submission", "score"] + [f"{m} (rank)" for m in measures]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row["rank"]), row["submission"], f"{row['score']:.3f}"]
        cells += [f"{_fmt(row[m])} ({row[f'{m}_rank']})" for m in measures]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def leaderboard_csv(rows: list[dict], task: int) -> str:
    columns = ["rank", "submission", "score"] + [c for m in WEIGHTS[task] for c in (m, f"{m}_rank")]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row[c] is None else row[c] for c in columns])
    return buffer.getvalue()


def load_submissions(paths: Sequence[str | os.PathLike], names: Sequence[str] | None = None) -> tuple[dict, int]:
    """``({name: aggregates}, task)`` from metrics.json files (all of one task)."""
    if names is not None and len(names) != len(paths):
        raise InputError(f"{len(names)} names for {len(paths)} metrics files")
    aggregates, tasks = {}, set()
    for n, path in enumerate(paths):
        record = read_json(path, "metrics file")
        if not isinstance(record, dict) or not isinstance(record.get("aggregates"), dict):
            raise InputError(f"metrics file {path}: no 'aggregates' (expected evaluation_metrics.gc_method's metrics.json)")
        name = names[n] if names is not None else Path(path).parent.name or str(path)
        if name in aggregates:
            raise InputError(f"two submissions named {name!r}; give --names")
        aggregates[name] = record["aggregates"]
        tasks.add(record.get("task", 1))
    if len(tasks) != 1:
        raise InputError(f"the metrics files are of different tasks: {sorted(tasks)}")
    return aggregates, tasks.pop()


@entrypoint("python -m evaluation_metrics.ranking")
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m evaluation_metrics.ranking", description=__doc__.split("\n\n")[0] + "\n\n"
                            + __doc__.split("\n\n", 2)[2])
    parser.add_argument("metrics", nargs="+", help="metrics.json of each submission (gc_method's output)")
    parser.add_argument("--names", nargs="+", default=None, help="submission names (default: each file's folder)")
    parser.add_argument("--out", type=Path, default=None, help="write <out>.md and <out>.csv")
    args = parser.parse_args(argv)
    aggregates, task = load_submissions(args.metrics, args.names)
    rows = rank_submissions(aggregates, task)
    table = leaderboard_markdown(rows, task)
    print(table, end="")
    if args.out is not None:
        atomic_write_text(args.out.with_suffix(".md"), table)
        atomic_write_text(args.out.with_suffix(".csv"), leaderboard_csv(rows, task))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
