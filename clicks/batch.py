"""Folder-level click simulation: the published ``process_images`` job, with skipping,
parallel cases, a progress bar and a failure summary.

Inputs use nnU-Net naming: labels ``<labels>/<case>.nii.gz``, PET ``<case>_0001.nii.gz`` in
``input_pet`` or, without it, in the label folder's path with ``labels`` replaced by
``images`` (``labelsTr`` -> ``imagesTr``), as the challenge does. Outputs:

- ``<json_output>/<case>_clicks.json`` (simulator format),
- ``<json_output>/gc/<case>_clicks.json`` (Grand Challenge "Multiple points" format),
- with ``output_heatmap``: ``<output_heatmap>/<case>_0002.nii.gz`` (tumor) and
  ``_0003.nii.gz`` (background), float32 on the label's grid; for ``Longitudinal-CT`` one
  tumor channel, named ``_0003.nii.gz`` as in the published script.

All outputs of a case are computed before any is written, and each write is atomic: a failing
case leaves no partial output. Existing outputs are skipped unless ``overwrite``.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from autopet_common.errors import InputError

from .simulate import SEED, dataset_settings

LABEL_SUFFIXES = (".nii.gz", ".nii", ".mha", ".nrrd")


@dataclass
class CaseResult:
    case: str
    status: str                  # "done", "skipped" or "failed"
    message: str = ""
    warnings: list[str] = field(default_factory=list)


def case_name(label_path: str | os.PathLike) -> str:
    from autopet_common.image_io import strip_image_suffix
    return strip_image_suffix(label_path)


def pet_path_for(label_path: str | os.PathLike, input_pet: str | os.PathLike | None = None,
                 channel: str = "_0001") -> Path:
    """Where the PET of a label lives: ``<input_pet>/<case>_0001<suffix>`` (or ``input_pet``
    itself when it is a file), else the label's folder with ``labels`` -> ``images``."""
    from autopet_common.image_io import image_suffix
    label_path = Path(label_path)
    name = case_name(label_path) + channel + image_suffix(label_path)
    if input_pet is not None:
        input_pet = Path(input_pet)
        return input_pet if input_pet.is_file() else input_pet / name
    return Path(str(label_path.parent).replace("labels", "images")) / name


def output_paths(case: str, dataset_name: str, json_output: str | os.PathLike,
                 output_heatmap: str | os.PathLike | None) -> dict[str, Path]:
    json_output = Path(json_output)
    paths = {"json": json_output / f"{case}_clicks.json",
             "gc_json": json_output / "gc" / f"{case}_clicks.json"}
    if output_heatmap is not None:
        with_background, _ = dataset_settings(dataset_name)
        heatmaps = Path(output_heatmap)
        if with_background:
            paths["tumor_heatmap"] = heatmaps / f"{case}_0002.nii.gz"
            paths["background_heatmap"] = heatmaps / f"{case}_0003.nii.gz"
        else:
            paths["tumor_heatmap"] = heatmaps / f"{case}_0003.nii.gz"
    return paths


