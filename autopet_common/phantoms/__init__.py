"""Synthetic PET/CT (Task 1) and longitudinal CT (Task 2) phantoms for tests and benchmarks.

Arrays are indexed ``[i, j, k]`` (NIfTI order). CLI: ``python -m autopet_common.phantoms --help``.
"""
from .anatomy import ORGANS, UPTAKE
from .common import PRESETS, resolve_grid
from .task1 import PetCtCase, make_petct_case, write_task1_cohort

__all__ = ["PRESETS", "ORGANS", "UPTAKE", "resolve_grid", "PetCtCase", "make_petct_case",
           "write_task1_cohort", "main"]


def main(argv=None) -> int:
    from .cli import main as _main
    return _main(argv)
