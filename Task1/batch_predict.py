"""Batch prediction over cases and click steps with one model load (``nnUNetv2_predict``-like).

    python -m Task1.batch_predict -i cohort/imagesTr -o preds -m models/task1_phantom \
        --clicks_dir clicks/ --steps 0-10

For each case ``<case>_0000`` (CT) + ``<case>_0001`` (PET) of the input folder and each step s,
writes ``<case>_pred<s>.nii.gz``: the mask given the first s tumor and s background clicks of
``<clicks_dir>/<case>.json`` (or ``<case>_clicks.json``; simulator or Grand Challenge format,
as ``clicks/simulate_clicks.py --json_output`` writes them). That is the layout
``evaluation_metrics/evaluation_metrics.py --n_clicks 11`` scores.

Why: running the entrypoint once per step (as Grand Challenge does) loads the model and
preprocesses the case 11 times. Here the method is opened once, each case is read and prepared
once, and only the click channels and the forward passes change per step. The masks are the
entrypoint's, bit for bit: the same road (:mod:`Task1.session`: ``open_method``, ``prepare``,
``predict``), the same post-processing; ``benchmarks/bench_task1_model.py`` checks it.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from autopet_common.cli import ArgumentParser, entrypoint
from autopet_common.contract import MODEL_FREE
from autopet_common.errors import InputError

def parse_steps(text: str) -> list[int]:
    """``"0-10"`` -> 0..10; ``"0,5,10"`` -> [0, 5, 10]. Steps are 0..10."""
    steps: list[int] = []
    try:
        for part in str(text).split(","):
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                steps.extend(range(lo, hi + 1))
            else:
                steps.append(int(part))
    except ValueError:
        raise InputError(f"--steps must look like 0-10 or 0,5,10, got {text!r}") from None
    if not steps or any(not 0 <= s <= 10 for s in steps):
        raise InputError(f"--steps must name steps between 0 and 10, got {text!r}")
    return sorted(set(steps))


def find_case_images(folder: str | os.PathLike) -> dict[str, tuple[Path, Path]]:
    """``{case: (CT path, PET path)}`` of an nnU-Net image folder (``<case>_0000``, ``_0001``)."""
    from autopet_common.image_io import list_images, strip_image_suffix

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"input folder not found: {folder}")
    found = {}
    images = list_images(folder)
    by_stem = {strip_image_suffix(p): p for p in images}
    for stem, path in sorted(by_stem.items()):
        if stem.endswith("_0000"):
            case = stem[: -len("_0000")]
            pet = by_stem.get(f"{case}_0001")
            if pet is None:
                raise InputError(f"case {case}: no PET image {case}_0001.* in {folder}")
            found[case] = (path, pet)
    if not found:
        raise InputError(f"no CT images (<case>_0000.*) in {folder}")
    return found


def read_case_clicks(clicks_dir: Path | None, case: str, steps: Sequence[int]) -> dict:
    from autopet_common.click_io import read_clicks_json

    if clicks_dir is None:
        if any(s > 0 for s in steps):
            raise InputError("steps above 0 need --clicks_dir (clicks/simulate_clicks.py --json_output makes it)")
        return {"tumor": [], "background": []}
    for name in (f"{case}.json", f"{case}_clicks.json"):
        if (clicks_dir / name).is_file():
            return read_clicks_json(clicks_dir / name, missing_ok=False)
    raise InputError(f"case {case}: no click file {name} or {case}.json in {clicks_dir}")


_WORKER_METHODS: dict[str, Any] = {}  # in a Ray worker process: the method, loaded once per process


def predict_case_remote(model: str, method_kwargs: dict, images: dict[str, bytes], clicks: dict, steps: list[int],
                        budget: float | None) -> dict[int, bytes]:
    """A Ray task (``--cluster``): one case at every step on a worker, from its images' bytes
    (``images``: "ct" / "pet" -> (file name, bytes)); the model is loaded once per worker process.
    Returns each step's mask file (``.nii.gz``) as bytes, for the driver to write."""
    import tempfile

    from autopet_common.image_io import check_same_grid, read_image, write_mask
    from Task1.session import open_method, predict_steps

    key = f"{model}|{method_kwargs!r}"
    if key not in _WORKER_METHODS:
        _WORKER_METHODS[key] = open_method(model, **method_kwargs)
    method = _WORKER_METHODS[key]
    with tempfile.TemporaryDirectory(prefix="autopet-batch-") as tmp:
        paths = {}
        for kind, (name, data) in images.items():
            paths[kind] = Path(tmp) / f"{kind}_{Path(name).name}"
            paths[kind].write_bytes(data)
        pet, geometry = read_image(paths["pet"], np.float32, check_finite=True, what=f"PET {images['pet'][0]}")
        ct, ct_geometry = read_image(paths["ct"], np.float32, check_finite=True, what=f"CT {images['ct'][0]}")
        check_same_grid(ct_geometry, geometry, f"CT {images['ct'][0]}", f"PET {images['pet'][0]}")
        results = predict_steps(method, method.prepare(ct, pet, geometry), clicks, steps, budget=budget)
        return {step: write_mask(mask, geometry, Path(tmp) / f"pred{step}.nii.gz").read_bytes()
                for step, (mask, _) in results.items()}