def simulate_case_files(label_path: str | os.PathLike, json_output: str | os.PathLike,
                        dataset_name: str = "FDG-PETCT", input_pet: str | os.PathLike | None = None,
                        output_heatmap: str | os.PathLike | None = None, click_budget: int | None = None,
                        center_offset: int | None = None, edge_offset: int | None = None,
                        seed: int = SEED, background_in_component: bool = False,
                        encoding: str = "gaussian", encoding_size: float | None = None,
                        encoding_in_mm: bool = False, overwrite: bool = False) -> CaseResult:
    """Simulate and write one case's clicks (and heatmaps). Raises :class:`InputError` for bad
    input; returns a :class:`CaseResult` (``skipped`` when all outputs exist)."""
    import numpy as np

    from autopet_common.click_io import write_clicks_json
    from autopet_common.image_io import write_image

    from .encodings import encode_clicks
    from .simulate import load_case, simulate_clicks

    case = case_name(label_path)
    paths = output_paths(case, dataset_name, json_output, output_heatmap)
    if not overwrite and all(p.is_file() for p in paths.values()):
        return CaseResult(case, "skipped")
    with_background, _ = dataset_settings(dataset_name)
    pet_path = pet_path_for(label_path, input_pet) if with_background else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        label, pet, geometry, _ = load_case(label_path, pet_path, with_background, case)
        clicks = simulate_clicks(label, pet, dataset_name, click_budget=click_budget, center_offset=center_offset,
                                 edge_offset=edge_offset, seed=seed, background_in_component=background_in_component,
                                 case=case)
    messages = [str(w.message) for w in caught]
    heatmaps = {}
    if output_heatmap is not None:
        tumor_map, background_map = encode_clicks(label.shape, clicks, encoding, encoding_size,
                                                  geometry.spacing, encoding_in_mm)
        heatmaps["tumor_heatmap"] = tumor_map
        if with_background:
            heatmaps["background_heatmap"] = background_map
    for key, array in heatmaps.items():
        write_image(array.astype(np.float32, copy=False), geometry, paths[key])
    write_clicks_json(paths["json"], clicks, gc_format=False)
    write_clicks_json(paths["gc_json"], clicks, gc_format=True)
    return CaseResult(case, "done", warnings=messages)


def _run_case(kwargs: dict) -> CaseResult:
    """Worker: one case; bad input becomes a ``failed`` result naming the case."""
    case = case_name(kwargs["label_path"])
    try:
        return simulate_case_files(**kwargs)
    except (InputError, ValueError, OSError) as exc:
        return CaseResult(case, "failed", str(exc) if case in str(exc) else f"{case}: {exc}")
    except Exception as exc:  # a bug must not stop the other cases; reported in the summary
        return CaseResult(case, "failed", f"{case}: unexpected {type(exc).__name__}: {exc}")


