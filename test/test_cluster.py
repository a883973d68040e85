"""The local challenge on a real two-node Ray cluster on 127.0.0.1 (issue 30): outputs equal to
the local run's, a worker node killed mid-run (the runs are retried, nothing is lost), a driver
killed with SIGKILL and started again (no finished run repeated, the same outputs)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is the cluster extra: pip install '.[cluster]' (./setup.sh installs it)")

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
N_RUNS = 2 * 11


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    # a loopback-only cluster: Ray's token authentication off (its token file in ~/.ray is shared
    # by every Ray instance of the user, and one started with --cluster local would replace it)
    return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)}


class TwoNodeCluster:
    """``ray start --head`` (1 CPU) and a second ``ray start --address`` (2 CPUs), separate processes."""

    def __init__(self, tmp: Path):
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = tmp / "ray_start.log"
        common = ["--node-ip-address", "127.0.0.1", "--object-store-memory", str(150 * 1024 ** 2),
                  "--disable-usage-stats"]
        subprocess.run([RAY, "start", "--head", "--port", str(self.port), "--num-cpus", "1",
                        "--include-dashboard", "false", *common], check=True, env=_env(),
                       stdout=self.log.open("a"), stderr=subprocess.STDOUT, timeout=180)
        self.worker = None
        self.start_worker()

    def start_worker(self) -> None:
        self.worker = subprocess.Popen([RAY, "start", "--address", self.address, "--num-cpus", "2", "--block",
                                        "--node-ip-address", "127.0.0.1", "--object-store-memory",
                                        str(150 * 1024 ** 2), "--disable-usage-stats"],
                                       env=_env(), stdout=self.log.open("a"), stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.wait_for_nodes(2)

    def wait_for_nodes(self, n: int, timeout: float = 120) -> None:
        probe = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False); "
                 "print(sum(1 for n in ray.nodes() if n['Alive']))")
        deadline = time.time() + timeout
        while time.time() < deadline:
            out = subprocess.run([sys.executable, "-c", probe, self.address], capture_output=True, text=True,
                                 env=_env(), timeout=120)
            if out.stdout.strip().isdigit() and int(out.stdout.strip()) >= n:
                return
            time.sleep(1)
        raise RuntimeError(f"the cluster did not reach {n} nodes: {self.log.read_text()[-2000:]}")

    def node_processes(self) -> dict[int, bytes]:
        """Every process of the worker node: the ``ray start`` process and its descendants (its
        raylet, the Ray workers, the entrypoint runs they started), with their command lines."""
        parents = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
        found = {self.worker.pid}
        grew = True
        while grew:
            more = {pid for pid, parent in parents.items() if parent in found} - found
            found |= more
            grew = bool(more)
        commands = {}
        for pid in found:
            try:
                commands[pid] = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
        return commands

    def runs_on_worker(self) -> int:
        """Entrypoint runs in flight on the worker node."""
        return sum(b"inference.py" in command for command in self.node_processes().values())

    def kill_worker(self) -> None:
        """Every process of the worker node stopped at once, then killed, as when the machine dies.
        (Killed one by one, a run's process can die before its Ray worker does, which then reports
        it: that case has its own test, ``test_a_run_whose_processes_are_killed_from_outside...``.)"""
        stopped: set[int] = set()
        while True:  # SIGSTOP until no new process appears (a stopped process forks no more)
            fresh = set(self.node_processes()) - stopped
            if not fresh:
                break
            for pid in fresh:
                try:
                    os.kill(pid, signal.SIGSTOP)
                except ProcessLookupError:
                    pass
            stopped |= fresh
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.worker.wait()

    def stop(self) -> None:
        if self.worker and self.worker.poll() is None:
            self.kill_worker()
        subprocess.run([RAY, "stop", "--force"], env=_env(), capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """A phantom cohort and the local run's outputs on it (the reference)."""
    tmp = tmp_path_factory.mktemp("cluster")
    local = tmp / "local"
    subprocess.run([sys.executable, "-m", "local_challenge", "--make_phantoms", "2", "--phantom_size", "tiny",
                    "--output", str(local), "--model", "model-free", "--no_progress", "--no_overlays"],
                   check=True, cwd=REPO, env=_env(), capture_output=True, timeout=900)
    return tmp, local / "cohort", local


