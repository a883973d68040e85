"""nnU-Net path of Task 2 inference (``--model``): a model trained with
``autoPETTrainerLongitudinal`` on a dataset from :mod:`Task2.convert_dataset`.

The model folder is nnU-Net's training output folder (``.../autoPETTrainerLongitudinal__
nnUNetPlans__3d_fullres``, with ``fold_*/checkpoint_final.pth``, ``plans.json``,
``dataset.json``). The trainer class is found through ``nnUNet_extTrainer``, set here to
``Task2/trainers`` when unset.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from autopet_common.errors import InputError

TRAINERS_DIR = Path(__file__).resolve().parent / "trainers"


def is_task2_model(model_dir: str | os.PathLike) -> bool:
    """True when ``model_dir`` is an nnU-Net training output whose dataset has the four Task 2
    channels (a Task 1 PET/CT model, e.g. the one in /opt/ml/model, is not)."""
    import json

    from .channels import CHANNEL_NAMES

    dataset_json = Path(model_dir) / "dataset.json"
    try:
        channels = json.loads(dataset_json.read_text()).get("channel_names", {})
    except (OSError, ValueError):
        return False
    return {str(k): v for k, v in channels.items()} == CHANNEL_NAMES


def _device(device: str):
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def load_predictor(model_dir: Path, device: str = "auto", checkpoint: str = "checkpoint_final.pth"):
    """An initialised ``nnUNetPredictor`` for ``model_dir`` (all folds present)."""
    os.environ.setdefault("nnUNet_extTrainer", str(TRAINERS_DIR))
    from autopet_common.nnunet_predictor import make_nnunet_predictor

    model_dir = Path(model_dir)
    folds = sorted(p.name.split("_", 1)[1] for p in model_dir.glob("fold_*") if (p / checkpoint).is_file())
    if not folds:
        raise InputError(f"Task 2 model folder {model_dir} has no fold_*/{checkpoint}")
    dev = _device(device)
    predictor = make_nnunet_predictor(dev, tile_step_size=0.5, use_mirroring=True,
                                      perform_everything_on_device=dev.type == "cuda", verbose=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model_dir), tuple(int(f) if f.isdigit() else f for f in folds),
                                                   checkpoint)
    return predictor


def predict_followup(item: Any, model_dir: Path, params=None, device: str = "auto",
                     names: tuple[str, str] = ("follow-up CT", "baseline CT")) -> np.ndarray:
    """Segment one follow-up (a :class:`Task2.inference.FollowupInputs`) with the nnU-Net model."""
    from .channels import followup_channels

    channels = followup_channels(item.baseline_ct, item.baseline_geometry, item.baseline_mask,
                                 item.followup_ct, item.followup_geometry, item.followup_points, params, names)
    predictor = load_predictor(model_dir, device)
    # nnU-Net's SimpleITK reader gives (c, z, y, x) and spacing (z, y, x).
    data = np.stack([c.transpose(2, 1, 0) for c in channels]).astype(np.float32)
    properties = {"spacing": list(item.followup_geometry.spacing[::-1])}
    seg = predictor.predict_single_npy_array(data, properties, None, None, False)
    return np.asarray(seg).transpose(2, 1, 0) > 0
