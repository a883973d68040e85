"""Benchmark: Task 2 inference time and peak memory per case at the size of a real CT pair.

A ``ct_real`` phantom pair (512 x 512 x 300 at 0.8 x 0.8 x 2.5 mm, known transform) is written
once in the Grand Challenge layout; then each algorithm runs ``--repeats`` times as a separate
process (as on Grand Challenge: reading, computing and writing included), and its wall time and
peak RSS (``wait4``) are recorded:

- ``Task2 step 1`` / ``Task2 step 2``: ``python Task2/inference.py`` (model-free, default
  settings) without / with the follow-up clicks;
- ``reference``: the simplest algorithm that carries the baseline to the follow-up: no
  registration, the baseline mask resampled onto the follow-up grid through the scanners'
  physical coordinates (identity transform), nearest neighbour.

Prints a Markdown table: median of the runs, peak RSS, the ratio of the median time to the
reference's, and the Dice against the follow-up truth. The challenge allows 300 s per run.
Usage: ``python benchmarks/bench_task2.py [--repeats 3] [--size ct_real]``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def run_reference(input_dir: Path, output_dir: Path) -> None:
    """Reference: baseline mask -> follow-up grid through physical coordinates (no registration)."""
    import SimpleITK as sitk

    from autopet_common.image_io import find_single_image, write_sitk_image

    images = input_dir / "images"
    mask = sitk.ReadImage(str(find_single_image(images / "primary-baseline-ct-tumor-lesion-seg", "mask")))
    fu_path = find_single_image(images / "primary-followup-ct", "follow-up CT")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(fu_path))
    reader.ReadImageInformation()
    reference = sitk.Image(reader.GetSize(), sitk.sitkUInt8)
    reference.SetSpacing(reader.GetSpacing())
    reference.SetOrigin(reader.GetOrigin())
    reference.SetDirection(reader.GetDirection())
    carried = sitk.Resample(sitk.Cast(mask > 0, sitk.sitkUInt8), reference, sitk.Transform(),
                            sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    write_sitk_image(carried, output_dir / "images" / "primary-followup-ct-tumor-lesion-seg" / fu_path.name.replace(
        ".nii.gz", ".mha"))


def _dice(output_dir: Path, truth: np.ndarray) -> float:
    from autopet_common.image_io import find_single_image, read_image

    pred, _ = read_image(find_single_image(output_dir / "images" / "primary-followup-ct-tumor-lesion-seg", "output"))
    pred = pred > 0
    denom = int(pred.sum()) + int(truth.sum())
    return 2.0 * int(np.count_nonzero(pred & truth)) / denom if denom else float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per algorithm (median reported; default 3)")
    parser.add_argument("--size", default="ct_real", help="phantom preset (default ct_real)")
    parser.add_argument("--seed", type=int, default=1, help="phantom seed (default 1)")
    parser.add_argument("--run-reference", nargs=2, metavar=("INPUT", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_reference:
        run_reference(Path(args.run_reference[0]), Path(args.run_reference[1]))
        return 0

    from autopet_common.image_io import read_image
    from local_challenge.task2 import EMPTY_POINTS, run_entrypoint

    work = Path(tempfile.mkdtemp(prefix="bench_task2_"))
    try:
        started = time.perf_counter()
        # In a child process: the phantom takes GBs, and a parent that big would inflate the
        # peak RSS that Linux reports for the children forked from it.
        import subprocess

        subprocess.run([sys.executable, "-c", "import sys; from autopet_common.phantoms import write_task2_cohort; "
                        "write_task2_cohort(sys.argv[1], n_pairs=1, size=sys.argv[2], seed=int(sys.argv[3]))",
                        str(work / "cohort"), args.size, str(args.seed)], check=True)
        pair = next(p for p in (work / "cohort").iterdir() if p.is_dir())
        print(f"phantom pair {args.size} written in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        meta = json.loads((pair / "transform.json").read_text())
        step1_input = work / "step1_input"
        shutil.copytree(pair / "input", step1_input)
        (step1_input / "primary-followup-lesion-clicks.json").write_text(json.dumps(EMPTY_POINTS))

        rows = {"reference (no registration, baseline mask carried)": [], "Task2 step 1 (no clicks)": [],
                "Task2 step 2 (one click per lesion)": []}
        commands = {
            "reference (no registration, baseline mask carried)": (Path(__file__).resolve(), pair / "input", True),
            "Task2 step 1 (no clicks)": (REPO / "Task2" / "inference.py", step1_input, False),
            "Task2 step 2 (one click per lesion)": (REPO / "Task2" / "inference.py", pair / "input", False),
        }
        outputs = {}
        for repeat in range(args.repeats):
            for name, (script, input_dir, is_reference) in commands.items():
                output_dir = work / f"out_{repeat}_{abs(hash(name))}"
                if is_reference:
                    import os
                    import subprocess

                    t0 = time.perf_counter()
                    process = subprocess.Popen([sys.executable, str(script), "--run-reference", str(input_dir),
                                                str(output_dir)])
                    _, status, usage = os.wait4(process.pid, 0)
                    run = {"seconds": time.perf_counter() - t0, "peak_rss_mb": usage.ru_maxrss / 1024.0,
                           "exit_code": os.waitstatus_to_exitcode(status)}
                else:
                    run = run_entrypoint(script, input_dir, output_dir, None, work / f"{repeat}_{abs(hash(name))}.log",
                                         timeout=None)
                if run["exit_code"] != 0:
                    log = work / f"{repeat}_{abs(hash(name))}.log"
                    print(f"{name} failed:\n" + (log.read_text()[-3000:] if log.exists() else ""), file=sys.stderr)
                    return 1
                rows[name].append(run)
                outputs[name] = output_dir
                print(f"run {repeat + 1}/{args.repeats} {name}: {run['seconds']:.1f} s, "
                      f"{run['peak_rss_mb']:.0f} MB", file=sys.stderr)
        truth, _ = read_image(pair / "truth" / "followup-tumor-lesion-seg.mha")
        truth = truth > 0
        dices = {name: _dice(out, truth) for name, out in outputs.items()}
        ref_name = next(iter(rows))
        ref_time = statistics.median(r["seconds"] for r in rows[ref_name])
        shape = meta["followup_geometry"]["shape"]
        spacing = meta["followup_geometry"]["spacing"]
        print(f"\nTask 2 per case, {args.size} pair: follow-up {shape[0]}x{shape[1]}x{shape[2]} at "
              f"{spacing[0]:g}x{spacing[1]:g}x{spacing[2]:g} mm, {len(meta['lesions'])} lesions; "
              f"median of {args.repeats} runs, each a fresh process (read + compute + write); 2 CPU cores.\n")
        print("| algorithm | median time (s) | peak RSS (MB) | time / reference | Dice vs truth | within 300 s |")
        print("|---|---|---|---|---|---|")
        for name, runs in rows.items():
            median = statistics.median(r["seconds"] for r in runs)
            peak = max(r["peak_rss_mb"] for r in runs)
            print(f"| {name} | {median:.1f} | {peak:.0f} | {median / ref_time:.1f}x | {dices[name]:.3f} | "
                  f"{'yes' if max(r['seconds'] for r in runs) <= 300 else 'NO'} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
