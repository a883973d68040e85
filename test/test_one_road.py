"""One road through Task 1 (issue 28): one session API that every caller uses, one home for each
rule, and the run report as data (the run log and the paper read it, never the log lines)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autopet_common.image_io import list_images, read_image

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "test" / "input"
NETWORK = REPO / "models" / "task1_phantom"
SOURCES = [p for top in ("autopet_common", "clicks", "evaluation_metrics", "Task1", "Task2", "local_challenge",
                         "publication_template", "benchmarks") for p in (REPO / top).rglob("*.py")] + [REPO / "inference.py"]


def _sources_matching(pattern: str) -> list[str]:
    regex = re.compile(pattern)
    return sorted(p.relative_to(REPO).as_posix() for p in SOURCES if regex.search(p.read_text()))


def test_each_rule_has_one_home():
    from autopet_common.contract import MODEL_FREE
    from Task1.postprocessing import OPERATIONS, PostprocessOptions
    from Task1.session import clicks_for_step, method_kind, method_options  # noqa: F401

    assert MODEL_FREE == "model-free"
    # the model-free name: defined once
    defined = _sources_matching(r'(?m)^\s*\w+\s*=\s*"model-free"\s*(#.*)?$')
    assert defined == ["autopet_common/contract.py"], defined
    # the flags -> post-processing mapping: one function builds the options from the flags, one method the chain
    assert _sources_matching(r"PostprocessOptions\(click_rules=not") == ["Task1/session.py"]
    assert PostprocessOptions(remove_below_suv=1.5).chain() == [{"op": "click_rules", "protocol_rule": True},
                                                                 {"op": "suv_floor", "floor": 1.5}]
    assert PostprocessOptions(click_rules=False).chain() == []
    assert set(OPERATIONS) >= {"click_rules", "suv_floor", "remove_components", "close_gaps", "add_candidates",
                               "grow_from_clicks"}
    # the click-step rule: defined once (click_io); a method gets a step's clicks from the session only
    # (the dataset conversion draws training heatmaps at a step; batch prediction records the clicks;
    # the predictor's own command line takes --step, below the session)
    assert _sources_matching(r"def clicks_at_step\(") == ["autopet_common/click_io.py"]
    assert [p for p in _sources_matching(r"clicks_at_step\(") if p.startswith("Task1/")] == \
        ["Task1/batch_predict.py", "Task1/convert_dataset.py", "Task1/predict.py", "Task1/session.py"]
    # the model-folder precedence: one function
    assert _sources_matching(r"def method_kind\(") == ["Task1/session.py"]


def test_the_precedence_of_model_folders(tmp_path):
    from autopet_common.errors import InputError
    from Task1.session import method_kind

    nnunet = tmp_path / "m" / "Dataset001_X" / "T__P__C"
    (nnunet / "fold_0").mkdir(parents=True)
    for name in ("plans.json", "dataset.json"):
        (nnunet / name).write_text("{}")
    assert method_kind(tmp_path / "m") == "nnunet"  # found three levels down
    (tmp_path / "m" / "monai_model.json").write_text("{}")
    assert method_kind(tmp_path / "m") == "monai"  # MONAI before nnU-Net
    (tmp_path / "m" / "autopet_recipe.json").write_text("{}")
    assert method_kind(tmp_path / "m") == "recipe"  # a recipe before both
    assert method_kind("model-free") == method_kind(None) == "model-free"
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="--model folder .* holds no Task 1 model"):
        method_kind(tmp_path / "empty", "--model folder")


def test_prepare_once_predict_per_step_equals_the_entrypoint(sample_network_run):
    """The README's five lines: a method opened once, a case prepared once, a mask per step; the
    mask for the whole clicks file equals the entrypoint's (run once for the session, conftest),
    and the report says what ran. Step 0 against the entrypoint: test_task1_shipped_model."""
    from autopet_common.click_io import read_clicks_json
    from Task1.session import clicks_for_step, open_method

    ct, geometry = read_image(list_images(SAMPLE / "images" / "ct")[0], np.float32)
    pet, _ = read_image(list_images(SAMPLE / "images" / "pet")[0], np.float32)
    clicks = read_clicks_json(SAMPLE / "lesion-clicks.json")
    method = open_method(NETWORK, device="cpu")
    case = method.prepare(ct, pet, geometry)
    masks = {}
    for step in (0, 10):  # the bundled file holds 10 + 10 clicks: step 10 is all of them
        masks[step], report = method.predict(case, clicks_for_step(clicks, step, geometry.shape))
        assert report.method == "network" and report.clicks == {"tumor": step, "background": step}
        assert report.model_fields()["trainer"] == "autoPETTrainerClicks_cpu"
        assert [p["op"] for p in report.postprocessing] == ["click_rules"]
    assert not np.array_equal(masks[0], masks[10])  # the clicks reach the prediction
    output = sample_network_run["output"]
    (written,) = list_images(output / "images" / "tumor-lesion-segmentation")
    assert np.array_equal(read_image(written)[0], masks[10])
    assert sample_network_run["report"]["model_fields"] == report.model_fields()
    assert sample_network_run["report"]["clicks"] == {"tumor": 10, "background": 10}
    assert [p for p in output.rglob("*") if p.is_file()] == [written]  # nothing but the mask in the output


def test_the_report_file_comes_from_the_flag_or_the_environment(tmp_path):
    env = {**os.environ, "AUTOPET_REPORT": str(tmp_path / "from_env.json")}
    done = subprocess.run([sys.executable, str(REPO / "inference.py"), "--input", str(SAMPLE), "--output",
                           str(tmp_path / "out"), "--model", "model-free", "--quiet"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "from_env.json").read_text())
    assert report["method"] == "model-free" and report["model_fields"]["device"] == "cpu" and report["task"] == 1
    assert set(report["timings"]) >= {"read", "load", "prepare", "predict", "write"}


def _reworded_entrypoint(folder: Path) -> Path:
    """A copy of inference.py whose every log message says something else, beside links to the
    packages it imports."""
    folder.mkdir()
    for package in ("autopet_common", "clicks", "Task1", "Task2", "models"):
        (folder / package).symlink_to(REPO / package, target_is_directory=True)
    text = (REPO / "inference.py").read_text()
    reworded, n = re.subn(r'log\.(info|warning)\("', r'log.\1("REWORDED: ', text)
    assert n > 10
    (folder / "inference.py").write_text(reworded)
    return folder / "inference.py"


def test_rewording_the_log_leaves_the_run_log_unchanged(tiny_task1_cohort, tmp_path):
    from local_challenge.runner import run_local_challenge

    options = dict(model=str(NETWORK), max_cases=1, n_steps=2, progress=False, overlays=False)
    # the reference in process (no log lines at all; the run log is the reports' data either way)
    plain = run_local_challenge(tiny_task1_cohort, tmp_path / "plain", in_process=True, **options)
    reworded = run_local_challenge(tiny_task1_cohort, tmp_path / "reworded",
                                   entrypoint=_reworded_entrypoint(tmp_path / "app"), **options)
    logs = list((tmp_path / "reworded" / "logs").glob("*.log"))
    assert logs and all("REWORDED: " in p.read_text() for p in logs)
    fields = ("model", "trainer", "plans", "configuration", "folds", "encoding", "device")
    assert {k: plain.run_log[k] for k in fields} == {k: reworded.run_log[k] for k in fields}
    assert plain.run_log["trainer"] == "autoPETTrainerClicks_cpu" and plain.run_log["device"] == "cpu"
    assert plain.run_log["model"].endswith("task1_phantom")
