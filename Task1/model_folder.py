"""A Task 1 model folder: where the entrypoint finds it and the predictor that loads it.

Grand Challenge extracts the team's model tarball to ``/opt/ml/model`` (read-only). The
entrypoint uses a MONAI model folder there (``monai_model.json`` + ``model.pt``,
:mod:`Task1.monai_backend`), or the nnU-Net training output folder (``plans.json``,
``dataset.json``, ``fold_X/checkpoint_final.pth``) found at, or up to three levels below, that
folder (:func:`autopet_common.nnunet_folder.find_nnunet_model`), so the tarball may hold the
folder itself or nnU-Net's ``DatasetXXX/Trainer__Plans__Config/`` path (:func:`find_task1_model`;
a submission recipe folder, ``autopet_recipe.json``, names its models itself; which of these a
folder runs as has one rule, :func:`Task1.session.method_kind`). :func:`load_predictor` gives
the predictor of either kind. The check to run before uploading, and the tarball:
``python -m Task1.check_model DIR [--tar model.tar.gz]`` (:mod:`Task1.check_model`). Nothing is
imported at module import time.
"""
from __future__ import annotations

import os
from pathlib import Path

from autopet_common.nnunet_folder import find_nnunet_model


def find_task1_model(folder: str | os.PathLike) -> Path | None:
    """A Task 1 model at ``folder``: a MONAI model folder (``monai_model.json``,
    :mod:`Task1.monai_backend`) or else an nnU-Net folder (:func:`find_nnunet_model`); None if neither."""
    from Task1.monai_backend.config import is_monai_model

    return Path(folder) if is_monai_model(folder) else find_nnunet_model(folder)


def load_predictor(model_dir: str | os.PathLike, *, incremental: bool = False, **options):
    """The predictor of a Task 1 model folder: :class:`Task1.monai_backend.predict.MonaiPredictor`
    for a MONAI folder, else :class:`Task1.predict.Task1Predictor` (``options`` are its keyword
    arguments; a MONAI model takes ``device``, ``time_budget`` and ignores nnU-Net's folds,
    checkpoint and mirroring). Both have the same prediction interface. ``incremental``: an
    nnU-Net predictor keeps each prepared case's sliding-window tiles (:mod:`Task1.incremental`);
    a MONAI predictor predicts the whole case each time and ignores it."""
    from Task1.monai_backend.config import is_monai_model

    if is_monai_model(model_dir):
        from Task1.monai_backend.predict import MonaiPredictor

        return MonaiPredictor(model_dir, **options)
    from Task1.predict import Task1Predictor

    predictor = Task1Predictor(model_dir, **options)
    predictor.incremental = incremental
    return predictor
