"""A local run, laid out exactly as Grand Challenge hands a submission to its evaluation method.

Writes, under ``out``::

    input/predictions.json          one job per case and step, in shuffled order, random pks
    input/<pk>/output/images/...    each job's output mask
    ground_truth/                   the phase's ground truth (evaluation_metrics.ground_truth)

so that ``python -m evaluation_metrics.gc_method --input out/input --ground_truth
out/ground_truth --output ...`` scores the run as the platform would. A run that failed (no
prediction) becomes a job with status ``Failed`` and no output. Jobs are in the platform's shape
of today (:mod:`autopet_common.socket_values`: each value's descriptor under ``socket`` with every
field, uuid pks, ``exec_duration`` from the run's ``runs.csv``), or with ``legacy=True`` the
older ``interface`` shape. Each step's job has its own input image names (``<case>_step03_ct.mha``
/ ``_pet.mha``; Task 2: the pair's file names with ``_step1`` / ``_step2``), and the ground truth
records them per case and step, so that a job places at its step even where its click JSON is not
inline.
"""
from __future__ import annotations

import csv
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from autopet_common.contract import TASK1_N_STEPS, TASK1_SOCKETS, TASK2_SOCKETS, task2_points_file
from autopet_common.errors import InputError
from autopet_common.image_io import atomic_write_json
from autopet_common.output_folder import staged_folder
from autopet_common.socket_values import socket_value


def _iso_duration(seconds: float | None) -> str | None:
    """``exec_duration`` as the platform writes it (ISO 8601: ``PT1M5.25S``)."""
    if seconds is None:
        return None
    minutes, rest = divmod(float(seconds), 60.0)
    return f"PT{int(minutes)}M{rest:.3f}S" if minutes else f"PT{rest:.3f}S"


def _run_seconds(run_dir: Path) -> dict[tuple[str, int], float]:
    """(case, step) -> seconds, from a run's ``runs.csv`` (Task 2's names the case ``pair``;
    empty when there is none)."""
    path = run_dir / "runs.csv"
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        return {(row.get("case") or row.get("pair"), int(row["step"])): float(row["seconds"])
                for row in csv.DictReader(handle) if row.get("seconds") not in (None, "")}


def _write_jobs(out: Path, jobs: list[tuple[dict, Path | None, float | None]], table: dict, output_slug: str,
                rng: np.random.Generator, *, legacy: bool) -> None:
    """Give each job a random uuid pk, copy its output, write predictions.json in shuffled order."""
    records = []
    for job, prediction, seconds in jobs:
        pk = str(uuid.UUID(bytes=rng.bytes(16), version=4))
        record = {"pk": pk, **job}
        if prediction is not None and prediction.is_file():
            target = out / "input" / pk / "output" / table[output_slug]["relative_path"] / f"{pk}.mha"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(prediction, target)
            record["status"] = "Succeeded"
            record["outputs"] = [socket_value(output_slug, table[output_slug], legacy=legacy, image_name=f"{pk}.mha")]
        else:
            record["status"] = "Failed"
            record["outputs"] = []
        if not legacy:
            record["exec_duration"] = _iso_duration(seconds)
            record["invoke_duration"] = _iso_duration(None if seconds is None else seconds + 1.0)
        records.append(record)
    order = rng.permutation(len(records))
    atomic_write_json(out / "input" / "predictions.json", [records[i] for i in order], indent=1)


