"""A second Task 1 anatomy for generalisation checks only: never used for training.

The training generators (:mod:`.task1`, :mod:`.randomised`) build one body plan (:mod:`.anatomy`:
ellipse outlines, ellipsoid organs, bones) and vary it. This module builds a body no setting of
theirs can produce, to see how a model does on anatomy it never saw (a stand-in for a second
site, as the challenge's test set is):

- a box-like trunk (superellipse cross-sections, exponent 4), a cylindrical neck and a
  spherical head; no arms, no legs, **no bones**, a thin fat layer;
- organs placed in millimetres from the body's own landmarks, with shapes of their own: a
  spherical brain, a heart of two spheres, a liver cut by a plane, bean kidneys, a
  flattened-sphere bladder, a stomach (FDG) and a duodenum (PSMA) that the training anatomy does not have;
- lesions as spheres of uniform uptake, some with a cold (necrotic) core;
- PET noise additive and Gaussian (not count-dependent), CT noise 15 HU.

Arrays as in :mod:`.task1` (``[i, j, k]``, HU, SUV, uint8 label); returns a :class:`.task1.PetCtCase`
(its ``organ_boxes`` are the organs above, named as in :data:`.anatomy.ORGANS` where they
exist). Deterministic in ``seed``.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .anatomy import Box, ellipsoid_q
from ..errors import InputError
from .common import make_rng, resolve_grid
from .task1 import TRACERS, PetCtCase, describe_lesions

# SUV ranges of this anatomy's organs, per tracer
SECOND_UPTAKE = {
    "FDG": {"brain": (6.0, 9.0), "heart": (2.0, 10.0), "kidney_right": (3.0, 6.0), "kidney_left": (3.0, 6.0),
            "bladder": (10.0, 30.0), "liver": (2.0, 3.0), "spleen": (1.8, 2.6), "stomach": (2.0, 4.0)},
    "PSMA": {"brain": (0.2, 0.4), "heart": (1.0, 2.0), "kidney_right": (15.0, 40.0), "kidney_left": (15.0, 40.0),
             "bladder": (10.0, 40.0), "liver": (5.0, 9.0), "spleen": (4.0, 8.0), "parotid_right": (8.0, 20.0),
             "parotid_left": (8.0, 20.0), "duodenum": (5.0, 10.0)},
}


def _sphere(shape, spacing, origin, centre_mm, radii_mm):
    """(slices, q) of an axis-aligned ellipsoid given in mm (q <= 1 inside); (None, None) outside."""
    return ellipsoid_q(shape, (np.asarray(centre_mm, dtype=float) - origin) / spacing,
                       np.asarray(radii_mm, dtype=float) / spacing)


def second_anatomy_case(tracer: str = "FDG", seed: Any = 0, *, size: str | None = "small",
                        shape: Sequence[int] | None = None, spacing: Sequence[float] | None = None,
                        n_lesions: int | None = None, case_id: str | None = None) -> PetCtCase:
    """One PET/CT case of the second anatomy on a preset grid (``size``, see
    :data:`.common.PRESETS`) or an explicit ``shape`` + ``spacing``; ``n_lesions`` None draws 1..10."""
    from scipy.ndimage import gaussian_filter

    tracer = str(tracer).upper()
    if tracer not in TRACERS:
        raise InputError(f"unknown tracer {tracer!r}; choose FDG or PSMA")
    rng = make_rng(seed)
    geometry = resolve_grid(size, shape, spacing)
    shape3 = geometry.shape
    sp = np.asarray(geometry.spacing, dtype=float)
    fov = np.asarray(shape3) * sp
    # the body's frame: x = 0, y = 0 at the trunk's axis; z = 0 at the pelvic floor. The grid
    # shows the top of the body when it is shorter than the body (the head is always in).
    half_w, half_d = rng.uniform(140, 190), rng.uniform(95, 125)
    trunk_top = rng.uniform(600, 680)
    neck_top = trunk_top + rng.uniform(50, 80)
    head_r = rng.uniform(85, 100)
    head_z = neck_top + head_r * 0.8
    body_top = head_z + head_r
    z0 = body_top + 20 - fov[2]
    origin = np.array([-(shape3[0] - 1) * sp[0] / 2, -(shape3[1] - 1) * sp[1] / 2, z0])
    x = (origin[0] + np.arange(shape3[0]) * sp[0]).astype(np.float32)
    y = (origin[1] + np.arange(shape3[1]) * sp[1]).astype(np.float32)
    z = (origin[2] + np.arange(shape3[2]) * sp[2]).astype(np.float32)

    # outline: superellipse trunk (tapering a little towards the shoulders), neck, head
    taper = (1.0 - 0.1 * np.clip(z / trunk_top, 0, 1)).astype(np.float32)
    trunk = ((np.abs(x[:, None, None]) / (half_w * taper)) ** 4
             + (np.abs(y[None, :, None]) / (half_d * taper)) ** 4)
    trunk = np.where(((z >= 0) & (z <= trunk_top))[None, None, :], trunk, np.float32(1e6))
    neck = (x[:, None, None] ** 2 + y[None, :, None] ** 2) / np.float32(55.0 ** 2)
    neck = np.where(((z > trunk_top) & (z <= neck_top + 10))[None, None, :], neck, np.float32(1e6))
    head = (x[:, None, None] ** 2 + y[None, :, None] ** 2 + (z[None, None, :] - head_z) ** 2) / np.float32(head_r ** 2)
    r = np.minimum(np.minimum(trunk, neck), head).astype(np.float32)
    del trunk, neck, head
    inside, inner = r <= 1.0, r <= 0.9
    ct = np.where(inner, np.float32(35.0), np.where(inside, np.float32(-90.0), np.float32(-1000.0))).astype(np.float32)
    pet = np.where(inner, np.float32(rng.uniform(0.8, 1.2)),
                   np.where(inside, np.float32(0.5), np.float32(0.0))).astype(np.float32)
    background = float(np.median(pet[inner])) if inner.any() else 1.0
    del inside

    uptake = {name: float(rng.uniform(*span)) for name, span in SECOND_UPTAKE[tracer].items()}
    j = lambda s: rng.uniform(-s, s)  # noqa: E731  (position jitter, mm)
    organs: dict[str, list[tuple]] = {
        "lung_right": [((-0.5 * half_w, j(10), trunk_top * 0.76), (0.36 * half_w, 0.7 * half_d, 0.2 * trunk_top), -800)],
        "lung_left": [((0.5 * half_w, j(10), trunk_top * 0.76), (0.34 * half_w, 0.7 * half_d, 0.2 * trunk_top), -800)],
        "heart": [((25 + j(10), -25 + j(10), trunk_top * 0.66), (55, 50, 45), 40),
                  ((45 + j(10), -15, trunk_top * 0.62), (40, 40, 35), 40)],
        "liver": [((-0.45 * half_w + j(10), j(10), trunk_top * 0.5), (0.5 * half_w, 0.75 * half_d, 80), 55)],
        "spleen": [((0.6 * half_w + j(10), 0.3 * half_d, trunk_top * 0.5), (35, 35, 45), 45)],
        "kidney_right": [((-0.45 * half_w, 0.55 * half_d, trunk_top * 0.36 + j(20)), (30, 28, 50), 30),
                         ((-0.45 * half_w - 12, 0.55 * half_d, trunk_top * 0.36), (22, 22, 40), 30)],
        "kidney_left": [((0.45 * half_w, 0.55 * half_d, trunk_top * 0.38 + j(20)), (30, 28, 50), 30),
                        ((0.45 * half_w + 12, 0.55 * half_d, trunk_top * 0.38), (22, 22, 40), 30)],
        "bladder": [((j(10), -0.4 * half_d, 60 + j(15)), (55, 45, 35), 5)],
        "brain": [((0, 0, head_z + 15), (head_r * 0.82,) * 3, 30)],
        "parotid_right": [((-head_r * 0.75, 10, head_z - head_r * 0.7), (16, 16, 20), 25)],
        "parotid_left": [((head_r * 0.75, 10, head_z - head_r * 0.7), (16, 16, 20), 25)],
        "stomach": [((0.3 * half_w, -0.3 * half_d, trunk_top * 0.52), (45, 30, 40), 20)],
        "duodenum": [((0.05 * half_w, -0.1 * half_d, trunk_top * 0.44), (35, 18, 18), 25)],
    }
    boxes: dict[str, Box] = {}
    for name, parts in organs.items():
        full = None
        for centre, radii, hu in parts:
            sl, q = _sphere(shape3, sp, origin, centre, radii)
            if sl is None:
                continue
            mask = (q <= 1.0) & (r[sl] <= 0.88)
            if name == "liver":  # cut by an oblique plane: a wedge, not an ellipsoid
                xs = x[sl[0]][:, None, None] - centre[0]
                zs = z[sl[2]][None, None, :] - centre[2]
                mask &= (xs + 0.8 * zs) < radii[0] * 0.5
            ct[sl][mask] = hu
            suv = uptake.get(name, background)
            pet[sl][mask] = suv
            if full is None:
                full = np.zeros(shape3, dtype=bool)
            full[sl] |= mask
        if full is not None and full.any():
            boxes[name] = Box((slice(None),) * 3, full)

    label = np.zeros(shape3, dtype=np.uint8)
    count = int(rng.integers(1, 11)) if n_lesions is None else int(n_lesions)
    candidates = np.argwhere(inner[::2, ::2, ::2]) * 2
    painted = []
    for index in range(count):
        if not len(candidates):
            break
        centre_vox = candidates[int(rng.integers(0, len(candidates)))].astype(float)
        centre_mm = origin + centre_vox * sp
        radius = float(math.exp(rng.uniform(math.log(4.0), math.log(30.0))))
        sl, q = _sphere(shape3, sp, origin, centre_mm, (radius,) * 3)
        if sl is None:
            continue
        mask = (q <= 1.0) & inner[sl]
        if not mask.any():
            continue
        suv = float(rng.uniform(3.0, 15.0))
        values = np.full(int(mask.sum()), suv, dtype=np.float32)
        if radius > 12 and rng.random() < 0.4:  # necrotic core
            values[q[mask] < 0.3] = background
        pet[sl][mask] = values
        ct[sl][mask] = 40.0
        label[sl][mask] = 1
        plan = {"centre_vox": centre_vox, "radius_mm": radius, "radii_mm": np.full(3, radius), "suv_max": suv,
                "ct_hu": 40.0, "site": "second_anatomy", "near_organ": None}
        painted.append((plan, sl, mask))
    lesions = describe_lesions(label, painted, geometry)

    pet = gaussian_filter(pet, sigma=(7.0 / 2.3548) / sp, truncate=3.0, output=np.float32)
    pet += rng.normal(0.0, rng.uniform(0.1, 0.3), size=shape3).astype(np.float32)
    np.maximum(pet, 0, out=pet)
    ct += rng.normal(0.0, 15.0, size=shape3).astype(np.float32)
    np.clip(ct, -1024, 3071, out=ct)
    if case_id is None:
        case_id = f"SECOND_{tracer}_" + ("_".join(map(str, seed)) if isinstance(seed, (list, tuple)) else str(seed))
    return PetCtCase(ct=ct, pet=pet, label=label, geometry=geometry, case_id=case_id, tracer=tracer,
                     lesions=lesions, organ_boxes=boxes, uptake=uptake, seed=seed)
