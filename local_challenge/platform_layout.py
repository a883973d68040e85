"""A local run, laid out exactly as Grand Challenge hands a submission to its evaluation method.

Writes, under ``out``::

    input/predictions.json          one job per case and step, in shuffled order, random pks
    input/<pk>/output/images/...    each job's output mask
    ground_truth/                   the phase's ground truth (evaluation_metrics.ground_truth)

so that ``python -m evaluation_metrics.gc_method --input out/input --ground_truth
out/ground_truth --output ...`` scores the run as the platform would. A run that failed (no
prediction) becomes a job with status ``Failed`` and no output. Jobs carry the socket slugs and
relative paths of :mod:`autopet_common.contract`; input images are named ``<case>_ct.mha`` /
``<case>_pet.mha`` (Task 2: the pair's own file names), and the ground truth lists these names.
"""
from __future__ import annotations

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


def _socket(table: dict, slug: str, **content) -> dict:
    spec = table[slug]
    kind = {"image": "Image", "json": "Anything"}[spec["kind"]]
    return {"interface": {"slug": slug, "relative_path": spec["relative_path"], "kind": kind}, **content}


def _write_jobs(out: Path, jobs: list[tuple[dict, Path | None, str]], table: dict, output_slug: str,
                rng: np.random.Generator) -> None:
    """Give each job a random pk, copy its output, write predictions.json in shuffled order."""
    records = []
    for job, prediction, name in jobs:
        pk = str(uuid.UUID(bytes=rng.bytes(16), version=4))
        record = {"pk": pk, **job}
        if prediction is not None and prediction.is_file():
            target = out / "input" / pk / "output" / table[output_slug]["relative_path"] / f"{pk}.mha"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(prediction, target)
            record["status"] = "Succeeded"
            record["outputs"] = [_socket(table, output_slug, image={"name": f"{pk}.mha"})]
        else:
            record["status"] = "Failed"
            record["outputs"] = []
        records.append(record)
    order = rng.permutation(len(records))
    atomic_write_json(out / "input" / "predictions.json", [records[i] for i in order], indent=1)


def export_task1(run_dir: str | os.PathLike, out: str | os.PathLike, *, metadata: dict[str, dict] | None = None,
                 seed: int = 0) -> Path:
    """Platform layout of a ``python -m local_challenge`` run (its ``clicks/``, ``predictions/``
    and ``labels/`` folders). ``metadata``: per case ``tracer`` / ``centre`` for the subsets."""
    from autopet_common.click_io import clicks_at_step, clicks_to_gc_format, read_clicks_json
    from evaluation_metrics.ground_truth import build_ground_truth

    run_dir, out = Path(run_dir), Path(out)
    labels = run_dir / "labels"
    cases = sorted(p.name[:-len(".nii.gz")] for p in labels.glob("*.nii.gz")) if labels.is_dir() else []
    if not cases:
        raise InputError(f"{run_dir} is not a local_challenge run folder (no labels/<case>.nii.gz)")
    jobs = []
    for case in cases:
        clicks = read_clicks_json(run_dir / "clicks" / f"{case}.json", missing_ok=False)
        for step in range(TASK1_N_STEPS):
            job = {"inputs": [
                _socket(TASK1_SOCKETS, "ct-image", image={"name": f"{case}_ct.mha"}),
                _socket(TASK1_SOCKETS, "pet-image", image={"name": f"{case}_pet.mha"}),
                _socket(TASK1_SOCKETS, "lesion-clicks", value=clicks_to_gc_format(clicks_at_step(clicks, step)))]}
            jobs.append((job, run_dir / "predictions" / f"{case}_pred{step}.mha", case))
    meta = {case: {**(metadata or {}).get(case, {}), "images": [f"{case}_ct.mha", f"{case}_pet.mha"]}
            for case in cases}
    with staged_folder(out) as work:  # a second export leaves no job of the first behind
        _write_jobs(work, jobs, TASK1_SOCKETS, "tumor-lesion-segmentation", np.random.default_rng(seed))
        build_ground_truth(labels, work / "ground_truth", task=1, metadata=meta)
    return out


def export_task2(run_dir: str | os.PathLike, cohort_dir: str | os.PathLike, out: str | os.PathLike, *,
                 seed: int = 0) -> Path:
    """Platform layout of a ``python -m Task2.challenge_run`` run (``predictions/``, ``labels/``)
    with its cohort (``<pair>/input``, for the input names and clicks)."""
    from autopet_common.contract import task2_baseline_ct_subdir, task2_followup_ct_subdir
    from autopet_common.image_io import find_single_image, read_json
    from evaluation_metrics.ground_truth import build_ground_truth

    run_dir, cohort_dir, out = Path(run_dir), Path(cohort_dir), Path(out)
    labels = run_dir / "labels"
    pairs = sorted(p.name[:-len(".mha")] for p in labels.glob("*.mha")) if labels.is_dir() else []
    if not pairs:
        raise InputError(f"{run_dir} is not a Task2.challenge_run folder (no labels/<pair>.mha)")
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
        for step in (1, 2):
            job = {"inputs": [
                _socket(TASK2_SOCKETS, "primary-baseline-ct", image={"name": baseline.name}),
                _socket(TASK2_SOCKETS, seg_slug, image={"name": mask.name}),
                _socket(TASK2_SOCKETS, "primary-followup-ct", image={"name": followup.name}),
                _socket(TASK2_SOCKETS, "primary-baseline-lesion-clicks", value=base_points),
                _socket(TASK2_SOCKETS, "primary-followup-lesion-clicks", value=fu_points if step == 2 else empty)]}
            jobs.append((job, run_dir / "predictions" / f"{pair}_pred{step}.mha", pair))
        meta[pair] = {"images": [followup.name]}
    with staged_folder(out) as work:
        _write_jobs(work, jobs, TASK2_SOCKETS, "primary-followup-ct-tumor-lesion-seg", np.random.default_rng(seed))
        build_ground_truth(labels, work / "ground_truth", task=2, metadata=meta)
    return out
