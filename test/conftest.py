"""Shared pytest fixtures: cheap synthetic phantoms (session-scoped, generated once).

- ``tiny_task1_cohort``: path of a written tiny FDG cohort of 3 cases in nnU-Net raw layout
  (``imagesTr``, ``labelsTr``, ``dataset.json``, ``lesions.json``, ``gc/<case>/images/...``);
  ``PHANTOM_FDG_0002`` has no lesion.
- ``tiny_case``: a :class:`autopet_common.phantoms.PetCtCase` (tiny FDG, 6 lesions, seed 0).
- ``tiny_longitudinal_pair``: a :class:`autopet_common.phantoms.LongitudinalPair` (tiny, seed 0).
- ``sample_network_run``: ``inference.py`` run once as a process on the bundled sample
  (``test/input``, all its clicks) with the plain click model ``models/task1_phantom``; the tests
  that compare another road with the entrypoint (the session API, the sandbox) share it.
"""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_task1_cohort(tmp_path_factory):
    from autopet_common.phantoms import write_task1_cohort

    return write_task1_cohort(tmp_path_factory.mktemp("tiny_cohort"), n_cases=3, tracer="FDG",
                              size="tiny", seed=0, empty_every=3, n_lesions=6)


@pytest.fixture(scope="session")
def tiny_case():
    from autopet_common.phantoms import make_petct_case

    return make_petct_case(size="tiny", tracer="FDG", seed=0, n_lesions=6)


@pytest.fixture(scope="session")
def tiny_longitudinal_pair():
    from autopet_common.phantoms import make_longitudinal_pair

    return make_longitudinal_pair(size="tiny", seed=0, n_lesions=4, n_new=1)


@pytest.fixture(scope="session")
def sample_network_run(tmp_path_factory) -> dict:
    """``{"output": folder, "report": dict}`` of ``inference.py --input test/input --model
    models/task1_phantom --device cpu --quiet --report FILE`` (the report file kept outside the
    output folder, which holds the mask only)."""
    import json

    work = tmp_path_factory.mktemp("sample_network_run")
    done = subprocess.run([sys.executable, str(REPO / "inference.py"), "--input", str(REPO / "test" / "input"),
                           "--output", str(work / "out"), "--model", str(REPO / "models" / "task1_phantom"),
                           "--device", "cpu", "--quiet", "--report", str(work / "report.json")],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return {"output": work / "out", "report": json.loads((work / "report.json").read_text())}
