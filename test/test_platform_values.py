"""Grand Challenge's socket values in today's shape (``socket``) and the legacy one (``interface``)
(issue 31): one reader for inputs.json and predictions.json, fixtures in the platform's exact
shape (test/platform/), the entrypoint and the evaluation method on both shapes."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autopet_common.errors import InputError
from autopet_common.socket_values import (inputs_json_for, parse_socket_values, read_inputs_json, slugs_of,
                                          value_for)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "test" / "platform"
SAMPLE = REPO / "test" / "input"
DESCRIPTOR_FIELDS = {"slug", "relative_path", "is_image_kind", "is_panimg_kind", "is_dicom_image_kind",
                     "is_json_kind", "is_file_kind"}


def _load(name: str):
    return json.loads((FIXTURES / name).read_text())


# ----------------------------------------------------------------------------- the reader
def test_fixtures_have_the_platforms_exact_shape():
    for name in ("task1-inputs.json", "task2-inputs.json"):
        for value in _load(name):
            assert set(value) == {"socket", "file", "image", "value"}, name
            assert DESCRIPTOR_FIELDS <= set(value["socket"]), name
            assert ("example_value" in value["socket"]) == value["socket"]["is_json_kind"]
    for name in ("task1-predictions.json", "task2-predictions.json"):
        for job in _load(name):
            assert set(job) == {"pk", "inputs", "outputs", "exec_duration", "invoke_duration", "status"}
            assert len(job["pk"]) == 36 and job["pk"].count("-") == 4  # a uuid
            for value in job["inputs"] + job["outputs"]:
                assert DESCRIPTOR_FIELDS <= set(value["socket"])
    for name in ("task1-inputs-legacy.json", "task2-inputs-legacy.json", "task1-predictions-legacy.json"):
        text = (FIXTURES / name).read_text()
        assert '"interface"' in text and '"socket"' not in text


def test_todays_and_the_legacy_shape_read_the_same():
    today, legacy = _load("task1-predictions.json"), _load("task1-predictions-legacy.json")
    for new_job, old_job in zip(today, legacy):
        new = parse_socket_values(new_job["inputs"], "predictions.json")
        old = parse_socket_values(old_job["inputs"], "predictions-legacy.json")
        assert slugs_of(new) == slugs_of(old) == ("ct-image", "lesion-clicks", "pet-image")
        for a, b in zip(new, old):
            assert (a.slug, a.kind, a.relative_path, a.image_name, a.has_value, a.value) == \
                   (b.slug, b.kind, b.relative_path, b.image_name, b.has_value, b.value)
            assert (a.descriptor_key, b.descriptor_key) == ("socket", "interface")
    first, failed = (parse_socket_values(job["inputs"], "x") for job in today)
    clicks = value_for(first, "lesion-clicks")
    assert clicks.kind == "json" and clicks.has_value and len(clicks.value["points"]) == 2
    assert value_for(first, "ct-image").kind == "image" and value_for(first, "ct-image").relative_path == "images/ct"
    # the failed job's clicks are a file reference, not inline
    assert not value_for(failed, "lesion-clicks").has_value and value_for(failed, "lesion-clicks").file.startswith("https")
    assert parse_socket_values(today[0]["outputs"], "x")[0].image_name.endswith(".mha")


@pytest.mark.parametrize("values, expected", [
    ({"socket": {"slug": "ct-image"}}, "expected a list of socket values"),
    ([], "is empty"),
    (["ct-image"], "entry 0: expected a socket value"),
    ([{"slug": "ct-image"}], "entry 0: no socket descriptor"),
    ([{"socket": "ct-image"}], "entry 0: 'socket' must be an object"),
    ([{"socket": {"slug": ""}}], "entry 0: 'socket.slug' must be a non-empty string"),
    ([{"socket": {"slug": "a"}}, {"socket": {"slug": 3}}], "entry 1: 'socket.slug'"),
    ([{"socket": {"slug": "a", "relative_path": "../../etc"}}], "entry 0 (a): relative_path '../../etc' must stay inside"),
    ([{"socket": {"slug": "a", "relative_path": "/etc/passwd"}}], "must stay inside"),
    ([{"socket": {"slug": "a", "relative_path": 5}}], "relative_path must be a non-empty string"),
    ([{"socket": {"slug": "a"}}, {"interface": {"slug": "a"}}], "entry 1: socket 'a' given twice"),
    ([{"socket": {"slug": "a"}, "interface": {"slug": "b"}}], "name different slugs"),
    ([{"socket": {"slug": "a"}, "image": "x.mha"}], "'image' must be an object"),
])
def test_malformed_values_are_refused_naming_the_file_and_the_entry(values, expected):
    with pytest.raises(InputError) as error:
        parse_socket_values(values, "/input/inputs.json")
    assert "/input/inputs.json" in str(error.value) and expected in str(error.value)


def test_the_fixtures_are_what_the_writer_makes_for_the_same_folders(tmp_path):
    from autopet_common.phantoms import write_task2_cohort

    assert inputs_json_for(SAMPLE) == _load("task1-inputs.json")
    assert inputs_json_for(SAMPLE, legacy=True) == _load("task1-inputs-legacy.json")
    cohort = write_task2_cohort(tmp_path / "t2", n_pairs=1, size="tiny", seed=11)  # do_test_run.sh's pair
    pair_input = Path(cohort) / "PHANTOM_CT_0000" / "input"
    assert inputs_json_for(pair_input) == _load("task2-inputs.json")
    assert inputs_json_for(pair_input, legacy=True) == _load("task2-inputs-legacy.json")
    with pytest.raises(InputError, match="make no interface"):
        inputs_json_for(tmp_path)  # nothing there


# ----------------------------------------------------------------------------- the entrypoint
def _run_entrypoint(input_dir: Path, out: Path, *extra: str) -> Path:
    done = subprocess.run([sys.executable, str(REPO / "inference.py"), "--input", str(input_dir), "--output", str(out),
                           *extra], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    masks = sorted(out.rglob("*.mha"))
    assert len(masks) == 1, masks
    return masks[0], done.stderr


def _same_mask(a: Path, b: Path) -> bool:
    from autopet_common.image_io import read_image

    (x, gx), (y, gy) = read_image(a), read_image(b)
    return a.name == b.name and gx == gy and np.array_equal(x, y)


@pytest.mark.parametrize("task", [1, 2])
def test_the_entrypoint_writes_the_same_mask_with_either_shape_as_without_inputs_json(tmp_path, task):
    if task == 1:
        source, fixtures, extra = SAMPLE, ("task1-inputs.json", "task1-inputs-legacy.json"), ["--model", "model-free"]
    else:
        from autopet_common.phantoms import write_task2_cohort

        source = Path(write_task2_cohort(tmp_path / "t2", n_pairs=1, size="tiny", seed=11)) / "PHANTOM_CT_0000" / "input"
        fixtures, extra = ("task2-inputs.json", "task2-inputs-legacy.json"), []
    plain, _ = _run_entrypoint(source, tmp_path / "plain", *extra)
    for name, shape in zip(fixtures, ("'socket' shape", "legacy 'interface' shape")):
        folder = tmp_path / name.replace(".json", "")
        shutil.copytree(source, folder / "input")
        shutil.copyfile(FIXTURES / name, folder / "input" / "inputs.json")
        assert read_inputs_json(folder / "input" / "inputs.json")  # the fixture itself reads
        mask, log = _run_entrypoint(folder / "input", folder / "out", *extra)
        assert f"task {task} from inputs.json ({shape}" in log
        assert _same_mask(mask, plain), name
        assert mask.relative_to(folder / "out") == plain.relative_to(tmp_path / "plain")


def test_a_platform_that_places_an_input_elsewhere_is_named_in_a_warning(tmp_path):
    values = _load("task1-inputs.json")
    values[0]["socket"]["relative_path"] = "images/computed-tomography"
    shutil.copytree(SAMPLE, tmp_path / "in")
    (tmp_path / "in" / "inputs.json").write_text(json.dumps(values))
    _, log = _run_entrypoint(tmp_path / "in", tmp_path / "out", "--model", "model-free")
    assert "ct-image: images/computed-tomography (the contract says images/ct)" in log


# ----------------------------------------------------------------------------- the evaluation method
@pytest.fixture(scope="module")
def task1_run(tmp_path_factory, tiny_task1_cohort):
    from local_challenge.runner import run_local_challenge

    root = tmp_path_factory.mktemp("platform_task1")
    result = run_local_challenge(tiny_task1_cohort, root / "run", model="model-free", progress=False, overlays=False)
    return root, result


def _evaluate(layout: Path, out: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", "evaluation_metrics.gc_method", "--input", str(layout / "input"),
                           "--ground_truth", str(layout / "ground_truth"), "--output", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return json.loads((out / "metrics.json").read_text())


def _close(a, b) -> bool:
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
        return (a is None or math.isnan(a)) and (b is None or math.isnan(b))
    return abs(a - b) <= 1e-6


def test_local_runs_give_the_entrypoint_todays_inputs_json(task1_run):
    root, _ = task1_run
    logs = sorted((root / "run" / "logs").glob("*.log"))
    assert logs and all("task 1 from inputs.json ('socket' shape" in p.read_text() for p in logs)


@pytest.mark.parametrize("legacy", [False, True])
def test_either_shape_scores_as_the_local_run(task1_run, tmp_path, legacy):
    from local_challenge.platform_layout import export_task1

    root, result = task1_run
    export_task1(root / "run", tmp_path / "layout", seed=3, legacy=legacy)
    jobs = json.loads((tmp_path / "layout" / "input" / "predictions.json").read_text())
    key = "interface" if legacy else "socket"
    assert all(key in value for job in jobs for value in job["inputs"] + job["outputs"])
    assert all(("exec_duration" in job) != legacy for job in jobs)
    metrics = _evaluate(tmp_path / "layout", tmp_path / "out")
    local = result.summary["means"]
    aggregates = metrics["aggregates"]
    for ours, theirs in (("dsc_last", "dice_final"), ("fpv_last", "fpv_final"), ("fnv_last", "fnv_final"),
                         ("auc_dsc", "dice_auc"), ("auc_fpv", "fpv_auc"), ("auc_fnv", "fnv_auc")):
        assert _close(aggregates[ours], local[theirs]), (ours, aggregates[ours], local[theirs])
    assert metrics["unmatched_jobs"] == [] and metrics["failed_jobs"] == [] and aggregates["n_problem_steps"] == 0
    if not legacy:  # exec_duration of each job is the run's seconds
        runs = {(r.case, r.step): r.seconds for r in result.runs}
        for entry in metrics["results"]:
            for row in entry["steps"]:
                assert abs(row["exec_seconds"] - runs[(entry["case"], row["step"])]) < 1e-3
        assert aggregates["max_exec_seconds"] == pytest.approx(max(runs.values()), abs=1e-3)


def test_jobs_whose_clicks_are_not_inline_place_by_the_ground_truths_step_names(task1_run, tmp_path):
    from local_challenge.platform_layout import export_task1

    root, _ = task1_run
    layout = export_task1(root / "run", tmp_path / "layout", seed=5)
    reference = _evaluate(layout, tmp_path / "reference")
    jobs = json.loads((layout / "input" / "predictions.json").read_text())
    for job in jobs:
        clicks = next(v for v in job["inputs"] if v["socket"]["slug"] == "lesion-clicks")
        clicks["value"], clicks["file"] = None, f"https://grand-challenge.org/media/{job['pk']}/lesion-clicks.json"
    jobs[0]["status"] = "Failed"
    (layout / "input" / "predictions.json").write_text(json.dumps(jobs))
    metrics = _evaluate(layout, tmp_path / "placed")
    assert metrics["unmatched_jobs"] == []
    failed = metrics["failed_jobs"]
    assert len(failed) == 1 and failed[0]["pk"] == jobs[0]["pk"] and failed[0]["status"] == "Failed"
    by_case = {r["case"]: r for r in metrics["results"]}
    case, step = failed[0]["case"], failed[0]["step"]
    assert by_case[case]["steps"][step]["scored_empty"]
    assert any(f"step {step}: job {jobs[0]['pk']} Failed" in p for p in by_case[case]["problems"])
    for entry in reference["results"]:  # every other step scores as with inline clicks
        for ours, theirs in zip(by_case[entry["case"]]["steps"], entry["steps"]):
            if (entry["case"], ours["step"]) != (case, step):
                assert _close(ours["dice"], theirs["dice"]) and _close(ours["fpv"], theirs["fpv"])

    # without per-step names in the ground truth the jobs cannot be placed: each is named, with its case
    index = layout / "ground_truth" / "ground_truth.json"
    record = json.loads(index.read_text())
    for entry in record["cases"].values():
        entry.pop("steps")
    index.write_text(json.dumps(record))
    unplaced = _evaluate(layout, tmp_path / "unplaced")
    assert len(unplaced["unmatched_jobs"]) == len(jobs)
    first = unplaced["unmatched_jobs"][0]
    assert first["case"] in by_case and "could not place job" in first["reason"] and "is not inline" in first["reason"]
    assert unplaced["aggregates"]["n_problem_steps"] == sum(len(r["steps"]) for r in unplaced["results"])


def test_task2_in_either_shape_scores_as_the_local_run(tmp_path):
    from autopet_common.phantoms import write_task2_cohort
    from evaluation_metrics import evaluate_task2
    from local_challenge.platform_layout import export_task2
    from local_challenge.task2 import run_task2_cohort

    cohort = write_task2_cohort(tmp_path / "cohort", n_pairs=2, size="tiny", seed=2)
    run_task2_cohort(cohort, tmp_path / "run", progress=False)
    local = {r["case"]: r for r in evaluate_task2(tmp_path / "run" / "labels", tmp_path / "run" / "predictions",
                                                   progress=False)["results"]}
    for legacy in (False, True):
        layout = export_task2(tmp_path / "run", cohort, tmp_path / f"layout{legacy}", seed=1, legacy=legacy)
        metrics = _evaluate(layout, tmp_path / f"out{legacy}")
        assert metrics["unmatched_jobs"] == [] and len(metrics["results"]) == 2
        for entry in metrics["results"]:
            for ours, theirs in zip(entry["steps"], local[entry["case"]]["steps"]):
                assert ours["step"] == theirs["step"] and _close(ours["dice"], theirs["dice"])
        assert metrics["aggregates"]["dice"] == pytest.approx(np.mean([r["dice"] for r in metrics["results"]]))


def test_iso_durations():
    from evaluation_metrics.gc_method import iso_duration_seconds

    assert iso_duration_seconds("PT22M17S") == 22 * 60 + 17
    assert iso_duration_seconds("PT1M12.348S") == pytest.approx(72.348)
    assert iso_duration_seconds("P1DT2H") == 86400 + 7200
    for bad in (None, "", "P", "22 minutes", 5):
        assert iso_duration_seconds(bad) is None
