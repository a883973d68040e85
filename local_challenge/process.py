"""One run of a command, as the local challenge runs the entrypoint: its output to a log file,
its wall time and its own peak memory measured, killed after a timeout. Used by local runs
(:mod:`local_challenge.runner`, :mod:`local_challenge.task2`) and by the runs on a Ray cluster
(:mod:`local_challenge.cluster`)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

# Runs the command as its own child and reports that child's peak RSS. Measuring through this
# small wrapper matters: Linux carries a process's pre-exec high-water mark into ru_maxrss, so a
# child forked straight from the (large) runner would report at least the runner's own RSS.
_MEASURE_WRAPPER = """
import os, sys
report, command = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"cannot run {command[0]}: {exc}", file=sys.stderr)
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as handle:
    handle.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_process(command: Sequence[str], log_path: Path, timeout: float | None,
                env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None
                ) -> tuple[float, float | None, int, bool]:
    """Run ``command`` with stdout+stderr to ``log_path``; kill it after ``timeout`` seconds
    (None: no limit).

    Returns ``(seconds, peak_memory_mb, exit_code, timed_out)``. Peak memory is the command's
    own ``ru_maxrss`` (``os.wait4`` in a small wrapper process, see ``_MEASURE_WRAPPER``);
    None when the run was killed. A command killed by signal N exits with 128 + N.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    report = log_path.with_name(f".{log_path.name}.maxrss")
    report.unlink(missing_ok=True)
    timed_out = threading.Event()
    wrapped = [sys.executable, "-I", "-S", "-c", _MEASURE_WRAPPER, str(report), *map(str, command)]
    with open(log_path, "wb") as log_file:
        start = time.perf_counter()
        process = subprocess.Popen(wrapped, stdout=log_file, stderr=subprocess.STDOUT,
                                   env=env, cwd=cwd, start_new_session=True)

        def kill() -> None:
            timed_out.set()
            try:
                os.killpg(process.pid, signal.SIGKILL)  # its own session: the command dies too
            except ProcessLookupError:
                pass

        timer = None if timeout is None else threading.Timer(timeout, kill)
        if timer is not None:
            timer.start()
        try:
            exit_code = process.wait()
        except BaseException:  # interrupted (Ctrl-C, a signal): the run in its own session dies too
            kill()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        seconds = time.perf_counter() - start
    peak_mb = None
    if report.is_file():
        text = report.read_text().strip()
        peak_mb = int(text) / 1024.0 if text.isdigit() else None  # Linux reports KB
        report.unlink()
    return seconds, peak_mb, exit_code, timed_out.is_set()
