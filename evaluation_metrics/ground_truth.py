"""The ground truth of a Grand Challenge evaluation phase: its layout, a builder and a reader.

On the platform the phase's ground truth is an uploaded tarball, extracted read-only to
``/opt/ml/input/data/ground_truth/``. This project's layout::

    ground_truth.json      {"version": 1, "task": 1 | 2, "cases": {
                              "<case>": {"label": "labels/<case>.nii.gz",
                                         "images": ["<input image name>", ...],
                                         "steps": {"<step>": ["<input image name>", ...]},
                                         "tracer": "FDG", "centre": "LMU"}}}
    labels/<case>.nii.gz   (or .mha) the reference mask on the input grid

``images`` lists the names the platform gives the case's input images (the ``image.name`` of
the job's inputs in ``predictions.json``: Task 1 the CT and PET, Task 2 the follow-up CT); a job
is matched to its case through them, or, when a case lists none, through an input image whose
name without suffix is the case id. ``steps`` (optional) records which input image names each
step's job gets, where the phase gives every step its own images: a job is then placed at its
step by its image names alone, also when the platform does not inline the job's click JSON in
``predictions.json``. ``tracer`` and ``centre`` are optional; when every case has
both, the leaderboard's overall value is the mean of the tracer x centre subsets, as in the
challenge.

Build it from an nnU-Net-style label folder::

    python -m evaluation_metrics.ground_truth --labels labelsTr --task 1 --metadata cases.csv \\
        --out ground_truth [--tar ground_truth.tar.gz]

``cases.csv`` (or ``.json``: ``{"<case>": {"tracer": ..., "centre": ..., "images": [...],
"steps": {"0": [...], ...}}}``) has the columns ``case, tracer, centre, images`` (image names
separated by ``;``); every column but ``case`` may be left empty. Per-step names need the JSON
form.
"""
from __future__ import annotations

import csv
import os
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from autopet_common.cli import ArgumentParser, entrypoint
from autopet_common.errors import InputError
from autopet_common.image_io import atomic_write_json, list_images, read_json, strip_image_suffix

GROUND_TRUTH_FILE = "ground_truth.json"
LABEL_SUFFIXES = (".nii.gz", ".nii", ".mha")


@dataclass
class GroundTruthCase:
    case: str
    label: Path
    images: list[str] = field(default_factory=list)
    tracer: str | None = None
    centre: str | None = None
    steps: dict[int, list[str]] = field(default_factory=dict)

    @property
    def subset(self) -> str | None:
        return f"{self.tracer}/{self.centre}" if self.tracer and self.centre else None


@dataclass
class GroundTruth:
    task: int
    cases: dict[str, GroundTruthCase]
    by_image_name: dict[str, str]
    by_step_image_name: dict[str, tuple[str, int]] = field(default_factory=dict)

    def step_of(self, image_names: Sequence[str]) -> tuple[str, int] | None:
        """(case, step) from input image names the ground truth records per step, else None."""
        for name in image_names:
            if name in self.by_step_image_name:
                return self.by_step_image_name[name]
        return None

    def case_of(self, image_names: Sequence[str]) -> str | None:
        """The case a job belongs to, from its input image names (see the module docstring)."""
        for name in image_names:
            if name in self.by_image_name:
                return self.by_image_name[name]
        for name in image_names:
            stem = strip_image_suffix(name)
            if stem in self.cases and not self.cases[stem].images:
                return stem
        return None


def load_ground_truth(folder: str | os.PathLike) -> GroundTruth:
    """Read and check a ground-truth folder; :class:`InputError` names what is wrong."""
    folder = Path(folder)
    record = read_json(folder / GROUND_TRUTH_FILE, "ground-truth index")
    if not isinstance(record, dict) or record.get("task") not in (1, 2) or not isinstance(record.get("cases"), dict):
        raise InputError(f"{folder / GROUND_TRUTH_FILE}: expected {{'version': 1, 'task': 1 or 2, 'cases': {{...}}}}")
    cases, by_name, by_step = {}, {}, {}
    for case, entry in record["cases"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("label"), str):
            raise InputError(f"{folder / GROUND_TRUTH_FILE}: case {case!r} needs a 'label' path")
        label = folder / entry["label"]
        if not label.is_file():
            raise InputError(f"ground truth of case {case!r}: {label} not found")
        steps = _read_steps(entry.get("steps"), f"{folder / GROUND_TRUTH_FILE}: case {case!r}")
        images = [str(n) for n in entry.get("images") or []]
        images += [n for names in steps.values() for n in names if n not in images]
        cases[case] = GroundTruthCase(case, label, images, entry.get("tracer") or None, entry.get("centre") or None,
                                      steps)
        for step, names in steps.items():
            for name in names:
                if by_step.get(name, (case, step)) != (case, step):
                    raise InputError(f"{folder / GROUND_TRUTH_FILE}: image name {name!r} is recorded for two steps "
                                     f"({by_step[name]}, {(case, step)})")
                by_step[name] = (case, step)
        for name in images:
            if by_name.get(name, case) != case:
                raise InputError(f"{folder / GROUND_TRUTH_FILE}: image name {name!r} belongs to two cases "
                                 f"({by_name[name]!r}, {case!r})")
            by_name[name] = case
    return GroundTruth(int(record["task"]), cases, by_name, by_step)