def simulate_case_remote(kwargs: dict, label_bytes: bytes, pet_bytes: bytes | None) -> tuple[CaseResult, dict]:
    """A Ray task (``--cluster``): one case simulated on a worker from its files' bytes; returns
    the result and the outputs' bytes by their real paths, for the driver to write."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="autopet-clicks-") as tmp:
        tmp = Path(tmp)
        label_path = Path(kwargs["label_path"])
        local = dict(kwargs, label_path=str(tmp / "labels" / label_path.name), json_output=str(tmp / "json"),
                     output_heatmap=None if kwargs.get("output_heatmap") is None else str(tmp / "heatmaps"),
                     input_pet=None, overwrite=True)
        Path(local["label_path"]).parent.mkdir(parents=True)
        Path(local["label_path"]).write_bytes(label_bytes)
        if pet_bytes is not None:
            pet_path = pet_path_for(local["label_path"])
            pet_path.parent.mkdir(parents=True, exist_ok=True)
            pet_path.write_bytes(pet_bytes)
        result = _run_case(local)
        case = case_name(label_path)
        made = output_paths(case, kwargs["dataset_name"], local["json_output"], local["output_heatmap"])
        real = output_paths(case, kwargs["dataset_name"], kwargs["json_output"], kwargs.get("output_heatmap"))
        files = {str(real[key]): made[key].read_bytes() for key in made if made[key].is_file()}
    return result, files


def _simulate_on_cluster(jobs: list[dict], cluster: str, bar) -> list[CaseResult]:
    """Every job as a Ray task; the outputs written here, atomically (all of a case or none)."""
    from autopet_common.image_io import atomic_write_bytes
    from autopet_common.ray_cluster import RayRunner

    runner = RayRunner(cluster)
    results: list[CaseResult] = []

    def finish(job: dict, answer, problem: str) -> None:
        case = case_name(job["label_path"])
        if answer is None:
            results.append(CaseResult(case, "failed", f"{case}: {problem}"))
        else:
            result, files = answer
            if result.status == "done":
                for path, data in files.items():
                    atomic_write_bytes(path, data)
            results.append(result)
        bar.set_postfix_str(runner.progress())
        bar.update()

    for job in jobs:
        case = case_name(job["label_path"])
        paths = output_paths(case, job["dataset_name"], job["json_output"], job.get("output_heatmap"))
        if not job.get("overwrite") and all(p.is_file() for p in paths.values()):
            results.append(CaseResult(case, "skipped"))
            bar.update()
            continue
        with_background, _ = dataset_settings(job["dataset_name"])
        pet_path = pet_path_for(job["label_path"], job.get("input_pet")) if with_background else None
        try:
            label_bytes = Path(job["label_path"]).read_bytes()
            pet_bytes = pet_path.read_bytes() if pet_path is not None else None
        except OSError as exc:
            results.append(CaseResult(case, "failed", f"{case}: {exc}"))
            bar.update()
            continue
        runner.submit(simulate_case_remote, job, case, job, label_bytes, pet_bytes)
        runner.collect(finish, block=False)
    runner.collect(finish, block=True)
    return results


def list_label_files(input_label: str | os.PathLike) -> list[Path]:
    """Label images in a folder (sorted), or the single file ``input_label``."""
    from autopet_common.image_io import list_images
    path = Path(input_label)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"label input not found: {path}")
    from autopet_common.image_io import strip_image_suffix

    files = list_images(path, LABEL_SUFFIXES)
    seen: dict[str, Path] = {}
    for file in files:  # case.nii.gz and case.mha would write the same case_clicks.json
        case = strip_image_suffix(file)
        if case in seen:
            raise InputError(f"two labels for case {case!r} in {path}: {seen[case].name} and {file.name}; keep one")
        seen[case] = file
    return files


def simulate_folder(input_label: str | os.PathLike, json_output: str | os.PathLike,
                    dataset_name: str = "FDG-PETCT", input_pet: str | os.PathLike | None = None,
                    output_heatmap: str | os.PathLike | None = None, num_processes: int = 1,
                    progress: bool = True, cluster: str | None = None, **options) -> list[CaseResult]:
    """Simulate clicks for every label in ``input_label`` (a folder or one file).

    ``cluster``: a Ray address (or "local"): one task per case (:mod:`autopet_common.ray_cluster`),
    the outputs written by this process; the same files as a local run.

    ``options`` are passed to :func:`simulate_case_files` (click_budget, center_offset,
    edge_offset, seed, background_in_component, encoding, encoding_size, encoding_in_mm,
    overwrite). Failing cases are reported in the returned results; the others complete.
    """
    from autopet_common.output_folder import check_output_folder

    dataset_settings(dataset_name)  # fail early on an unknown dataset name
    check_output_folder(json_output, "click output folder")
    if output_heatmap is not None:
        check_output_folder(output_heatmap, "heatmap output folder")
    labels = list_label_files(input_label)
    jobs = [dict(label_path=str(p), json_output=str(json_output), dataset_name=dataset_name,
                 input_pet=None if input_pet is None else str(input_pet),
                 output_heatmap=None if output_heatmap is None else str(output_heatmap), **options)
            for p in labels]
    from tqdm import tqdm
    bar = tqdm(total=len(jobs), desc="simulating clicks", unit="case", disable=not progress)
    results: list[CaseResult] = []
    if cluster is not None:
        results = _simulate_on_cluster(jobs, cluster, bar)
    elif num_processes <= 1 or len(jobs) <= 1:
        for job in jobs:
            results.append(_run_case(job))
            bar.update()
    else:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=num_processes) as pool:
            for result in pool.map(_run_case, jobs):
                results.append(result)
                bar.update()
    bar.close()
    return results


def summarise(results: Sequence[CaseResult]) -> str:
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    lines = [f"{len(results)} case(s): {counts['done']} simulated, {counts['skipped']} skipped "
             f"(outputs exist; --overwrite to redo), {counts['failed']} failed"]
    for result in results:
        for message in result.warnings:
            lines.append(f"warning: {message}")
    for result in results:
        if result.status == "failed":
            lines.append(f"failed: {result.message}")
    return "\n".join(lines)
