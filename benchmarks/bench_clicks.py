"""Benchmark: click simulation (clicks.simulate_clicks) against the plain full-volume reference.

The reference (``test/click_reference.py``) follows the published algorithm literally on the
CPU: one full-volume ``scipy.ndimage.distance_transform_edt`` per sampled component and a
float64 ``np.percentile``. Both run on the same synthetic phantoms in the same run; each
measurement runs in a fresh child process so its peak memory (max RSS above the loaded
inputs) is its own. Prints a Markdown table.

    python benchmarks/bench_clicks.py                 # full-size phantom (~400x400x326, 15 lesions)
    python benchmarks/bench_clicks.py --sizes small full --runs 5 --reference_runs 1
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status in MB. VmHWM (peak RSS) belongs to this process
    image; getrusage's ru_maxrss would carry the parent's peak over the exec of a spawned
    child."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _child(kind: str, label_path: str, pet_path: str, queue) -> None:
    """Load the case, run one simulation, report (seconds, peak MB above baseline, clicks)."""
    import numpy as np

    sys.path.insert(0, str(REPO / "test"))
    label = np.load(label_path)
    pet = np.load(pet_path)
    if kind == "fast":
        from clicks.simulate import simulate_clicks as run
        import edt  # noqa: F401  (import cost is not part of the timing)
    else:
        from click_reference import reference_clicks as run
        import scipy.ndimage  # noqa: F401
    baseline = _status_mb("VmRSS")
    start = time.perf_counter()
    clicks = run(label, pet)
    seconds = time.perf_counter() - start
    peak = _status_mb("VmHWM")
    queue.put((seconds, max(0.0, peak - baseline), clicks))


def measure(kind: str, label_path: Path, pet_path: Path) -> tuple[float, float, dict]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_child, args=(kind, str(label_path), str(pet_path), queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def make_case(size: str, n_lesions: int, folder: Path) -> tuple[Path, Path, tuple]:
    import numpy as np

    from autopet_common.phantoms import make_petct_case

    label_path, pet_path = folder / f"{size}_label.npy", folder / f"{size}_pet.npy"
    case = make_petct_case(size=size, tracer="FDG", seed=0, n_lesions=n_lesions)
    np.save(label_path, case.label)
    np.save(pet_path, case.pet)
    return label_path, pet_path, case.label.shape


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["full"], choices=["tiny", "small", "medium", "full"],
                        help="phantom sizes (default: full)")
    parser.add_argument("--lesions", type=int, default=15, help="lesions per phantom (default 15)")
    parser.add_argument("--runs", type=int, default=5, help="runs of the fast path (median reported)")
    parser.add_argument("--reference_runs", type=int, default=1,
                        help="runs of the slow reference (median reported; default 1: it takes minutes)")
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_clicks_") as tmp:
        for size in args.sizes:
            label_path, pet_path, shape = make_case(size, args.lesions, Path(tmp))
            fast = [measure("fast", label_path, pet_path) for _ in range(args.runs)]
            slow = [measure("reference", label_path, pet_path) for _ in range(args.reference_runs)]
            identical = all(f[2] == slow[0][2] for f in fast) and all(s[2] == slow[0][2] for s in slow)
            fast_t = statistics.median(f[0] for f in fast)
            slow_t = statistics.median(s[0] for s in slow)
            rows.append((size, "x".join(map(str, shape)), fast_t, max(f[1] for f in fast), slow_t,
                         max(s[1] for s in slow), slow_t / fast_t, identical))

    cpu = os.cpu_count()
    print(f"Click simulation, one FDG phantom per size with {args.lesions} lesions, "
          f"{cpu} CPU core(s); fast: median of {args.runs} runs, reference: median of "
          f"{args.reference_runs} run(s); peak = max RSS above the loaded inputs.\n")
    print("| phantom | grid (i x j x k) | fast (s) | fast peak (MB) | reference (s) | reference peak (MB) | speed-up | identical clicks |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for size, grid, ft, fm, st, sm, ratio, same in rows:
        print(f"| {size} | {grid} | {ft:.2f} | {fm:.0f} | {st:.1f} | {sm:.0f} | {ratio:.0f}x | {'yes' if same else 'NO'} |")
    return 0 if all(r[-1] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
