"""Task 1 predictor: CT + PET + clicks -> binary lesion mask on the input grid, with nnU-Net v2.

    from Task1.predict import Task1Predictor
    p = Task1Predictor(model_dir, folds=None, checkpoint="checkpoint_final.pth", device="auto",
                       use_mirroring=True, time_budget=None, verbose=False)
    mask = p.predict(ct, pet, geometry, {"tumor": [[i, j, k], ...], "background": [...]})

Conventions: ``ct`` (HU) and ``pet`` (SUV) are float32 arrays indexed ``[i, j, k]`` (NIfTI
order) on one grid described by ``geometry`` (:class:`autopet_common.image_io.Geometry`);
clicks are voxel indices ``[i, j, k]`` of that grid; the returned mask is uint8 0/1 ``[i, j, k]``
on the same grid.

Two kinds of model folder are read (detected from the checkpoint and ``dataset.json``):

- click models (``autoPETTrainerClicks*``): the dataset has the image channels (CT, PET); the
  network has 2 more inputs. Each click is mapped through nnU-Net's own preprocessing (axis
  order of the reader, transpose, crop to non-zero, resampling) into the network grid and the
  tumor and background channels are built there with the encoding stored in the checkpoint,
  exactly as in training.
- heatmap models (the challenge's 4-channel nnU-Net baseline and models trained on datasets from
  ``Task1.convert_dataset --variant heatmaps``): CT, PET, tumor heatmap, background heatmap are
  dataset channels. The heatmaps are drawn on the input grid (Gaussian, sigma 3 voxels, as the
  reference, unless ``dataset.json`` records another encoding) and go through the same
  preprocessing as in training.

Time budget: with ``time_budget`` (seconds, counted from the start of :meth:`predict`), the
forward time of the first sliding-window tile of the first fold is measured, the total for all
folds x mirrorings is estimated, and mirror axes are dropped first (one at a time: 2^k passes for
k axes), then folds, then tile overlap
(sliding-window step 0.5 -> 0.75 -> 1.0), so the run ends within the budget when it can. What was dropped is logged (logger ``Task1.predict``) and reported by
:meth:`describe`.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from autopet_common.cli import ArgumentParser, device_name, entrypoint, non_negative_int, positive_float
from autopet_common.errors import InputError
from Task1.click_config import CLICK_CONFIG_FILE, CLICK_CONFIG_KEY, ClickConfig

log = logging.getLogger("Task1.predict")

CONVERSION_KEY = "autopet_conversion"       # written into dataset.json by Task1.convert_dataset
REFERENCE_HEATMAP = {"encoding": "gaussian", "encoding_size": 3.0}  # the challenge's baseline heatmaps
SUPPORTED_READERS = ("SimpleITKIO", "NibabelIO")  # readers that index arrays [k, j, i] without reorienting
DEVICE_MEMORY_LIMIT_BYTES = 6 * 1024 ** 3   # above this, keep the sliding-window results on the CPU


class ModelFolderError(InputError):
    """A model folder is missing, incomplete or of an unsupported kind."""


@dataclass
class PreparedCase:
    """One case checked and preprocessed by :meth:`Task1Predictor.prepare`: the network-grid
    image channels (``data``, ``properties``) of click models, or the raw ``channels`` of
    heatmap models (their heatmaps are drawn on the input grid, before preprocessing)."""

    channels: list | None
    properties: dict | None
    geometry: Any
    shape: tuple
    preprocess_seconds: float
    data: np.ndarray | None = None
    incremental: Any = None  # the tile cache and export of :mod:`Task1.incremental`, made on first use


# ------------------------------------------------------------------------------- pure helpers
def input_to_network_index(points_ijk: Sequence[Sequence[float]], properties: dict,
                           transpose_forward: Sequence[int], network_shape: Sequence[int]
                           ) -> tuple[list[list[int]], list[int]]:
    """Map voxel indices ``[i, j, k]`` of the input grid into nnU-Net's network grid.

    Follows nnU-Net's preprocessing step by step: the reader's array order ``[k, j, i]``; the
    plans' ``transpose_forward``; the crop to the non-zero bounding box
    (``properties['bbox_used_for_cropping']``); the resampling from
    ``shape_after_cropping_and_before_resampling`` to ``network_shape``, whose coordinate map
    (scikit-image ``resize`` and nnU-Net's separate-z path alike) is
    ``out = (in + 0.5) * new / old - 0.5``. Results are rounded and clipped into the grid.

    Returns (mapped points, indices of the points dropped because they lie outside the image
    or outside the cropped region).
    """
    bbox = np.asarray(properties["bbox_used_for_cropping"], dtype=float)
    before = np.asarray(properties["shape_before_cropping"], dtype=float)
    cropped = np.asarray(properties["shape_after_cropping_and_before_resampling"], dtype=float)
    new = np.asarray(network_shape, dtype=float)
    order = list(transpose_forward)
    mapped, dropped = [], []
    for n, point in enumerate(points_ijk):
        p = np.floor(np.asarray(point, dtype=float) + 0.5)[::-1][order]  # [k, j, i] -> transposed
        if np.any(p < 0) or np.any(p >= before):
            dropped.append(n)
            continue
        local = p - bbox[:, 0]
        if np.any(local < 0) or np.any(local >= cropped):
            dropped.append(n)
            continue
        out = (local + 0.5) * new / cropped - 0.5
        out = np.clip(np.floor(out + 0.5), 0, new - 1).astype(int)
        mapped.append([int(v) for v in out])
    return mapped, dropped


def to_nnunet_input(channels: Sequence[np.ndarray], geometry) -> tuple[np.ndarray, dict]:
    """Arrays ``[i, j, k]`` -> what nnU-Net's readers (SimpleITKIO, NibabelIO) return for the
    same images: float32 ``(C, k, j, i)`` and properties with spacing in (z, y, x) order.
    Neither reader reorients, so the direction matrix does not change the arrays."""
    data = np.stack([np.asarray(c, dtype=np.float32) for c in channels]).transpose(0, 3, 2, 1)
    properties = {"spacing": [abs(float(s)) for s in geometry.spacing[::-1]],
                  "sitk_stuff": {"spacing": tuple(geometry.spacing), "origin": tuple(geometry.origin),
                                 "direction": tuple(geometry.direction)}}
    return data, properties


def check_checkpoint(ckpt: Any, path: Path, plans: dict) -> None:
    """The fields of an nnU-Net checkpoint this predictor reads, each checked, with
    :class:`ModelFolderError` naming the file and the field: ``network_weights`` (a state
    dict), ``trainer_name`` (a class name), ``init_args.configuration`` (one of ``plans``)."""
    if not isinstance(ckpt, dict):
        raise ModelFolderError(f"checkpoint {path}: expected nnU-Net's checkpoint dictionary, got {type(ckpt).__name__}")
    weights = ckpt.get("network_weights")
    if not isinstance(weights, dict) or not weights:
        raise ModelFolderError(f"checkpoint {path}: field 'network_weights' must be the network's state dict, "
                               f"got {type(weights).__name__}")
    trainer = ckpt.get("trainer_name")
    if not isinstance(trainer, str) or not trainer.isidentifier():
        raise ModelFolderError(f"checkpoint {path}: field 'trainer_name' must name a trainer class, got {trainer!r:.80}")
    init_args = ckpt.get("init_args")
    configuration = init_args.get("configuration") if isinstance(init_args, dict) else None
    known = sorted((plans.get("configurations") or {}))
    if not isinstance(configuration, str) or configuration not in known:
        raise ModelFolderError(f"checkpoint {path}: field 'init_args.configuration' must be one of the plans' "
                               f"configurations {known}, got {configuration!r:.80}")


def find_trainer_class(trainer_name: str, source: str = "the checkpoint"):
    """The trainer class a checkpoint names, as nnU-Net's own predictor finds it: this project's
    click trainers first (importable without ``nnUNet_extTrainer``), then nnU-Net's search of
    its package and of ``nnUNet_extTrainer``. Raises :class:`ModelFolderError` when unknown."""
    from Task1.trainers import autoPETClickTrainers

    found = getattr(autoPETClickTrainers, trainer_name, None)
    if isinstance(found, type):
        return found
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    try:
        return recursive_find_trainer_class_by_name(trainer_name)
    except RuntimeError as exc:
        raise ModelFolderError(f"{source}: field 'trainer_name' names {trainer_name!r}, which is neither one of "
                               "Task1/trainers nor found by nnU-Net: put its folder in nnUNet_extTrainer "
                               f"({str(exc).splitlines()[0][:200]})") from None


def resolve_device(device: str):
    """"auto" -> cuda when available else cpu, decided now (never at import)."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device_name(str(device))
    except argparse.ArgumentTypeError as exc:
        raise InputError(f"--device: {exc}") from None
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: no CUDA device is available here")
    return torch.device(device)


# ------------------------------------------------------------------------------- predictor
def mirror_axes_within(axes: Sequence[int], seconds_for_passes, remaining: float) -> tuple:
    """The longest prefix of the mirror ``axes`` whose 2^k forward passes fit in ``remaining``
    seconds (``seconds_for_passes(n)`` estimates n passes); () when not even 2 passes fit."""
    axes = tuple(axes)
    k = len(axes)
    while k > 0 and seconds_for_passes(2 ** k) > remaining:
        k -= 1
    return axes[:k]


class Task1Predictor:
    """nnU-Net v2 model folder -> Task 1 masks. See the module docstring for conventions."""

    def __init__(self, model_dir: str | os.PathLike, folds: Sequence[int | str] | None = None,
                 checkpoint: str = "checkpoint_final.pth", device: str = "auto", use_mirroring: bool = True,
                 time_budget: float | None = None, verbose: bool = False, tile_step_size: float | None = None):
        import torch
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        self.model_dir = Path(model_dir)
        self.checkpoint_name = checkpoint
        self.use_mirroring = bool(use_mirroring)
        self.time_budget = time_budget
        self.verbose = verbose
        self.tile_step_size = tile_step_size
        self.dropped: list[str] = []
        self.last_timings: dict[str, float] = {}
        # keep each sliding-window tile's output in the prepared case and recompute only the tiles
        # a new click set changes (Task1.incremental); set by the interactive session
        self.incremental = False
        self.last_incremental: dict[str, Any] = {}

        for name in ("plans.json", "dataset.json"):
            if not (self.model_dir / name).is_file():
                raise ModelFolderError(f"model folder {self.model_dir} has no {name}: not an nnU-Net v2 "
                                       "model folder (expected the folder with plans.json, dataset.json, fold_X/)")
        from autopet_common.image_io import read_json

        self.plans = read_json(self.model_dir / "plans.json", "plans of the model", error=ModelFolderError)
        self.dataset_json = read_json(self.model_dir / "dataset.json", "dataset.json of the model",
                                      error=ModelFolderError)
        for name, content in (("plans.json", self.plans), ("dataset.json", self.dataset_json)):
            if not isinstance(content, dict):
                raise ModelFolderError(f"{self.model_dir / name}: expected a JSON object")
        self.plans_manager = PlansManager(self.plans)
        reader = self.plans.get("image_reader_writer", "SimpleITKIO")
        if reader not in SUPPORTED_READERS:
            raise ModelFolderError(f"model folder {self.model_dir}: plans use the reader {reader}, which "
                                   f"reorients images; clicks can only be mapped for {SUPPORTED_READERS}")

        self.folds = self._find_folds(folds)
        self.parameters, first = [], None
        for fold in self.folds:
            path = self.model_dir / f"fold_{fold}" / checkpoint
            try:
                ckpt = torch.load(path, map_location="cpu", weights_only=False)
            except Exception as exc:  # torch raises several types for corrupt files
                raise ModelFolderError(f"cannot load checkpoint {path}: {exc}") from None
            check_checkpoint(ckpt, path, self.plans)
            if first is None:
                first = ckpt
            self.parameters.append(ckpt["network_weights"])
        self.trainer_name = first["trainer_name"]
        self.configuration_name = first["init_args"]["configuration"]
        self.mirror_axes = first.get("inference_allowed_mirroring_axes")
        self.configuration_manager = self.plans_manager.get_configuration(self.configuration_name)
        self.label_manager = self.plans_manager.get_label_manager(self.dataset_json)

        self.n_dataset_channels = len(self.dataset_json.get("channel_names", self.dataset_json.get("modality", {})))
        # The network is built by the trainer class the checkpoint names (as nnU-Net's predictor
        # does), so the number and order of click channels have one definition: the trainer's.
        self.trainer_class = find_trainer_class(self.trainer_name,
                                                f"checkpoint {self.model_dir / f'fold_{self.folds[0]}' / checkpoint}")
        n_click_channels = int(getattr(self.trainer_class, "n_click_channels", 0))
        self.click_config = None
        if n_click_channels:
            self.kind = "clicks"
            self.click_config = self._read_click_config(first)
            if self.click_config.n_click_channels != n_click_channels:
                raise ModelFolderError(
                    f"model folder {self.model_dir}: the stored click configuration has "
                    f"{self.click_config.n_click_channels} click channel(s), {self.trainer_name} builds "
                    f"{n_click_channels}")
            if self.n_dataset_channels != 2:
                raise ModelFolderError(f"model folder {self.model_dir}: a click model needs a CT + PET dataset, "
                                       f"dataset.json has {self.n_dataset_channels} channel(s)")
            self.encoding = self.click_config.encoding
            self.encoding_size = self.click_config.encoding_size
        elif self.n_dataset_channels == 4:
            self.kind = "heatmaps"
            config = self.dataset_json.get(CONVERSION_KEY) or REFERENCE_HEATMAP
            self.encoding = config.get("encoding", "gaussian")
            self.encoding_size = config.get("encoding_size", 3.0)
        else:
            raise ModelFolderError(
                f"model folder {self.model_dir}: trained with {self.trainer_name}, which takes no clicks, on "
                f"{self.n_dataset_channels} dataset channel(s); expected a click trainer (Task1/trainers) or a "
                "4-channel heatmap dataset (CT, PET, tumor, background)")
        if self.tile_step_size is None:  # the trainer's choice (nnU-Net's 0.5 unless it says otherwise)
            self.tile_step_size = float(getattr(self.trainer_class, "inference_tile_step_size", 0.5))
        self.device = resolve_device(device)
        self.network = self._build_network()

    # -------------------------------------------------------------------------- loading
    def _find_folds(self, folds) -> list:
        if folds is None:
            found = sorted(int(p.name[5:]) for p in self.model_dir.glob("fold_*")
                           if p.name[5:].isdigit() and (p / self.checkpoint_name).is_file())
            if not found and (self.model_dir / "fold_all" / self.checkpoint_name).is_file():
                found = ["all"]
            if not found:
                raise ModelFolderError(f"model folder {self.model_dir} has no fold_X/{self.checkpoint_name}")
            return found
        folds = [f if f == "all" else int(f) for f in folds]
        for fold in folds:
            if not (self.model_dir / f"fold_{fold}" / self.checkpoint_name).is_file():
                raise ModelFolderError(f"model folder {self.model_dir}: fold_{fold}/{self.checkpoint_name} "
                                       "not found")
        return folds

    def _read_click_config(self, checkpoint: dict) -> ClickConfig:
        """The checkpoint's click configuration, else ``click_config.json``, else the trainer
        class's own attributes (with a warning): any stored version is read."""
        if checkpoint.get(CLICK_CONFIG_KEY):
            return ClickConfig.from_dict(checkpoint[CLICK_CONFIG_KEY],
                                         source=f"checkpoint of {self.model_dir} ({CLICK_CONFIG_KEY})")
        path = self.model_dir / CLICK_CONFIG_FILE
        if path.is_file():
            from autopet_common.image_io import read_json

            return ClickConfig.from_dict(read_json(path, "click configuration", error=ModelFolderError),
                                         source=str(path))
        log.warning("%s: no click configuration stored; using %s's attributes", self.model_dir, self.trainer_name)
        cls = self.trainer_class
        return ClickConfig(trainer=self.trainer_name, n_click_channels=int(cls.n_click_channels),
                           click_order=tuple(cls.click_order), encoding=cls.click_encoding,
                           encoding_size=cls.click_encoding_size,
                           pet_channel=cls._find_pet_channel(self.dataset_json),
                           max_interaction_step=int(cls.max_interaction_step))

    def _build_network(self):
        network = self.trainer_class.build_network_architecture(
            self.plans_manager, self.configuration_manager, self.n_dataset_channels,
            self.label_manager.num_segmentation_heads, enable_deep_supervision=False)
        try:
            network.load_state_dict(self.parameters[0])
        except RuntimeError as exc:
            raise ModelFolderError(f"model folder {self.model_dir}: the checkpoint does not fit the network that "
                                   f"{self.trainer_name} builds from plans.json ({str(exc).splitlines()[0]})") from None
        return network.eval()

    def describe(self) -> dict[str, Any]:
        """What runs, for logs."""
        return {"model_dir": str(self.model_dir), "trainer": self.trainer_name,
                "plans": self.plans_manager.plans_name, "configuration": self.configuration_name,
                "folds": list(self.folds), "checkpoint": self.checkpoint_name, "input_kind": self.kind,
                "encoding": self.encoding, "encoding_size": self.encoding_size, "device": str(self.device),
                "click_config_version": self.click_config.version if self.click_config else None,
                "use_mirroring": self.use_mirroring, "tile_step_size": self.tile_step_size,
                "time_budget": self.time_budget,
                "dropped": list(self.dropped), "timings": dict(self.last_timings),
                **({"incremental": dict(self.last_incremental)} if self.incremental else {})}

    # -------------------------------------------------------------------------- prediction
    def prepare(self, ct: np.ndarray, pet: np.ndarray, geometry) -> PreparedCase:
        """Check and preprocess one case (nnU-Net's resampling and normalisation) once, for any
        number of :meth:`predict_prepared` calls with different clicks. Heatmap models draw
        their click channels on the input grid, so for them the preprocessing waits for the
        clicks (nothing is saved)."""
        from autopet_common.image_io import require_finite

        started = time.perf_counter()
        shape = tuple(int(s) for s in geometry.shape)
        for name, array in (("CT", ct), ("PET", pet)):
            if tuple(np.shape(array)) != shape:
                raise InputError(f"{name} array of shape {tuple(np.shape(array))} does not match the "
                                 f"geometry's shape {shape}")
            require_finite(np.asarray(array), f"{name} image")
        channels = [np.asarray(ct, dtype=np.float32), np.asarray(pet, dtype=np.float32)]
        if self.click_config is not None and self.click_config.pet_channel == 0:
            channels.reverse()  # the dataset stored PET first
        if self.kind == "heatmaps":
            return PreparedCase(channels, None, geometry, shape, 0.0)
        data, properties = self._preprocess(channels, geometry)
        return PreparedCase(None, properties, geometry, shape, time.perf_counter() - started, data)

    def _preprocess(self, channels: list, geometry) -> tuple[np.ndarray, dict]:
        data, properties = to_nnunet_input(channels, geometry)
        from Task1.preprocessors import preprocessor_class

        # this project's preprocessors are resolved without nnU-Net's lookup (no hook needed)
        preprocessor = preprocessor_class(self.configuration_manager.preprocessor_name)(verbose=False)
        data, _, properties = preprocessor.run_case_npy(data, None, properties, self.plans_manager,
                                                        self.configuration_manager, self.dataset_json)
        return data, properties

    def predict(self, ct: np.ndarray, pet: np.ndarray, geometry, clicks: dict | None) -> np.ndarray:
        """Binary mask (uint8 0/1, ``[i, j, k]``) on the input grid. See the module docstring."""
        started = time.perf_counter()
        return self.predict_prepared(self.prepare(ct, pet, geometry), clicks, started=started)

    def predict_prepared(self, case: PreparedCase, clicks: dict | None, *, started: float | None = None) -> np.ndarray:
        """:meth:`predict` for a case from :meth:`prepare`: only the click channels and the
        forward passes are computed. The time budget counts from ``started`` (default: now,
        with the case's preprocessing time held back for the export)."""
        return self._predict(case, clicks, started, output="mask")

    def predict_probability(self, case: PreparedCase, clicks: dict | None, *,
                            started: float | None = None) -> np.ndarray:
        """The lesion probability (float32 in [0, 1], softmax of the lesion class, ``[i, j, k]`` on
        the input grid) for a case from :meth:`prepare`: what ensembles average and what
        candidate post-processing thresholds. Same budget rules as :meth:`predict_prepared`."""
        return self._predict(case, clicks, started, output="probability")

    def predict_label_map(self, case: PreparedCase, clicks: dict | None, *,
                          started: float | None = None) -> np.ndarray:
        """Every class the network predicts (uint8 ``[i, j, k]``, the values of the model's
        ``dataset.json`` labels): the lesion and, for organ-supervised models, the organ classes."""
        return self._predict(case, clicks, started, output="classes")

    def _predict(self, case: PreparedCase, clicks: dict | None, started: float | None, *, output: str = "mask"):
        import torch
        from autopet_common.click_io import split_clicks_inside

        started = time.perf_counter() if started is None else started
        self.dropped = []
        shape = case.shape
        if clicks is not None and not isinstance(clicks, dict):
            raise InputError(f"clicks must be a dict {{'tumor': [...], 'background': [...]}}, got "
                             f"{type(clicks).__name__}")
        clicks, outside = split_clicks_inside(clicks or {}, shape)
        if outside:
            log.warning("skipping %d click(s) outside the image %s: %s", len(outside), shape,
                        ", ".join(f"{kind} {p}" for kind, p in outside))

        if self.kind == "heatmaps":
            from clicks.encodings import encode_clicks

            channels = list(case.channels) + list(encode_clicks(shape, clicks, encoding=self.encoding,
                                                                size=self.encoding_size))
            data, properties = self._preprocess(channels, case.geometry)
            preprocess_s = time.perf_counter() - started
        else:
            from Task1.click_transforms import click_channels

            data, properties = case.data, case.properties
            network_shape = data.shape[1:]
            mapped = {}
            for kind in ("tumor", "background"):
                points, dropped = input_to_network_index(clicks[kind], properties,
                                                         self.plans_manager.transpose_forward, network_shape)
                if dropped:
                    log.warning("%d %s click(s) fall outside nnU-Net's cropped region and are skipped",
                                len(dropped), kind)
                mapped[kind] = points
            most = max(len(mapped["tumor"]), len(mapped["background"]))
            if most > self.click_config.max_interaction_step:
                log.warning("%d clicks of one kind; %s was trained with at most %d", most, self.trainer_name,
                            self.click_config.max_interaction_step)
            channels = click_channels(network_shape, mapped, self.encoding, self.encoding_size,
                                      self.click_config.click_order)
            if self.incremental:
                return self._predict_incremental(case, channels, output, started)
            data = np.concatenate((data, channels))
            preprocess_s = case.preprocess_seconds + (time.perf_counter() - started)
        preprocessed = time.perf_counter()
        self.last_timings = {"preprocess_s": preprocess_s}

        logits = self._predict_logits(torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)), started)
        predicted = time.perf_counter()
        from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

        from Task1.click_transforms import LESION_LABEL

        converted = convert_predicted_logits_to_segmentation_with_correct_shape(
            logits, self.plans_manager, self.configuration_manager, self.label_manager, properties,
            return_probabilities=output == "probability")
        if output == "probability":
            lesion = np.asarray(converted[1][LESION_LABEL], dtype=np.float32).transpose(2, 1, 0)
        elif output == "classes":
            lesion = np.asarray(converted).transpose(2, 1, 0).astype(np.uint8)
        else:  # the lesion class only: organ-supervised models also predict organ classes 2, 3, ...
            lesion = (np.asarray(converted).transpose(2, 1, 0) == LESION_LABEL).astype(np.uint8)
        self.last_timings.update(predict_s=predicted - preprocessed, export_s=time.perf_counter() - predicted,
                                 total_s=time.perf_counter() - started)
        if lesion.shape != shape:
            raise RuntimeError(f"internal error: output shape {lesion.shape} != input shape {shape}")
        return np.ascontiguousarray(lesion)

    def _predict_incremental(self, case: PreparedCase, channels: np.ndarray, output: str, started: float):
        """:meth:`_predict` through the case's tile cache: only the tiles whose click channels
        changed run again, only the box their logits reach is exported again (all folds, the
        model's mirroring; no time budget)."""
        from Task1.click_transforms import LESION_LABEL
        from Task1.incremental import IncrementalExport, TileCache

        if case.incremental is None:
            case.incremental = (TileCache(self, case.data), IncrementalExport(self, case.properties, LESION_LABEL))
        tiles, export = case.incremental
        logits, changed = tiles.logits(channels)
        predicted = time.perf_counter()
        box = export.update(logits, changed)
        self.last_incremental = {"tiles_run": tiles.last_tiles_run, "tiles": len(tiles.tiles),
                                 "exported_voxels": 0 if box is None else int(np.prod([b.stop - b.start for b in box]))}
        self.last_timings = {"predict_s": tiles.last_seconds, "export_s": time.perf_counter() - predicted,
                             "total_s": time.perf_counter() - started}
        if output == "probability":
            return export.probability.copy()
        if output == "classes":
            return export.classes.copy()
        return (export.classes == LESION_LABEL).astype(np.uint8)

    def _nnunet_predictor(self, data_numel: int):
        from autopet_common.nnunet_predictor import make_nnunet_predictor

        on_device = self.device.type == "cuda" and \
            data_numel * 4 * (1 + self.label_manager.num_segmentation_heads) < DEVICE_MEMORY_LIMIT_BYTES
        predictor = make_nnunet_predictor(self.device, tile_step_size=self.tile_step_size, use_gaussian=True,
                                          use_mirroring=self.use_mirroring, perform_everything_on_device=on_device,
                                          verbose=False, allow_tqdm=self.verbose)
        predictor.manual_initialization(self.network, self.plans_manager, self.configuration_manager,
                                        self.parameters, self.dataset_json, self.trainer_name, self.mirror_axes)
        return predictor

    def _plan_budget(self, predictor, data, started: float) -> list:
        """Decide mirroring and folds so the estimated run fits ``time_budget``; returns the
        parameter sets to use."""
        import torch
        from acvl_utils.cropping_and_padding.padding import pad_nd_image

        parameters = list(self.parameters)
        if self.time_budget is None:
            return parameters
        padded = pad_nd_image(data, self.configuration_manager.patch_size, "constant", {"value": 0}, True,
                              None)[0]
        slicers = predictor._internal_get_sliding_window_slicers(padded.shape[1:])
        tile = padded[slicers[0]][None].to(self.device)
        self.network.load_state_dict(parameters[0])
        network = self.network.to(self.device)
        amp = torch.autocast(self.device.type) if self.device.type == "cuda" else _Null()
        times = []
        with torch.inference_mode(), amp:
            for _ in range(2):  # the first call pays one-off costs (cudnn benchmark, allocation)
                t = time.perf_counter()
                network(tile)
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
        per_tile = min(times)
        passes = 2 ** len(self.mirror_axes) if (self.use_mirroring and self.mirror_axes) else 1
        elapsed = time.perf_counter() - started
        # export (resampling back) costs about as much as preprocessing did
        reserve = self.last_timings.get("preprocess_s", 0.0)
        remaining = self.time_budget - elapsed - reserve
        n_tiles = len(slicers)
        estimate = lambda n_folds, n_passes: 1.15 * per_tile * n_tiles * n_passes * n_folds
        log.info("time budget %.1f s: %.1f s left; %d tiles x %.3f s; %d fold(s) x %d mirroring pass(es) "
                 "estimated %.1f s", self.time_budget, remaining, len(slicers), per_tile, len(parameters),
                 passes, estimate(len(parameters), passes))
        if passes > 1 and estimate(len(parameters), passes) > remaining:
            # fewer mirror axes first (BIRTH fitted their number to the budget): 2^k passes for k axes
            axes = tuple(self.mirror_axes)
            k = len(mirror_axes_within(axes, lambda n_passes: estimate(len(parameters), n_passes), remaining))
            if k == 0:
                predictor.use_mirroring = False
            else:
                predictor.allowed_mirroring_axes = axes[:k]
            self.dropped.append(f"mirroring ({passes} passes -> {2 ** k}, axes {list(axes[:k])})")
            log.warning("time budget: test-time mirroring over %d of %d axes (estimated %.1f s for all > %.1f s left)",
                        k, len(axes), estimate(len(parameters), passes), remaining)
            passes = 2 ** k
        keep = len(parameters)
        while keep > 1 and estimate(keep, passes) > remaining:
            keep -= 1
        if keep < len(parameters):
            dropped_folds = self.folds[keep:]
            self.dropped.append(f"folds {list(dropped_folds)}")
            log.warning("time budget: using fold(s) %s only, dropping %s (estimated %.1f s for all > %.1f s left)",
                        list(self.folds[:keep]), list(dropped_folds), estimate(len(parameters), passes), remaining)
        # last resort: less overlap between sliding-window tiles (fewer tiles, coarser blending)
        for step in (0.75, 1.0):
            current = predictor.tile_step_size
            if estimate(keep, passes) <= remaining or current >= step:
                continue
            predictor.tile_step_size = step
            fewer = len(predictor._internal_get_sliding_window_slicers(padded.shape[1:]))
            if fewer >= n_tiles:  # no fewer tiles at this step: keep the finer one
                predictor.tile_step_size = current
                continue
            self.dropped.append(f"tile overlap (step {current} -> {step}, {n_tiles} -> {fewer} tiles)")
            n_tiles = fewer
            log.warning("time budget: sliding-window step %.2f -> %.2f (%d tiles), estimated %.1f s", current, step,
                        n_tiles, estimate(keep, passes))
        if estimate(keep, passes) > remaining:
            log.warning("time budget: the estimate %.1f s still exceeds the %.1f s left; running the smallest setting",
                        estimate(keep, passes), remaining)
        return parameters[:keep]

    def _predict_logits(self, data, started: float):
        import torch

        predictor = self._nnunet_predictor(data.numel())
        parameters = self._plan_budget(predictor, data, started)
        logits = None
        for params in parameters:
            self.network.load_state_dict(params)
            predictor.network = self.network
            fold_logits = predictor.predict_sliding_window_return_logits(data).to("cpu", torch.float32)
            logits = fold_logits if logits is None else logits + fold_logits
        return logits / len(parameters)


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m Task1.predict",
        description="Predict a Task 1 lesion mask with an nnU-Net v2 model folder (click model from "
                    "Task1/trainers or a 4-channel heatmap model). Clicks are voxel indices [i, j, k] of the "
                    "input grid in the simulator or Grand Challenge JSON format; --step selects the first N "
                    "tumor and background clicks. The mask is written on the input grid (uint8 0/1).")
    parser.add_argument("--model", required=True, help="model folder (contains plans.json, dataset.json, fold_X/)")
    parser.add_argument("--ct", required=True, help="CT image (HU), e.g. case_0000.nii.gz or .mha")
    parser.add_argument("--pet", required=True, help="PET image (SUV) on the CT's grid")
    parser.add_argument("--clicks", help="click JSON (simulator or 'Multiple points' format); none: step 0")
    parser.add_argument("--step", type=non_negative_int, default=None, help="use the first STEP tumor and background clicks")
    parser.add_argument("--out", required=True, help="output mask (.nii.gz or .mha)")
    parser.add_argument("--folds", nargs="+", default=None, help="folds to use (default: all found)")
    parser.add_argument("--checkpoint", default="checkpoint_final.pth")
    parser.add_argument("--device", type=device_name, default="auto",
                        help="auto (cuda when available, else cpu), cpu, cuda, cuda:N or mps (model paths only)")
    parser.add_argument("--disable_mirroring", action="store_true", help="no test-time mirroring (faster)")
    parser.add_argument("--time_budget", type=positive_float, default=None,
                        help="seconds: drop mirroring, then folds, to finish within this time")
    parser.add_argument("--verbose", action="store_true")
    return parser


