"""A MONAI model folder -> Task 1 masks and lesion probabilities.

:class:`MonaiPredictor` has the interface of :class:`Task1.predict.Task1Predictor` (``prepare``,
``predict``, ``predict_prepared``, ``predict_probability``, ``describe``, ``time_budget``), so
the entrypoint, the recipe, batch prediction and the local challenge run it the same way. A case
is resampled and normalised once (:func:`Task1.monai_backend.data.preprocess_case`); per click
step only the click channels and the sliding-window passes change. Clicks are voxel indices
``[i, j, k]`` of the input grid, mapped to the model grid through the affines. The lesion
probability (softmax) goes back to the input grid linearly; the mask is probability > 0.5.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autopet_common.errors import InputError
from Task1.monai_backend.config import WEIGHTS_FILE, MonaiModelError, read_model_config

log = logging.getLogger(__name__)


@dataclass
class PreparedMonaiCase:
    data: Any            # torch tensor (2, I, J, K): normalised CT and PET on the model grid
    affine: Any          # the model grid's affine (mm)
    spacing: tuple       # the input grid's spacing
    shape: tuple         # the input grid's shape
    preprocess_seconds: float


class MonaiPredictor:
    def __init__(self, model_dir: str | os.PathLike, *, device: str = "auto", time_budget: float | None = None,
                 sw_overlap: float | None = None, use_mirroring: bool = False, **_ignored: Any):
        import torch

        from Task1.monai_backend.networks import build_network

        config = read_model_config(model_dir)
        network = build_network(config)
        weights = Path(model_dir) / WEIGHTS_FILE
        try:
            network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        except FileNotFoundError:
            raise MonaiModelError(f"{weights}: not found (a MONAI model folder needs {WEIGHTS_FILE})") from None
        except Exception as exc:  # torch raises several types for corrupt or mismatched files
            raise MonaiModelError(f"cannot load {weights} into {config.family}: {exc}") from None
        self._setup(config, network, Path(model_dir), device, time_budget, sw_overlap)
        self.use_mirroring = bool(use_mirroring)  # accepted for the common interface; not used

    @classmethod
    def in_memory(cls, config, network, *, device: str = "auto") -> "MonaiPredictor":
        """A predictor for a network being trained (no folder yet): the same preprocessing and inference."""
        predictor = cls.__new__(cls)
        predictor._setup(config, network, None, device, None, None)
        predictor.use_mirroring = False
        return predictor

    def _setup(self, config, network, model_dir, device, time_budget, sw_overlap) -> None:
        from Task1.predict import resolve_device

        self.config, self.model_dir, self.time_budget = config, model_dir, time_budget
        self.sw_overlap = config.sw_overlap if sw_overlap is None else float(sw_overlap)
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.network = network.to(self.device).eval()
        self.last_timings: dict[str, float] = {}
        self.dropped: list[str] = []

    @property
    def trainer_name(self) -> str:
        return self.config.clicks.trainer

    def describe(self) -> dict[str, Any]:
        return {"model_dir": str(self.model_dir), "framework": "MONAI", "family": self.config.family,
                "trainer": self.config.clicks.trainer, "plans": None,
                "configuration": "x".join(f"{s:g}" for s in self.config.spacing) + " mm",
                "encoding": self.config.clicks.encoding, "encoding_size": self.config.clicks.encoding_size,
                "folds": ["-"], "input_kind": "clicks", "click_config_version": self.config.clicks.version,
                "device": str(self.device), "sw_overlap": self.sw_overlap, "dropped": list(self.dropped),
                **self.last_timings}

    def prepare(self, ct: np.ndarray, pet: np.ndarray, geometry) -> PreparedMonaiCase:
        from Task1.monai_backend.data import preprocess_case

        started = time.perf_counter()
        if np.shape(ct) != np.shape(pet):
            raise InputError(f"CT {np.shape(ct)} and PET {np.shape(pet)} must be on one grid")
        data, _, affine = preprocess_case(ct, pet, geometry.spacing, self.config)
        return PreparedMonaiCase(data, affine, tuple(float(s) for s in geometry.spacing), tuple(geometry.shape),
                                 time.perf_counter() - started)

    def predict(self, ct: np.ndarray, pet: np.ndarray, geometry, clicks: dict | None) -> np.ndarray:
        started = time.perf_counter()
        return self.predict_prepared(self.prepare(ct, pet, geometry), clicks, started=started)

    def predict_prepared(self, case: PreparedMonaiCase, clicks: dict | None, *,
                         started: float | None = None) -> np.ndarray:
        return (self.predict_probability(case, clicks, started=started) > 0.5).astype(np.uint8)

    def predict_probability(self, case: PreparedMonaiCase, clicks: dict | None, *,
                            started: float | None = None) -> np.ndarray:
        """The lesion probability (float32 ``[i, j, k]`` on the input grid)."""
        import torch
        from monai.inferers import SlidingWindowInferer, SlidingWindowInfererAdapt

        from autopet_common.click_io import split_clicks_inside
        from Task1.click_transforms import click_channels
        from Task1.monai_backend.data import back_to_input_grid, map_points

        started = time.perf_counter() if started is None else started
        if clicks is not None and not isinstance(clicks, dict):
            raise InputError(f"clicks must be a dict {{'tumor': [...], 'background': [...]}}, got "
                             f"{type(clicks).__name__}")
        inside, outside = split_clicks_inside(clicks or {}, case.shape)
        if outside:
            log.warning("skipping %d click(s) outside the image %s", len(outside), case.shape)
        grid = tuple(case.data.shape[1:])
        mapped = {kind: map_points(inside[kind], case.spacing, case.affine, grid) for kind in ("tumor", "background")}
        cfg = self.config.clicks
        maps = click_channels(grid, mapped, cfg.encoding, cfg.encoding_size, cfg.click_order)
        data = torch.cat((case.data, torch.from_numpy(maps)), dim=0)[None].to(self.device)
        self.dropped = []
        overlap = self.sw_overlap
        if self.time_budget is not None and time.perf_counter() - started > 0.5 * self.time_budget and overlap > 0:
            overlap = 0.0
            self.dropped.append("sliding-window overlap")
        inferer_class = SlidingWindowInfererAdapt if self.config.sw_adaptive else SlidingWindowInferer
        inferer = inferer_class(roi_size=list(self.config.patch_size), sw_batch_size=2, overlap=overlap,
                                mode="gaussian")
        t = time.perf_counter()
        with torch.inference_mode():
            logits = inferer(data, self.network)
        if isinstance(logits, (list, tuple)):  # a deep-supervision network in eval mode gives one map
            logits = logits[0]
        probability = torch.softmax(logits.float(), dim=1)[0, 1].cpu()
        predicted = time.perf_counter()
        out = back_to_input_grid(probability, case.affine, case.spacing, case.shape)
        self.last_timings = {"preprocess_s": case.preprocess_seconds, "predict_s": predicted - t,
                             "export_s": time.perf_counter() - predicted, "total_s": time.perf_counter() - started}
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
