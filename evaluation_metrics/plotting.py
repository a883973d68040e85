"""Curves of the interactive metrics against the number of clicks."""
from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from autopet_common.errors import InputError
from autopet_common.image_io import atomic_write_bytes

PANELS = (("dice", "Dice", (0.0, 1.0)), ("fpv", "False positive volume (ml)", None),
          ("fnv", "False negative volume (ml)", None))


def _read_rows(source) -> list[Mapping]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"per-step metrics CSV not found: {path}")
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        missing = {"gt_name", "step", "dice", "fpv", "fnv"} - set(rows[0] if rows else {})
        if missing:
            raise InputError(f"{path} lacks column(s) {sorted(missing)} (expected metrics_per_step.csv)")
        return rows
    return list(source)


def _as_float(value) -> float:
    if value is None or value == "":
        return math.nan
    return float(value)


def plot_interactive_curves(per_step_rows_or_csv, out_png: str | os.PathLike,
                            title: str | None = None) -> Path:
    """Write a PNG with 3 panels (Dice, FPV ml, FNV ml against the number of clicks per class).

    ``per_step_rows_or_csv``: rows with keys ``gt_name, step, dice, fpv, fnv`` (dicts) or the
    path of a ``metrics_per_step.csv``. Each case is a thin line; the NaN-aware mean over cases
    is the bold line. Written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")  # set here, not at import: no display needed, no global side effect on import
    import matplotlib.pyplot as plt

    rows = _read_rows(per_step_rows_or_csv)
    if not rows:
        raise InputError("no per-step metrics to plot")
    steps = sorted({int(float(r["step"])) for r in rows})
    cases = sorted({str(r["gt_name"]) for r in rows})
    step_index = {s: i for i, s in enumerate(steps)}
    case_index = {c: i for i, c in enumerate(cases)}
    values = {key: np.full((len(cases), len(steps)), np.nan) for key, _, _ in PANELS}
    for r in rows:
        for key, _, _ in PANELS:
            values[key][case_index[str(r["gt_name"])], step_index[int(float(r["step"]))]] = _as_float(r[key])

    fig, axes = plt.subplots(1, 3, figsize=(13, 4.0), constrained_layout=True)
    for ax, (key, label, limits) in zip(axes, PANELS):
        data = values[key]
        for index, case_values in enumerate(data):
            ax.plot(steps, case_values, color="tab:blue", alpha=0.45, linewidth=0.9,
                    label="each case" if index == 0 else None)
        with np.errstate(all="ignore"):
            counts = np.sum(np.isfinite(data), axis=0)
            mean = np.where(counts > 0, np.nansum(data, axis=0) / np.maximum(counts, 1), np.nan)
        ax.plot(steps, mean, color="black", linewidth=2.5, marker="o", markersize=4,
                label="mean over cases (NaN-aware)")
        ax.set_xlabel("number of clicks per class")
        ax.set_ylabel(label)
        ax.set_xticks(steps)
        if limits:
            ax.set_ylim(*limits)
        else:
            ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.set_title(label.split(" (")[0])
    axes[0].legend(loc="lower right", frameon=False)
    if title:
        fig.suptitle(title)

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, dpi=110, format="png")
    finally:
        plt.close(fig)
    out_png = atomic_write_bytes(out_png, buffer.getvalue())
    return out_png
