"""The local challenge's runs on a Ray cluster: one task per (case, step) run.

    python -m local_challenge --cohort COHORT --output OUT --cluster local          # Ray on this machine
    python -m local_challenge --cohort COHORT --output OUT --cluster HEAD_IP:6379   # an existing cluster

A task runs exactly what a local run runs: the entrypoint as its own process, with the same
flags, time budget and timeout, on the Grand Challenge input folder of its step
(:func:`run_entrypoint_job`). The driver sends the input folder's files with the task (each case's
images put into the object store once) and gets back the exit code, the time, the peak memory,
the log and the output files, which it writes into the output folder exactly as a local run does
(:func:`local_challenge.runner.run_local_challenge`: atomically, recorded in the resume ledger).
A run whose processes are killed from outside (its node going down) is retried, not reported.
Retries, resources and the driver side: :mod:`autopet_common.ray_cluster`.
"""
from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUTPUT_PLACEHOLDER = "{output}"  # in the entrypoint's flags: the task's own output folder


@dataclass
class RunResult:
    """What a run sends back to the driver."""

    seconds: float
    peak_mb: float | None
    exit_code: int
    timed_out: bool
    log: bytes
    files: dict[str, bytes]
    node: str


def run_entrypoint_job(inputs: dict[str, Any], flags: list[str], timeout: float | None,
                       entrypoint: str) -> RunResult:
    """On a worker: write the input folder (``inputs``: relative path -> bytes or an ObjectRef of
    bytes), run ``entrypoint --input ... --output ... flags`` as a local run does, return its outputs."""
    import ray

    from autopet_common.ray_cluster import TaskLost
    from local_challenge.process import run_process

    with tempfile.TemporaryDirectory(prefix="autopet-run-") as tmp:
        input_dir, output_dir = Path(tmp) / "input", Path(tmp) / "output"
        for relative, data in inputs.items():
            path = input_dir / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(ray.get(data) if isinstance(data, ray.ObjectRef) else data)
        output_dir.mkdir()
        command = [sys.executable, entrypoint, "--input", str(input_dir), "--output", str(output_dir),
                   *[flag.replace(OUTPUT_PLACEHOLDER, str(output_dir)) for flag in flags]]
        log_path = Path(tmp) / "run.log"
        seconds, peak_mb, exit_code, timed_out = run_process(command, log_path, timeout)
        if exit_code < 0 and not timed_out:
            # run_process's small measuring wrapper itself died of a signal nobody here sent: the
            # node's processes are being killed, so the run is retried rather than reported. (The
            # command's own deaths, the OOM killer's included, reach us through the wrapper as
            # exit codes >= 0 and stay failed runs, as in a local run.)
            raise TaskLost(f"the run's processes were killed by signal {-exit_code} from outside "
                           f"(log: {log_path.read_bytes()[-300:].decode(errors='replace')!r})")
        files = {str(p.relative_to(output_dir)): p.read_bytes() for p in output_dir.rglob("*") if p.is_file()}
        return RunResult(seconds, peak_mb, exit_code, timed_out, log_path.read_bytes(), files,
                         ray.get_runtime_context().get_node_id())
