"""Benchmark of Task 1 methods on held-out phantoms: the 11-step protocol, time and memory.

    .venv/bin/python benchmarks/bench_task1_model.py [--cases 8] [--noclick_model DIR]

1. Held-out phantoms: ``--cases`` cases (FDG and PSMA alternating; 128x128x96 at 4x4x6 mm and
   200x200x160 at 3x3x4.5 mm in turn: grids and spacings the shipped model never trained on;
   seeds ``[--seed, n]``, disjoint from the training seeds; 1 to 12 lesions each) written as a
   raw cohort. ``--varied`` uses the training generator's variation (other uptake, blur, noise,
   calibration, distractors, body position) with held-out seeds instead.
2. Each method runs in its own process (peak RSS of that process): the challenge's 10 + 10
   clicks per case (:func:`clicks.simulate_clicks`), steps 0..10 with the model loaded once
   (:func:`Task1.session.open_method`, the entrypoint's road and post-processing), scored with
   the project's metrics. Methods: the shipped click model, the model-free baseline (the
   reference, always measured), with ``--noclick_model`` the same network trained without
   clicks (``python -m Task1.train_phantom_model --trainer autoPETTrainerClicks_cpu_noclicks``),
   and ``--extra NAME=FOLDER`` rows for any other model folder (MONAI models:
   ``python -m Task1.monai_backend.train``).
3. Faithful versus fast: ``--identity_cases`` cases through ``python -m local_challenge`` one
   process per step (as Grand Challenge runs it) and ``--in_process``; the masks must be
   identical; the table reports both wall times.

Prints Markdown tables (mean over cases; AUC by the trapezoid rule over steps 0..10; time per
step is the median over cases of the in-process time per step).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
STEPS = list(range(11))
SIZES = ("small", "medium")


def write_heldout_cohort(out: Path, n_cases: int, seed: int, varied: bool, *, organs: bool = False) -> Path:
    """Raw cohort (imagesTr/<case>_0000, _0001, labelsTr/<case>; with ``organs`` also
    organsTr/<case>) of held-out phantoms."""
    from autopet_common.image_io import write_image, write_mask
    from autopet_common.phantoms import make_petct_case
    from Task1.train_phantom_model import varied_phantom

    for n in range(n_cases):
        tracer = ("FDG", "PSMA")[n % 2]
        size = SIZES[(n // 2) % 2]
        if varied:
            case = varied_phantom(seed, n)
            case_id = f"HELDOUT_VARIED_{case.tracer}_{n:03d}"
        else:
            lesions = int(np.random.default_rng([seed, n, 7]).integers(1, 13))
            case = make_petct_case(size=size, tracer=tracer, seed=[seed, n], n_lesions=lesions)
            case_id = f"HELDOUT_{tracer}_{size}_{n:03d}"
        write_image(np.round(case.ct).astype(np.int16), case.geometry, out / "imagesTr" / f"{case_id}_0000.nii.gz")
        write_image(case.pet, case.geometry, out / "imagesTr" / f"{case_id}_0001.nii.gz", dtype=np.float32)
        write_mask(case.label, case.geometry, out / "labelsTr" / f"{case_id}.nii.gz")
        if organs:
            from autopet_common.phantoms import write_organ_map

            write_organ_map(case, out / "organsTr", case_id)
    return out


def worker(model: str, cohort: Path, result_path: Path) -> None:
    """One method on every case: metrics per step and seconds per step, as JSON."""
    from autopet_common.image_io import atomic_write_json, read_image
    from clicks import simulate_clicks
    from evaluation_metrics import compute_metrics_arrays
    from Task1.batch_predict import find_case_images
    from Task1.session import open_method, predict_steps

    started = time.perf_counter()
    method = open_method(model, device="cpu")
    load_s = time.perf_counter() - started
    cases = {}
    for case, (ct_path, pet_path) in find_case_images(cohort / "imagesTr").items():
        ct, geometry = read_image(ct_path, np.float32)
        pet, _ = read_image(pet_path, np.float32)
        label, _ = read_image(cohort / "labelsTr" / f"{case}.nii.gz")
        label = (label > 0).astype(np.uint8)
        clicks = simulate_clicks(label, pet, dataset_name="FDG-PETCT", case=case)
        t = time.perf_counter()
        results = predict_steps(method, method.prepare(ct, pet, geometry), clicks, STEPS)
        seconds = (time.perf_counter() - t) / len(STEPS)
        rows = [compute_metrics_arrays(label, results[s][0], geometry.voxel_volume_ml) for s in STEPS]
        cases[case] = {"dice": [r[0] for r in rows], "fpv": [r[1] for r in rows], "fnv": [r[2] for r in rows],
                       "seconds_per_step": seconds, "shape": list(geometry.shape)}
    atomic_write_json(result_path, {"model": method.name, "load_s": load_s, "cases": cases})


def run_method(name: str, model: str, cohort: Path, work: Path) -> dict:
    from local_challenge.runner import run_process

    result_path = work / f"result_{name}.json"
    log = work / f"log_{name}.txt"
    seconds, peak_mb, code, _ = run_process([sys.executable, __file__, "--worker", model, "--cohort", str(cohort),
                                             "--result", str(result_path)], log, None)
    if code != 0:
        raise SystemExit(f"{name} failed ({code}); log {log}:\n{log.read_text()[-2000:]}")
    result = json.loads(result_path.read_text())
    result.update(name=name, wall_s=seconds, peak_rss_mb=peak_mb)
    return result


def summarise(result: dict) -> dict:
    from evaluation_metrics import interactive_auc

    cases = list(result["cases"].values())
    per_step = {k: [float(np.nanmean([c[k][s] for c in cases])) for s in STEPS] for k in ("dice", "fpv", "fnv")}
    auc = {k: float(np.nanmean([interactive_auc(c[k]) for c in cases])) for k in ("dice", "fpv", "fnv")}
    return {"per_step": per_step, "auc": auc,
            "seconds_per_step": statistics.median(c["seconds_per_step"] for c in cases),
            "peak_rss_mb": result["peak_rss_mb"], "load_s": result["load_s"]}


def identity_check(model: str, cohort: Path, work: Path, n_cases: int) -> dict:
    """local_challenge one process per step versus in-process on the first ``n_cases`` cases."""
    from autopet_common.image_io import read_image
    from local_challenge.runner import run_local_challenge

    timings, folders = {}, {}
    for mode in ("process", "in_process"):
        out = work / f"identity_{mode}"
        t = time.perf_counter()
        run_local_challenge(cohort, out, model=model, max_cases=n_cases, progress=False, overlays=False,
                            in_process=mode == "in_process")
        timings[mode] = time.perf_counter() - t
        folders[mode] = out / "predictions"
    files = sorted(p.name for p in folders["process"].glob("*.mha"))
    different = [name for name in files
                 if not np.array_equal(read_image(folders["process"] / name)[0],
                                       read_image(folders["in_process"] / name)[0])]
    return {"masks": len(files), "different": different, **timings,
            "speedup": timings["process"] / timings["in_process"]}


def _f(value: float, digits: int = 3) -> str:
    return "nan" if value != value else f"{value:.{digits}f}"


def print_tables(summaries: dict, reference: str, n_cases: int, cohort_kind: str) -> None:
    print(f"\n**Task 1 methods, 11-step protocol** ({n_cases} held-out {cohort_kind} phantoms; mean over cases)\n")
    print("| method | DSC@0 | DSC@10 | FPV@10 (ml) | FNV@10 (ml) | AUC-DSC | AUC-FPV | AUC-FNV | s / step | "
          "time vs model-free | peak RSS (MB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ref_time = summaries[reference]["seconds_per_step"]
    for name, s in summaries.items():
        d, fpv, fnv = s["per_step"]["dice"], s["per_step"]["fpv"], s["per_step"]["fnv"]
        print(f"| {name} | {_f(d[0])} | {_f(d[-1])} | {_f(fpv[-1])} | {_f(fnv[-1])} | {_f(s['auc']['dice'])} | "
              f"{_f(s['auc']['fpv'], 2)} | {_f(s['auc']['fnv'], 2)} | {_f(s['seconds_per_step'], 2)} | "
              f"{s['seconds_per_step'] / ref_time:.1f}x | {_f(s['peak_rss_mb'] or float('nan'), 0)} |")
    print("\nMean DSC per step 0..10:\n")
    for name, s in summaries.items():
        print(f"- {name}: " + ", ".join(_f(v, 2) for v in s["per_step"]["dice"]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(REPO / "models" / "task1_phantom"), help="click model folder")
    parser.add_argument("--noclick_model", default=None, help="the same network trained without clicks")
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1000, help="phantom seed (training used 0)")
    parser.add_argument("--varied", action="store_true", help="held-out phantoms with the training variation")
    parser.add_argument("--methods", default="click,noclick,model-free",
                        help="comma-separated subset of click,noclick,model-free (noclick needs --noclick_model; "
                             "the model-free reference is always measured)")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=FOLDER",
                        help="another method row: any model folder the entrypoint takes (nnU-Net, MONAI, "
                             "recipe); repeatable")
    parser.add_argument("--identity_cases", type=int, default=1, help="cases for the process/in-process check")
    parser.add_argument("--json", default=None, help="also write the summaries here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cohort", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, Path(args.cohort), Path(args.result))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench_task1_model.") as tmp:
        work = Path(tmp)
        cohort = write_heldout_cohort(work / "cohort", args.cases, args.seed, args.varied)
        wanted = {m.strip() for m in args.methods.split(",")} | {"model-free"}
        methods = {}
        if "click" in wanted:
            methods["click model (shipped)"] = args.model
        if "noclick" in wanted and args.noclick_model:
            methods["same network, no clicks"] = args.noclick_model
        for item in args.extra:
            name, sep, folder = item.partition("=")
            if not sep or not name.strip() or not Path(folder).is_dir():
                parser.error(f"--extra {item!r}: expected NAME=FOLDER with an existing folder")
            methods[name.strip()] = folder
        methods["model-free baseline (reference)"] = "model-free"
        summaries = {}
        for n, (name, model) in enumerate(methods.items()):
            print(f"running {name} ...", file=sys.stderr, flush=True)
            summaries[name] = summarise(run_method(f"method{n}", model, cohort, work))
        print_tables(summaries, "model-free baseline (reference)", args.cases, "varied" if args.varied else "standard")
        identity = None
        if args.identity_cases:
            print("process-per-step versus in-process ...", file=sys.stderr, flush=True)
            identity = identity_check(args.model, cohort, work, args.identity_cases)
            print(f"\n**Faithful versus fast** ({args.identity_cases} case(s) x 11 steps, shipped model, "
                  "`python -m local_challenge`):\n")
            print("| mode | wall time (s) | speed-up | masks identical |")
            print("|---|---:|---:|---|")
            same = f"{identity['masks'] - len(identity['different'])} / {identity['masks']}"
            print(f"| one process per step (as Grand Challenge) | {identity['process']:.1f} | 1.0x | |")
            print(f"| `--in_process` (model loaded once, case preprocessed once) | {identity['in_process']:.1f} | "
                  f"{identity['speedup']:.1f}x | {same} |")
        if args.json:
            Path(args.json).write_text(json.dumps({"summaries": summaries, "identity": identity}, indent=2))
        if identity and identity["different"]:
            print(f"error: masks differ between modes: {identity['different']}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
