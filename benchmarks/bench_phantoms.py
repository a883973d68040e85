"""Benchmark: time and peak memory to generate phantoms.

Rows: one full Task 1 case (400 x 400 x 326 at 2.04 x 2.04 x 3 mm) per tracer, and one Task 2
``ct_real`` pair (512 x 512 x 300 at 0.8 x 0.8 x 2.5 mm, optional: ``--task2``). The reference is
the simplest possible generator of the same grid: a body ellipse, gaussian-blurred PET and
per-voxel noise with nothing else (NumPy, vectorised) -- the floor any phantom must pay.

Prints a Markdown table: median of ``--repeats`` runs, peak RSS increase (MB), ratio to the
reference measured in the same run.  Usage: ``python benchmarks/bench_phantoms.py [--repeats 3]``.
"""
from __future__ import annotations

import argparse
import gc
import resource
import statistics
import threading
import time

import numpy as np


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 1e6


class PeakMemory:
    """Samples RSS every 5 ms in a thread; ``peak`` is the increase over the start (MB)."""

    def __enter__(self):
        gc.collect()
        self.start = _rss_mb()
        self.max = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.max = max(self.max, _rss_mb())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.max = max(self.max, _rss_mb())
        self.peak = self.max - self.start
        return False


def reference_full_case(seed: int = 0):
    """Simplest phantom of the same grid: ellipse body, blurred PET, noise."""
    from scipy.ndimage import gaussian_filter
    from autopet_common.phantoms.anatomy import body_r2
    from autopet_common.phantoms.common import PRESETS

    shape, spacing = PRESETS["full"]
    rng = np.random.default_rng(seed)
    body = body_r2(shape) <= 1
    ct = np.where(body, np.float32(40), np.float32(-1000))
    pet = np.where(body, np.float32(1), np.float32(0))
    pet = gaussian_filter(pet, sigma=2.76 / np.asarray(spacing), truncate=3.0, output=np.float32)
    pet += rng.standard_normal(shape, dtype=np.float32) * np.float32(0.1)
    ct += rng.standard_normal(shape, dtype=np.float32) * np.float32(10)
    return ct, pet


def _measure(func, repeats):
    times, peaks = [], []
    for _ in range(repeats):
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            result = func()
            times.append(time.perf_counter() - t0)
            del result
        peaks.append(mem.peak)
        gc.collect()
    return statistics.median(times), max(peaks)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per row (median reported)")
    parser.add_argument("--task2", action="store_true", help="also time one ct_real Task 2 pair")
    args = parser.parse_args(argv)
    from autopet_common.phantoms import make_longitudinal_pair, make_petct_case

    ref_t, ref_m = _measure(reference_full_case, args.repeats)
    rows = [("reference: ellipse + blur + noise, full grid", ref_t, ref_m)]
    for tracer in ("FDG", "PSMA"):
        t, m = _measure(lambda: make_petct_case("full", tracer, seed=0, n_lesions=15), args.repeats)
        rows.append((f"make_petct_case full {tracer}, 15 lesions", t, m))
    if args.task2:
        t, m = _measure(lambda: make_longitudinal_pair("ct_real", seed=0), max(1, args.repeats))
        rows.append(("make_longitudinal_pair ct_real (512x512x300)", t, m))
    print(f"| generator | median time (s), {args.repeats} runs | peak memory (MB) | ratio vs reference |")
    print("|---|---:|---:|---:|")
    for name, t, m in rows:
        print(f"| {name} | {t:.2f} | {m:.0f} | {t / ref_t:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
