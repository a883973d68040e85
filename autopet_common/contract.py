"""The Grand Challenge container contract of autoPET/CT IV, Task 1: one home for its paths.

Imported by the entrypoint (``inference.py``), the local challenge and the tests; see
``shared/challenge-facts.md`` for the source. Task 2's folder names live in
:mod:`Task2.inference` (its input layout rules).
"""
from pathlib import Path

TASK1_CT_SUBDIR = Path("images") / "ct"
TASK1_PET_SUBDIR = Path("images") / "pet"
TASK1_CLICKS_FILE = "lesion-clicks.json"
TASK1_OUTPUT_SUBDIR = Path("images") / "tumor-lesion-segmentation"
MODEL_DIR = Path("/opt/ml/model")  # where the platform puts the uploaded model, read-only
