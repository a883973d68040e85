"""Task 1 phantoms: whole-body PET/CT cases with lesions (the standard anatomy); cohorts on disk are
written by :mod:`.task1_cohort`.

Arrays are indexed ``[i, j, k]`` (NIfTI order, shape ``(nx, ny, nz)``); CT in HU (float32),
PET in SUV (float32), label uint8 0/1. See :mod:`.anatomy` for the body layout.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..image_io import Geometry, atomic_write_json, write_image
from ..organ_classes import ORGAN_CLASSES_FILE, TOTALSEGMENTATOR_TOTAL
from .anatomy import (BONES, HOT_ORGANS, ORGANS, SOFT_TISSUE_HU, SOFT_TISSUE_SUV, Box, body_profile, body_r2,
                      build_anatomy, ellipsoid_q, norm_to_index, norm_to_voxels)
from .common import add_ct_noise, make_rng, resolve_grid, seed_label

TRACERS = ("FDG", "PSMA")
LESION_SUV_RANGE = (3.0, 20.0)
LESION_RADIUS_MAX_MM = 25.0
PET_FWHM_MM = 6.5

# Phantom organ -> value in the organ maps the writers save (TotalSegmentator's ``total`` task
# numbering where it has the structure; 201-204 for the salivary glands of its head task).
_TOTALSEGMENTATOR_NAME = {"spleen": "spleen", "kidney_right": "kidney_right", "kidney_left": "kidney_left",
                          "liver": "liver", "bladder": "urinary_bladder", "heart": "heart", "brain": "brain",
                          "bowel": "small_bowel"}  # bowel: randomised phantoms only
ORGAN_MAP_CLASSES: dict[int, str] = {
    **{value: name for value, name in TOTALSEGMENTATOR_TOTAL.items() if name in _TOTALSEGMENTATOR_NAME.values()},
    201: "parotid_gland_right", 202: "parotid_gland_left", 203: "submandibular_gland_right",
    204: "submandibular_gland_left"}
ORGAN_MAP_VALUES: dict[str, int] = {
    **{phantom: next(v for v, n in TOTALSEGMENTATOR_TOTAL.items() if n == name)
       for phantom, name in _TOTALSEGMENTATOR_NAME.items()},
    "parotid_right": 201, "parotid_left": 202, "submandibular_right": 203, "submandibular_left": 204}


@dataclass
class PetCtCase:
    """One synthetic PET/CT case. Arrays ``[i, j, k]``; ``label`` is the lesion mask before blur."""

    ct: np.ndarray
    pet: np.ndarray
    label: np.ndarray
    geometry: Geometry
    case_id: str
    tracer: str
    lesions: list[dict[str, Any]]
    organ_boxes: dict[str, Box] = field(default_factory=dict, repr=False)
    uptake: dict[str, float] = field(default_factory=dict)
    seed: Any = 0

    def organ_mask(self, name: str) -> np.ndarray:
        """Full-size boolean mask of organ ``name`` (built on demand to save memory)."""
        if name not in self.organ_boxes:
            raise KeyError(f"no organ {name!r}; known: {', '.join(sorted(self.organ_boxes))}")
        return self.organ_boxes[name].full(self.geometry.shape)

    @property
    def organs(self) -> dict[str, np.ndarray]:
        """All organ masks as full-size arrays (memory hungry on large presets)."""
        return {name: self.organ_mask(name) for name in self.organ_boxes}

    def body_mask(self) -> np.ndarray:
        """Voxels inside the body outline."""
        return body_r2(self.geometry.shape) <= 1.0

    def organ_map(self) -> np.ndarray:
        """The organs as one uint8 multi-label map in the values of :data:`ORGAN_MAP_CLASSES`
        (TotalSegmentator's ``total`` numbering, plus the salivary glands), as
        ``TotalSegmentator --ml`` would write it. Where organs overlap the later one wins."""
        out = np.zeros(self.geometry.shape, dtype=np.uint8)
        for name, value in ORGAN_MAP_VALUES.items():
            if name in self.organ_boxes:
                box = self.organ_boxes[name]
                out[box.slices][box.mask] = value
        return out


def _unit_vector(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / max(np.linalg.norm(v), 1e-9)


def _extent_along(direction: np.ndarray, semi: np.ndarray) -> float:
    """Distance from an ellipsoid's centre to its surface along unit ``direction`` (voxels)."""
    return float(1.0 / math.sqrt(float(np.sum((direction / semi) ** 2))))


def _sample_site(kind: str, shape, r2, rng, tracer, previous, lesion_semi) -> tuple[np.ndarray, str | None, int | None]:
    """A lesion centre (voxel index) for site ``kind``; returns (centre, near_organ, touches)."""
    nx, ny, nz = shape
    if kind == "touching" and previous:
        other = previous[-1]
        d = _unit_vector(rng)
        # 0.8 x the sum of both extents: the ellipsoids overlap, so they form one component.
        dist = 0.8 * (_extent_along(d, other["semi_vox"]) + _extent_along(d, lesion_semi))
        return other["centre_vox"] + d * dist, None, other["index"]
    if kind == "near_organ":
        organ = str(rng.choice(HOT_ORGANS[tracer]))
        centre, semi, _ = ORGANS[organ]
        c = norm_to_index(shape, centre)
        s = norm_to_voxels(shape, semi)
        d = _unit_vector(rng)
        surface = c + s * d
        normal = d / s
        normal /= np.linalg.norm(normal)
        gap = rng.uniform(0.5, 2.0)
        return surface + normal * (_extent_along(normal, lesion_semi) + gap), organ, None
    if kind in ("lung", "liver"):
        organ = rng.choice(["lung_right", "lung_left"]) if kind == "lung" else "liver"
        centre, semi, _ = ORGANS[str(organ)]
        p = _unit_vector(rng) * rng.uniform(0, 0.6) ** (1 / 3)
        return norm_to_index(shape, np.asarray(centre) + 0.7 * np.asarray(semi) * p), None, None
    if kind == "bone":
        if rng.random() < 0.6:
            uvw = (rng.uniform(-0.015, 0.015), 0.11 + rng.uniform(-0.015, 0.015), rng.uniform(0.15, 0.72))
        else:
            uvw = (rng.choice([-1, 1]) * rng.uniform(0.08, 0.18), 0.05 + rng.uniform(-0.03, 0.03),
                   rng.uniform(0.15, 0.25))
        return norm_to_index(shape, uvw), None, None
    # Lymph node / soft-tissue lesion anywhere in the trunk or neck.
    w = rng.uniform(0.12, 0.76)
    k = min(int(w * nz), nz - 1)
    a, b, cv, _ = body_profile(nz)
    ang = rng.uniform(0, 2 * math.pi)
    rad = math.sqrt(rng.uniform(0, 1)) * 0.65
    uvw = (a[k] * rad * math.cos(ang), cv[k] + b[k] * rad * math.sin(ang), w)
    return norm_to_index(shape, uvw), None, None


def _plan_lesions(shape, spacing, r2, rng, tracer, n_lesions,
                  suv_range: Sequence[float] = LESION_SUV_RANGE,
                  radius_min_mm: float | None = None) -> list[dict[str, Any]]:
    """Choose centres, sizes and uptake. Lesion 1 touches lesion 0, lesion 2 sits next to a hot
    organ (when there are that many); the rest draw their site at random. Radii are log-uniform
    from ``radius_min_mm`` (default: the grid's largest spacing, at least 3 mm) to 25 mm."""
    spacing = np.asarray(spacing, dtype=float)
    r_min = max(1.0 * float(spacing.max()), 3.0) if radius_min_mm is None else float(radius_min_mm)
    r_max = max(LESION_RADIUS_MAX_MM, 2 * r_min)
    plans: list[dict[str, Any]] = []
    kinds = ["lymph_node", "lung", "liver", "bone", "near_organ"]
    probs = [0.35, 0.15, 0.15, 0.15, 0.20]
    for index in range(n_lesions):
        if index == 1:
            kind = "touching"
        elif index == 2:
            kind = "near_organ"
        elif index > 2 and rng.random() < 0.15:
            kind = "touching"
        else:
            kind = str(rng.choice(kinds, p=probs))
        for _ in range(50):
            radius_mm = float(math.exp(rng.uniform(math.log(r_min), math.log(r_max))))
            radii_mm = radius_mm * rng.uniform(0.75, 1.25, size=3)
            semi = np.maximum(radii_mm / spacing, 0.75)
            centre, organ, touches = _sample_site(kind, shape, r2, rng, tracer, plans, semi)
            idx = np.round(centre).astype(int)
            if np.any(idx < 1) or np.any(idx >= np.asarray(shape) - 1):
                continue
            if r2[tuple(idx)] > 0.75:
                continue
            break
        else:
            continue
        site = kind if kind not in ("touching",) else plans[-1]["site"] if plans else "lymph_node"
        plans.append({
            "index": len(plans), "centre_vox": centre, "semi_vox": semi, "radius_mm": radius_mm,
            "radii_mm": radii_mm, "site": site, "near_organ": organ,
            "placed_touching": touches,
            "suv_max": float(math.exp(rng.uniform(math.log(suv_range[0]), math.log(suv_range[1])))),
            "ct_hu": float({"lung": rng.uniform(20, 45), "liver": rng.uniform(15, 35),
                            "bone": rng.uniform(60, 120)}.get(site, rng.uniform(45, 70))),
            # Larger lesions get a second lobe so not every lesion is a perfect ellipsoid.
            "lobe": (_unit_vector(rng) * 0.6, rng.uniform(0.5, 0.8)) if radius_mm > 10 and rng.random() < 0.5 else None,
        })
    return plans


def _lesion_q(shape, plan):
    """(slices, q) of a planned lesion, q <= 1 inside; the optional lobe is merged by min()."""
    sl, q = ellipsoid_q(shape, plan["centre_vox"], plan["semi_vox"])
    if sl is None or plan["lobe"] is None:
        return sl, q
    offset, scale = plan["lobe"]
    semi = plan["semi_vox"]
    lobe_centre = plan["centre_vox"] + offset * semi
    lo = np.array([s.start for s in sl])
    hi = np.array([s.stop for s in sl])
    lsl, lq = ellipsoid_q(shape, lobe_centre, semi * scale)
    if lsl is None:
        return sl, q
    # Union bounding box, q as the minimum of both shapes.
    ulo = np.minimum(lo, [s.start for s in lsl])
    uhi = np.maximum(hi, [s.stop for s in lsl])
    usl = tuple(slice(int(a), int(b)) for a, b in zip(ulo, uhi))
    uq = np.full(tuple(uhi - ulo), np.inf, dtype=np.float32)
    a_sl = tuple(slice(int(s.start - u), int(s.stop - u)) for s, u in zip(sl, ulo))
    b_sl = tuple(slice(int(s.start - u), int(s.stop - u)) for s, u in zip(lsl, ulo))
    uq[a_sl] = np.minimum(uq[a_sl], q)
    uq[b_sl] = np.minimum(uq[b_sl], lq)
    return usl, uq


@dataclass(frozen=True)
class PetVariation:
    """How a phantom's PET departs from the default physics: training data that varies.

    ``PetVariation()`` is the default phantom, bit for bit. ``organ_uptake_scale`` multiplies
    the SUV of the organs it names; ``lesion_suv_range`` is the range lesion SUVmax is drawn
    from (log-uniform); ``pet_fwhm_mm`` the partial-volume blur; ``noise_scale`` multiplies the
    count-noise variance; ``suv_scale`` multiplies the final PET (a calibration error);
    ``distractors`` hot spots of physiological-like uptake with normal CT and no label (bowel,
    brown fat, ureters: what a model must not call a lesion without more evidence), their SUV
    drawn from ``distractor_suv_range``. ``lesion_radius_min_mm``: the smallest lesion radius
    (default ``None``: the grid's largest spacing, at least 3 mm, so that no lesion is smaller
    than a voxel; a smaller value gives a coarse grid sub-voxel lesions, as a fine grid has).
    ``organ_decoys``: hot structures the size of an organ (volume log-uniform in
    ``organ_decoy_ml_range``, larger than any lesion), of near-uniform uptake from
    ``organ_decoy_suv_range``, anywhere in the body, with no label: an organ of another body,
    which a model must not call a lesion for being hot (issue 33). They draw from
    a generator of their own, so every other draw of the phantom stays as it was.
    ``bone_free``: the bones (:data:`~.anatomy.BONES`) become soft tissue in CT and PET before
    lesions, blur and noise, and leave the organ boxes: a body without a skeleton, as another
    generator may draw it, so that a model cannot place organs by the bones alone (issue 33).
    It draws nothing, so every other draw of the phantom stays as it was.
    """

    organ_uptake_scale: dict[str, float] | None = None
    lesion_suv_range: tuple[float, float] = LESION_SUV_RANGE
    pet_fwhm_mm: float = PET_FWHM_MM
    noise_scale: float = 1.0
    suv_scale: float = 1.0
    distractors: int = 0
    distractor_suv_range: tuple[float, float] = (2.0, 8.0)
    lesion_radius_min_mm: float | None = None
    organ_decoys: int = 0
    organ_decoy_ml_range: tuple[float, float] = (250.0, 2000.0)
    organ_decoy_suv_range: tuple[float, float] = (2.0, 30.0)
    bone_free: bool = False

    @classmethod
    def random(cls, rng: np.random.Generator) -> "PetVariation":
        """A variation drawn from ``rng``: organ uptake x0.4..2.5 per organ, lesion SUVmax from
        1.5..5 up to 8..25, blur 5..10 mm, noise x0.5..2.5, calibration x0.7..1.4, 0..6
        distractors."""
        organs = sorted(ORGANS)
        scale = {name: float(math.exp(rng.uniform(math.log(0.4), math.log(2.5)))) for name in organs}
        low = float(rng.uniform(1.5, 5.0))
        return cls(organ_uptake_scale=scale, lesion_suv_range=(low, float(rng.uniform(8.0, 25.0))),
                   pet_fwhm_mm=float(rng.uniform(5.0, 10.0)), noise_scale=float(rng.uniform(0.5, 2.5)),
                   suv_scale=float(rng.uniform(0.7, 1.4)), distractors=int(rng.integers(0, 7)),
                   distractor_suv_range=(1.5, float(rng.uniform(4.0, 12.0))))


def _paint_distractors(pet, label, r2, spacing, rng, count: int, suv_range) -> int:
    """Paint ``count`` unlabelled hot ellipsoids inside the body, at least 2 voxels from any
    lesion; returns how many were placed."""
    shape = np.asarray(pet.shape)
    placed = 0
    for _ in range(count):
        for _attempt in range(20):
            semi = np.maximum(rng.uniform(3.0, 18.0, size=3) / np.asarray(spacing), 0.75)
            centre = rng.uniform(0.1, 0.9, size=3) * (shape - 1)
            if r2[tuple(np.round(centre).astype(int))] > 0.7:
                continue
            sl, q = ellipsoid_q(tuple(int(s) for s in shape), centre, semi)
            if sl is None:
                continue
            grown = tuple(slice(max(0, s.start - 2), s.stop + 2) for s in sl)
            if label[grown].any():
                continue
            mask = (q <= 1.0) & (r2[sl] <= 1.0)
            suv = float(rng.uniform(*suv_range))
            pet[sl][mask] = np.maximum(pet[sl][mask], suv * (1.0 - 0.3 * np.clip(q[mask], 0, 1)))
            placed += 1
            break
    return placed


def _paint_organ_decoys(ct, pet, label, r2, spacing, rng, count: int, ml_range, suv_range) -> int:
    """Paint ``count`` organ-sized hot ellipsoids (no label) inside the body, overlapping no lesion
    and clear of lesions by 2 voxels inside their bounding box; returns how many were placed. Half
    keep the CT under them, half get a soft-tissue HU of their own (-10..60), as an organ does.
    Volume log-uniform in ``ml_range`` (ml), axis ratios 0.6..1.6, axis-aligned; uptake ``suv`` x
    (0.9..1.1 across the structure)."""
    shape = np.asarray(pet.shape)
    spacing = np.asarray(spacing, dtype=float)
    placed = 0
    for _ in range(count):
        for _attempt in range(30):
            volume_mm3 = 1000.0 * math.exp(rng.uniform(math.log(ml_range[0]), math.log(ml_range[1])))
            ratios = rng.uniform(0.6, 1.6, size=3)
            semi_mm = ratios * (volume_mm3 / (4.0 / 3.0 * math.pi * float(np.prod(ratios)))) ** (1.0 / 3.0)
            centre = rng.uniform(0.05, 0.95, size=3) * (shape - 1)
            if r2[tuple(np.round(centre).astype(int))] > 0.6:
                continue
            semi = semi_mm / spacing
            sl, q = ellipsoid_q(tuple(int(s) for s in shape), centre, semi)
            if sl is None:
                continue
            # clearance: no lesion voxel within the ellipsoid grown by 2 voxels, looked for inside
            # the decoy's own bounding box only (a lesion just past its faces may come closer)
            margin = 1.0 + 2.0 / float(semi.min())
            if label[sl][q <= margin * margin].any():
                continue
            mask = (q <= 1.0) & (r2[sl] <= 1.0)
            if not mask.any():
                continue
            suv = float(math.exp(rng.uniform(math.log(suv_range[0]), math.log(suv_range[1]))))
            gradient = _unit_vector(rng) * 0.1
            grid = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in sl], indexing="ij"), axis=-1)
            along = ((grid - centre) / semi) @ gradient
            pet[sl][mask] = np.maximum(pet[sl][mask], (suv * (1.0 + along[mask])).astype(np.float32))
            if rng.random() < 0.5:
                ct[sl][mask] = np.float32(rng.uniform(-10.0, 60.0))
            placed += 1
            break
    return placed


