"""Resuming killed runs (issue 32): local_challenge and Task1.batch_predict rerun into the same
output folder skip the work that finished (outputs checked by sha256, not trusted by name), redo
the rest, and a SIGKILL leaves no partial file under a final name."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from autopet_common.image_io import read_image

REPO = Path(__file__).resolve().parents[1]
STEPS = 4  # 3 cases x 4 steps = 12 runs


def _command(cohort: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "local_challenge", "--cohort", str(cohort), "--output", str(out), "--model",
            "model-free", "--steps", str(STEPS), "--no_progress", "--no_overlays", *extra]


def _kill_everything_under(out: Path) -> None:
    """SIGKILL every process whose command line names ``out`` (the driver and the entrypoint run
    it started in its own session): a machine that went down."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(out) in cmdline:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _final_files(folder: Path) -> list[Path]:
    """Files under their final names (temporary ones start with a dot)."""
    return [p for p in folder.rglob("*") if p.is_file() and not any(part.startswith(".") for part in
                                                                     p.relative_to(folder).parts)]


def test_a_local_challenge_killed_halfway_resumes_to_the_uninterrupted_result(tiny_task1_cohort, tmp_path):
    reference = tmp_path / "reference"
    done = subprocess.run(_command(tiny_task1_cohort, reference), capture_output=True, text=True, cwd=REPO,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]

    out = tmp_path / "killed"
    process = subprocess.Popen(_command(tiny_task1_cohort, out), cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    records = out / ".resume"
    deadline = time.time() + 300
    while time.time() < deadline and len([p for p in records.glob("*.json") if p.name != "config.json"]) < 6:
        time.sleep(0.05)
    _kill_everything_under(out)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    finished = sorted(p.stem for p in records.glob("*.json") if p.name != "config.json")
    assert 6 <= len(finished) < 3 * STEPS, finished
    # nothing partial under a final name: every mask reads, every JSON parses
    for path in _final_files(out):
        if path.suffix == ".mha" or path.name.endswith(".nii.gz"):
            read_image(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
    logs_before = {p.name: p.stat().st_mtime_ns for p in (out / "logs").glob("*.log")}

    again = subprocess.run(_command(tiny_task1_cohort, out), capture_output=True, text=True, cwd=REPO, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resumed: {len(finished)}" in again.stdout
    run_log = json.loads((out / "run_log.json").read_text())
    assert run_log["n_resumed"] == len(finished) and run_log["n_runs"] == 3 * STEPS
    resumed = sorted(f"{r['case']}_step{r['step']}" for r in run_log["runs"] if r["resumed"])
    assert resumed == finished
    for key in finished:  # a finished run was not repeated: its log is the one of the killed run
        assert (out / "logs" / f"{key}.log").stat().st_mtime_ns == logs_before[f"{key}.log"]
    # the outputs are those of the uninterrupted run
    for path in sorted((reference / "predictions").glob("*.mha")):
        (a, ga), (b, gb) = read_image(path), read_image(out / "predictions" / path.name)
        assert ga == gb and np.array_equal(a, b), path.name
    assert sorted(p.name for p in (out / "predictions").iterdir()) == \
        sorted(p.name for p in (reference / "predictions").iterdir())
    ours, theirs = (json.loads((d / "summary.json").read_text())["means"] for d in (out, reference))
    assert ours == theirs

    # a third run resumes everything; a prediction changed since is run again; --overwrite redoes all
    target = out / "predictions" / f"{finished[0].rsplit('_step', 1)[0]}_pred{finished[0].rsplit('_step', 1)[1]}.mha"
    target.write_bytes(target.read_bytes()[:-10])
    third = subprocess.run(_command(tiny_task1_cohort, out), capture_output=True, text=True, cwd=REPO, timeout=600)
    assert third.returncode == 0 and f"resumed: {3 * STEPS - 1}" in third.stdout
    read_image(target)  # redone, whole again
    fourth = subprocess.run(_command(tiny_task1_cohort, out, "--overwrite"), capture_output=True, text=True, cwd=REPO,
                            timeout=600)
    assert fourth.returncode == 0 and "resumed" not in fourth.stdout
    assert json.loads((out / "run_log.json").read_text())["n_resumed"] == 0


def test_batch_predict_resumes_only_what_is_intact(tiny_task1_cohort, tmp_path):
    from Task1.batch_predict import predict_folder
    from clicks import simulate_clicks
    from autopet_common.click_io import write_clicks_json

    clicks_dir = tmp_path / "clicks"
    for label in sorted((Path(tiny_task1_cohort) / "labelsTr").glob("*.nii.gz")):
        case = label.name[:-len(".nii.gz")]
        pet, _ = read_image(Path(tiny_task1_cohort) / "imagesTr" / f"{case}_0001.nii.gz")
        write_clicks_json(clicks_dir / f"{case}.json", simulate_clicks(read_image(label)[0], pet))
    out = tmp_path / "out"
    run = dict(clicks_dir=clicks_dir, steps=[0, 1, 2], progress=False)
    first = predict_folder("model-free", Path(tiny_task1_cohort) / "imagesTr", out, **run)
    assert first["resumed"] == [] and first["n_masks"] == 9
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")}
    second = predict_folder("model-free", Path(tiny_task1_cohort) / "imagesTr", out, **run)
    assert len(second["resumed"]) == 3 and second["n_masks"] == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")} == stamps
    # a removed mask and changed clicks: those two cases are predicted again, the third is not
    (out / "PHANTOM_FDG_0000_pred1.nii.gz").unlink()
    clicks = json.loads((clicks_dir / "PHANTOM_FDG_0001.json").read_text())
    clicks["tumor"] = clicks["tumor"][::-1]
    (clicks_dir / "PHANTOM_FDG_0001.json").write_text(json.dumps(clicks))
    third = predict_folder("model-free", Path(tiny_task1_cohort) / "imagesTr", out, **run)
    assert third["resumed"] == ["PHANTOM_FDG_0002"] and sorted(third["cases"]) == ["PHANTOM_FDG_0000", "PHANTOM_FDG_0001"]
    assert (out / "PHANTOM_FDG_0000_pred1.nii.gz").is_file()
    # other options are another configuration: everything again; so is --overwrite
    from Task1.postprocessing import PostprocessOptions

    fourth = predict_folder("model-free", Path(tiny_task1_cohort) / "imagesTr", out,
                            postprocess=PostprocessOptions(remove_below_suv=1.0), **run)
    assert fourth["resumed"] == [] and len(fourth["cases"]) == 3
    fifth = predict_folder("model-free", Path(tiny_task1_cohort) / "imagesTr", out, overwrite=True,
                           postprocess=PostprocessOptions(remove_below_suv=1.0), **run)
    assert fifth["resumed"] == [] and len(fifth["cases"]) == 3


@pytest.mark.parametrize("overwrite", [False, True])
def test_the_ledger_refuses_records_of_another_configuration(tmp_path, overwrite):
    from autopet_common.image_io import atomic_write_text
    from autopet_common.resume import Ledger

    ledger = Ledger(tmp_path, {"model": "a"})
    output = atomic_write_text(tmp_path / "x.txt", "result")
    ledger.record("unit", [output], {"inputs": [1, 2]})
    assert Ledger(tmp_path, {"model": "a"}).finished("unit", {"inputs": [1, 2]}) == {"inputs": [1, 2]}
    assert Ledger(tmp_path, {"model": "a"}).finished("unit", {"inputs": [1, 3]}) is None  # other inputs
    again = Ledger(tmp_path, {"model": "a" if overwrite else "b"}, overwrite=overwrite)
    assert again.finished("unit") is None
