"""The Grand Challenge container contract of autoPET/CT IV: one home for its paths, file names,
protocol numbers and input-layout rules (source: ``shared/challenge-facts.md``).

Imported by the entrypoints (``inference.py``, ``Task2/inference.py``), the local challenge
runs, the phantom writers and the tests. Constants and small path functions only: no work at
import time.
"""
from __future__ import annotations

import os
from pathlib import Path

INPUT_DIR = Path("/input")
OUTPUT_DIR = Path("/output")
MODEL_DIR = Path("/opt/ml/model")  # where the platform puts the uploaded model, read-only
MODEL_DIR_ENV = "AUTOPET_MODEL_DIR"          # a model baked into the image on purpose
REQUIRE_MODEL_ENV = "AUTOPET_REQUIRE_MODEL"  # "1" in the container: no fallback model
MODEL_FREE = "model-free"  # the --model value (and recipe folder name) of the model-free method, both tasks
TIME_BUDGET_SECONDS = 300.0        # per algorithm job (one case, one step)

# ----------------------------------------------------------------------------- Task 1
TASK1_CT_SUBDIR = Path("images") / "ct"
TASK1_PET_SUBDIR = Path("images") / "pet"
TASK1_CLICKS_FILE = "lesion-clicks.json"
TASK1_OUTPUT_SUBDIR = Path("images") / "tumor-lesion-segmentation"

# The Task 1 interactive protocol: steps 0..10, step s gives s tumor and s background clicks.
TASK1_MAX_CLICKS = 10
TASK1_N_STEPS = TASK1_MAX_CLICKS + 1

# ----------------------------------------------------------------------------- Task 2
TASK2_PREFIXES = ("primary", "secondary")   # a secondary follow-up is optional
# the baseline mask folder: the interface's slug, and the longer spelling seen in the challenge's examples
TASK2_BASELINE_SEG_FOLDERS = ("{p}-baseline-ct-tumor-lesion-seg", "{p}-baseline-ct-tumor-lesion-segmentation")


def task2_baseline_ct_subdir(prefix: str) -> Path:
    return Path("images") / f"{prefix}-baseline-ct"


def task2_followup_ct_subdir(prefix: str) -> Path:
    return Path("images") / f"{prefix}-followup-ct"


def task2_output_subdir(prefix: str) -> Path:
    return Path("images") / f"{prefix}-followup-ct-tumor-lesion-seg"


def task2_points_file(prefix: str, scan: str) -> str:
    """``<prefix>-baseline-lesion-clicks.json`` or ``<prefix>-followup-lesion-clicks.json``."""
    if scan not in ("baseline", "followup"):
        raise ValueError(f"scan must be 'baseline' or 'followup', got {scan!r}")
    return f"{prefix}-{scan}-lesion-clicks.json"


# The entrypoint's output folders (both tasks): it owns them, and each holds this run's mask only.
TASK2_OUTPUT_FOLDERS = tuple(task2_output_subdir(p) for p in TASK2_PREFIXES)
OUTPUT_FOLDERS = (TASK1_OUTPUT_SUBDIR, *TASK2_OUTPUT_FOLDERS)


# ----------------------------------------------------------------------------- layout rules
def is_task1_input(input_dir: str | os.PathLike) -> bool:
    """A Task 1 input: a CT or PET image folder."""
    input_dir = Path(input_dir)
    return (input_dir / TASK1_CT_SUBDIR).is_dir() or (input_dir / TASK1_PET_SUBDIR).is_dir()


def is_task2_input(input_dir: str | os.PathLike) -> bool:
    """A Task 2 input: a follow-up or baseline CT folder of either prefix."""
    input_dir = Path(input_dir)
    return any((input_dir / task2_followup_ct_subdir(p)).is_dir() or (input_dir / task2_baseline_ct_subdir(p)).is_dir()
               for p in TASK2_PREFIXES)


