"""The click configuration of a Task 1 click model: one versioned record that the trainer
writes, the predictor reads, and the training recipe and model card report.

Stored in every checkpoint under ``autopet_click_config`` and next to ``plans.json`` as
``click_config.json``. No torch or nnU-Net is imported here.

Versions:

- 1 (no ``version`` field): trainer, n_click_channels, click_order, encoding, encoding_size,
  pet_channel, max_interaction_step. The training-time click settings were not recorded; the
  trainers of that time used no offsets, symmetric offsets when set, and the challenge's
  background quirk, which is what reading a version-1 record assumes.
- 2: adds ``version`` and the training-time click settings (``center_offset``,
  ``edge_offset``, ``symmetric_offsets``, ``background_in_component``: see
  :class:`clicks.simulate.ClickDrawSettings`).

Unknown keys and versions newer than this module are rejected with a message naming the
source, so a model from a newer toolkit never runs with half its configuration ignored.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from autopet_common.errors import InputError

CLICK_CONFIG_KEY = "autopet_click_config"   # key in every click checkpoint
CLICK_CONFIG_FILE = "click_config.json"     # the same, next to plans.json in the model folder
CLICK_CONFIG_VERSION = 2
CLICK_KINDS = ("tumor", "background")
ENCODINGS = ("edt", "gaussian")
_VERSION_1_KEYS = frozenset({"trainer", "n_click_channels", "click_order", "encoding", "encoding_size",
                             "pet_channel", "max_interaction_step"})


class ClickConfigError(InputError):
    """A stored click configuration is malformed, unknown or from a newer version."""


@dataclass(frozen=True)
class ClickConfig:
    """What a predictor needs to build a click model's input channels exactly as in training,
    and how the training clicks were drawn."""

    trainer: str
    n_click_channels: int = 2
    click_order: tuple[str, ...] = CLICK_KINDS
    encoding: str = "edt"
    encoding_size: float | None = None
    pet_channel: int = 1
    max_interaction_step: int = 10
    center_offset: int = 0
    edge_offset: int = 0
    symmetric_offsets: bool = True
    background_in_component: bool = False
    version: int = CLICK_CONFIG_VERSION

    def __post_init__(self):
        problems = []
        if not isinstance(self.trainer, str) or not self.trainer:
            problems.append(f"trainer must be a class name, got {self.trainer!r}")
        for name in ("n_click_channels", "pet_channel", "max_interaction_step", "center_offset", "edge_offset"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append(f"{name} must be a whole number >= 0, got {value!r}")
        order = tuple(self.click_order) if isinstance(self.click_order, (list, tuple)) else None
        if order is None or len(set(order)) != len(order) or not set(order) <= set(CLICK_KINDS):
            problems.append(f"click_order must list distinct kinds of {CLICK_KINDS}, got {self.click_order!r}")
        elif order != tuple(self.click_order) or len(order) != self.n_click_channels:
            problems.append(f"click_order {list(order)} does not have n_click_channels={self.n_click_channels} "
                            "entries")
        if self.encoding not in ENCODINGS:
            problems.append(f"encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        size = self.encoding_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, (int, float))
                                 or not math.isfinite(size) or size <= 0):
            problems.append(f"encoding_size must be a positive number or null, got {size!r}")
        for name in ("symmetric_offsets", "background_in_component"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name} must be true or false, got {getattr(self, name)!r}")
        if problems:
            raise ClickConfigError("; ".join(problems))
        object.__setattr__(self, "click_order", order)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record, in the current version (it holds every current field)."""
        record = asdict(self)
        record["click_order"] = list(self.click_order)
        record["version"] = CLICK_CONFIG_VERSION
        return record

    @classmethod
    def from_dict(cls, record: Any, *, source: str = "click configuration") -> "ClickConfig":
        """Read a stored record of any known version; errors name ``source``."""
        if not isinstance(record, Mapping):
            raise ClickConfigError(f"{source}: expected a JSON object, got {type(record).__name__}")
        record = dict(record)
        version = record.pop("version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ClickConfigError(f"{source}: version must be a whole number >= 1, got {version!r}")
        if version > CLICK_CONFIG_VERSION:
            raise ClickConfigError(f"{source}: click configuration version {version} is newer than this toolkit's "
                                   f"({CLICK_CONFIG_VERSION}); update the toolkit to run this model")
        known = _VERSION_1_KEYS if version == 1 else {f.name for f in fields(cls)} - {"version"}
        unknown = sorted(set(record) - known)
        if unknown:
            raise ClickConfigError(f"{source}: unknown key(s) {', '.join(unknown)} in a version {version} click "
                                   f"configuration (known: {', '.join(sorted(known))})")
        if "trainer" not in record:
            raise ClickConfigError(f"{source}: no 'trainer' in the click configuration")
        try:
            # version 1 records get the settings their trainers used (the defaults); the version
            # read is kept, so logs and model cards say what the model folder holds
            return cls(**record, version=version)
        except ClickConfigError as exc:
            raise ClickConfigError(f"{source}: {exc}") from None