def make_petct_case(size: str | None = "tiny", tracer: str = "FDG", seed: Any = 0,
                    n_lesions: int | None = None, empty: bool = False,
                    shape: Sequence[int] | None = None, spacing: Sequence[float] | None = None,
                    case_id: str | None = None, *, variation: PetVariation | None = None) -> PetCtCase:
    """Make one synthetic whole-body PET/CT case.

    ``size`` is a preset (tiny ~64x64x48 at 5x5x8 mm, small 128x128x96 at 4x4x6 mm, medium
    200x200x160 at 3x3x4.5 mm, full 400x400x326 at 2.04x2.04x3 mm) unless ``shape`` and
    ``spacing`` (mm) are given. ``n_lesions=None`` draws 0..15 from the seed; ``empty=True``
    makes a case without lesions. ``variation`` (:class:`PetVariation`) changes uptake, blur,
    noise and calibration and adds distractors (default: none). Deterministic for a given
    ``seed`` (int or int sequence) and ``variation``.
    """
    variation = variation or PetVariation()
    tracer = str(tracer).upper()
    if tracer not in TRACERS:
        raise InputError(f"unknown tracer {tracer!r}; choose FDG or PSMA")
    geometry = resolve_grid(size, shape, spacing)
    shape3 = geometry.shape
    spacing3 = np.asarray(geometry.spacing)
    rng = make_rng(seed)
    anatomy = build_anatomy(shape3, spacing3, rng, tracer, uptake_scale=variation.organ_uptake_scale)
    ct, pet, r2 = anatomy.ct, anatomy.pet, anatomy.r2
    if variation.bone_free:
        for name in BONES:
            box = anatomy.organs.pop(name, None)
            if box is not None:
                ct[box.slices][box.mask] = SOFT_TISSUE_HU
                pet[box.slices][box.mask] = SOFT_TISSUE_SUV
    if empty:
        n_lesions = 0
    elif n_lesions is None:
        n_lesions = int(rng.integers(0, 16))
    elif n_lesions < 0:
        raise InputError(f"n_lesions must be >= 0, got {n_lesions}")
    if variation.lesion_radius_min_mm is not None and not variation.lesion_radius_min_mm > 0:
        raise InputError(f"lesion_radius_min_mm must be > 0 mm, got {variation.lesion_radius_min_mm}")

    plans = _plan_lesions(shape3, spacing3, r2, rng, tracer, int(n_lesions), variation.lesion_suv_range,
                          variation.lesion_radius_min_mm)
    label = np.zeros(shape3, dtype=np.uint8)
    painted: list[tuple[dict, tuple[slice, ...], np.ndarray]] = []
    for plan in plans:
        sl, q = _lesion_q(shape3, plan)
        if sl is None:
            continue
        mask = (q <= 1.0) & (r2[sl] <= 1.0)
        if not mask.any():
            centre = tuple(np.clip(np.round(plan["centre_vox"]).astype(int), 0, np.asarray(shape3) - 1))
            if r2[centre] > 1.0:
                continue
            sl = tuple(slice(c, c + 1) for c in centre)
            q = np.zeros((1, 1, 1), np.float32)
            mask = np.ones((1, 1, 1), bool)
        ct[sl][mask] = plan["ct_hu"]
        pet[sl][mask] = (plan["suv_max"] * (1.0 - 0.3 * np.clip(q[mask], 0, 1))).astype(np.float32)
        label[sl][mask] = 1
        painted.append((plan, sl, mask))

    lesions = describe_lesions(label, painted, geometry)
    if variation.distractors:
        _paint_distractors(pet, label, r2, spacing3, rng, variation.distractors, variation.distractor_suv_range)
    if variation.organ_decoys:
        # a generator of their own (spawn leaves rng's state alone): the noise below stays the same
        _paint_organ_decoys(ct, pet, label, r2, spacing3, rng.spawn(1)[0], variation.organ_decoys,
                            variation.organ_decoy_ml_range, variation.organ_decoy_suv_range)

    # Partial-volume blur after placing the lesions, then count-dependent noise.
    sigma_vox = (variation.pet_fwhm_mm / 2.3548) / spacing3
    from scipy.ndimage import gaussian_filter
    pet = gaussian_filter(pet, sigma=sigma_vox, truncate=3.0, output=np.float32)
    voxel_ml = float(np.prod(spacing3))
    alpha = float(np.clip(0.02 * math.sqrt(12.5 / voxel_ml), 0.004, 0.04)) * variation.noise_scale
    noise = rng.standard_normal(size=shape3, dtype=np.float32)
    noise *= np.sqrt(np.maximum(pet, 0) * np.float32(alpha))
    pet += noise
    np.maximum(pet, 0, out=pet)
    if variation.suv_scale != 1.0:
        pet *= np.float32(variation.suv_scale)
    add_ct_noise(ct, rng, buffer=noise)
    del noise
    if case_id is None:
        case_id = f"PHANTOM_{tracer}_{seed_label(seed)}"
    return PetCtCase(ct=ct, pet=pet, label=label, geometry=geometry, case_id=case_id, tracer=tracer,
                     lesions=lesions, organ_boxes=anatomy.organs, uptake=anatomy.uptake, seed=seed)