def _predict_on_cluster(cluster: str, model, method_kwargs: dict, todo: dict, case_clicks: dict, steps: list[int],
                        budget: float | None, out: Path, ledger, checks: dict, timings: dict, progress: bool) -> None:
    """Every case of ``todo`` as a Ray task; the masks written here atomically, then recorded."""
    from tqdm import tqdm

    from autopet_common.image_io import atomic_write_bytes
    from autopet_common.ray_cluster import RayRunner

    runner = RayRunner(cluster)
    bar = tqdm(total=len(todo), desc="batch predict (cluster)", unit="case", disable=not progress)
    failed = []

    def finish(job: dict, masks, problem: str) -> None:
        case = job["case"]
        if masks is None:
            failed.append(f"{case}: {problem}")
        else:
            written = [atomic_write_bytes(out / f"{case}_pred{step}.nii.gz", data) for step, data in masks.items()]
            ledger.record(case, written, checks[case])
            timings["cases"][case] = time.perf_counter() - job["submitted"]
        bar.set_postfix_str(runner.progress())
        bar.update()

    for case, (ct_path, pet_path) in todo.items():
        images = {"ct": (ct_path.name, Path(ct_path).read_bytes()), "pet": (pet_path.name, Path(pet_path).read_bytes())}
        runner.submit(predict_case_remote, {"case": case, "submitted": time.perf_counter()}, case, str(model),
                      method_kwargs, images, case_clicks[case], steps, budget)
        runner.collect(finish, block=False)
    runner.collect(finish, block=True)
    bar.close()
    timings["cluster"] = runner.summary()
    if failed:
        raise InputError("batch predict on the cluster: " + "; ".join(failed))


def predict_folder(model: str | os.PathLike, input_folder: str | os.PathLike, output_folder: str | os.PathLike,
                   *, clicks_dir: str | os.PathLike | None = None, steps: Sequence[int] = range(11),
                   device: str = "auto", postprocess: Any = None, predictor_options: dict | None = None,
                   time_budget: float | None = None, progress: bool = True, overwrite: bool = False,
                   cluster: str | None = None) -> dict[str, Any]:
    """Predict every case of ``input_folder`` at every step; see the module docstring.

    Resuming (:mod:`autopet_common.resume`): a rerun into the same ``output_folder`` with the
    same model, code and options skips a case whose masks of these steps are intact (sha256)
    and whose images and clicks are unchanged; ``overwrite`` predicts every case again.
    ``time_budget``: seconds per step's prediction, as the entrypoint gives (None: no limit).
    ``cluster``: a Ray address (or "local"): one task per case, the model loaded once per worker
    process, the masks written here (:mod:`autopet_common.ray_cluster`); the same files.
    Returns timings: load seconds, per-case seconds, number of masks written, resumed cases."""
    from dataclasses import asdict

    from tqdm import tqdm

    from autopet_common.click_io import clicks_at_step
    from autopet_common.image_io import check_same_grid, read_image, write_mask
    from autopet_common.output_folder import check_output_folder
    from autopet_common.resume import Ledger, code_fingerprint, files_fingerprint, folder_fingerprint

    steps = list(steps)
    cases = find_case_images(input_folder)
    clicks_dir = Path(clicks_dir) if clicks_dir is not None else None
    if clicks_dir is not None and not clicks_dir.is_dir():
        raise InputError(f"click folder not found: {clicks_dir}")
    case_clicks = {case: read_case_clicks(clicks_dir, case, steps) for case in cases}  # fail before work
    out = check_output_folder(output_folder, "prediction output folder")
    from Task1.postprocessing import PostprocessOptions

    ledger = Ledger(out, {"tool": "batch_predict", "model": str(model),
                          "model_files": folder_fingerprint(model) if str(model) != MODEL_FREE else None,
                          "code": code_fingerprint(Path(__file__).resolve().parents[1] / "inference.py"),
                          "device": device, "postprocess": asdict(postprocess or PostprocessOptions()),
                          "predictor_options": predictor_options or {}}, overwrite=overwrite)
    inputs = {case: files_fingerprint(paths) for case, paths in cases.items()}
    checks = {case: {"inputs": inputs[case], "steps": steps,
                     "clicks": [clicks_at_step(case_clicks[case], s) for s in steps]} for case in cases}
    todo = {case: paths for case, paths in cases.items() if ledger.finished(case, checks[case]) is None}
    timings: dict[str, Any] = {"load_s": 0.0, "cases": {}, "resumed": sorted(set(cases) - set(todo))}
    if timings["resumed"]:
        print(f"batch predict: {len(timings['resumed'])} of {len(cases)} case(s) finished by an earlier run into "
              f"{out} (masks checked by sha256): not predicted again (--overwrite redoes them)", file=sys.stderr)
    if not todo:
        timings["n_masks"] = 0
        return timings
    if cluster is not None:
        _predict_on_cluster(cluster, model, {"device": device, "postprocess": postprocess,
                                             "predictor_options": predictor_options or {}},
                            todo, case_clicks, steps, time_budget, out, ledger, checks, timings, progress)
        timings["n_masks"] = len(todo) * len(steps)
        return timings
    from Task1.session import open_method, predict_steps

    started = time.perf_counter()
    method = open_method(model, device=device, postprocess=postprocess, predictor_options=predictor_options or {})
    timings["load_s"] = time.perf_counter() - started
    for case, (ct_path, pet_path) in tqdm(todo.items(), desc="batch predict", unit="case", disable=not progress):
        t = time.perf_counter()
        pet, geometry = read_image(pet_path, np.float32, check_finite=True, what=f"PET of case {case}")
        ct, ct_geometry = read_image(ct_path, np.float32, check_finite=True, what=f"CT of case {case}")
        check_same_grid(ct_geometry, geometry, f"CT {ct_path}", f"PET {pet_path}")
        prepared = method.prepare(ct, pet, geometry)
        results = predict_steps(method, prepared, case_clicks[case], steps, budget=time_budget)
        written = [write_mask(mask, geometry, out / f"{case}_pred{step}.nii.gz") for step, (mask, _) in results.items()]
        ledger.record(case, written, checks[case])
        timings["cases"][case] = time.perf_counter() - t
    timings["n_masks"] = len(todo) * len(steps)
    return timings


