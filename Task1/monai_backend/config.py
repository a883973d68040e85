"""The MONAI model folder format, and the defaults of each model family.

A MONAI model folder holds

    monai_model.json   what this module reads: format, version, family, network arguments,
                       grid, intensity ranges, click configuration, inference settings, and a
                       record of the training (command, data, seed, schedule, time)
    model.pt           the network's weights only (a ``state_dict``; loaded with weights_only)
    MODEL_CARD.md      optional

Channels are CT, PET, then the click channels in the stored order (tumor, background), on the
stored ``spacing`` (mm, ``[i, j, k]``): CT from ``ct_window`` HU and PET from ``pet_range`` SUV
map linearly to [0, 1], clipped. The output has two classes (background, lesion).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from autopet_common.errors import InputError
from Task1.click_config import ClickConfig, ClickConfigError

MODEL_CONFIG_FILE = "monai_model.json"
WEIGHTS_FILE = "model.pt"
FORMAT = "autopet-monai-model"
FORMAT_VERSION = 1
FAMILIES = ("dynunet", "segresnetds")
IMAGE_CHANNELS = ("CT", "PET")
N_CLASSES = 2


class MonaiModelError(InputError):
    """A MONAI model folder that cannot be run as written."""


@dataclass(frozen=True)
class MonaiModelConfig:
    family: str
    network: dict
    clicks: ClickConfig
    spacing: tuple = (4.0, 4.0, 4.0)
    patch_size: tuple = (48, 48, 48)
    ct_window: tuple = (-250.0, 250.0)
    pet_range: tuple = (0.0, 10.0)
    sw_overlap: float = 0.5
    sw_adaptive: bool = False          # monai.inferers.SlidingWindowInfererAdapt (falls back to CPU stitching)
    deep_supervision: bool = False     # training only: the network returns one map per level
    training: dict = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        return len(IMAGE_CHANNELS) + self.clicks.n_click_channels

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["clicks"] = self.clicks.to_dict()
        for key in ("spacing", "patch_size", "ct_window", "pet_range"):
            record[key] = list(record[key])
        return {"format": FORMAT, "version": FORMAT_VERSION, "image_channels": list(IMAGE_CHANNELS), **record}

    @classmethod
    def from_dict(cls, record: Any, *, source: str = MODEL_CONFIG_FILE) -> "MonaiModelConfig":
        """Check a stored record; errors name ``source`` and the key."""
        def fail(message: str):
            raise MonaiModelError(f"{source}: {message}")

        if not isinstance(record, Mapping):
            fail(f"expected a JSON object, got {type(record).__name__}")
        record = dict(record)
        if record.pop("format", None) != FORMAT:
            fail(f"format must be {FORMAT!r} (not a MONAI model folder of this toolkit)")
        version = record.pop("version", None)
        if version != FORMAT_VERSION:
            fail(f"version {version!r}: this toolkit reads version {FORMAT_VERSION}")
        channels = record.pop("image_channels", list(IMAGE_CHANNELS))
        if list(channels) != list(IMAGE_CHANNELS):
            fail(f"image_channels must be {list(IMAGE_CHANNELS)}, got {channels!r}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(record) - known)
        if unknown:
            fail(f"unknown key(s) {unknown}")
        missing = sorted({"family", "network", "clicks"} - set(record))
        if missing:
            fail(f"missing key(s) {missing}")
        if record["family"] not in FAMILIES:
            fail(f"family must be one of {FAMILIES}, got {record['family']!r}")
        if not isinstance(record["network"], dict):
            fail("network must be an object (the network's keyword arguments)")
        try:
            record["clicks"] = ClickConfig.from_dict(record["clicks"], source=f"{source}: clicks")
        except ClickConfigError as exc:
            raise MonaiModelError(str(exc)) from None
        for key, n, whole in (("spacing", 3, False), ("patch_size", 3, True), ("ct_window", 2, False),
                              ("pet_range", 2, False)):
            if key not in record:
                continue
            value = record[key]
            ok = isinstance(value, list) and len(value) == n and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
            if ok and whole:
                ok = all(isinstance(v, int) and v >= 8 for v in value)
            if ok and key in ("spacing",):
                ok = all(v > 0 for v in value)
            if ok and key in ("ct_window", "pet_range"):
                ok = value[0] < value[1]
            if not ok:
                fail(f"{key} must be a list of {n} {'whole numbers >= 8' if whole else 'numbers'}"
                     f"{' (low < high)' if n == 2 else ''}, got {value!r}")
            record[key] = tuple(float(v) if not whole else int(v) for v in value)
        overlap = record.get("sw_overlap", 0.5)
        if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0.0 <= overlap < 1.0:
            fail(f"sw_overlap must be a number in [0, 1), got {overlap!r}")
        for key in ("sw_adaptive", "deep_supervision"):
            if not isinstance(record.get(key, False), bool):
                fail(f"{key} must be true or false")
        if not isinstance(record.get("training", {}), dict):
            fail("training must be an object")
        return cls(**record)


def family_defaults(family: str) -> MonaiModelConfig:
    """The starting configuration of a family (CPU-sized; see the package docstring)."""
    if family == "dynunet":
        # SW-FastEdit's network (residual DynUNet, instance norm, 3x3x3 kernels, no deep
        # supervision) at 4 levels and 16-128 features so it trains on a CPU and ships under 10 MB;
        # SW-FastEdit encodes clicks as Gaussian heatmaps
        network = {"kernel_size": [3, 3, 3, 3], "strides": [1, 2, 2, 2], "upsample_kernel_size": [2, 2, 2],
                   "filters": [16, 32, 64, 128], "norm_name": "instance", "res_block": True,
                   "deep_supervision": False}
        clicks = ClickConfig(trainer="monai:dynunet", encoding="gaussian", symmetric_offsets=True)
        return MonaiModelConfig("dynunet", network, clicks, sw_overlap=0.25, sw_adaptive=False,
                                deep_supervision=False)
    if family == "segresnetds":
        # Auto3DSeg's SegResNetDS (blocks 1-2-2-4, deep supervision over 3 levels), 8 initial
        # filters for the CPU; the same distance-transform click balls as the nnU-Net trainers
        network = {"init_filters": 8, "blocks_down": [1, 2, 2, 4], "dsdepth": 3, "norm": "INSTANCE"}
        clicks = ClickConfig(trainer="monai:segresnetds", encoding="edt", symmetric_offsets=True)
        return MonaiModelConfig("segresnetds", network, clicks, sw_overlap=0.625, sw_adaptive=True,
                                deep_supervision=True)
    raise MonaiModelError(f"unknown MONAI model family {family!r}; known: {FAMILIES}")


def is_monai_model(folder: str | os.PathLike | None) -> bool:
    """True when ``folder`` holds ``monai_model.json``."""
    return folder is not None and (Path(folder) / MODEL_CONFIG_FILE).is_file()


def read_model_config(folder: str | os.PathLike) -> MonaiModelConfig:
    from autopet_common.image_io import read_json

    path = Path(folder) / MODEL_CONFIG_FILE
    return MonaiModelConfig.from_dict(read_json(path, "MONAI model configuration", error=MonaiModelError),
                                      source=str(path))


def with_training(config: MonaiModelConfig, **training: Any) -> MonaiModelConfig:
    return replace(config, training={**config.training, **training})