def _driver(cohort_dir: Path, output: Path, address: str) -> list[str]:
    return [sys.executable, "-m", "local_challenge", "--cohort", str(cohort_dir), "--output", str(output),
            "--model", "model-free", "--cluster", address, "--no_progress", "--no_overlays"]


def _start_driver(cohort_dir: Path, output: Path, address: str, log: Path) -> subprocess.Popen:
    """The local challenge on the cluster as its own process (its own session, so it can be killed whole)."""
    return subprocess.Popen(_driver(cohort_dir, output, address), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=log.open("w"), start_new_session=True)


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((folder / "predictions").iterdir())}


def _aggregates(folder: Path) -> dict:
    """The metrics the run scored (per case and step, and their summary)."""
    return {name: (folder / name).read_text() for name in ("metrics_interactive.csv", "metrics_per_step.csv")}


def _wait_for_predictions(folder: Path, n: int, process: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the driver ended early with {process.returncode}")
        if len(list((folder / "predictions").glob("*.mha"))) >= n if (folder / "predictions").is_dir() else False:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {n} predictions after {timeout} s")


@pytest.fixture(scope="module")
def cluster(cohort):
    tmp = cohort[0]
    running = TwoNodeCluster(tmp)
    yield running
    running.stop()


def test_driver_killed_and_restarted_repeats_no_finished_run(cohort, cluster):
    tmp, cohort_dir, local = cohort
    output = tmp / "killed_driver"
    driver = _start_driver(cohort_dir, output, cluster.address, tmp / "driver1.log")
    _wait_for_predictions(output, 6, driver)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    present = {p.name for p in (output / "predictions").glob("*.mha")}
    assert 6 <= len(present) < N_RUNS
    leftovers = [p for p in output.rglob("*") if p.name.endswith((".tmp", ".part")) and p.parent.name != "work"]
    again = subprocess.run(_driver(cohort_dir, output, cluster.address), cwd=REPO, env=_env(), capture_output=True,
                           text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    run_log = json.loads((output / "run_log.json").read_text())
    resumed = {f"{r['case']}_pred{r['step']}.mha" for r in run_log["runs"] if r.get("resumed")}
    assert resumed <= present and len(resumed) >= len(present) - 1, (sorted(resumed), sorted(present))
    assert _hashes(output) == _hashes(local)
    assert _aggregates(output) == _aggregates(local)
    assert not [p for p in leftovers if p.exists() and "predictions" in p.parts]


def test_a_run_whose_processes_are_killed_from_outside_is_lost_not_failed(tmp_path):
    """A dying node kills its processes one by one: when the run's own processes go first, the
    task must not report a failed run (CI once saw 'exit code -9' so) but ask to be retried."""
    from autopet_common.ray_cluster import TaskLost
    from local_challenge.cluster import run_entrypoint_job

    entrypoint = tmp_path / "killed_from_outside.py"
    # its parent is run_process's measuring wrapper, which nothing in the run kills
    entrypoint.write_text("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n")
    with pytest.raises(TaskLost, match="signal 9 from outside"):
        run_entrypoint_job({"inputs.json": b"[]"}, [], 120, str(entrypoint))


_RETRY_PROBE = """
import json, sys
from pathlib import Path
from autopet_common.ray_cluster import RayRunner, TaskLost

def lost_once(marker):
    if not Path(marker).exists():
        Path(marker).write_text("first attempt")
        raise TaskLost("killed from outside (test)")
    return "second attempt"

def broken():
    raise ValueError("a bug, not a lost node")

runner = RayRunner(sys.argv[1])
seen = []
runner.submit(lost_once, "lost once", "a", sys.argv[2])
runner.submit(broken, "broken", "b")
runner.collect(lambda job, result, problem: seen.append([job, result, problem]), block=True)
print(json.dumps({"seen": sorted(seen), "retries": runner.retries, "failed": runner.failed}))
"""


def test_task_lost_is_retried_and_other_exceptions_are_not(cluster, tmp_path):
    out = subprocess.run([sys.executable, "-c", _RETRY_PROBE, cluster.address, str(tmp_path / "marker")], cwd=REPO,
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    (broken, _, problem), lost_once = report["seen"]
    assert broken == "broken" and "ValueError: a bug, not a lost node" in problem
    assert lost_once == ["lost once", "second attempt", ""]
    assert report["retries"] == 1 and report["failed"] == 1


def test_two_node_cluster_equals_local_run_and_survives_a_lost_worker(cohort, cluster):
    tmp, cohort_dir, local = cohort
    output = tmp / "cluster_run"
    driver = _start_driver(cohort_dir, output, cluster.address, tmp / "driver2.log")
    _wait_for_predictions(output, 2, driver)
    deadline = time.time() + 300
    while cluster.runs_on_worker() == 0 and time.time() < deadline and driver.poll() is None:
        time.sleep(0.05)
    assert cluster.runs_on_worker() > 0, "no run was ever seen on the worker node"
    cluster.kill_worker()  # mid-run: the worker node's runs are lost with it
    driver.wait(timeout=900)
    assert driver.returncode == 0, (tmp / "driver2.log").read_text()[-3000:]
    run_log = json.loads((output / "run_log.json").read_text())
    assert run_log["mode"] == "Ray cluster"
    assert run_log["cluster"]["lost_runs"] == 0
    assert run_log["cluster"]["retries"] >= 1, run_log["cluster"]
    assert len(run_log["runs"]) == N_RUNS and all(r["exit_code"] == 0 for r in run_log["runs"])
    assert _hashes(output) == _hashes(local)          # masks byte-identical
    assert _aggregates(output) == _aggregates(local)  # metrics equal
    shutil.rmtree(output / "work", ignore_errors=True)


def _tree_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and ".resume" not in p.parts}


def test_click_simulation_and_batch_prediction_on_the_cluster_equal_local(cohort, cluster, tmp_path):
    """``autopet-simulate-clicks --cluster`` and ``Task1.batch_predict --cluster``: the same files."""
    if cluster.worker.poll() is not None:  # the previous test killed it
        cluster.start_worker()
    labels = REPO / "test" / "sample_cohort" / "labelsTr"
    images = REPO / "test" / "sample_cohort" / "imagesTr"
    outputs = {}
    for name, extra in (("local", []), ("cluster", ["--cluster", cluster.address])):
        clicks = tmp_path / name / "clicks"
        subprocess.run([sys.executable, "clicks/simulate_clicks.py", "-i", str(labels), "-d", "FDG-PETCT",
                        "--json_output", str(clicks), "-o", str(tmp_path / name / "heatmaps"), "--quiet", *extra],
                       check=True, cwd=REPO, env=_env(), capture_output=True, timeout=600)
        subprocess.run([sys.executable, "-m", "Task1.batch_predict", "-i", str(images), "-o", str(tmp_path / name / "preds"),
                        "-m", "model-free", "--clicks_dir", str(clicks), "--steps", "0,3,10", "--no_progress", *extra],
                       check=True, cwd=REPO, env=_env(), capture_output=True, timeout=600)
        outputs[name] = _tree_hashes(tmp_path / name)
    assert len(outputs["local"]) == 2 * 4 + 2 * 3
    assert outputs["cluster"] == outputs["local"]


def test_without_cluster_ray_is_not_imported():
    code = ("import sys, local_challenge.runner, local_challenge.__main__, Task1.batch_predict, clicks.batch, "
            "clicks.simulate_clicks, autopet_common.ray_cluster; print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "False", out.stderr[-1000:]