def _read_steps(steps: Any, where: str) -> dict[int, list[str]]:
    if steps is None:
        return {}
    if not isinstance(steps, dict):
        raise InputError(f"{where}: 'steps' must be an object {{step: [image names]}}, got {type(steps).__name__}")
    out = {}
    for key, names in steps.items():
        try:
            step = int(key)
        except (TypeError, ValueError):
            raise InputError(f"{where}: step {key!r} of 'steps' is not a number") from None
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise InputError(f"{where}: step {key} of 'steps' must list image names")
        out[step] = list(names)
    return out


def read_metadata(path: str | os.PathLike | None) -> dict[str, dict[str, Any]]:
    """Case metadata from a CSV (``case, tracer, centre, images``) or JSON file; {} for None."""
    if path is None:
        return {}
    path = Path(path)
    if path.suffix.lower() == ".json":
        record = read_json(path, "case metadata")
        if not isinstance(record, dict):
            raise InputError(f"case metadata {path}: expected an object {{case: {{tracer, centre, images}}}}")
        return {str(k): dict(v or {}) for k, v in record.items()}
    if not path.is_file():
        raise InputError(f"case metadata not found: {path}")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if rows and "case" not in rows[0]:
        raise InputError(f"case metadata {path}: no 'case' column (columns: case, tracer, centre, images)")
    out = {}
    for row in rows:
        images = [n.strip() for n in (row.get("images") or "").split(";") if n.strip()]
        out[row["case"].strip()] = {"tracer": (row.get("tracer") or "").strip() or None,
                                    "centre": (row.get("centre") or "").strip() or None, "images": images}
    return out


def build_ground_truth(labels: str | os.PathLike, out: str | os.PathLike, *, task: int = 1,
                       metadata: dict[str, dict[str, Any]] | None = None, tar: str | os.PathLike | None = None) -> Path:
    """Write the ground-truth layout from a folder of ``<case>`` labels (copied as they are) and
    optional metadata; with ``tar``, also the tarball to upload. Returns ``out``."""
    from autopet_common.output_folder import staged_folder

    labels = Path(labels)
    if not labels.is_dir():
        raise InputError(f"label folder not found: {labels}")
    files = list_images(labels, LABEL_SUFFIXES)
    if not files:
        raise InputError(f"no .nii.gz / .mha labels in {labels}")
    metadata = metadata or {}
    unknown = sorted(set(metadata) - {strip_image_suffix(p) for p in files})
    if unknown:
        raise InputError(f"case metadata names cases without a label in {labels}: {', '.join(unknown[:5])}")
    with staged_folder(out) as work:
        (work / "labels").mkdir()
        cases = {}
        for path in files:
            case = strip_image_suffix(path)
            if case in cases:
                raise InputError(f"two labels for case {case!r} in {labels}")
            shutil.copy2(path, work / "labels" / path.name)
            meta = metadata.get(case, {})
            cases[case] = {"label": f"labels/{path.name}", "images": list(meta.get("images") or []),
                           "tracer": meta.get("tracer"), "centre": meta.get("centre")}
            if meta.get("steps"):
                cases[case]["steps"] = {str(step): list(names) for step, names in sorted(meta["steps"].items())}
        atomic_write_json(work / GROUND_TRUTH_FILE, {"version": 1, "task": int(task), "cases": cases})
    load_ground_truth(out)  # what was written reads back
    if tar is not None:
        tmp = Path(f"{tar}.tmp")
        with tarfile.open(tmp, "w:gz") as archive:
            for item in sorted(Path(out).rglob("*")):
                archive.add(item, arcname=item.relative_to(out).as_posix(), recursive=False)
        os.replace(tmp, tar)
    return Path(out)


@entrypoint("python -m evaluation_metrics.ground_truth")
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m evaluation_metrics.ground_truth",
                            description="Build the ground-truth folder (and tarball) of a Grand Challenge evaluation "
                                        "phase from a folder of reference labels and case metadata. See the module "
                                        "docstring for the layout.")
    parser.add_argument("--labels", required=True, help="folder of <case>.nii.gz / .mha reference masks")
    parser.add_argument("--out", required=True, help="ground-truth folder to write")
    parser.add_argument("--task", type=int, choices=(1, 2), default=1)
    parser.add_argument("--metadata", default=None, help="CSV (case, tracer, centre, images) or JSON per case")
    parser.add_argument("--tar", default=None, help="also write this .tar.gz to upload as the phase's ground truth")
    args = parser.parse_args(argv)
    out = build_ground_truth(args.labels, args.out, task=args.task, metadata=read_metadata(args.metadata),
                             tar=args.tar)
    print(f"wrote {out}" + (f" and {args.tar}" if args.tar else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
