"""Presets, seeding and uuid helpers shared by the Task 1 and Task 2 phantoms."""
from __future__ import annotations

import uuid
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..image_io import Geometry

# name -> (shape (nx, ny, nz), spacing (mm)). The body scales with the field of view, so tiny
# and full look alike; lesion sizes are in mm and so span "a few voxels" to several cm.
PRESETS: dict[str, tuple[tuple[int, int, int], tuple[float, float, float]]] = {
    "tiny": ((64, 64, 48), (5.0, 5.0, 8.0)),
    "small": ((128, 128, 96), (4.0, 4.0, 6.0)),
    "medium": ((200, 200, 160), (3.0, 3.0, 4.5)),
    "full": ((400, 400, 326), (2.04, 2.04, 3.0)),
    # Diagnostic CT, the size of a real Task 2 scan.
    "ct_real": ((512, 512, 300), (0.8, 0.8, 2.5)),
}


def resolve_grid(size: str | None = "tiny", shape: Sequence[int] | None = None,
                 spacing: Sequence[float] | None = None) -> Geometry:
    """Geometry of a preset (or an explicit ``shape`` + ``spacing``), centred in x/y.

    The origin puts the centre of the field of view at x = y = 0 mm and the feet near
    z = -0.8 * field of view, like a real whole-body scan in LPS.
    """
    if shape is not None:
        if spacing is None:
            spacing = (1.0, 1.0, 1.0)
        shape = tuple(int(s) for s in shape)
        spacing = tuple(float(s) for s in spacing)
        if len(shape) != 3 or len(spacing) != 3 or min(shape) < 8 or min(spacing) <= 0:
            raise InputError(f"explicit phantom grid must be 3D with >= 8 voxels per axis and "
                             f"positive spacing; got shape {shape}, spacing {spacing}")
    else:
        if size not in PRESETS:
            raise InputError(f"unknown phantom size {size!r}; choose one of {', '.join(PRESETS)}")
        shape, spacing = PRESETS[size]
    n = np.asarray(shape, dtype=float)
    s = np.asarray(spacing, dtype=float)
    origin = (-(n[0] - 1) * s[0] / 2, -(n[1] - 1) * s[1] / 2, -0.8 * n[2] * s[2])
    return Geometry(shape, spacing, tuple(round(float(o), 3) for o in origin))


CT_NOISE_HU = 10.0  # standard deviation of the CT noise, HU


def seed_label(seed) -> str:
    """The seed as it appears in case ids: ``3`` -> ``"3"``, ``[3, 1]`` -> ``"3_1"``."""
    return str(seed) if isinstance(seed, int) else "_".join(map(str, seed))


def add_ct_noise(ct: np.ndarray, rng: np.random.Generator, buffer: np.ndarray | None = None) -> None:
    """Add Gaussian noise of ``CT_NOISE_HU`` to a float32 CT in place and clip it to the
    12-bit CT range [-1024, 3071] HU. ``buffer``: a float32 array of ``ct``'s shape to reuse
    (saves one volume-sized allocation on full-size phantoms)."""
    noise = rng.standard_normal(size=ct.shape, dtype=np.float32, out=buffer)
    noise *= np.float32(CT_NOISE_HU)
    ct += noise
    np.clip(ct, -1024, 3071, out=ct)


def make_rng(seed) -> np.random.Generator:
    """A NumPy Generator from an int or a sequence of ints (never the global RNG)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (list, tuple)):
        return np.random.default_rng([int(s) for s in seed])
    return np.random.default_rng(int(seed))


def deterministic_uuid(rng: np.random.Generator) -> str:
    """A version-4 style uuid drawn from ``rng`` (deterministic for a seeded generator)."""
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))