# ----------------------------------------------------------------------------- platform sockets
# Grand Challenge names each input and output of an algorithm job by a socket slug (older files:
# "interface")
# and places it at a relative path: inputs under /input/<relative path>, outputs under
# /output/<relative path> (for the evaluation: /input/<job pk>/output/<relative path>). Image
# sockets are folders holding one image. The slugs below are those the container contract's
# paths imply; where predictions.json gives a relative_path, that path is used.
# role: what the evaluation makes of the socket.
TASK1_SOCKETS = {
    "ct-image": {"relative_path": "images/ct", "kind": "image", "role": "ct"},
    "pet-image": {"relative_path": "images/pet", "kind": "image", "role": "pet"},
    "lesion-clicks": {"relative_path": TASK1_CLICKS_FILE, "kind": "json", "role": "clicks"},
    "tumor-lesion-segmentation": {"relative_path": TASK1_OUTPUT_SUBDIR.as_posix(), "kind": "image",
                                  "role": "prediction"},
}


def _task2_sockets() -> dict[str, dict[str, str]]:
    sockets: dict[str, dict[str, str]] = {}
    for prefix in TASK2_PREFIXES:
        sockets[f"{prefix}-baseline-ct"] = {"relative_path": task2_baseline_ct_subdir(prefix).as_posix(),
                                            "kind": "image", "role": f"{prefix} baseline ct"}
        sockets[TASK2_BASELINE_SEG_FOLDERS[0].format(p=prefix)] = {
            "relative_path": f"images/{TASK2_BASELINE_SEG_FOLDERS[0].format(p=prefix)}", "kind": "image",
            "role": f"{prefix} baseline mask"}
        sockets[f"{prefix}-followup-ct"] = {"relative_path": task2_followup_ct_subdir(prefix).as_posix(),
                                            "kind": "image", "role": f"{prefix} followup ct"}
        for scan in ("baseline", "followup"):
            sockets[f"{prefix}-{scan}-lesion-clicks"] = {"relative_path": task2_points_file(prefix, scan),
                                                         "kind": "json", "role": f"{prefix} {scan} clicks"}
        sockets[f"{prefix}-followup-ct-tumor-lesion-seg"] = {
            "relative_path": task2_output_subdir(prefix).as_posix(), "kind": "image",
            "role": f"{prefix} prediction"}
    return sockets


TASK2_SOCKETS = _task2_sockets()


# The interfaces (sorted input socket slugs) an algorithm job can have, as the platform's
# template keys them: Task 1 one; Task 2 the primary follow-up alone, with a secondary follow-up
# that reuses the primary baseline, with a secondary follow-up and its own baseline, and with
# its own baseline but without baseline points of either prefix (inferred from the contract's
# input list: the challenge publishes no slug table).
def _sorted_slugs(*slugs: str) -> tuple[str, ...]:
    return tuple(sorted(slugs))


_T2_PRIMARY = ("primary-baseline-ct", "primary-baseline-ct-tumor-lesion-seg", "primary-followup-ct",
               "primary-baseline-lesion-clicks", "primary-followup-lesion-clicks")
_T2_SECONDARY_FOLLOWUP = ("secondary-followup-ct", "secondary-followup-lesion-clicks")
_T2_SECONDARY_BASELINE = ("secondary-baseline-ct", "secondary-baseline-ct-tumor-lesion-seg",
                          "secondary-baseline-lesion-clicks")
INTERFACES = {
    _sorted_slugs("ct-image", "pet-image", "lesion-clicks"): 1,
    _sorted_slugs(*_T2_PRIMARY): 2,
    _sorted_slugs(*_T2_PRIMARY, *_T2_SECONDARY_FOLLOWUP): 2,
    _sorted_slugs(*_T2_PRIMARY, *_T2_SECONDARY_FOLLOWUP, *_T2_SECONDARY_BASELINE): 2,
    _sorted_slugs(*(s for s in _T2_PRIMARY + _T2_SECONDARY_FOLLOWUP + _T2_SECONDARY_BASELINE
                    if not s.endswith("baseline-lesion-clicks"))): 2,
}
INPUTS_FILE = "inputs.json"  # the job's socket values, as the platform writes them to /input
# (read and written by autopet_common/socket_values.py)


def task_of_interface(slugs) -> int | None:
    """1 or 2 for a known interface (any order of slugs), else None."""
    return INTERFACES.get(tuple(sorted(slugs)))
