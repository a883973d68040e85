"""Benchmark of Task 1 methods on held-out phantoms: the 11-step protocol, time and memory.

    .venv/bin/python benchmarks/bench_task1_model.py [--cases 8] [--cohort standard] [--noclick_model DIR]

1. Held-out phantoms (``--cohort``), ``--cases`` cases, FDG and PSMA alternating, seeds
   ``[--seed, n]`` (disjoint from the training seeds), written as a raw cohort:

   - ``standard`` (set (a) of issue 33): 128x128x96 at 4x4x6 mm and 200x200x160 at 3x3x4.5 mm in
     turn, 1 to 12 lesions each; ``varied`` (or ``--varied``): the varied training generator's
     variation (other uptake, blur, noise, calibration, distractors, body position);
   - ``full`` (set (b)): the standard anatomy at the real autoPET grid, 400x400x326 at
     2.04x2.04x3 mm (``autopet-phantoms task1 --size full``), 1 to 12 lesions each;
   - ``second`` (set (c)): :mod:`autopet_common.phantoms.second_anatomy`, a body no training
     generator can make (no bones, other organ shapes and places, a stomach or duodenum, uniform
     lesions, additive noise), on 128x128x160 at 4x4x6 mm and 160x160x200 at 3.5x3.5x5 mm in
     turn; ``second_full``: the same anatomy at the real grid.
2. Each method runs in its own process (peak RSS of that process): the challenge's 10 + 10
   clicks per case (:func:`clicks.simulate_clicks`), steps 0..10 with the model loaded once
   (:func:`Task1.session.open_method`, the entrypoint's road and post-processing), scored with
   the project's metrics. With ``--incremental`` (the default for the full-size cohorts) the
   method keeps its sliding-window tiles between steps (``open_method(..., incremental=True)``,
   the viewer's road: masks equal to a full prediction, tested in ``test/test_viewer.py``), so
   11 steps of a full-size case cost about one cold step. Methods: the shipped click model, the model-free baseline (the
   reference, always measured), with ``--noclick_model`` the same network trained without
   clicks (``python -m Task1.train_phantom_model --trainer autoPETTrainerClicks_cpu_noclicks``),
   and ``--extra NAME=FOLDER`` rows for any other model folder (MONAI models:
   ``python -m Task1.monai_backend.train``).
3. Faithful versus fast: ``--identity_cases`` cases through ``python -m local_challenge`` one
   process per step (as Grand Challenge runs it) and ``--in_process``; the masks must be
   identical; the table reports both wall times.

4. ``--cold_step``: the first case through ``inference.py`` at step 10 in its own process, as
   Grand Challenge runs one step (wall time and peak RSS), for each model method.

Prints Markdown tables (mean over cases; AUC by the trapezoid rule over steps 0..10; time per
step is the median over cases of the in-process time per step), the click criterion of issue
33: the share of the step-0 error the clicks remove, (DSC@10 - DSC@0) / (1 - DSC@0), each case's
DSC@0, DSC@10 and AUC-DSC with the means' standard errors (how far one case moves a mean), and where
the Dice is lost at steps 0 and 10 (:func:`evaluation_metrics.breakdown.error_breakdown`:
the Dice each kind of error costs, mean over cases with lesions; boundary = the first voxel layer),
and at step 10 in how many cases each click rule acted (:func:`click_rules_done`).
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
BREAKDOWN_STEPS = (0, 10)  # where the error breakdown is measured (the first and last step)
SIZES = ("small", "medium")
COHORTS = ("standard", "varied", "full", "second", "second_full")
# the second anatomy's grids (shape, spacing): whole trunk and head in the field of view
SECOND_GRIDS = (((128, 128, 160), (4.0, 4.0, 6.0)), ((160, 160, 200), (3.5, 3.5, 5.0)))


def write_heldout_cohort(out: Path, n_cases: int, seed: int, varied: bool | str, *, organs: bool = False) -> Path:
    """Raw cohort (imagesTr/<case>_0000, _0001, labelsTr/<case>; with ``organs`` also
    organsTr/<case>) of held-out phantoms of cohort ``varied`` (one of :data:`COHORTS`; True is
    ``"varied"``, False ``"standard"``)."""
    from autopet_common.image_io import write_image, write_mask
    from autopet_common.phantoms import PRESETS, make_petct_case
    from autopet_common.phantoms.second_anatomy import second_anatomy_case
    from Task1.train_phantom_model import varied_phantom

    kind = {True: "varied", False: "standard"}.get(varied, varied)
    if kind not in COHORTS:
        raise ValueError(f"unknown cohort {kind!r}; choose one of {', '.join(COHORTS)}")
    for n in range(n_cases):
        tracer = ("FDG", "PSMA")[n % 2]
        size = SIZES[(n // 2) % 2]
        lesions = int(np.random.default_rng([seed, n, 7]).integers(1, 13))
        if kind == "varied":
            case = varied_phantom(seed, n)
            case_id = f"HELDOUT_VARIED_{case.tracer}_{n:03d}"
        elif kind == "full":
            case = make_petct_case(size="full", tracer=tracer, seed=[seed, n], n_lesions=lesions)
            case_id = f"HELDOUT_FULL_{tracer}_{n:03d}"
        elif kind.startswith("second"):
            shape, spacing = PRESETS["full"] if kind == "second_full" else SECOND_GRIDS[(n // 2) % 2]
            case = second_anatomy_case(tracer, [seed, n], size=None, shape=shape, spacing=spacing)
            case_id = f"HELDOUT_{kind.upper()}_{tracer}_{n:03d}"
        else:
            case = make_petct_case(size=size, tracer=tracer, seed=[seed, n], n_lesions=lesions)
            case_id = f"HELDOUT_{tracer}_{size}_{n:03d}"
        write_image(np.round(case.ct).astype(np.int16), case.geometry, out / "imagesTr" / f"{case_id}_0000.nii.gz")
        write_image(case.pet, case.geometry, out / "imagesTr" / f"{case_id}_0001.nii.gz", dtype=np.float32)
        write_mask(case.label, case.geometry, out / "labelsTr" / f"{case_id}.nii.gz")
        if organs:
            from autopet_common.phantoms import write_organ_map

            write_organ_map(case, out / "organsTr", case_id)
    return out


def worker(model: str, cohort: Path, result_path: Path, incremental: bool = False) -> None:
    """One method on every case: metrics per step and seconds per step, as JSON."""
    from autopet_common.image_io import atomic_write_json, read_image
    from clicks import simulate_clicks
    from evaluation_metrics import compute_metrics_arrays
    from evaluation_metrics.breakdown import error_breakdown
    from Task1.batch_predict import find_case_images
    from Task1.session import open_method, predict_steps

    started = time.perf_counter()
    method = open_method(model, device="cpu", incremental=incremental)
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
        errors = {str(s): error_breakdown(label, results[s][0], geometry.spacing).as_dict() for s in BREAKDOWN_STEPS}
        rules = {str(s): click_rules_done(results[s][1].postprocessing) for s in BREAKDOWN_STEPS}
        cases[case] = {"dice": [r[0] for r in rows], "fpv": [r[1] for r in rows], "fnv": [r[2] for r in rows],
                       "errors": errors, "click_rules": rules, "seconds_per_step": seconds,
                       "shape": list(geometry.shape)}
    atomic_write_json(result_path, {"model": method.name, "load_s": load_s, "cases": cases})


def click_rules_done(postprocessing: list[dict]) -> dict[str, int]:
    """What the click rules did in one prediction (its report's post-processing entries): whether
    the protocol rule fired, and the voxels the background cut removed (0 and 0 without rules)."""
    done = [op for op in postprocessing if "protocol_rule_fired" in op]
    return {"protocol_rule_fired": int(any(op["protocol_rule_fired"] for op in done)),
            "background_cut_voxels": int(sum(op.get("background_cut_voxels", 0) for op in done))}


def run_method(name: str, model: str, cohort: Path, work: Path, incremental: bool = False) -> dict:
    from local_challenge.runner import run_process

    result_path = work / f"result_{name}.json"
    log = work / f"log_{name}.txt"
    seconds, peak_mb, code, _ = run_process([sys.executable, __file__, "--worker", model, "--worker_cohort", str(cohort),
                                             "--result", str(result_path)] + (["--incremental"] if incremental else []),
                                            log, None)
    if code != 0:
        raise SystemExit(f"{name} failed ({code}); log {log}:\n{log.read_text()[-2000:]}")
    result = json.loads(result_path.read_text())
    result.update(name=name, wall_s=seconds, peak_rss_mb=peak_mb)
    return result


def summarise(result: dict) -> dict:
    from evaluation_metrics import interactive_auc
    from evaluation_metrics.breakdown import ErrorBreakdown

    cases = list(result["cases"].values())
    per_step = {k: [float(np.nanmean([c[k][s] for c in cases])) for s in STEPS] for k in ("dice", "fpv", "fnv")}
    auc = {k: float(np.nanmean([interactive_auc(c[k]) for c in cases])) for k in ("dice", "fpv", "fnv")}
    dice_cost, costs = {}, []
    for step in BREAKDOWN_STEPS:
        costs = [ErrorBreakdown(**c["errors"][str(step)]).dice_cost() for c in cases]
        dice_cost[str(step)] = {k: float(np.nanmean([c[k] for c in costs])) for k in costs[0]}
    # the click rules at the last step (``costs`` is that step's, per case): in how many cases each
    # acted, and the spurious components' Dice cost where the protocol rule did not fire (what the
    # clicks could not reach)
    last = str(BREAKDOWN_STEPS[-1])
    fired = [c["click_rules"][last]["protocol_rule_fired"] for c in cases]
    unfired = [cost["spurious"] for cost, f in zip(costs, fired) if not f]
    rules = {"cases": len(cases), "protocol_rule_fired": int(sum(fired)),
             "background_cut_acted": int(sum(c["click_rules"][last]["background_cut_voxels"] > 0 for c in cases)),
             "spurious_cost_unfired": float(np.nanmean(unfired)) if unfired else float("nan")}
    # each case's ends of the curve: the spread behind the means, so that a difference between
    # recipes can be read against how much one case moves the mean
    per_case = {case: {"dice_0": c["dice"][0], "dice_10": c["dice"][-1], "auc_dice": interactive_auc(c["dice"])}
                for case, c in result["cases"].items()}
    return {"per_step": per_step, "auc": auc, "dice_cost": dice_cost, "click_rules": rules, "per_case": per_case,
            "seconds_per_step": statistics.median(c["seconds_per_step"] for c in cases),
            "peak_rss_mb": result["peak_rss_mb"], "load_s": result["load_s"]}


def cold_step(model: str, cohort: Path, work: Path, step: int = 10) -> dict:
    """The first case of ``cohort`` through ``inference.py`` at ``step``, in its own process as
    Grand Challenge runs one step: wall seconds and peak RSS (MB)."""
    from autopet_common.click_io import clicks_at_step, write_clicks_json
    from autopet_common.image_io import read_image, write_image
    from clicks import simulate_clicks
    from local_challenge.runner import run_process
    from Task1.batch_predict import find_case_images

    case, (ct_path, pet_path) = next(iter(find_case_images(cohort / "imagesTr").items()))
    folder = work / f"cold_{Path(model).name}"
    for kind, path in (("ct", ct_path), ("pet", pet_path)):
        image, geometry = read_image(path, np.float32)
        write_image(image, geometry, folder / "input" / "images" / kind / f"{kind}.mha")
    pet = image  # the last one read
    label, _ = read_image(cohort / "labelsTr" / f"{case}.nii.gz")
    clicks = simulate_clicks((label > 0).astype(np.uint8), pet, dataset_name="FDG-PETCT", case=case)
    write_clicks_json(folder / "input" / "lesion-clicks.json", clicks_at_step(clicks, step), gc_format=True)
    log = work / f"cold_{Path(model).name}.log"
    seconds, peak_mb, code, _ = run_process([sys.executable, str(REPO / "inference.py"), "--input",
                                             str(folder / "input"), "--output", str(folder / "output"),
                                             "--model", model, "--device", "cpu"], log, None)
    if code != 0:
        raise SystemExit(f"inference.py failed ({code}) on {case}; log {log}")
    return {"case": case, "step": step, "seconds": seconds, "peak_rss_mb": peak_mb}


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


def error_removed(dice_0: float, dice_10: float) -> float:
    """Issue 33's click criterion: the share of the step-0 error the clicks remove,
    (DSC@10 - DSC@0) / (1 - DSC@0); NaN when step 0 left no error."""
    return (dice_10 - dice_0) / (1 - dice_0) if dice_0 < 1 else float("nan")


def mean_and_standard_error(values) -> tuple[float, float]:
    """Mean over cases with a value (NaN, a case without lesions, left out) and its standard error,
    the sample standard deviation over sqrt(n); NaN where fewer than two cases have a value."""
    v = np.asarray([x for x in values if x == x], float)
    if v.size == 0:
        return float("nan"), float("nan")
    error = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")
    return float(v.mean()), error


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
    print("\nClick criterion (issue 33): share of the step-0 error removed, (DSC@10 - DSC@0) / (1 - DSC@0); "
          "gain DSC@10 - DSC@0:\n")
    for name, s in summaries.items():
        d0, d10 = s["per_step"]["dice"][0], s["per_step"]["dice"][-1]
        print(f"- {name}: {error_removed(d0, d10):.0%} of the error removed, gain {d10 - d0:+.3f}")
    print("\nPer case (the spread behind the means; standard error of the mean DSC = sd / sqrt(cases)):\n")
    print("| method | case | DSC@0 | DSC@10 | AUC-DSC | clicks remove |")
    print("|---|---|---:|---:|---:|---:|")
    for name, s in summaries.items():
        for case, c in s["per_case"].items():
            share = error_removed(c["dice_0"], c["dice_10"])
            print(f"| {name} | {case} | {_f(c['dice_0'])} | {_f(c['dice_10'])} | {_f(c['auc_dice'])} | "
                  f"{_f(share * 100, 0)} % |")
    print()
    for name, s in summaries.items():
        spread = {k: mean_and_standard_error([c[k] for c in s["per_case"].values()]) for k in ("dice_0", "dice_10")}
        print(f"- {name}: DSC@0 {_f(spread['dice_0'][0])} +- {_f(spread['dice_0'][1])}, "
              f"DSC@10 {_f(spread['dice_10'][0])} +- {_f(spread['dice_10'][1])} (mean +- standard error)")
    from evaluation_metrics.breakdown import ERROR_KINDS

    print("\nWhere the Dice is lost (`evaluation_metrics.breakdown`): the Dice each kind of error costs, "
          "mean over cases; missed = lesions not touched (FNV), spurious = components touching no lesion (FPV), "
          "boundary = the first voxel layer inside (FN) or outside (FP) a found lesion, inner FN deeper, "
          "spread FP further out:\n")
    print("| method | step | DSC | " + " | ".join(k.replace("_", " ") for k in ERROR_KINDS) + " |")
    print("|---|---:|---:|" + "---:|" * len(ERROR_KINDS))
    for name, s in summaries.items():
        for step in BREAKDOWN_STEPS:
            cost = s["dice_cost"][str(step)]
            print(f"| {name} | {step} | {_f(s['per_step']['dice'][step])} | "
                  + " | ".join(_f(cost[k]) for k in ERROR_KINDS) + " |")
    print(f"\nThe click rules at step {BREAKDOWN_STEPS[-1]} (`Task1.postprocessing`): cases where the protocol rule "
          "fired (every lesion clicked: unclicked components dropped) and where the background cut removed "
          "voxels; the spurious components' Dice cost in the cases where the protocol rule did not fire:\n")
    print("| method | protocol rule fired | background cut acted | spurious cost, rule not fired |")
    print("|---|---:|---:|---:|")
    for name, s in summaries.items():
        r = s["click_rules"]
        print(f"| {name} | {r['protocol_rule_fired']} of {r['cases']} | {r['background_cut_acted']} of {r['cases']} | "
              f"{_f(r['spurious_cost_unfired'])} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(REPO / "models" / "task1_phantom_organs"),
                        help="click model folder (default: the entrypoint's default, models/task1_phantom_organs)")
    parser.add_argument("--noclick_model", default=None, help="the same network trained without clicks")
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1000, help="phantom seed (training used 0)")
    parser.add_argument("--cohort", choices=COHORTS, default="standard",
                        help="held-out set: standard (a), varied, full (b: the real grid), second (c: another "
                             "anatomy), second_full (c at the real grid); default standard")
    parser.add_argument("--varied", action="store_true", help="the same as --cohort varied")
    parser.add_argument("--incremental", action="store_true",
                        help="keep the sliding-window tiles between steps (exact; default for full-size cohorts)")
    parser.add_argument("--cold_step", action="store_true",
                        help="also time one cold inference.py step 10 (own process, peak RSS) on the first case")
    parser.add_argument("--methods", default="click,noclick,model-free",
                        help="comma-separated subset of click,noclick,model-free (noclick needs --noclick_model; "
                             "the model-free reference is always measured)")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=FOLDER",
                        help="another method row: any model folder the entrypoint takes (nnU-Net, MONAI, "
                             "recipe); repeatable")
    parser.add_argument("--identity_cases", type=int, default=1, help="cases for the process/in-process check")
    parser.add_argument("--json", default=None, help="also write the summaries here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker_cohort", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, Path(args.worker_cohort), Path(args.result), incremental=args.incremental)
        return 0
    kind = "varied" if args.varied else args.cohort
    incremental = args.incremental or kind in ("full", "second_full")
    with tempfile.TemporaryDirectory(prefix="bench_task1_model.") as tmp:
        work = Path(tmp)
        print(f"writing {args.cases} {kind} held-out phantoms ...", file=sys.stderr, flush=True)
        cohort = write_heldout_cohort(work / "cohort", args.cases, args.seed, kind)
        wanted = {m.strip() for m in args.methods.split(",")} | {"model-free"}
        methods = {}
        if "click" in wanted:
            methods[f"click model ({Path(args.model).name})"] = args.model
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
            summaries[name] = summarise(run_method(f"method{n}", model, cohort, work, incremental))
        print_tables(summaries, "model-free baseline (reference)", args.cases, kind)
        if args.cold_step:
            cold = {name: cold_step(model, cohort, work) for name, model in methods.items() if model != "model-free"}
            print("\n**One cold step** (`inference.py`, own process, step 10, first case):\n")
            print("| method | case | wall (s) | peak RSS (MB) |")
            print("|---|---|---:|---:|")
            for name, row in cold.items():
                print(f"| {name} | {row['case']} | {row['seconds']:.1f} | {row['peak_rss_mb'] or float('nan'):.0f} |")
                summaries[name]["cold_step"] = row
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