@entrypoint("python -m Task1.predict")
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    from autopet_common.click_io import clicks_at_step, read_clicks_json
    from autopet_common.image_io import check_same_grid, read_image, write_mask

    ct, geometry = read_image(args.ct, dtype=np.float32, check_finite=True, what="CT image")
    pet, pet_geometry = read_image(args.pet, dtype=np.float32, check_finite=True, what="PET image")
    check_same_grid(geometry, pet_geometry, f"CT {args.ct}", f"PET {args.pet}")
    clicks = read_clicks_json(args.clicks, missing_ok=False) if args.clicks else {"tumor": [], "background": []}
    if args.step is not None:
        clicks = clicks_at_step(clicks, args.step)
    predictor = Task1Predictor(args.model, folds=args.folds, checkpoint=args.checkpoint, device=args.device,
                               use_mirroring=not args.disable_mirroring, time_budget=args.time_budget,
                               verbose=args.verbose)
    mask = predictor.predict(ct, pet, geometry, clicks)
    write_mask(mask, geometry, args.out)
    description = predictor.describe()
    print(json.dumps({"out": args.out, "voxels": int(mask.sum()),
                      "volume_ml": round(float(mask.sum()) * geometry.voxel_volume_ml, 3),
                      **{k: description[k] for k in ("trainer", "input_kind", "folds", "device", "dropped", "timings")}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
