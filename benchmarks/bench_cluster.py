"""Benchmark of the local challenge on Ray: local vs ``--cluster local`` vs a two-node cluster.

    .venv/bin/python benchmarks/bench_cluster.py [--cases 2] [--repeats 3] [--model model-free]

A phantom cohort (``--cases`` tiny phantoms, FDG / PSMA alternating, 11 steps each) runs through
``python -m local_challenge`` three ways, each ``--repeats`` times into a fresh output folder:
locally (one process per step, one after the other: the reference), with ``--cluster local``
(Ray started on this machine by the driver), and on a two-node cluster on 127.0.0.1 started as
separate processes (``ray start --head`` with 1 CPU, ``ray start --address`` with 2 CPUs). The
table gives the median wall time of the whole command, the median seconds of one run as each run
measures itself (the entrypoint process), and Ray's overhead per run: the wall time a run costs
beyond its own seconds, (wall x parallel slots - sum of run seconds) / runs. On this 2-core
machine the runs compete for the same cores, so the cluster is not faster here; the point is the
overhead, and that the masks are identical (checked).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


def _env() -> dict:
    # a loopback-only cluster: Ray's token authentication off (its token file in ~/.ray is shared
    # by every Ray instance of the user, and one started with --cluster local would replace it)
    return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)}


def _run(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((folder / "predictions").iterdir())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="model-free")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        tmp = Path(tmp)
        seed_run = tmp / "seed"
        _run([sys.executable, "-m", "local_challenge", "--make_phantoms", str(args.cases), "--phantom_size", "tiny",
              "--output", str(seed_run), "--model", args.model, "--no_progress", "--no_overlays"])
        cohort = seed_run / "cohort"
        port = 6400 + os.getpid() % 1000
        address = f"127.0.0.1:{port}"
        common = ["--node-ip-address", "127.0.0.1", "--disable-usage-stats", "--object-store-memory", str(150 * 1024 ** 2)]
        subprocess.run([RAY, "start", "--head", "--port", str(port), "--num-cpus", "1", "--include-dashboard", "false",
                        *common], check=True, env=_env(), capture_output=True)
        worker = subprocess.Popen([RAY, "start", "--address", address, "--num-cpus", "2", "--block", *common],
                                  env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(10)
        rows = []
        try:
            for name, extra, slots in (("local (reference)", [], 1), ("--cluster local", ["--cluster", "local"], os.cpu_count()),
                                       ("two-node cluster", ["--cluster", address], 3)):
                walls, per_run, overheads = [], [], []
                for repeat in range(args.repeats):
                    out = tmp / f"{len(rows)}_{repeat}"
                    wall = _run([sys.executable, "-m", "local_challenge", "--cohort", str(cohort), "--output", str(out),
                                 "--model", args.model, "--no_progress", "--no_overlays", *extra])
                    runs = json.loads((out / "run_log.json").read_text())["runs"]
                    seconds = [r["seconds"] for r in runs]
                    assert _hashes(out) == _hashes(seed_run), f"{name}: masks differ from the local run's"
                    walls.append(wall)
                    per_run.append(statistics.median(seconds))
                    overheads.append((wall * min(slots, len(runs)) - sum(seconds)) / len(runs))
                rows.append((name, len(runs), statistics.median(walls), statistics.median(per_run),
                             statistics.median(overheads)))
        finally:
            os.killpg(worker.pid, 9)
            subprocess.run([RAY, "stop", "--force"], env=_env(), capture_output=True)
    reference = rows[0][2]
    print(f"| mode | runs | wall (s), median of {args.repeats} | one run (s), median | overhead per run (s) "
          "| wall / local |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, n, wall, run, overhead in rows:
        print(f"| {name} | {n} | {wall:.1f} | {run:.2f} | {overhead:.2f} | {wall / reference:.2f} |")
    print("\nMasks identical to the local run's in every repeat.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
