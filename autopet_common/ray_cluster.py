"""Work spread over a Ray cluster: the one place the toolkit talks to Ray.

    runner = RayRunner("local")                       # or "HEAD_IP:6379", or "auto" inside a cluster
    runner.submit(simulate_one_case, job, key, arg1, arg2)
    runner.collect(write_outputs, block=True)         # write_outputs(job, result, problem) in this process

Used by ``python -m local_challenge --cluster`` (one task per case and step),
``python -m Task1.batch_predict --cluster`` (one task per case, the model loaded once per worker
process) and ``autopet-simulate-clicks --cluster`` (one task per case). The pattern is the same
for all three: the driver sends each task its input files' bytes (large ones put into Ray's
object store once, :meth:`RayRunner.share`), the task computes and returns its outputs as bytes,
and the driver writes them atomically into the same layout as a local run, so a cluster needs
the project installed on every node but no shared file system.

- Resources: a task asks for ``cpus_per_task`` CPUs and ``gpus_per_task`` GPUs (default: one GPU
  when the cluster has any, else none).
- A task lost with its node or worker process is retried elsewhere (``max_retries``, Ray's retry of
  system failures), and so is a task that raises :class:`TaskLost` (its work killed from outside
  while its Ray worker still stood, e.g. the first processes of a dying node). Each attempt
  registers with a small actor pinned to the driver's node, so :attr:`RayRunner.retries` counts
  the retries; a task lost more often is handed to ``collect``'s
  callback with ``result=None`` and a problem text, and counted in :attr:`RayRunner.failed`.

Ray is an optional extra (``pip install .[cluster]``); it is imported only when a runner is made.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable

from autopet_common.errors import InputError

log = logging.getLogger("autopet_common.ray_cluster")
LOCAL = "local"  # start a new Ray instance on this machine


class TaskLost(RuntimeError):
    """Raised inside a task whose work was killed from outside (not by the task itself, not by a
    timeout): Ray retries it as it retries a task lost with its worker. A node going down kills
    its processes one by one, so a task can see its child process die before its own worker dies."""


def import_ray():
    """Ray, or :class:`InputError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError("--cluster needs Ray: pip install '.[cluster]' (or pip install ray)") from None
    return ray


class _Attempts:
    """Counts the attempts of each task (a Ray actor pinned to the driver's node)."""

    def __init__(self):
        self.counts: dict[str, int] = {}

    def record(self, key: str) -> int:
        self.counts[key] = self.counts.get(key, 0) + 1
        return self.counts[key]


def _attempt(fn: Callable, key: str, attempts: Any, *args: Any) -> tuple[int, Any]:
    """The body of every task: register the attempt, then ``fn(*args)``."""
    import ray

    attempt = ray.get(attempts.record.remote(key))
    resolved = [ray.get(a) if isinstance(a, ray.ObjectRef) else a for a in args]
    return attempt, fn(*resolved)


class RayRunner:
    """Submit tasks to Ray and hand each finished one to a callback in the driver."""

    def __init__(self, address: str, *, cpus_per_task: float = 1.0, gpus_per_task: float | None = None,
                 max_retries: int = 3):
        ray = import_ray()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"address": address, "logging_level": logging.WARNING, "log_to_driver": False}
            if address == LOCAL:
                kwargs["num_cpus"] = os.cpu_count()
            try:
                ray.init(**kwargs)
            except ConnectionError as exc:
                raise InputError(f"--cluster {address}: no Ray cluster answers there ({exc})") from None
        self.ray = ray
        self.address = address
        resources = ray.cluster_resources()
        self.cpus = float(resources.get("CPU", 0))
        self.gpus = float(resources.get("GPU", 0))
        self.nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        self.gpus_per_task = (1.0 if self.gpus > 0 else 0.0) if gpus_per_task is None else float(gpus_per_task)
        self.cpus_per_task = float(cpus_per_task)
        log.warning("Ray cluster %s: %d node(s), %g CPUs, %g GPUs; each task asks for %g CPU(s) and %g GPU(s)",
                    address, self.nodes, self.cpus, self.gpus, self.cpus_per_task, self.gpus_per_task)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = ray.get_runtime_context().get_node_id()
        self.attempts = ray.remote(num_cpus=0)(_Attempts).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False)).remote()
        self.task = ray.remote(_attempt).options(num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task,
                                                 max_retries=max_retries, retry_exceptions=[TaskLost])
        self.pending: dict[Any, Any] = {}
        self._shared: dict[str, Any] = {}
        self.done = self.failed = self.retries = 0

    def describe(self) -> str:
        return f"{self.nodes} node(s), {self.cpus:g} CPUs, {self.gpus:g} GPUs"

    def summary(self) -> dict[str, Any]:
        return {"address": self.address, "resources": self.describe(), "retries": self.retries,
                "lost_runs": self.failed}

    def share(self, key: str, data: Any):
        """``data`` put into the object store once under ``key`` (e.g. a case's image, used by all
        its steps); ``data`` may be a function that gives it, called only the first time."""
        if key not in self._shared:
            self._shared[key] = self.ray.put(data() if callable(data) else data)
        return self._shared[key]

    def release(self, prefix: str) -> None:
        """Drop this driver's references to the shared objects whose key starts with ``prefix``:
        Ray frees them when the tasks that use them are done."""
        for key in [k for k in self._shared if k.startswith(prefix)]:
            del self._shared[key]

    def submit(self, fn: Callable, job: Any, key: str, *args: Any) -> None:
        """Run ``fn(*args)`` as a task (``fn`` importable on the workers; ObjectRef arguments are
        fetched there); ``job`` comes back to the callback with the result, ``key`` names it."""
        self.pending[self.task.remote(fn, key, self.attempts, *args)] = job

    def collect(self, finish: Callable[[Any, Any, str], None], *, block: bool) -> None:
        """Hand finished tasks to ``finish(job, result, problem)``: all of them when ``block``,
        else those finished already. A task lost past its retries gives ``result=None``."""
        while self.pending:
            ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=None if block else 0)
            if not ready:
                return
            job = self.pending.pop(ready[0])
            try:
                attempt, result = self.ray.get(ready[0])
            except Exception as exc:  # lost past its retries, or the task raised
                self.failed += 1
                # a task's own exception comes wrapped (RayTaskError, whose text starts with Ray's
                # coloured task header): name the exception the task raised
                cause = getattr(exc, "cause", None) or exc
                text = (str(cause).strip().splitlines() or [""])[0][:300]
                finish(job, None, f"failed on the cluster: {type(cause).__name__}: {text}")
                continue
            self.retries += attempt - 1
            self.done += 1
            finish(job, result, "")

    @property
    def running(self) -> int:
        return len(self.pending)

    def progress(self) -> str:
        return f"done {self.done} running {self.running} failed {self.failed} retried {self.retries}"
