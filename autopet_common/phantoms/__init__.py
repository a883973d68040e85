"""Synthetic PET/CT (Task 1) and longitudinal CT (Task 2) phantoms for tests and benchmarks.

Arrays are indexed ``[i, j, k]`` (NIfTI order). CLI: ``python -m autopet_common.phantoms --help``.
"""
from .anatomy import ORGANS, UPTAKE
from .common import PRESETS, resolve_grid
from .task1 import PetCtCase, PetVariation, make_petct_case, write_organ_map
from .task1_cohort import write_task1_cohort
from .task2 import (LongitudinalPair, baseline_to_followup, followup_to_baseline,
                    make_longitudinal_pair, write_task2_cohort)

__all__ = ["PRESETS", "ORGANS", "UPTAKE", "resolve_grid", "PetCtCase", "PetVariation", "make_petct_case",
           "write_task1_cohort", "write_organ_map", "LongitudinalPair", "make_longitudinal_pair",
           "write_task2_cohort", "followup_to_baseline", "baseline_to_followup", "main"]


def main(argv=None) -> int:
    from .cli import main as _main
    return _main(argv)
