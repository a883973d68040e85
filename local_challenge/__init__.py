"""Local 11-step challenge run: the Grand Challenge interactive protocol on your own machine.

``python -m local_challenge --cohort COHORT --output OUT`` simulates each case's clicks, runs
the entrypoint (``inference.py``, or a Docker image) once per step as the challenge does,
records time and memory per run, and scores the predictions. See :mod:`local_challenge.runner`
and ``local_challenge/README.md``. Importing this package does no work.
"""


def __getattr__(name: str):
    if name in ("run_local_challenge", "discover_cohort", "run_process", "RunRecord", "CohortCase"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'local_challenge' has no attribute {name!r}")
