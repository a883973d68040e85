"""Benchmark: fast challenge metrics vs the plain per-component reference, full-size masks.

    python benchmarks/bench_metrics.py [--runs 5] [--reference_runs 3] [--n_lesions 40] [--seed 0]

Builds a full-size (400 x 400 x 326, 2.04 x 2.04 x 3 mm) phantom label with
``autopet_common.phantoms`` (a synthetic fallback when it is unavailable), simulates a prediction
by perturbing it (dilate some lesions, erode others, drop a few, add false blobs), then times
``compute_metrics_arrays`` + ``lesion_detection``-equivalent counting (``measure_case``) against
``evaluation_metrics.reference`` (a full-volume mask per component) in the same run, checks that
both agree to 1e-6 and prints a Markdown table: median time, peak traced memory (tracemalloc,
i.e. NumPy allocations) and the speed-up.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
import tracemalloc

import numpy as np


def make_masks(n_lesions: int, seed: int):
    """(gt, pred, voxel_volume_ml): a phantom label and a perturbed prediction, uint8 [i, j, k]."""
    from scipy import ndimage
    import cc3d

    try:
        from autopet_common.phantoms import make_petct_case

        case = make_petct_case(size="full", n_lesions=n_lesions, seed=seed)
        gt, voxel_ml, source = case.label > 0, case.geometry.voxel_volume_ml, "autopet_common.phantoms full"
    except ImportError:  # phantoms not installed: spheres on the same grid
        rng = np.random.default_rng(seed)
        gt = np.zeros((400, 400, 326), bool)
        grid = np.ogrid[:400, :400, :326]
        for _ in range(n_lesions):
            c, r = rng.integers(40, 300, 3), rng.uniform(2, 8)
            gt |= sum((g - ci) ** 2 for g, ci in zip(grid, c)) <= r * r
        voxel_ml, source = 2.04 * 2.04 * 3.0 / 1000, "synthetic spheres"
    rng = np.random.default_rng(seed + 1)
    labels, n = cc3d.connected_components(gt, connectivity=18, return_N=True)
    pred = np.zeros_like(gt)
    for lesion, box in enumerate(ndimage.find_objects(labels), start=1):
        choice = rng.random()
        if choice < 0.15:
            continue  # missed lesion
        box = tuple(slice(max(0, s.start - 2), s.stop + 2) for s in box)
        region = labels[box] == lesion
        if choice < 0.55:
            region = ndimage.binary_dilation(region)
        elif choice < 0.8:
            region = ndimage.binary_erosion(region) | (region & (rng.random(region.shape) < 0.1))
        pred[box] |= region
    shape = np.array(gt.shape)
    for _ in range(n_lesions):  # false blobs
        c = rng.integers(10, shape - 10)
        r = rng.integers(1, 4, 3)
        pred[c[0] - r[0]:c[0] + r[0], c[1] - r[1]:c[1] + r[1], c[2] - r[2]:c[2] + r[2]] = True
    gt, pred = gt.astype(np.uint8), pred.astype(np.uint8)
    return gt, pred, voxel_ml, source


def timed(fn, runs: int):
    times, peaks, result = [], [], None
    for _ in range(runs):
        tracemalloc.start()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return statistics.median(times), max(peaks), result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs of the fast functions")
    parser.add_argument("--reference_runs", type=int, default=3, help="runs of the slow reference")
    parser.add_argument("--n_lesions", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import cc3d
    from evaluation_metrics.metrics import compute_metrics_arrays, measure_case
    from evaluation_metrics.reference import reference_detection, reference_metrics

    gt, pred, voxel_ml, source = make_masks(args.n_lesions, args.seed)
    n_gt = cc3d.connected_components(gt, connectivity=18, return_N=True)[1]
    n_pred = cc3d.connected_components(pred, connectivity=18, return_N=True)[1]

    def fast_all():
        m = measure_case(gt, pred)
        return m.metrics(voxel_ml), m.detection(0.0)

    fast_t, fast_mem, fast_metrics = timed(lambda: compute_metrics_arrays(gt, pred, voxel_ml), args.runs)
    all_t, all_mem, (all_metrics, all_det) = timed(fast_all, args.runs)
    ref_t, ref_mem, ref_metrics = timed(lambda: reference_metrics(gt, pred, voxel_ml), args.reference_runs)
    refdet_t, refdet_mem, ref_det = timed(lambda: reference_detection(gt, pred), 1)

    for a, b in zip(fast_metrics, ref_metrics):
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6), (fast_metrics, ref_metrics)
    assert {k: all_det[k] for k in ("tp", "fn", "fp")} == ref_det

    mb = 1024 ** 2
    print(f"Masks: {gt.shape[0]}x{gt.shape[1]}x{gt.shape[2]} ({source}, seed {args.seed}), "
          f"{n_gt} GT + {n_pred} predicted 18-connected components = {n_gt + n_pred}; "
          f"Dice {fast_metrics[0]:.4f}, FPV {fast_metrics[1]:.3f} ml, FNV {fast_metrics[2]:.3f} ml; "
          f"results equal to the reference (rel 1e-6).\n")
    print("| algorithm | runs | median time (s) | peak traced memory (MiB) | speed-up vs reference |")
    print("|---|---|---|---|---|")
    print(f"| reference: full-volume mask per component (Dice, FPV, FNV) | {args.reference_runs} | "
          f"{ref_t:.3f} | {ref_mem / mb:.0f} | 1.0x |")
    print(f"| compute_metrics_arrays (Dice, FPV, FNV) | {args.runs} | {fast_t:.3f} | {fast_mem / mb:.0f} | "
          f"{ref_t / fast_t:.1f}x |")
    print(f"| reference detection (tp, fn, fp) | 1 | {refdet_t:.3f} | {refdet_mem / mb:.0f} | 1.0x |")
    print(f"| measure_case: metrics + detection | {args.runs} | {all_t:.3f} | {all_mem / mb:.0f} | "
          f"{(ref_t + refdet_t) / all_t:.1f}x vs both references |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
