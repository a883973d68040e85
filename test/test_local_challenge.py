"""Local 11-step challenge run (local_challenge): protocol, timing, failures, scoring, CLI."""
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autopet_common.click_io import read_clicks_json
from autopet_common.errors import InputError
from autopet_common.image_io import read_image
from local_challenge.runner import (N_STEPS, discover_cohort, run_local_challenge, run_process)

REPO = Path(__file__).resolve().parents[1]
RUN_LOG_KEYS = {"task", "model", "trainer", "plans", "configuration", "folds", "encoding", "device", "n_runs",
                "median_seconds_per_run", "max_seconds_per_run", "max_peak_memory_mb", "n_over_budget",
                "time_budget_seconds", "runs"}


@pytest.fixture(scope="module")
def full_run(tiny_task1_cohort, tmp_path_factory):
    """The whole protocol on the tiny 3-case cohort (one case without lesions), model-free."""
    out = tmp_path_factory.mktemp("local_challenge")
    result = run_local_challenge(tiny_task1_cohort, out, model="model-free", progress=False, keep_work=True)
    return result, out


def test_protocol_runs_every_step_as_a_process_and_scores(full_run, tiny_task1_cohort):
    from clicks import simulate_clicks

    result, out = full_run
    cases = [c.case_id for c in discover_cohort(tiny_task1_cohort)]
    assert len(result.runs) == len(cases) * N_STEPS
    assert [(r.case, r.step) for r in result.runs] == [(c, s) for c in cases for s in range(N_STEPS)]
    assert all(r.exit_code == 0 and r.output_ok and not r.over_budget for r in result.runs)
    assert all(r.peak_memory_mb and 30 < r.peak_memory_mb < 2000 for r in result.runs)  # the child's own RSS
    for case in cases:
        label, _ = read_image(tiny_task1_cohort / "labelsTr" / f"{case}.nii.gz")
        pet, _ = read_image(tiny_task1_cohort / "imagesTr" / f"{case}_0001.nii.gz", np.float32)
        assert read_clicks_json(out / "clicks" / f"{case}.json") == simulate_clicks(label, pet, case=case)
        for step in range(N_STEPS):
            assert (out / "predictions" / f"{case}_pred{step}.mha").is_file()
    # each step's input held exactly the first s tumor and s background clicks ("Multiple points")
    last = json.loads((out / "work" / cases[0] / "input" / "lesion-clicks.json").read_text())
    assert last["type"] == "Multiple points" and len(last["points"]) <= 20
    for name in ("summary.json", "metrics_interactive.csv", "metrics_per_step.csv", "interactive_curves.png", "runs.csv"):
        assert (out / name).is_file(), name


def test_curve_improves_with_clicks(full_run):
    result, _ = full_run
    dice = result.summary["per_step_means"]["dice"]
    assert len(dice) == N_STEPS
    assert dice[-1] > 0.6
    assert dice[-1] >= dice[0]
    assert result.summary["means"]["dice_final"] == pytest.approx(dice[-1], nan_ok=True)


def test_run_log_json(full_run):
    result, out = full_run
    log = json.loads((out / "run_log.json").read_text())
    assert RUN_LOG_KEYS <= set(log)
    assert log["task"] == 1 and log["model"] == "model-free" and log["device"] == "cpu"
    assert log["n_runs"] == len(result.runs) == len(log["runs"])
    assert log["n_over_budget"] == 0 and log["time_budget_seconds"] == 300.0
    seconds = [r["seconds"] for r in log["runs"]]
    assert log["max_seconds_per_run"] == max(seconds)
    assert log["median_seconds_per_run"] == pytest.approx(float(np.median(seconds)), abs=1e-3)
    assert set(log["runs"][0]) == {"case", "step", "seconds", "peak_memory_mb", "exit_code", "over_budget", "resumed"}
    assert log["n_resumed"] == 0 and not any(r["resumed"] for r in log["runs"])
    with open(out / "runs.csv") as handle:
        assert len(list(csv.DictReader(handle))) == len(result.runs)


def _script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text("import sys, time, pathlib\nargs = sys.argv[1:]\n"
                    "inp = pathlib.Path(args[args.index('--input') + 1]); out = pathlib.Path(args[args.index('--output') + 1])\n"
                    + body)
    return path


