"""A Task 2 cohort on disk: one folder per longitudinal pair, ``<pair>/input/`` in the Grand
Challenge Task 2 layout and ``<pair>/truth/followup-tumor-lesion-seg.mha`` (the layout
``autopet_common.phantoms.write_task2_cohort`` writes; the local challenge's Task 2 run and the
dataset conversion read it)."""
from __future__ import annotations

import os
from pathlib import Path

from autopet_common.errors import InputError

TRUTH_NAME = "truth/followup-tumor-lesion-seg.mha"


def find_pairs(cohort_dir: str | os.PathLike) -> list[Path]:
    """Pair folders of a Task 2 cohort (those with ``input/images/`` and a truth mask), sorted."""
    cohort = Path(cohort_dir)
    if not cohort.is_dir():
        raise InputError(f"Task 2 cohort folder not found: {cohort}")
    pairs = sorted(p for p in cohort.iterdir() if (p / "input" / "images").is_dir() and (p / TRUTH_NAME).is_file())
    if not pairs:
        raise InputError(f"{cohort} holds no Task 2 pair (<pair>/input/images/ and <pair>/{TRUTH_NAME})")
    return pairs