@entrypoint("python -m Task1.batch_predict")
def main(argv: Sequence[str] | None = None) -> int:
    from autopet_common.cli import positive_float
    from Task1.session import add_method_arguments, method_options

    parser = ArgumentParser(
        prog="python -m Task1.batch_predict",
        description="Predict Task 1 masks for a folder of cases at several click steps with one model load "
                    "(the model is loaded once, each case preprocessed once). Writes <case>_pred<s>.nii.gz, "
                    "the layout evaluation_metrics.py --n_clicks scores; the masks equal the entrypoint's.")
    parser.add_argument("-i", "--input", required=True, help="folder of <case>_0000 (CT) and <case>_0001 (PET) images")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("-m", "--model", required=True, help="nnU-Net model folder, or 'model-free'")
    parser.add_argument("--clicks_dir", default=None,
                        help="<case>.json or <case>_clicks.json per case (needed for steps above 0)")
    parser.add_argument("--steps", default="0-10", help="steps to predict: 0-10 (default), or a list 0,5,10")
    add_method_arguments(parser)
    parser.add_argument("--time_budget", type=positive_float, default=None,
                        help="seconds per step's prediction, as inference.py gives it (default: no limit)")
    parser.add_argument("--overwrite", action="store_true",
                        help="predict every case again; by default a rerun into the same output skips the cases an "
                             "earlier run finished with the same model, code and options (masks checked by sha256)")
    parser.add_argument("--cluster", default=None, metavar="ADDRESS",
                        help="predict each case as a Ray task on this cluster (HEAD_IP:6379, or 'local'; one GPU per "
                             "task when the cluster has GPUs), the model loaded once per worker process; the masks "
                             "are written here (pip install '.[cluster]')")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    timings = predict_folder(args.model, args.input, args.output, clicks_dir=args.clicks_dir,
                             steps=parse_steps(args.steps), time_budget=args.time_budget,
                             progress=not args.no_progress, overwrite=args.overwrite, cluster=args.cluster,
                             **method_options(args))
    per_case = list(timings["cases"].values())
    print(f"wrote {timings['n_masks']} mask(s) to {args.output}"
          + (f"; model load {timings['load_s']:.1f} s, median {np.median(per_case):.1f} s per case" if per_case else "")
          + (f"; {len(timings['resumed'])} case(s) resumed" if timings["resumed"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