def test_failed_slow_and_misnamed_runs_are_flagged(tiny_task1_cohort, tmp_path):
    crash = _script(tmp_path, "crash.py", "print('boom', file=sys.stderr); sys.exit(3)\n")
    result = run_local_challenge(tiny_task1_cohort, tmp_path / "crash", entrypoint=crash, max_cases=1,
                                 n_steps=2, progress=False)
    assert [r.exit_code for r in result.runs] == [3, 3]
    assert not any(r.output_ok for r in result.runs) and result.run_log["n_failed"] == 2
    assert "boom" in (tmp_path / "crash" / "logs" / f"{result.runs[0].case}_step0.log").read_text()
    # a failed run is scored as an empty mask
    assert not read_image(tmp_path / "crash" / "predictions" / f"{result.runs[0].case}_pred0.mha")[0].any()

    misnamed = _script(tmp_path, "misnamed.py",
                       "import shutil; d = out / 'images' / 'tumor-lesion-segmentation'; d.mkdir(parents=True)\n"
                       "shutil.copy(next((inp / 'images' / 'pet').iterdir()), d / 'wrong.mha')\n")
    result = run_local_challenge(tiny_task1_cohort, tmp_path / "misnamed", entrypoint=misnamed, max_cases=1,
                                 n_steps=1, progress=False)
    assert not result.runs[0].output_ok and "expected" in result.runs[0].problem

    slow = _script(tmp_path, "slow.py", "time.sleep(30)\n")
    result = run_local_challenge(tiny_task1_cohort, tmp_path / "slow", entrypoint=slow, max_cases=1, n_steps=1,
                                 time_budget=1.0, timeout=1.5, progress=False)
    run = result.runs[0]
    assert run.timed_out and run.over_budget and run.seconds < 10
    assert result.run_log["n_over_budget"] == 1


def test_run_process_reports_the_childs_peak_memory(tmp_path):
    code = "import numpy as np; a = np.ones(300 * 2**20 // 8); print(a.sum())"
    seconds, peak_mb, exit_code, timed_out = run_process([sys.executable, "-c", code], tmp_path / "log.txt", 60)
    assert exit_code == 0 and not timed_out
    assert 300 < peak_mb < 1000
    _, small_peak, _, _ = run_process([sys.executable, "-c", "pass"], tmp_path / "log2.txt", 60)
    assert small_peak < 100  # the command's own peak, not the (larger) parent's RSS at fork


def test_cohort_errors(tmp_path, tiny_task1_cohort):
    with pytest.raises(InputError, match="not found"):
        discover_cohort(tmp_path / "missing")
    (tmp_path / "no_layout").mkdir()
    with pytest.raises(InputError, match="imagesTr"):
        discover_cohort(tmp_path / "no_layout")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_task1_cohort / "imagesTr", broken / "imagesTr")
    shutil.copytree(tiny_task1_cohort / "labelsTr", broken / "labelsTr")
    first = sorted((broken / "labelsTr").iterdir())[0]
    first.unlink()
    with pytest.raises(InputError, match="label"):
        discover_cohort(broken)
    next((broken / "imagesTr").glob("*_0001.nii.gz")).unlink()
    with pytest.raises(InputError, match="PET"):
        discover_cohort(broken)


def test_cli_errors_and_docker_without_engine(tmp_path, tiny_task1_cohort):
    run = subprocess.run([sys.executable, "-m", "local_challenge", "--cohort", str(tmp_path / "missing"),
                          "--output", str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert run.returncode == 2 and ("error: " in run.stderr.splitlines()[0]) and "missing" in run.stderr
    run = subprocess.run([sys.executable, "-m", "local_challenge", "--cohort", str(tiny_task1_cohort),
                          "--output", str(tmp_path / "out"), "--docker", "some/image:tag"],
                         capture_output=True, text=True, cwd=REPO, timeout=120,
                         env={"PATH": str(tmp_path)})  # no docker on this PATH
    assert run.returncode == 2 and "docker" in run.stderr
    help_run = subprocess.run([sys.executable, "-m", "local_challenge", "--help"], capture_output=True, text=True,
                              cwd=REPO, timeout=60)
    assert help_run.returncode == 0 and "--network none" in help_run.stdout


def test_local_run_writes_one_overlay_per_case(full_run, tiny_task1_cohort):
    _, out = full_run
    cases = [c.case_id for c in discover_cohort(tiny_task1_cohort)]
    pictures = sorted(p.name for p in (out / "overlays").iterdir())
    assert pictures == sorted(f"{case}.png" for case in cases)
    for name in pictures:
        assert (out / "overlays" / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
