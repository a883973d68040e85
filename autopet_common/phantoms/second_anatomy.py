"""A second anatomy for generalisation checks only (Task 1 cases, Task 2 pairs): never used for training.

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
exist). Deterministic in ``seed``. :func:`second_anatomy_pair` makes Task 2 longitudinal CT pairs
of the same body (its docstring says what else differs from the training pairs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .anatomy import Box, ellipsoid_q
from ..errors import InputError
from .common import make_rng, resolve_grid, seed_label
from .task1 import TRACERS, PetCtCase, describe_lesions

SECOND_CT_NOISE_HU = 15.0  # Gaussian CT noise of this anatomy (the training phantoms: common.CT_NOISE_HU)
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
    body = second_body(shape3, sp, rng, tracer)
    ct, pet, inner, origin = body.ct, body.pet, body.inner, body.origin
    background, uptake, boxes = body.background, body.uptake, body.organs

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
    ct += rng.normal(0.0, SECOND_CT_NOISE_HU, size=shape3).astype(np.float32)
    np.clip(ct, -1024, 3071, out=ct)
    if case_id is None:
        case_id = f"SECOND_{tracer}_" + ("_".join(map(str, seed)) if isinstance(seed, (list, tuple)) else str(seed))
    return PetCtCase(ct=ct, pet=pet, label=label, geometry=geometry, case_id=case_id, tracer=tracer,
                     lesions=lesions, organ_boxes=boxes, uptake=uptake, seed=seed)


@dataclass
class SecondBody:
    """The second anatomy without lesions or noise (:func:`second_body`): CT (HU), PET (SUV, None
    without a tracer), ``r`` (the outline's superellipse value, <= 1 inside the body), ``inner``
    (inside the fat layer), the grid origin (mm, body frame), organ masks and their uptake."""

    ct: np.ndarray
    pet: np.ndarray | None
    r: np.ndarray
    inner: np.ndarray
    origin: np.ndarray
    background: float
    uptake: dict[str, float]
    organs: dict[str, Box]


def second_body(shape3, sp, rng: np.random.Generator, tracer: str | None = "FDG") -> SecondBody:
    """The body of the module docstring on a grid of ``shape3`` voxels of ``sp`` mm. ``tracer``
    None: CT only (Task 2 pairs), no PET and no uptake drawn."""
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
    pet, background, uptake = None, 1.0, {}
    if tracer is not None:
        pet = np.where(inner, np.float32(rng.uniform(0.8, 1.2)),
                       np.where(inside, np.float32(0.5), np.float32(0.0))).astype(np.float32)
        background = float(np.median(pet[inner])) if inner.any() else 1.0
        uptake = {name: float(rng.uniform(*span)) for name, span in SECOND_UPTAKE[tracer].items()}
    del inside

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
            if pet is not None:
                pet[sl][mask] = uptake.get(name, background)
            if full is None:
                full = np.zeros(shape3, dtype=bool)
            full[sl] |= mask
        if full is not None and full.any():
            boxes[name] = Box((slice(None),) * 3, full)

    return SecondBody(ct, pet, r, inner, origin, background, uptake, boxes)


# Task 2 pairs of the second anatomy: statuses and radius factors of their own (not task2's)
SECOND_STATUSES = {"grown": (0.30, (1.25, 1.8)), "shrunk": (0.25, (0.4, 0.8)), "stable": (0.20, (0.95, 1.05)),
                   "vanished": (0.25, (0.0, 0.0))}


def _paint_sphere(ct, labels, centre_vox, radius_mm, spacing, lesion_id, hu, core_hu=None) -> int:
    """A sphere of ``hu`` (its inner 40 % of the radius at ``core_hu``, a necrotic core, when given)
    on free voxels; returns the voxels painted."""
    semi = np.maximum(radius_mm / np.asarray(spacing, dtype=float), 0.75)
    sl, q = ellipsoid_q(ct.shape, centre_vox, semi)
    if sl is None:
        return 0
    mask = (q <= 1.0) & (labels[sl] == 0)
    values = np.full(int(mask.sum()), hu, dtype=np.float32)
    if core_hu is not None:
        values[q[mask] < 0.16] = core_hu
    ct[sl][mask] = values
    labels[sl][mask] = lesion_id
    return int(mask.sum())


def second_anatomy_pair(seed: Any = 0, *, size: str | None = "small", shape: Sequence[int] | None = None,
                        spacing: Sequence[float] | None = None, n_lesions: int | None = None,
                        n_new: int | None = None, pair_id: str | None = None):
    """A longitudinal CT pair (:class:`.task2.LongitudinalPair`) of the second anatomy, for
    generalisation checks of Task 2 methods only (never for training).

    What differs from :func:`.task2.make_longitudinal_pair` besides the body: lesions anywhere
    in the trunk's soft tissue, organs or lungs (not at the training anatomy's sites), spheres whose
    CT value is set against the tissue they sit in (in the lungs 0-60 HU; elsewhere 20-50 HU
    darker, 60 %, or brighter), a necrotic core in some large ones, statuses and growth of their
    own (``SECOND_STATUSES``: more vanish, growth up to 1.8x), CT noise 15 HU. The scanner
    geometry and the smooth deformation between the scans are :mod:`.task2`'s. Deterministic in
    ``seed``."""
    from .task2 import (LongitudinalPair, _centres_of_gravity, _followup_geometry, _random_transform,
                        baseline_to_followup, resample_through)

    rng = make_rng(seed)
    base_geom = resolve_grid(size, shape, spacing)
    shape3, sp = base_geom.shape, np.asarray(base_geom.spacing, dtype=float)
    body = second_body(shape3, sp, rng, tracer=None)
    clean = body.ct
    transform = _random_transform(base_geom, rng)
    fu_geom = _followup_geometry(base_geom, rng)
    fu_ct = resample_through(clean, base_geom, fu_geom, transform, fill=-1000.0)
    base_ct = clean.copy()
    base_labels = np.zeros(shape3, dtype=np.uint16)
    fu_labels = np.zeros(fu_geom.shape, dtype=np.uint16)
    # trunk sites: inside the fat layer, 250 mm below the top of the head (no lesions in head and neck)
    z_mm = body.origin[2] + np.arange(shape3[2]) * sp[2]
    body_top = float(np.max(z_mm[(body.r <= 1.0).any(axis=(0, 1))], initial=0.0))
    sites = np.argwhere((body.r[::2, ::2, ::2] <= 0.8) & (z_mm[::2] < body_top - 250)[None, None, :]) * 2
    r_min = max(float(sp.max()), 3.0)
    placed: list[tuple[np.ndarray, float]] = []
    lesions: list[dict[str, Any]] = []
    names, weights = list(SECOND_STATUSES), [p for p, _ in SECOND_STATUSES.values()]

    def draw():
        for _ in range(100):
            if not len(sites):
                return None
            centre = sites[int(rng.integers(0, len(sites)))].astype(float) + rng.uniform(-1, 1, 3)
            radius = float(math.exp(rng.uniform(math.log(r_min), math.log(max(18.0, 2 * r_min)))))
            centre_mm = base_geom.index_to_physical(centre)
            if all(np.linalg.norm(centre_mm - c) > 1.8 * radius + e + 2 * sp.max() for c, e in placed):
                return centre, centre_mm, radius
        return None

    def contrast(ct, centre, radius):
        sl, q = ellipsoid_q(ct.shape, centre, np.maximum(radius / sp, 0.75))
        tissue = float(np.median(ct[sl][q <= 1.0])) if sl is not None else 35.0
        if tissue < -300:  # lung: a solid nodule
            return float(rng.uniform(0, 60)), None
        hu = tissue + (-1 if rng.random() < 0.6 else 1) * float(rng.uniform(20, 50))
        core = tissue - 25.0 if radius > 12 and rng.random() < 0.4 else None
        return hu, core

    count = int(rng.integers(1, 7)) if n_lesions is None else int(n_lesions)
    n_new = int(rng.integers(0, 3)) if n_new is None else int(n_new)
    next_id = 1
    for index in range(count + n_new):
        drawn = draw()
        if drawn is None:
            continue
        centre, centre_mm, radius = drawn
        hu, core = contrast(clean, centre, radius)
        fu_centre = fu_geom.physical_to_index(baseline_to_followup(centre_mm, transform))
        new = index >= count
        status = "new" if new else str(rng.choice(names, p=weights))
        factor = 1.0 if new else float(rng.uniform(*SECOND_STATUSES[status][1]))
        if not new and _paint_sphere(base_ct, base_labels, centre, radius, sp, next_id, hu, core) == 0:
            continue
        placed.append((centre_mm, 1.8 * radius))
        if status != "vanished" and _paint_sphere(fu_ct, fu_labels, fu_centre, radius * factor, sp, next_id, hu,
                                                  core) == 0:
            if new:
                continue
            status, factor = "vanished", 0.0  # out of the follow-up's field of view
        lesions.append({"id": next_id, "status": status, "growth_factor": None if new else round(factor, 4),
                        "radius_mm": round(radius, 3), "radii_mm": [round(radius, 3)] * 3,
                        "baseline_centre": None if new else [round(float(c), 4) for c in centre],
                        "followup_centre": [round(float(c), 4) for c in fu_centre], "ct_hu": round(hu, 1)})
        next_id += 1
    for ct in (base_ct, fu_ct):
        ct += rng.normal(0.0, SECOND_CT_NOISE_HU, size=ct.shape).astype(np.float32)
        np.clip(ct, -1024, 3071, out=ct)
    return LongitudinalPair(
        baseline_ct=base_ct, baseline_labels=base_labels, baseline_geometry=base_geom,
        followup_ct=fu_ct, followup_labels=fu_labels, followup_geometry=fu_geom, transform=transform,
        lesions=lesions, baseline_centres=_centres_of_gravity(base_labels),
        followup_centres=_centres_of_gravity(fu_labels),
        pair_id=pair_id or f"SECOND_CT_{seed_label(seed)}")
