"""Benchmark of the interactive viewer's session: latency per click, first answer, memory.

    .venv/bin/python benchmarks/bench_interactive.py [--full 1] [--clicks 10] [--model models/task1_phantom_organs]

Cases: the bundled sample cohort (``test/sample_cohort``, 64 x 64 x 48 at 5 x 5 x 8 mm) and, with
``--full N``, N full-size phantoms (400 x 400 x 326 at 2.04 x 2.04 x 3 mm, the real autoPET grid;
``autopet-phantoms task1 --size full``, seed 77 on, tracers alternating).

Each case runs in its own process (so that its memory is its own). The process loads the model
(``open_method(..., incremental=True)``, as ``autopet-viewer`` does), then opens a
:class:`Task1.interactive.ClickSession` (prepare + the step-0 prediction: the *first answer*) and
gives the challenge's simulated clicks one at a time, tumor and background alternating, ``--clicks``
of each (``--clicks 10``: 20 clicks). Reported: the median and the maximum seconds per click, the
first answer, the peak RSS the session added over the loaded model (``VmHWM`` minus the RSS after
loading), and the Dice between the session's last mask and a full prediction with the same clicks
(the same method without the tile cache: the reference). The reference, one cold per-step run of
the entrypoint (``inference.py`` as its own process, step 10, as the challenge runs it), is measured
in the same run; the ratio is its time over the median click.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _measure(case: dict, model: str, n_clicks: int, queue) -> None:
    from autopet_common.image_io import read_image
    from clicks.simulate import simulate_clicks
    from Task1.interactive import ClickSession, dice
    from Task1.session import open_method

    ct, geometry = read_image(case["ct"], dtype=np.float32)
    pet, _ = read_image(case["pet"], dtype=np.float32)
    label, _ = read_image(case["label"])
    label = (label > 0).astype(np.uint8)
    clicks = simulate_clicks(label, pet)
    method = open_method(model, device="cpu", incremental=True)
    method.load_models()  # as autopet-viewer does before it serves
    loaded_kb = _status_kb("VmRSS")
    started = time.perf_counter()
    session = ClickSession(method, ct, pet, geometry, name=case["name"], label=label)
    first = session.start()
    first_s = time.perf_counter() - started
    times, tiles = [], []
    for n in range(n_clicks):
        for kind in ("tumor", "background"):
            if n < len(clicks[kind]):
                t = time.perf_counter()
                answer = session.click(kind, clicks[kind][n])
                times.append(time.perf_counter() - t)
                tiles.append(answer.tiles_run)
    peak_kb = _status_kb("VmHWM")
    reference = open_method(model, device="cpu")
    t = time.perf_counter()
    full, _ = reference.predict(reference.prepare(ct, pet, geometry), session.clicks)
    full_s = time.perf_counter() - t
    agreement = dice(session.mask, full)
    queue.put({"case": case["name"], "shape": list(geometry.shape), "first_s": first_s, "clicks": len(times),
               "median_s": statistics.median(times), "max_s": max(times), "tiles": first.tiles,
               "median_tiles": statistics.median(tiles), "session_gb": (peak_kb - loaded_kb) / 1024 ** 2,
               "dice_vs_full": 1.0 if agreement is None else agreement, "full_prediction_s": full_s,
               "dice_truth": dice(session.mask, label)})


def measure_case(case: dict, model: str, n_clicks: int) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_measure, args=(case, model, n_clicks, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def cold_entrypoint(case: dict, model: str, work: Path) -> float:
    """Seconds of one ``inference.py`` process at step 10 on the case (Grand Challenge's inputs)."""
    from autopet_common.click_io import clicks_at_step, write_clicks_json
    from autopet_common.image_io import read_image, write_image
    from clicks.simulate import simulate_clicks

    folder = work / f"cold_{case['name']}"
    (folder / "input" / "images" / "ct").mkdir(parents=True, exist_ok=True)
    (folder / "input" / "images" / "pet").mkdir(parents=True, exist_ok=True)
    ct, geometry = read_image(case["ct"], dtype=np.float32)
    pet, _ = read_image(case["pet"], dtype=np.float32)
    label, _ = read_image(case["label"])
    write_image(ct, geometry, folder / "input" / "images" / "ct" / "ct.mha")
    write_image(pet, geometry, folder / "input" / "images" / "pet" / "pet.mha")
    write_clicks_json(folder / "input" / "lesion-clicks.json",
                      clicks_at_step(simulate_clicks((label > 0).astype(np.uint8), pet), 10), gc_format=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, str(REPO / "inference.py"), "--input", str(folder / "input"), "--output",
                    str(folder / "output"), "--model", model, "--device", "cpu"], check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "models" / "task1_phantom_organs"))
    parser.add_argument("--full", type=int, default=1, help="full-size phantoms (default 1; 0: the sample only)")
    parser.add_argument("--clicks", type=int, default=10, help="clicks of each kind per case (default 10)")
    parser.add_argument("--seed", type=int, default=77, help="seed of the first full-size phantom (default 77)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)

    sample = REPO / "test" / "sample_cohort"
    cases = [{"name": n, "ct": str(sample / "imagesTr" / f"{n}_0000.nii.gz"),
              "pet": str(sample / "imagesTr" / f"{n}_0001.nii.gz"), "label": str(sample / "labelsTr" / f"{n}.nii.gz"),
              "size": "sample"} for n in ("PHANTOM_FDG_0000", "PHANTOM_PSMA_0001")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-interactive-") as tmp:
        work = Path(tmp)
        for n in range(args.full):
            out = work / f"full_{n}"
            tracer = "FDG" if n % 2 == 0 else "PSMA"
            subprocess.run([sys.executable, "-m", "autopet_common.phantoms", "task1", "--out", str(out), "--n_cases",
                            "1", "--size", "full", "--seed", str(args.seed + n), "--tracer", tracer, "--no_gc"],
                           check=True, cwd=REPO, stdout=subprocess.DEVNULL)
            ct = next((out / "imagesTr").glob("*_0000.nii.gz"))
            name = ct.name[: -len("_0000.nii.gz")]
            cases.append({"name": f"{name} (full, seed {args.seed + n})", "ct": str(ct),
                          "pet": str(out / "imagesTr" / f"{name}_0001.nii.gz"),
                          "label": str(out / "labelsTr" / f"{name}.nii.gz"), "size": "full"})
        for case in cases:
            row = measure_case(case, args.model, args.clicks)
            row["cold_entrypoint_s"] = cold_entrypoint(case, args.model, work)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print("| case | grid | first answer (s) | per click median / max (s) | tiles run per click (median of all) "
          "| session RSS added (GB) | Dice vs full prediction | cold entrypoint step 10 (s) | cold / click |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['case']} | {' x '.join(map(str, r['shape']))} | {r['first_s']:.1f} | {r['median_s']:.2f} / "
              f"{r['max_s']:.2f} | {r['median_tiles']:.0f} of {r['tiles']} | {r['session_gb']:.2f} | "
              f"{r['dice_vs_full']:.4f} | {r['cold_entrypoint_s']:.1f} | {r['cold_entrypoint_s'] / r['median_s']:.0f}x |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