def export_task1(run_dir: str | os.PathLike, out: str | os.PathLike, *, metadata: dict[str, dict] | None = None,
                 seed: int = 0, legacy: bool = False) -> Path:
    """Platform layout of a ``python -m local_challenge`` run (its ``clicks/``, ``predictions/``
    and ``labels/`` folders). ``metadata``: per case ``tracer`` / ``centre`` for the subsets.
    ``legacy``: socket values in the older ``interface`` shape."""
    from autopet_common.click_io import clicks_at_step, clicks_to_gc_format, read_clicks_json
    from evaluation_metrics.ground_truth import build_ground_truth

    run_dir, out = Path(run_dir), Path(out)
    labels = run_dir / "labels"
    cases = sorted(p.name[:-len(".nii.gz")] for p in labels.glob("*.nii.gz")) if labels.is_dir() else []
    if not cases:
        raise InputError(f"{run_dir} is not a local_challenge run folder (no labels/<case>.nii.gz)")
    seconds = _run_seconds(run_dir)
    jobs, meta = [], {}
    for case in cases:
        clicks = read_clicks_json(run_dir / "clicks" / f"{case}.json", missing_ok=False)
        steps = {}
        for step in range(TASK1_N_STEPS):
            names = [f"{case}_step{step:02d}_ct.mha", f"{case}_step{step:02d}_pet.mha"]
            steps[step] = names
            job = {"inputs": [
                socket_value("ct-image", TASK1_SOCKETS["ct-image"], legacy=legacy, image_name=names[0]),
                socket_value("pet-image", TASK1_SOCKETS["pet-image"], legacy=legacy, image_name=names[1]),
                socket_value("lesion-clicks", TASK1_SOCKETS["lesion-clicks"], legacy=legacy,
                             value=clicks_to_gc_format(clicks_at_step(clicks, step)))]}
            jobs.append((job, run_dir / "predictions" / f"{case}_pred{step}.mha", seconds.get((case, step))))
        meta[case] = {**(metadata or {}).get(case, {}), "steps": steps,
                      "images": [name for names in steps.values() for name in names]}
    with staged_folder(out) as work:  # a second export leaves no job of the first behind
        _write_jobs(work, jobs, TASK1_SOCKETS, "tumor-lesion-segmentation", np.random.default_rng(seed), legacy=legacy)
        build_ground_truth(labels, work / "ground_truth", task=1, metadata=meta)
    return out


def export_task2(run_dir: str | os.PathLike, cohort_dir: str | os.PathLike, out: str | os.PathLike, *,
                 seed: int = 0, legacy: bool = False) -> Path:
    """Platform layout of a ``python -m local_challenge.task2`` run (``predictions/``, ``labels/``)
    with its cohort (``<pair>/input``, for the input names and clicks). ``legacy``: socket values
    in the older ``interface`` shape."""
    from autopet_common.contract import task2_baseline_ct_subdir, task2_followup_ct_subdir
    from autopet_common.image_io import find_single_image, image_suffix, read_json, strip_image_suffix
    from evaluation_metrics.ground_truth import build_ground_truth

    run_dir, cohort_dir, out = Path(run_dir), Path(cohort_dir), Path(out)
    labels = run_dir / "labels"
    pairs = sorted(p.name[:-len(".mha")] for p in labels.glob("*.mha")) if labels.is_dir() else []
    if not pairs:
        raise InputError(f"{run_dir} is not a local_challenge.task2 run folder (no labels/<pair>.mha)")
    seconds = _run_seconds(run_dir)
    jobs, meta = [], {}
    for pair in pairs:
        inp = cohort_dir / pair / "input"
        followup = find_single_image(inp / task2_followup_ct_subdir("primary"), f"follow-up CT of {pair}")
        baseline = find_single_image(inp / task2_baseline_ct_subdir("primary"), f"baseline CT of {pair}")
        seg_slug = "primary-baseline-ct-tumor-lesion-seg"
        mask = find_single_image(inp / TASK2_SOCKETS[seg_slug]["relative_path"], f"baseline mask of {pair}")
        base_points = read_json(inp / task2_points_file("primary", "baseline"), "baseline points")
        fu_points = read_json(inp / task2_points_file("primary", "followup"), "follow-up points")
        empty: dict[str, Any] = {**fu_points, "points": []}
        steps = {}
        for step in (1, 2):
            def named(path: Path) -> str:
                return f"{strip_image_suffix(path)}_step{step}{image_suffix(path)}"

            steps[step] = [named(followup)]
            values = [("primary-baseline-ct", {"image_name": named(baseline)}),
                      (seg_slug, {"image_name": named(mask)}),
                      ("primary-followup-ct", {"image_name": named(followup)}),
                      ("primary-baseline-lesion-clicks", {"value": base_points}),
                      ("primary-followup-lesion-clicks", {"value": fu_points if step == 2 else empty})]
            job = {"inputs": [socket_value(slug, TASK2_SOCKETS[slug], legacy=legacy, **content)
                              for slug, content in values]}
            jobs.append((job, run_dir / "predictions" / f"{pair}_pred{step}.mha", seconds.get((pair, step))))
        meta[pair] = {"steps": steps, "images": [name for names in steps.values() for name in names]}
    with staged_folder(out) as work:
        _write_jobs(work, jobs, TASK2_SOCKETS, "primary-followup-ct-tumor-lesion-seg", np.random.default_rng(seed),
                    legacy=legacy)
        build_ground_truth(labels, work / "ground_truth", task=2, metadata=meta)
    return out