def describe_lesions(label, painted, geometry: Geometry) -> list[dict[str, Any]]:
    """Per-lesion metadata, with which lesions ended up in the same 26-connected component."""
    import cc3d

    if not painted:
        return []
    components = cc3d.connected_components(label, connectivity=26)
    comp_of = []
    for plan, sl, mask in painted:
        ids = components[sl][mask]
        comp_of.append(int(np.bincount(ids[ids > 0]).argmax()) if np.any(ids > 0) else 0)
    out = []
    for n, (plan, sl, mask) in enumerate(painted):
        touching = [m + 1 for m, c in enumerate(comp_of) if m != n and c == comp_of[n] and c > 0]
        idx = np.argwhere(mask) + np.array([s.start for s in sl])
        out.append({
            "id": n + 1,
            "centre": [round(float(x), 3) for x in plan["centre_vox"]],
            "centre_of_gravity": [round(float(x), 3) for x in idx.mean(axis=0)],
            "radius_mm": round(plan["radius_mm"], 3),
            "radii_mm": [round(float(r), 3) for r in plan["radii_mm"]],
            "n_voxels": int(mask.sum()),
            "volume_ml": round(float(mask.sum()) * geometry.voxel_volume_ml, 4),
            "suv_max": round(plan["suv_max"], 3),
            "ct_hu": round(plan["ct_hu"], 1),
            "site": plan["site"],
            "near_organ": plan["near_organ"],
            "touching": touching,
            "component": comp_of[n],
        })
    return out


def write_organ_map(case: PetCtCase, folder, name: str) -> Path:
    """Write ``folder/<name>.nii.gz`` (the case's :meth:`PetCtCase.organ_map`, uint8) and the
    folder's ``organ_classes.json`` (value -> TotalSegmentator structure name); the layout
    ``Task1.convert_dataset --organs`` reads. Returns the map's path."""
    folder = Path(folder)
    path = folder / f"{name}.nii.gz"
    write_image(case.organ_map(), case.geometry, path, dtype=np.uint8)
    table = folder / ORGAN_CLASSES_FILE
    if not table.is_file():
        atomic_write_json(table, {str(v): n for v, n in sorted(ORGAN_MAP_CLASSES.items())})
    return path
