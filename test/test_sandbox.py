"""The Grand Challenge runtime as a test, without Docker (issue 16): the entrypoint in a Linux
sandbox (no network, read-only input, model and root file system, uid 65534, fresh /tmp,
unwritable HOME) writes the same masks as a plain run, opens no internet socket and starts only
the allowed programs. Skipped, with the reason, where namespaces are not available."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from local_challenge.sandbox import ALLOWED_PROGRAMS, run_sandboxed, sandbox_unavailable_reason

REPO = Path(__file__).resolve().parents[1]
REASON = sandbox_unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"sandbox not available: {REASON}")


def _masks(folder: Path) -> dict:
    from autopet_common.image_io import read_image

    return {p.relative_to(folder).as_posix(): read_image(p) for p in sorted(folder.rglob("*.mha"))}


def _plain_model_free_run(input_dir: Path, output_dir: Path) -> None:
    args = [sys.executable, str(REPO / "inference.py"), "--input", str(input_dir), "--output", str(output_dir),
            "--quiet", "--model", "model-free"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def task2_input(tmp_path_factory):
    from autopet_common.phantoms import write_task2_cohort

    cohort = write_task2_cohort(tmp_path_factory.mktemp("sandbox_t2"), n_pairs=1, size="tiny", seed=4)
    return cohort / "PHANTOM_CT_0000" / "input"


@pytest.mark.parametrize("task, model", [(1, "shipped"), (1, None), (2, None)])
def test_the_entrypoint_in_the_platforms_sandbox(task, model, tmp_path, task2_input, request):
    input_dir = REPO / "test" / "input" if task == 1 else task2_input
    model_dir = REPO / "models" / "task1_phantom" if model else None
    extra = ["--quiet"] if model_dir else ["--model", "model-free", "--quiet"]
    run = run_sandboxed(input_dir, tmp_path / "sandboxed", model_dir=model_dir, extra_args=extra, timeout=300)
    assert run.exit_code == 0, run.log[-3000:]
    assert run.sockets == [], run.sockets
    assert run.unexpected_programs == [], (run.programs, ALLOWED_PROGRAMS)
    written = sorted(p.relative_to(tmp_path / "sandboxed").as_posix() for p in (tmp_path / "sandboxed").rglob("*")
                     if p.is_file())
    assert written and all(name.endswith(".mha") and name.startswith("images/") for name in written), written
    if model_dir:  # the plain run of this model on this input, made once for the session (conftest)
        plain_dir = request.getfixturevalue("sample_network_run")["output"]
    else:
        plain_dir = tmp_path / "plain"
        _plain_model_free_run(input_dir, plain_dir)
    sandboxed, plain = _masks(tmp_path / "sandboxed"), _masks(plain_dir)
    assert sandboxed.keys() == plain.keys()
    for name in sandboxed:
        (a, ga), (b, gb) = sandboxed[name], plain[name]
        assert np.array_equal(a, b) and ga == gb, name


def test_the_sandbox_really_confines(tmp_path):
    """The sandbox is not a no-op: in it, writing outside the output folder, reading the input as
    writable, and reaching the network all fail."""
    from local_challenge.sandbox import write_audit_hook, sandboxed_command

    probe = tmp_path / "app"
    probe.mkdir()
    (probe / "inference.py").write_text(
        "import os, socket, sys\n"
        "problems = []\n"
        "for path in ('/mnt/input/x', '/etc/autopet-probe', os.path.expanduser('~/x')):\n"
        "    try:\n"
        "        open(path, 'w').write('x'); problems.append(f'wrote {path}')\n"
        "    except OSError:\n"
        "        pass\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 53), timeout=2); problems.append('network')\n"
        "except OSError:\n"
        "    pass\n"
        "if os.getuid() == 0: problems.append('root')\n"
        "if os.listdir('/tmp'): problems.append(f'/tmp not fresh: {os.listdir(\"/tmp\")}')\n"
        "open('/mnt/output/ok', 'w').write('ok')\n"
        "print(problems); sys.exit(1 if problems else 0)\n")
    for path in (probe, probe / "inference.py"):
        path.chmod(0o755)
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    out.mkdir()
    out.chmod(0o777)
    command = sandboxed_command(inp, out, None, audit_dir=write_audit_hook(tmp_path / "audit"), app_dir=probe)
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "ok").read_text() == "ok" and not (inp / "x").exists()
    assert "SANDBOX-AUDIT socket" in done.stderr  # the audit hook saw the attempt


def test_local_challenge_sandbox_option(tiny_task1_cohort, tmp_path):
    from local_challenge.runner import run_local_challenge

    runs = {}
    for sandbox in (False, True):
        out = tmp_path / f"sandbox_{sandbox}"
        result = run_local_challenge(tiny_task1_cohort, out, model="model-free", max_cases=1, n_steps=3,
                                     progress=False, overlays=False, sandbox=sandbox)
        assert result.run_log["n_failed"] == 0
        runs[sandbox] = _masks(out / "predictions")
    assert runs[True].keys() == runs[False].keys() and len(runs[True]) == 3
    assert all(np.array_equal(runs[True][k][0], runs[False][k][0]) for k in runs[True])
