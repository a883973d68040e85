"""The container as far as it can be tested without a Docker engine: the Dockerfile's shape and
a run of inference.py from a copy of exactly the files the Dockerfile copies."""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from autopet_common.image_io import list_images, read_geometry, read_image, same_grid

REPO = Path(__file__).resolve().parents[1]
APP_DIR = "/opt/app"


def dockerfile_instructions():
    """(instruction, arguments) pairs of the Dockerfile, continuation lines joined."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def copied_sources():
    """Sources of the COPY lines (relative to the build context) with their destinations."""
    pairs = []
    for keyword, rest in dockerfile_instructions():
        if keyword != "COPY":
            continue
        parts = [p for p in shlex.split(rest) if not p.startswith("--")]
        *sources, dest = parts
        pairs += [(source.rstrip("/"), dest) for source in sources]
    return pairs


def test_dockerfile_follows_the_challenge_style():
    instructions = dockerfile_instructions()
    base = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert base == ["${BASE_IMAGE}"]  # the base image is a build argument (a local one where Hub is out of reach)
    default = [rest for keyword, rest in instructions if keyword == "ARG" and rest.startswith("BASE_IMAGE=")]
    assert len(default) == 1
    match = re.search(r"pytorch/pytorch:(\d+)\.(\d+)\.(\d+)-cuda12\.\d+-cudnn9-runtime$", default[0])
    assert match, default[0]
    assert int(match.group(1)) == 2 and int(match.group(2)) != 9  # nnunetv2 2.8.1 excludes torch 2.9.*
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users == ["user"]
    assert ("WORKDIR", APP_DIR) in instructions
    assert instructions[-1] == ("ENTRYPOINT", '["python", "inference.py"]')
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert "--requirement /opt/app/requirements.txt" in runs and "--constraint" in runs  # base torch kept
    for source, dest in copied_sources():
        assert (REPO / source).exists(), source
        assert dest.rstrip("/") in (APP_DIR, f"{APP_DIR}/{source}"), (source, dest)
    assert {"inference.py", "requirements.txt", "autopet_common", "Task1"} <= {s for s, _ in copied_sources()}


def test_dockerignore_lets_every_copied_file_through():
    lines = [l.strip() for l in (REPO / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert lines[0] == "*"  # allowlist: nothing else is sent to the daemon (.venv, data, outputs)
    allowed = {l[1:].rstrip("/") for l in lines if l.startswith("!")}
    assert {source for source, _ in copied_sources()} <= allowed


def test_scripts_use_the_template_names_and_the_platforms_flags():
    test_run = (REPO / "do_test_run.sh").read_text()
    for flag in ("--network none", "--cap-drop ALL", "--security-opt no-new-privileges", "--shm-size 2g",
                 "--memory 16g", '--gpus "$GPUS"', "/input:ro", ":/output", ":/tmp", "/opt/ml/model:ro"):
        assert flag in test_run, flag
    assert "for task in 1 2" in test_run and "plain run" in test_run  # both tasks, compared with a plain run
    save = (REPO / "do_save.sh").read_text()
    assert " save " in save and "gzip" in save
    assert " build " in (REPO / "do_build.sh").read_text()
    for name in ("do_build.sh", "do_test_run.sh", "do_save.sh"):
        assert os.access(REPO / name, os.X_OK), name
        subprocess.run(["bash", "-n", str(REPO / name)], check=True)
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "PYTHONDONTWRITEBYTECODE=1" in dockerfile and "compileall" in dockerfile  # nothing written at run time


def _sample_input(tiny_task1_cohort, tmp_path) -> Path:
    """The committed sample test/input when present, else a tiny phantom in GC layout."""
    sample = REPO / "test" / "input"
    if (sample / "images" / "ct").is_dir():
        return sample
    case = sorted((tiny_task1_cohort / "gc").iterdir())[0]
    target = tmp_path / "input"
    shutil.copytree(case, target)
    return target


def test_copy_of_the_container_files_runs_on_the_sample(tmp_path, tiny_task1_cohort):
    app = tmp_path / "opt_app"
    app.mkdir()
    for source, _ in copied_sources():
        src = REPO / source
        if src.is_dir():
            shutil.copytree(src, app / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, app / source)
    env = {**os.environ, "PYTHONPATH": str(app), "PYTHONUNBUFFERED": "1"}
    # The code must come from the copy, not from the repository (an editable install).
    where = subprocess.run([sys.executable, "-c", "import autopet_common, Task1.model_free_baseline as m, clicks;"
                            "print(autopet_common.__file__); print(m.__file__); print(clicks.__file__)"],
                           cwd=app, env=env, capture_output=True, text=True, check=True)
    assert all(line.startswith(str(app)) for line in where.stdout.split()), where.stdout

    sample = _sample_input(tiny_task1_cohort, tmp_path)
    output = tmp_path / "output"
    run = subprocess.run([sys.executable, "inference.py", "--input", str(sample), "--output", str(output)],
                         cwd=app, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    masks = list_images(output / "images" / "tumor-lesion-segmentation")
    ct_file = list_images(sample / "images" / "ct")[0]
    assert [m.name for m in masks] == [ct_file.name.replace(".nii.gz", ".mha")]
    mask, geometry = read_image(masks[0])
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    assert same_grid(geometry, read_geometry(list_images(sample / "images" / "pet")[0]))
