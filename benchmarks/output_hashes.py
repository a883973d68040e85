"""Fingerprints of the project's outputs, to prove that a refactoring changed none of them.

Runs the main jobs on the bundled sample and on fresh phantom cohorts (each as a process, the
way a user runs them), then prints one sha256 per output: images are hashed by voxel values,
dtype and grid (file bytes would change with compression settings), JSON and CSV by content,
with wall times and other run-dependent fields left out.

    python benchmarks/output_hashes.py --save before.json        # on the old commit
    python benchmarks/output_hashes.py --compare before.json     # on the new one: exit 1 on a change

Jobs: the 11-step protocol on ``test/sample_cohort`` with the shipped model and model-free; the
same on a 2-case phantom cohort (seed 7, tiny); Task 2 on 2 longitudinal phantom pairs; the
click simulator's CLI on the sample cohort. About 8 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# fields that differ between identical runs (times, memory, paths, versions)
VOLATILE = ("seconds", "_s", "time", "memory", "rss", "mb", "path", "dir", "started", "finished", "host",
            "python", "version", "command", "duration", "log", "plot", "output", "date", "elapsed")

JOBS = {
    "sample_model": ["-m", "local_challenge", "--cohort", "test/sample_cohort", "--keep_work", "--no_overlays",
                     "--no_progress"],
    "sample_model_free": ["-m", "local_challenge", "--cohort", "test/sample_cohort", "--model", "model-free",
                          "--keep_work", "--no_overlays", "--no_progress"],
    "phantoms_model": ["-m", "local_challenge", "--make_phantoms", "2", "--phantom_size", "tiny", "--seed", "7",
                       "--keep_work", "--no_overlays", "--no_progress"],
    "phantoms_task2": ["-m", "local_challenge.task2", "--make_phantoms", "2", "--phantom_size", "tiny", "--seed", "7",
                       "--keep_work"],
    "clicks_cli": ["clicks/simulate_clicks.py", "-i", "test/sample_cohort/labelsTr", "-d", "FDG-PETCT",
                   "--quiet"],
}


def _volatile(key: str) -> bool:
    key = key.lower()
    return any(word in key for word in VOLATILE)


def _clean(value, out: Path):
    if isinstance(value, dict):
        return {k: _clean(v, out) for k, v in sorted(value.items()) if not _volatile(str(k))}
    if isinstance(value, list):
        return [_clean(v, out) for v in value]
    if isinstance(value, str):
        # where the checkout and the job's folder are (elsewhere the outputs are the same)
        return value.replace(str(out), "<output>").replace(str(ROOT), "<repository>")
    return value


def file_digest(path: Path, out: Path) -> str | None:
    """sha256 of what a file says (None for files that only hold run-dependent facts)."""
    name = path.name.lower()
    if name.endswith((".nii.gz", ".nii", ".mha", ".nrrd")):
        from autopet_common.image_io import read_image

        array, geometry = read_image(path)
        h = hashlib.sha256(str((array.dtype.str, array.shape, tuple(geometry.spacing), tuple(geometry.origin),
                                tuple(geometry.direction))).encode())
        h.update(array.tobytes())
        return h.hexdigest()
    if name.endswith(".json"):
        text = json.dumps(_clean(json.loads(path.read_text()), out), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()
    if name.endswith(".csv"):
        rows = list(csv.reader(io.StringIO(path.read_text())))
        if not rows:
            return hashlib.sha256(b"").hexdigest()
        keep = [i for i, column in enumerate(rows[0]) if not _volatile(column)]
        text = "\n".join(",".join(row[i] for i in keep if i < len(row)) for row in rows)
        return hashlib.sha256(text.encode()).hexdigest()
    return None  # logs, PNGs (matplotlib metadata), pickles


def run_jobs(selected: list[str], keep: Path | None = None, *, rehash: bool = False) -> dict[str, str]:
    digests: dict[str, str] = {}
    env = dict(os.environ, PYTHONHASHSEED="0")
    with tempfile.TemporaryDirectory(prefix="output_hashes_") as tmp:
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            tmp = str(keep)
        for job in selected:
            out = Path(tmp) / job
            args = list(JOBS[job])
            args += ["--json_output", str(out)] if job == "clicks_cli" else ["--output", str(out)]
            print(f"[{job}] {' '.join(args)}", file=sys.stderr, flush=True)
            if rehash:  # hash the kept outputs of an earlier run again
                done = subprocess.CompletedProcess(args, 0)
            else:
                done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"[{job}] failed ({done.returncode}):\n{done.stderr[-3000:]}", file=sys.stderr)
                digests[f"{job}/exit_code"] = str(done.returncode)
            for path in sorted(p for p in out.rglob("*") if p.is_file()):
                digest = file_digest(path, out)
                if digest is not None:
                    digests[f"{job}/{path.relative_to(out)}"] = digest
    return digests


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", default=",".join(JOBS), help=f"comma-separated subset of {', '.join(JOBS)}")
    parser.add_argument("--save", type=Path, help="write the fingerprints to this JSON file")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep the outputs (to inspect a change)")
    parser.add_argument("--rehash", action="store_true", help="with --keep: hash the outputs kept there, run nothing")
    parser.add_argument("--compare", type=Path, help="compare with a saved JSON file; exit 1 on any difference")
    args = parser.parse_args(argv)
    selected = [j for j in args.jobs.split(",") if j]
    unknown = [j for j in selected if j not in JOBS]
    if unknown:
        parser.error(f"unknown job(s) {unknown}; choose from {list(JOBS)}")
    if args.rehash and args.keep is None:
        parser.error("--rehash needs --keep DIR")
    digests = run_jobs(selected, args.keep, rehash=args.rehash)
    print(f"{'output':<70} sha256")
    for key, digest in digests.items():
        print(f"{key:<70} {digest[:16]}")
    print(f"{len(digests)} outputs")
    if args.save:
        args.save.write_text(json.dumps(digests, indent=1, sort_keys=True))
    if args.compare:
        before = json.loads(args.compare.read_text())
        before = {k: v for k, v in before.items() if k.split("/")[0] in selected}
        changed = sorted(k for k in set(before) | set(digests) if before.get(k) != digests.get(k))
        for key in changed:
            print(f"CHANGED {key}: {before.get(key, 'missing')[:16]} -> {digests.get(key, 'missing')[:16]}")
        print(f"{len(changed)} of {len(set(before) | set(digests))} outputs differ")
        return 1 if changed else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
