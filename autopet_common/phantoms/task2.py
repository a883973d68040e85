"""Task 2 phantoms: longitudinal CT pairs with a known transform and changing lesions.

Arrays are indexed ``[i, j, k]`` (NIfTI order); CT in HU (float32); lesion masks labelled by
lesion id (uint16; 0 = background). Points are centres of gravity as float voxel indices
``[x, y, z] = [i, j, k]``.

Transform convention (stored in ``transform`` / ``transform.json``): it maps a *follow-up*
physical point ``p`` (mm, LPS) to the *baseline* physical point showing the same anatomy::

    T(p) = R @ (p - c) + c + t + sum_m A_m * exp(-|p - q_m|^2 / (2 s^2))

with ``R`` = Rz(rz) @ Ry(ry) @ Rx(rx) (degrees), rotation centre ``c``, translation ``t`` and
Gaussian displacement bumps (centres ``q_m``, amplitude vectors ``A_m`` in mm, width ``s``).
The follow-up CT is the baseline anatomy resampled through ``T`` (linear interpolation), so
:func:`followup_to_baseline` and :func:`baseline_to_followup` give exact correspondences for
target registration error.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..contract import (TASK2_BASELINE_SEG_FOLDERS, task2_baseline_ct_subdir, task2_followup_ct_subdir,
                        task2_points_file)
from ..errors import InputError
from ..output_folder import staged_contents
from ..image_io import Geometry, atomic_write_json, write_image
from .anatomy import ORGANS, body_profile, build_anatomy, ellipsoid_q, norm_to_index
from .common import add_ct_noise, deterministic_uuid, make_rng, resolve_grid, seed_label



# what becomes of a baseline lesion at follow-up (make_longitudinal_pair); "vanished" last
STATUS_PROBABILITIES = {"grown": 0.35, "shrunk": 0.3, "stable": 0.2, "vanished": 0.15}
VANISH_PROBABILITY = STATUS_PROBABILITIES["vanished"]


@dataclass
class LongitudinalPair:
    """A baseline/follow-up CT pair. Label arrays hold lesion ids; ``*_mask`` are binary."""

    baseline_ct: np.ndarray
    baseline_labels: np.ndarray
    baseline_geometry: Geometry
    followup_ct: np.ndarray
    followup_labels: np.ndarray
    followup_geometry: Geometry
    transform: dict[str, Any]
    lesions: list[dict[str, Any]]
    baseline_centres: dict[int, tuple[float, float, float]] = field(default_factory=dict)
    followup_centres: dict[int, tuple[float, float, float]] = field(default_factory=dict)
    pair_id: str = "PHANTOM_CT_0"

    @property
    def baseline_mask(self) -> np.ndarray:
        return (self.baseline_labels > 0).astype(np.uint8)

    @property
    def followup_mask(self) -> np.ndarray:
        return (self.followup_labels > 0).astype(np.uint8)

    @property
    def baseline_points(self) -> dict:
        """Task 2 "Points of interest" JSON object for the baseline lesions."""
        from ..click_io import task2_points_to_json
        return task2_points_to_json(self.baseline_centres)

    @property
    def followup_points(self) -> dict:
        """Task 2 "Points of interest" JSON object for the follow-up lesions (step-2 clicks)."""
        from ..click_io import task2_points_to_json
        return task2_points_to_json(self.followup_centres)


# --------------------------------------------------------------------------------------------
# Transform
def rotation_matrix(degrees_xyz) -> np.ndarray:
    """R = Rz @ Ry @ Rx for rotation angles (degrees) about x, y, z."""
    rx, ry, rz = (math.radians(float(a)) for a in degrees_xyz)
    cx, sx, cy, sy, cz, sz = math.cos(rx), math.sin(rx), math.cos(ry), math.sin(ry), math.cos(rz), math.sin(rz)
    mx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    my = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    mz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return mz @ my @ mx


def _displacement(points: np.ndarray, transform: dict) -> np.ndarray:
    """Smooth displacement (mm) at physical points ``(n, 3)``."""
    out = np.zeros_like(points, dtype=float)
    s2 = 2.0 * float(transform["bump_sigma_mm"]) ** 2
    for centre, amp in zip(transform["bump_centres_mm"], transform["bump_amplitudes_mm"]):
        g = np.exp(-np.sum((points - np.asarray(centre)) ** 2, axis=1) / s2)
        out += g[:, None] * np.asarray(amp)[None, :]
    return out


def followup_to_baseline(points_mm, transform: dict) -> np.ndarray:
    """Map follow-up physical points (mm, ``(3,)`` or ``(n, 3)``) to baseline physical points."""
    p = np.atleast_2d(np.asarray(points_mm, dtype=float))
    rot = rotation_matrix(transform["rotation_deg"])
    c = np.asarray(transform["rotation_centre_mm"])
    out = (rot @ (p - c).T).T + c + np.asarray(transform["translation_mm"]) + _displacement(p, transform)
    return out[0] if np.ndim(points_mm) == 1 else out


def baseline_to_followup(points_mm, transform: dict, iterations: int = 50) -> np.ndarray:
    """Inverse of :func:`followup_to_baseline` by fixed-point iteration (the bumps are small
    and smooth, so it converges to well below 1e-6 mm)."""
    q = np.atleast_2d(np.asarray(points_mm, dtype=float))
    rot = rotation_matrix(transform["rotation_deg"])
    c = np.asarray(transform["rotation_centre_mm"])
    t = np.asarray(transform["translation_mm"])
    p = (rot.T @ (q - c - t).T).T + c
    for _ in range(iterations):
        p_new = (rot.T @ (q - c - t - _displacement(p, transform)).T).T + c
        if np.max(np.abs(p_new - p)) < 1e-9:
            p = p_new
            break
        p = p_new
    return p[0] if np.ndim(points_mm) == 1 else p


def _random_transform(geometry: Geometry, rng: np.random.Generator) -> dict[str, Any]:
    fov = np.asarray(geometry.shape) * np.asarray(geometry.spacing)
    centre = geometry.index_to_physical((np.asarray(geometry.shape) - 1) / 2.0)
    n_bumps = 3
    bump_centres = centre + rng.uniform(-0.2, 0.2, size=(n_bumps, 3)) * fov
    return {
        "convention": "maps follow-up physical points (mm, LPS) to baseline physical points: "
                      "T(p) = R @ (p - c) + c + t + sum_m A_m * exp(-|p - q_m|^2 / (2 s^2)), "
                      "R = Rz @ Ry @ Rx",
        "rotation_deg": [float(a) for a in rng.uniform(-3, 3, size=3)],
        "rotation_centre_mm": [float(x) for x in centre],
        "translation_mm": [float(x) for x in rng.uniform(-10, 10, size=3)],
        "bump_centres_mm": [[float(x) for x in c] for c in bump_centres],
        "bump_amplitudes_mm": [[float(x) for x in a] for a in rng.uniform(-4, 4, size=(n_bumps, 3))],
        "bump_sigma_mm": float(0.15 * fov[0]),
    }


def _followup_geometry(baseline: Geometry, rng: np.random.Generator) -> Geometry:
    """Like a repeat scan: a few slices more or fewer and a slightly shifted origin."""
    nx, ny, nz = baseline.shape
    dz = int(rng.integers(-max(1, nz // 24), max(1, nz // 24) + 1))
    shift = np.array([rng.uniform(-5, 5), rng.uniform(-5, 5), rng.uniform(-2, 2) * baseline.spacing[2]])
    origin = np.asarray(baseline.origin) + shift
    return Geometry((nx, ny, max(8, nz + dz)), baseline.spacing, tuple(round(float(o), 3) for o in origin),
                    baseline.direction)


def resample_through(image: np.ndarray, image_geometry: Geometry, target: Geometry, transform: dict,
                     fill: float, slab: int = 16) -> np.ndarray:
    """Resample ``image`` onto ``target``: value at target voxel p = image at T(p) (linear).

    Works in slabs of ``slab`` slices to bound memory. Both grids must have identity direction.
    """
    from scipy.ndimage import map_coordinates

    nx, ny, nz = target.shape
    out = np.empty(target.shape, dtype=np.float32)
    sp_t, or_t = np.asarray(target.spacing), np.asarray(target.origin)
    sp_i, or_i = np.asarray(image_geometry.spacing), np.asarray(image_geometry.origin)
    x = or_t[0] + np.arange(nx) * sp_t[0]
    y = or_t[1] + np.arange(ny) * sp_t[1]
    for k0 in range(0, nz, slab):
        k1 = min(nz, k0 + slab)
        z = or_t[2] + np.arange(k0, k1) * sp_t[2]
        pts = np.stack(np.meshgrid(x, y, z, indexing="ij"), axis=-1).reshape(-1, 3)
        src = followup_to_baseline(pts, transform)
        idx = ((src - or_i) / sp_i).T.reshape(3, nx, ny, k1 - k0)
        out[:, :, k0:k1] = map_coordinates(image, idx, order=1, mode="constant", cval=fill,
                                           output=np.float32, prefilter=False)
    return out


# --------------------------------------------------------------------------------------------
# Lesions
def _sample_lesion_site(shape, r2, rng) -> np.ndarray | None:
    """A lesion centre (voxel index) in the trunk: lymph node, lung or liver."""
    nx, ny, nz = shape
    kind = rng.choice(["node", "lung", "liver"], p=[0.5, 0.25, 0.25])
    if kind == "node":
        w = rng.uniform(0.15, 0.7)
        k = min(int(w * nz), nz - 1)
        a, b, cv, _ = body_profile(nz)
        ang, rad = rng.uniform(0, 2 * math.pi), math.sqrt(rng.uniform(0, 1)) * 0.65
        uvw = (a[k] * rad * math.cos(ang), cv[k] + b[k] * rad * math.sin(ang), w)
    else:
        organ = str(rng.choice(["lung_right", "lung_left"])) if kind == "lung" else "liver"
        centre, semi, _ = ORGANS[organ]
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        uvw = np.asarray(centre) + 0.6 * np.asarray(semi) * d * rng.uniform(0, 1) ** (1 / 3)
    c = norm_to_index(shape, uvw)
    idx = np.round(c).astype(int)
    if np.any(idx < 2) or np.any(idx >= np.asarray(shape) - 2) or r2[tuple(idx)] > 0.7:
        return None
    return c


def _paint_lesion(ct, labels, centre_vox, radii_mm, spacing, lesion_id, hu) -> int:
    semi = np.maximum(np.asarray(radii_mm) / np.asarray(spacing), 0.75)
    sl, q = ellipsoid_q(ct.shape, centre_vox, semi)
    if sl is None:
        return 0
    mask = (q <= 1.0) & (labels[sl] == 0)
    if not mask.any():
        idx = tuple(np.clip(np.round(centre_vox).astype(int), 0, np.asarray(ct.shape) - 1))
        if labels[idx] != 0:
            return 0
        sl = tuple(slice(i, i + 1) for i in idx)
        mask = np.ones((1, 1, 1), bool)
    ct[sl][mask] = hu
    labels[sl][mask] = lesion_id
    return int(mask.sum())


def _centres_of_gravity(labels: np.ndarray) -> dict[int, tuple[float, float, float]]:
    from scipy.ndimage import center_of_mass, find_objects

    out = {}
    for lesion_id, sl in enumerate(find_objects(labels), start=1):
        if sl is None:
            continue
        com = center_of_mass(labels[sl] == lesion_id)
        out[lesion_id] = tuple(round(float(c + s.start), 4) for c, s in zip(com, sl))
    return out


def make_longitudinal_pair(size: str | None = "tiny", seed: Any = 0, n_lesions: int | None = None,
                           n_new: int | None = None, shape=None, spacing=None,
                           pair_id: str | None = None, *, n_merging: int = 0,
                           n_splitting: int = 0, vanish_probability: float = VANISH_PROBABILITY
                           ) -> LongitudinalPair:
    """Make a baseline/follow-up CT pair with a known transform and changing lesions.

    Baseline lesions get ids 1..n; each one grows, shrinks, stays or vanishes at follow-up,
    and ``n_new`` new lesions (default 0..2) appear with ids n+1, ... These lesions never touch
    each other, so every id is one connected blob. Deterministic for a given ``seed``.

    ``n_merging`` adds pairs of baseline lesions that lie close together and grow into one
    follow-up lesion, which keeps the id of the larger one (the other's record says
    ``"status": "merged", "merged_into": <id>``); ``n_splitting`` adds baseline lesions that
    split into two follow-up lesions, the first keeping the id and the second getting a new one
    (``"status": "split", "split_from": <id>``). Both are drawn from their own generator, so
    pairs without them are unchanged.

    ``vanish_probability``: the chance that a baseline lesion vanishes (``STATUS_PROBABILITIES``
    by default); the other statuses share the rest in their default proportions. It draws
    nothing more from the generator, so a pair differs from the default one only in its statuses.
    """
    if not 0.0 <= vanish_probability <= 1.0:
        raise InputError(f"vanish_probability must be in [0, 1], got {vanish_probability}")
    rng = make_rng(seed)
    base_geom = resolve_grid(size, shape, spacing)
    shape3 = base_geom.shape
    spacing3 = np.asarray(base_geom.spacing)
    anatomy = build_anatomy(shape3, spacing3, rng, tracer=None)
    clean, r2 = anatomy.ct, anatomy.r2
    transform = _random_transform(base_geom, rng)
    fu_geom = _followup_geometry(base_geom, rng)
    fu_clean = resample_through(clean, base_geom, fu_geom, transform, fill=-1000.0)

    scale = (1.0 - vanish_probability) / (1.0 - VANISH_PROBABILITY)  # exactly 1.0 by default
    status_p = [p * scale for p in list(STATUS_PROBABILITIES.values())[:-1]] + [vanish_probability]
    if n_lesions is None:
        n_lesions = int(rng.integers(1, 7))
    if n_new is None:
        n_new = int(rng.integers(0, 3))
    r_min = max(float(spacing3.max()), 3.0)
    r_max = max(20.0, 2 * r_min)

    base_ct = clean.copy()
    base_labels = np.zeros(shape3, dtype=np.uint16)
    fu_ct = fu_clean
    fu_labels = np.zeros(fu_geom.shape, dtype=np.uint16)
    placed: list[tuple[np.ndarray, float]] = []  # (baseline physical centre, max extent mm)
    lesions: list[dict[str, Any]] = []

    def free(centre_mm, extent):
        margin = 2.0 * float(spacing3.max())
        return all(np.linalg.norm(centre_mm - c) > extent + e + margin for c, e in placed)

    def draw_lesion():
        for _ in range(100):
            centre = _sample_lesion_site(shape3, r2, rng)
            if centre is None:
                continue
            radius = float(math.exp(rng.uniform(math.log(r_min), math.log(r_max))))
            radii = radius * rng.uniform(0.8, 1.2, size=3)
            centre_mm = base_geom.index_to_physical(centre)
            # Grown lesions can reach 1.6x: reserve room for that.
            if free(centre_mm, 1.6 * radii.max()):
                return centre, centre_mm, radius, radii
        return None

    next_id = 1
    for _ in range(int(n_lesions)):
        drawn = draw_lesion()
        if drawn is None:
            continue
        centre, centre_mm, radius, radii = drawn
        hu = float(rng.uniform(20, 70))
        if _paint_lesion(base_ct, base_labels, centre, radii, spacing3, next_id, hu) == 0:
            continue
        placed.append((centre_mm, 1.6 * float(radii.max())))
        status = str(rng.choice(list(STATUS_PROBABILITIES), p=status_p))
        factor = {"grown": rng.uniform(1.2, 1.6), "shrunk": rng.uniform(0.5, 0.8),
                  "stable": rng.uniform(0.95, 1.05), "vanished": 0.0}[status]
        fu_centre_mm = baseline_to_followup(centre_mm, transform)
        fu_centre = fu_geom.physical_to_index(fu_centre_mm)
        if status != "vanished":
            n_vox = _paint_lesion(fu_ct, fu_labels, fu_centre, radii * factor, spacing3, next_id, hu)
            if n_vox == 0:
                status, factor = "vanished", 0.0  # moved out of the follow-up field of view
        lesions.append({"id": next_id, "status": status, "growth_factor": round(float(factor), 4),
                        "radius_mm": round(radius, 3), "radii_mm": [round(float(r), 3) for r in radii],
                        "baseline_centre": [round(float(c), 4) for c in centre],
                        "followup_centre": [round(float(c), 4) for c in fu_centre],
                        "ct_hu": round(hu, 1)})
        next_id += 1
    for _ in range(int(n_new)):
        drawn = draw_lesion()
        if drawn is None:
            continue
        centre, centre_mm, radius, radii = drawn
        fu_centre = fu_geom.physical_to_index(baseline_to_followup(centre_mm, transform))
        hu = float(rng.uniform(20, 70))
        if _paint_lesion(fu_ct, fu_labels, fu_centre, radii, spacing3, next_id, hu) == 0:
            continue
        placed.append((centre_mm, 1.6 * float(radii.max())))
        lesions.append({"id": next_id, "status": "new", "growth_factor": None,
                        "radius_mm": round(radius, 3), "radii_mm": [round(float(r), 3) for r in radii],
                        "baseline_centre": None,
                        "followup_centre": [round(float(c), 4) for c in fu_centre],
                        "ct_hu": round(hu, 1)})
        next_id += 1

    if n_merging or n_splitting:
        events = make_rng([*np.atleast_1d(np.asarray(seed, dtype=np.int64)).tolist(), 7919])
        next_id = _add_merging_and_splitting(
            events, int(n_merging), int(n_splitting), next_id, base_ct, base_labels, base_geom, fu_ct, fu_labels,
            fu_geom, transform, r2, placed, lesions, r_min)

    for ct in (base_ct, fu_ct):
        add_ct_noise(ct, rng)
    if pair_id is None:
        pair_id = f"PHANTOM_CT_{seed_label(seed)}"
    return LongitudinalPair(
        baseline_ct=base_ct, baseline_labels=base_labels, baseline_geometry=base_geom,
        followup_ct=fu_ct, followup_labels=fu_labels, followup_geometry=fu_geom,
        transform=transform, lesions=lesions,
        baseline_centres=_centres_of_gravity(base_labels),
        followup_centres=_centres_of_gravity(fu_labels), pair_id=pair_id)


def _add_merging_and_splitting(rng, n_merging: int, n_splitting: int, next_id: int, base_ct, base_labels,
                               base_geom: Geometry, fu_ct, fu_labels, fu_geom: Geometry, transform: dict, r2,
                               placed: list, lesions: list, r_min: float) -> int:
    """Paint merging pairs and splitting lesions (see :func:`make_longitudinal_pair`); returns
    the next free id. Each event takes a free site at least its own extent away from the others."""
    spacing = np.asarray(base_geom.spacing, dtype=float)
    gap = 2.5 * float(spacing.max())  # baseline parts apart: no 26-neighbour contact at any spacing

    def site(extent: float):
        for _ in range(200):
            centre = _sample_lesion_site(base_geom.shape, r2, rng)
            if centre is None:
                continue
            centre_mm = base_geom.index_to_physical(centre)
            margin = 2.0 * float(spacing.max())
            if all(np.linalg.norm(centre_mm - c) > extent + e + margin for c, e in placed):
                return centre_mm
        return None

    def record(lesion_id, status, radii, base_centre, fu_centre, hu, **extra):
        lesions.append({"id": lesion_id, "status": status, "growth_factor": None,
                        "radius_mm": round(float(np.mean(radii)), 3), "radii_mm": [round(float(r), 3) for r in radii],
                        "baseline_centre": None if base_centre is None else [round(float(c), 4) for c in base_centre],
                        "followup_centre": None if fu_centre is None else [round(float(c), 4) for c in fu_centre],
                        "ct_hu": round(hu, 1), **extra})

    for event in ["merge"] * n_merging + ["split"] * n_splitting:
        radius = float(rng.uniform(max(r_min, 6.0), max(12.0, 1.5 * r_min)))
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        hu = float(rng.uniform(20, 70))
        if event == "merge":
            small = radius * float(rng.uniform(0.6, 0.85))
            half = (radius + small + gap) / 2.0
            centre_mm = site(half + 1.6 * radius)
            if centre_mm is None:
                continue
            parts = [(centre_mm - direction * half, radius), (centre_mm + direction * half, small)]
            ids = (next_id, next_id + 1)
            painted = [_paint_lesion(base_ct, base_labels, base_geom.physical_to_index(c), np.full(3, r), spacing,
                                     i, hu) for (c, r), i in zip(parts, ids)]
            if 0 in painted:
                continue
            # follow-up: both grow until they overlap, painted as the larger one's id
            grow = (2 * half) / (radius + small) * 1.15
            fu_centres = [fu_geom.physical_to_index(baseline_to_followup(c, transform)) for c, _ in parts]
            for (c, r), fu_c in zip(parts, fu_centres):
                _paint_lesion(fu_ct, fu_labels, fu_c, np.full(3, r * grow), spacing, ids[0], hu)
            record(ids[0], "grown", np.full(3, radius), base_geom.physical_to_index(parts[0][0]), fu_centres[0], hu)
            record(ids[1], "merged", np.full(3, small), base_geom.physical_to_index(parts[1][0]), None, hu,
                   merged_into=ids[0])
            placed.append((centre_mm, half + 1.6 * radius))
            next_id += 2
        else:
            # an elongated baseline lesion; at follow-up two lesions at its ends, apart
            length = radius * float(rng.uniform(1.8, 2.4))
            centre_mm = site(length + radius)
            if centre_mm is None:
                continue
            base_index = base_geom.physical_to_index(centre_mm)
            semi_mm = radius * np.ones(3) + np.abs(direction) * (length - radius)
            if _paint_lesion(base_ct, base_labels, base_index, semi_mm, spacing, next_id, hu) == 0:
                continue
            child = radius * 0.75
            offset = length - child
            ends = [centre_mm - direction * offset, centre_mm + direction * offset]
            fu_centres = [fu_geom.physical_to_index(baseline_to_followup(e, transform)) for e in ends]
            ids = (next_id, next_id + 1)
            sizes = [_paint_lesion(fu_ct, fu_labels, c, np.full(3, child), spacing, i, hu)
                     for c, i in zip(fu_centres, ids)]
            record(ids[0], "shrunk" if sizes[0] else "vanished", semi_mm, base_index, fu_centres[0], hu)
            if sizes[1]:
                record(ids[1], "split", np.full(3, child), None, fu_centres[1], hu, split_from=ids[0])
            placed.append((centre_mm, length + radius))
            next_id += 2
    return next_id


VARIED = "varied"  # write_task2_cohort's size for a grid and spacing of its own per pair
VARIED_FINE = "varied_fine"  # the same, every grid finer in-plane than the learned model's 2 mm
MIXED = "mixed"  # every third pair (n % 3 == 2) varied_fine, the others varied
GRID_SETS = (VARIED, VARIED_FINE, MIXED)


def varied_grid(seed: int, n: int, *, max_in_plane: int = 160, max_slices: int = 128
                ) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Shape and spacing of pair ``n`` of a ``size="varied"`` cohort: in-plane spacing
    1.5-5 mm, slices 2-6 mm, a 380-520 mm by 300-600 mm field of view (so body size varies), at
    most ``max_in_plane`` x ``max_in_plane`` x ``max_slices`` voxels (the spacing grows instead).
    With the default limits the in-plane spacing is in fact 2.4-5 mm (a 380 mm field of view in
    160 voxels), coarser than the learned Task 2 model's 2 mm grid. Deterministic in (seed, n)."""
    rng = make_rng([seed, n, 20261130])
    return _draw_grid(rng, (1.5, 5.0), (2.0, 6.0), (max_in_plane, max_slices))


