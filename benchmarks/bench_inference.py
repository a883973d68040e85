"""Benchmark of the Task 1 entrypoint's model-free path.

1. ``segment_model_free`` (region growing confined to a ball around each click, cc3d on the
   box only) against the simple reference algorithm measured in the same run: for every click,
   threshold the WHOLE volume at 41 % of the local SUVmax, label the whole volume with
   ``scipy.ndimage.label`` and keep the click's component (background clicks veto). Same
   clicks (the challenge's 10 + 10, simulated), phantoms of several sizes.
2. ``inference.py`` end to end as a process (what a Grand Challenge run costs without a
   model) on the committed sample ``test/input`` with its 10 + 10 clicks.

Prints a Markdown table: median wall time of ``--repeats`` runs, peak memory (tracemalloc peak
of NumPy allocations for in-process runs; the process's own ru_maxrss for the entrypoint) and
the speed-up over the reference.

    .venv/bin/python benchmarks/bench_inference.py [--sizes medium full] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def reference_segmentation(pet: np.ndarray, clicks: dict, spacing, fraction: float = 0.41,
                           peak_radius_mm: float = 10.0) -> np.ndarray:
    """The straightforward algorithm: full-volume threshold + full-volume labelling per click."""
    from scipy import ndimage

    mask = np.zeros(pet.shape, dtype=bool)
    ii, jj, kk = (np.arange(n) * s for n, s in zip(pet.shape, spacing))
    for click in clicks.get("tumor", []):
        c = [x * s for x, s in zip(click, spacing)]
        ball = ((ii[:, None, None] - c[0]) ** 2 + (jj[None, :, None] - c[1]) ** 2
                + (kk[None, None, :] - c[2]) ** 2) <= peak_radius_mm ** 2
        suv_max = float(pet[ball].max())
        labels, _ = ndimage.label(pet >= fraction * suv_max, structure=np.ones((3, 3, 3)))
        wanted = labels[tuple(click)]
        if wanted == 0:
            continue
        region = labels == wanted
        if any(region[tuple(b)] for b in clicks.get("background", [])):
            continue
        mask |= region
    return mask.astype(np.uint8)


def measure(function, repeats: int) -> tuple[float, float]:
    """(median seconds, peak MB of traced allocations) over ``repeats`` calls."""
    times, peaks = [], []
    for _ in range(repeats):
        tracemalloc.start()
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
        peaks.append(tracemalloc.get_traced_memory()[1] / 2 ** 20)
        tracemalloc.stop()
    return statistics.median(times), max(peaks)


def bench_sizes(sizes, repeats: int) -> list[list[str]]:
    from autopet_common.phantoms import make_petct_case
    from clicks import simulate_clicks
    from Task1.model_free_baseline import ModelFreeParams, segment_model_free

    rows = []
    for size in sizes:
        case = make_petct_case(size=size, tracer="FDG", seed=3, n_lesions=12)
        clicks = simulate_clicks(case.label, case.pet)
        spacing = case.geometry.spacing
        params = ModelFreeParams(auto_detect="never")  # the reference has no automatic detection
        ours, ours_mb = measure(lambda: segment_model_free(case.pet, clicks, spacing, params=params), repeats)
        ref, ref_mb = measure(lambda: reference_segmentation(case.pet, clicks, spacing), repeats)
        full, _ = measure(lambda: segment_model_free(case.pet, clicks, spacing), repeats)
        dice = lambda m: 2 * np.count_nonzero(m & case.label) / (np.count_nonzero(m) + np.count_nonzero(case.label))
        d_ours = dice(segment_model_free(case.pet, clicks, spacing, params=params) > 0)
        d_ref = dice(reference_segmentation(case.pet, clicks, spacing) > 0)
        shape = "x".join(map(str, case.geometry.shape))
        rows.append([f"10+10 clicks, {size} {shape}", f"{ours:.3f}", f"{ref:.3f}", f"{ref / ours:.1f}x",
                     f"{ours_mb:.0f}", f"{ref_mb:.0f}", f"{d_ours:.3f} / {d_ref:.3f}"])
        rows.append([f"same + step-0 detection, {size}", f"{full:.3f}", "", "", "", "", ""])
    return rows


def quality_rows(n_cases: int) -> list[list[str]]:
    """Mean Dice at step 10 (10 + 10 clicks, no automatic detection) over small phantoms,
    FDG and PSMA alternating: the reference floods hot organs next to lesions."""
    from autopet_common.phantoms import make_petct_case
    from clicks import simulate_clicks
    from Task1.model_free_baseline import ModelFreeParams, segment_model_free

    ours, ref = {"FDG": [], "PSMA": []}, {"FDG": [], "PSMA": []}
    for n in range(n_cases):
        tracer = ("FDG", "PSMA")[n % 2]
        case = make_petct_case(size="small", tracer=tracer, seed=100 + n, n_lesions=12)
        clicks = simulate_clicks(case.label, case.pet)
        dice = lambda m: 2 * np.count_nonzero(m & case.label) / (np.count_nonzero(m) + np.count_nonzero(case.label))
        params = ModelFreeParams(auto_detect="never")
        ours[tracer].append(dice(segment_model_free(case.pet, clicks, case.geometry.spacing, params=params) > 0))
        ref[tracer].append(dice(reference_segmentation(case.pet, clicks, case.geometry.spacing) > 0))
    return [[f"Dice@10 mean, {len(ours[t])} small {t} phantoms", "", "", "", "", "",
             f"{np.mean(ours[t]):.3f} / {np.mean(ref[t]):.3f}"] for t in ("FDG", "PSMA") if ours[t]]


def bench_entrypoint(repeats: int) -> list[str]:
    from autopet_common.click_io import write_clicks_json
    from autopet_common.image_io import list_images, read_image
    from clicks import simulate_clicks
    from local_challenge.runner import run_process
    import shutil

    sample = REPO / "test" / "input"
    label_path = REPO / "test" / "sample_cohort" / "test_input_case" / "label.nii.gz"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copytree(sample, tmp / "input")
        if label_path.is_file():
            label, _ = read_image(label_path)
            pet, _ = read_image(list_images(sample / "images" / "pet")[0], np.float32)
            write_clicks_json(tmp / "input" / "lesion-clicks.json", simulate_clicks(label, pet), gc_format=True)
        times, peaks = [], []
        for n in range(repeats):
            seconds, peak, code, _ = run_process(
                [sys.executable, str(REPO / "inference.py"), "--input", str(tmp / "input"),
                 "--output", str(tmp / f"out{n}"), "--model", "model-free"], tmp / f"log{n}.txt", 300)
            if code != 0:
                raise SystemExit((tmp / f"log{n}.txt").read_text())
            times.append(seconds)
            peaks.append(peak)
        shape = "x".join(map(str, read_image(list_images(sample / "images" / "pet")[0])[0].shape))
    return [f"inference.py process, sample {shape}", f"{statistics.median(times):.3f}", "", "",
            f"{max(peaks):.0f} (RSS)", "", ""]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["medium", "full"], help="phantom presets (default medium full)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the median is shown (default 3)")
    parser.add_argument("--quality_cases", type=int, default=8,
                        help="small phantoms (FDG/PSMA alternating) for the mean Dice rows (default 8)")
    args = parser.parse_args(argv)
    rows = bench_sizes(args.sizes, args.repeats) + quality_rows(args.quality_cases) + [bench_entrypoint(args.repeats)]
    header = ["case", "ours median s", "reference median s", "speed-up", "ours peak MB", "reference peak MB",
              "Dice ours / reference"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