def fine_grid(seed: int, n: int, *, max_in_plane: int = 512, max_slices: int = 240
              ) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Shape and spacing of pair ``n`` of a ``size="varied_fine"`` cohort: in-plane spacing
    0.7-2 mm and slices 1.5-3.5 mm, as clinical CT (the challenge's is about 0.8 x 0.8 x 2.5 mm),
    the field of view of :func:`varied_grid`, at most 512 x 512 x 240 voxels (then the spacing
    grows). Finer than the 2 mm the learned model resamples to, so its training sees CT noise and
    edges as downsampling leaves them, not only as upsampling does. Deterministic in (seed, n)."""
    rng = make_rng([seed, n, 20261204])
    return _draw_grid(rng, (0.7, 2.0), (1.5, 3.5), (max_in_plane, max_slices))


def _draw_grid(rng: np.random.Generator, in_plane_mm, slice_mm, limits):
    spacing = np.array([rng.uniform(*in_plane_mm)] * 2 + [rng.uniform(*slice_mm)])
    fov = np.array([rng.uniform(380.0, 520.0)] * 2 + [rng.uniform(300.0, 600.0)])
    limit = np.array([limits[0], limits[0], limits[1]])
    shape = np.round(fov / spacing).astype(int)
    spacing = np.where(shape > limit, fov / limit, spacing)
    shape = np.clip(shape, 32, limit)
    return tuple(int(v) for v in shape), tuple(round(float(v), 3) for v in spacing)


def pair_grid(size: str, seed: int, n: int) -> dict:
    """Keyword arguments of :func:`make_longitudinal_pair` for pair ``n`` of a cohort of ``size``:
    a preset name, or one of ``GRID_SETS`` (a grid per pair)."""
    if size == MIXED:
        size = VARIED_FINE if n % 3 == 2 else VARIED
    if size == VARIED:
        return dict(zip(("shape", "spacing"), varied_grid(seed, n)))
    if size == VARIED_FINE:
        return dict(zip(("shape", "spacing"), fine_grid(seed, n)))
    return {"size": size}


def pair_events(n: int, n_merging: int, n_splitting: int, every: int = 1) -> dict:
    """Keyword arguments of :func:`make_longitudinal_pair` for pair ``n``: ``n_merging`` merging
    pairs and ``n_splitting`` splitting lesions on every ``every``-th pair (the pairs with
    ``(n + 1) % every == 0``: all pairs for 1, the odd ones for 2, as in
    ``benchmarks/bench_task2_model.py``), none on the others."""
    if every < 1:
        raise InputError(f"every must be >= 1, got {every}")
    if (n + 1) % every:
        return {"n_merging": 0, "n_splitting": 0}
    return {"n_merging": int(n_merging), "n_splitting": int(n_splitting)}


def write_task2_cohort(out_dir, n_pairs: int = 2, size: str = "tiny", seed: int = 0,
                       progress: bool = False, *, n_merging: int = 0, n_splitting: int = 0,
                       event_every: int = 1, vanish_probability: float = VANISH_PROBABILITY) -> Path:
    """Write ``n_pairs`` longitudinal pairs in the Grand Challenge Task 2 input layout.

    Per pair ``<out>/<pair>/``: ``input/images/primary-baseline-ct/<uuid>.mha`` (int16 HU),
    ``input/images/primary-baseline-ct-tumor-lesion-seg/<uuid>.mha`` (lesion ids),
    ``input/images/primary-followup-ct/<uuid>.mha``, ``input/primary-baseline-lesion-clicks.json``,
    ``input/primary-followup-lesion-clicks.json`` (step-2 clicks: one per follow-up lesion),
    ``truth/followup-tumor-lesion-seg.mha`` (lesion ids) and ``transform.json`` (transform,
    both geometries, per-lesion status). Pair ``n`` uses seed ``[seed, n]``. ``size``: a preset
    (``PRESETS``) or one of ``GRID_SETS`` (a grid per pair, :func:`pair_grid`). ``n_merging`` /
    ``n_splitting``: merging pairs and splitting lesions per pair, on every ``event_every``-th pair
    (:func:`pair_events`); ``vanish_probability``: the chance that a baseline lesion vanishes
    (:func:`make_longitudinal_pair`).
    """

    if n_pairs < 1:
        raise InputError(f"n_pairs must be >= 1, got {n_pairs}")
    pair_events(0, n_merging, n_splitting, event_every)  # a bad event_every fails before anything is written
    out = Path(out_dir)
    # pairs are built aside and replace this writer's earlier pairs whole: no stale pair is left
    owned = {f"PHANTOM_CT_{n:04d}" for n in range(n_pairs)}
    if out.is_dir():
        owned |= {p.name for p in out.glob("PHANTOM_CT_*") if p.is_dir()}
    with staged_contents(out, sorted(owned)) as work:
        _write_task2_pairs(work, n_pairs, size, seed, progress, n_merging, n_splitting, vanish_probability,
                           event_every)
    return out


def _write_task2_pairs(out: Path, n_pairs: int, size: str, seed: int, progress: bool, n_merging: int = 0,
                       n_splitting: int = 0, vanish_probability: float = VANISH_PROBABILITY,
                       event_every: int = 1) -> None:
    from ..click_io import write_task2_points

    uuid_rng = make_rng([seed, 123456789])
    iterator = range(n_pairs)
    if progress:
        from tqdm import tqdm
        iterator = tqdm(iterator, desc="task2 phantoms", unit="pair")
    for n in iterator:
        pair_id = f"PHANTOM_CT_{n:04d}"
        pair = make_longitudinal_pair(seed=[seed, n], pair_id=pair_id, vanish_probability=vanish_probability,
                                      **pair_events(n, n_merging, n_splitting, event_every),
                                      **pair_grid(size, seed, n))
        root = out / pair_id
        inp = root / "input"
        ids = [deterministic_uuid(uuid_rng) for _ in range(3)]
        write_image(np.round(pair.baseline_ct).astype(np.int16), pair.baseline_geometry,
                    inp / task2_baseline_ct_subdir("primary") / f"{ids[0]}.mha")
        write_image(pair.baseline_labels, pair.baseline_geometry,
                    inp / "images" / TASK2_BASELINE_SEG_FOLDERS[0].format(p="primary") / f"{ids[1]}.mha")
        write_image(np.round(pair.followup_ct).astype(np.int16), pair.followup_geometry,
                    inp / task2_followup_ct_subdir("primary") / f"{ids[2]}.mha")
        write_task2_points(inp / task2_points_file("primary", "baseline"), pair.baseline_centres)
        write_task2_points(inp / task2_points_file("primary", "followup"), pair.followup_centres)
        write_image(pair.followup_labels, pair.followup_geometry, root / "truth" / "followup-tumor-lesion-seg.mha")
        atomic_write_json(root / "transform.json", {
            "pair_id": pair_id, "seed": [seed, n], "transform": pair.transform,
            "baseline_geometry": pair.baseline_geometry.to_dict(),
            "followup_geometry": pair.followup_geometry.to_dict(),
            "lesions": pair.lesions,
        })
