"""Domain-randomised Task 1 phantoms: training data whose anatomy, uptake and physics change
with every case (the SynthSeg idea: when nothing but shape and context is stable, a network
has to learn shape and context).

:func:`randomised_petct_case` draws, per case and from its seed only:

- **Body**: habitus (width 290-500 mm, depth ratio, torso outline jitter), height, legs (none
  or up to 45 % of the trunk), arms down, up beside the head or absent, and the field of view:
  head-only, a run of the trunk, or the whole body, on a grid with 2.0-6.0 mm voxels. The body's
  size in mm does not follow the field of view (the standard phantoms scale the body with it).
- **Organs**: the standard organs (:data:`.anatomy.ORGANS`) moved (by 0.3 of their size, one
  standard deviation), resized (x0.65-1.45 per axis), rotated (up to 25 degrees) and sometimes
  given a second lobe; bones (skull, spine, ribs, pelvis, femurs) each present or not, and none
  at all in 3 cases of 10, so no cue depends on them.
- **Uptake** (wide, tracer-specific ranges, :data:`RANDOM_UPTAKE`): FDG brain, heart (solid
  or only the myocardium, cold to hot), kidneys, ureters, bladder, bowel loops, brown fat,
  muscle; PSMA salivary and lacrimal glands, liver, spleen, kidneys, ureters, bowel, ganglia.
  None of these is labelled a lesion; bowel is in the organ map (TotalSegmentator's
  ``small_bowel``) for organ supervision.
- **Lesions**: 0-14, 3-40 mm radius, irregular shapes, anywhere in the body (lymph nodes,
  lung, liver, bone, limbs), next to or touching hot organs, touching each other, SUVmax from
  barely above the background to 30, CT density from invisible to dense.
- **Physics**: partial-volume blur 4-10 mm FWHM, count noise x0.3-3, SUV calibration x0.7-1.4,
  CT noise 5-30 HU, CT shifted against PET and label by up to 6 mm (misregistration).

Arrays follow :mod:`.task1`: ``[i, j, k]``, CT in HU, PET in SUV, label uint8; the result is a
:class:`.task1.PetCtCase` whose organ map the training writer saves. Deterministic in ``seed``.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..image_io import Geometry
from .anatomy import (_HEAD_A, _HEAD_B, _HEAD_CENTRE_W, _HEAD_HALF_W, _HEAD_V, _TORSO_KNOTS, _TORSO_TOP,
                      FAT_RATIO, ORGANS, Box)
from ..errors import InputError
from .common import make_rng
from .task1 import TRACERS, PetCtCase, describe_lesions

# organ -> SUV range per tracer (drawn log-uniform); organs not listed take the soft tissue's
RANDOM_UPTAKE: dict[str, dict[str, tuple[float, float]]] = {
    "FDG": {"brain": (4.0, 14.0), "heart": (1.0, 14.0), "kidney_right": (2.0, 9.0), "kidney_left": (2.0, 9.0),
            "bladder": (4.0, 45.0), "liver": (1.4, 3.5), "spleen": (1.2, 3.0), "parotid_right": (1.2, 3.5),
            "parotid_left": (1.2, 3.5), "submandibular_right": (1.2, 3.5), "submandibular_left": (1.2, 3.5),
            "lung_right": (0.3, 0.8), "lung_left": (0.3, 0.8), "bowel": (1.3, 7.0), "ureter": (2.0, 25.0),
            "brown_fat": (2.0, 10.0), "ganglion": (1.0, 2.0), "lacrimal": (1.0, 2.5)},
    "PSMA": {"brain": (0.1, 0.6), "heart": (0.8, 2.5), "kidney_right": (8.0, 50.0), "kidney_left": (8.0, 50.0),
             "bladder": (3.0, 60.0), "liver": (2.5, 12.0), "spleen": (2.5, 12.0), "parotid_right": (6.0, 30.0),
             "parotid_left": (6.0, 30.0), "submandibular_right": (5.0, 28.0), "submandibular_left": (5.0, 28.0),
             "lung_right": (0.3, 0.8), "lung_left": (0.3, 0.8), "bowel": (2.0, 12.0), "ureter": (3.0, 40.0),
             "brown_fat": (0.8, 1.5), "ganglion": (2.0, 9.0), "lacrimal": (3.0, 16.0)},
}
LESION_RADIUS_MM = (3.0, 40.0)
LESION_SUV_MAX = 30.0
MAX_SHIFT_MM = 6.0


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _rotation(rng: np.random.Generator, max_degrees: float) -> np.ndarray:
    """A rotation matrix about a random axis by up to ``max_degrees``."""
    axis = rng.normal(size=3)
    axis /= max(np.linalg.norm(axis), 1e-9)
    angle = math.radians(rng.uniform(-max_degrees, max_degrees))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


class _Window:
    """A crop ``[offset, offset + shape)`` of a virtual whole-body grid: the anatomy is laid out
    on the virtual grid (normalised coordinates as in :mod:`.anatomy`) and only the window is
    ever allocated. ``legs`` slices lie below the trunk (normalised ``w < 0``)."""

    def __init__(self, virtual: Sequence[int], n_legs: int, offset: Sequence[int], shape: Sequence[int],
                 spacing: Sequence[float]):
        self.virtual = np.asarray(virtual, dtype=float)
        self.n_legs = int(n_legs)
        self.offset = np.asarray(offset, dtype=int)
        self.shape = tuple(int(s) for s in shape)
        self.spacing = np.asarray(spacing, dtype=float)
        nx, ny, nz_body = self.virtual[0], self.virtual[1], self.virtual[2] - self.n_legs
        self.nz_body = nz_body
        self.u = ((self.offset[0] + np.arange(self.shape[0]) + 0.5) / nx - 0.5).astype(np.float32)
        self.v = ((self.offset[1] + np.arange(self.shape[1]) + 0.5) / ny - 0.5).astype(np.float32)
        self.w = ((self.offset[2] + np.arange(self.shape[2]) - self.n_legs + 0.5) / nz_body).astype(np.float32)

    def index(self, uvw) -> np.ndarray:
        """Normalised (u, v, w) -> continuous voxel index in the window."""
        u, v, w = uvw
        virtual = np.array([(u + 0.5) * self.virtual[0] - 0.5, (v + 0.5) * self.virtual[1] - 0.5,
                            w * self.nz_body + self.n_legs - 0.5])
        return virtual - self.offset

    def voxels(self, suvw) -> np.ndarray:
        """Normalised semi-axes -> voxels."""
        return np.asarray(suvw, dtype=float) * np.array([self.virtual[0], self.virtual[1], self.nz_body])


def _ellipsoid(shape, centre, semi, rotation=None, *, margin: float = 1.0):
    """``(slices, q)``: normalised squared radius of a (rotated) ellipsoid on its bounding box;
    None when the box misses the grid. ``rotation`` maps grid axes to the ellipsoid's axes."""
    centre = np.asarray(centre, dtype=float)
    semi = np.maximum(np.asarray(semi, dtype=float), 0.5)
    reach = semi.max() * margin if rotation is not None else semi * margin
    lo = np.maximum(np.floor(centre - reach).astype(int), 0)
    hi = np.minimum(np.ceil(centre + reach).astype(int) + 1, np.asarray(shape))
    if np.any(hi <= lo):
        return None, None
    axes = [np.arange(lo[d], hi[d], dtype=np.float32) - np.float32(centre[d]) for d in range(3)]
    if rotation is None:
        q = sum(((axes[d] / np.float32(semi[d])) ** 2).reshape([-1 if e == d else 1 for e in range(3)])
                for d in range(3))
    else:
        r = np.asarray(rotation, dtype=np.float32)
        x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
        q = sum(((r[d, 0] * x + r[d, 1] * y + r[d, 2] * z) / np.float32(semi[d])) ** 2 for d in range(3))
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi)), np.asarray(q, dtype=np.float32)


def _irregular(q: np.ndarray, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """``q`` of an ellipsoid's box made lumpy: scaled by a smooth random function of direction."""
    if amplitude <= 0 or q.size < 8:
        return q
    grids = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in q.shape], indexing="ij", sparse=True)
    norm = np.sqrt(sum(g ** 2 for g in grids)) + np.float32(1e-3)
    d = [g / norm for g in grids]
    c = rng.normal(size=9).astype(np.float32)
    f = (c[0] * d[0] + c[1] * d[1] + c[2] * d[2] + c[3] * d[0] * d[1] + c[4] * d[1] * d[2]
         + c[5] * d[0] * d[2] + c[6] * (d[0] ** 2 - d[1] ** 2) + c[7] * (d[2] ** 2 - 0.5) + c[8] * d[0] * d[1] * d[2])
    return q * np.exp(np.float32(amplitude) * f / np.float32(3.0))


def _body_r2(win: _Window, layout: dict) -> tuple[np.ndarray, np.ndarray]:
    """(r2, fat_ratio per slice): the body as the union of torso + head, legs and arms, each
    with its own normalised squared radius (<= 1 inside, the fat layer above FAT_RATIO**2)."""
    w = win.w.astype(float)
    knots = layout["knots"]
    a = np.interp(w, knots[:, 0], knots[:, 1])
    b = np.interp(w, knots[:, 0], knots[:, 2])
    cv = np.interp(w, knots[:, 0], knots[:, 3])
    torso = (w >= 0) & (w <= _TORSO_TOP)
    a, b = np.where(torso, a, 0.0), np.where(torso, b, 0.0)
    head_t = 1.0 - ((w - _HEAD_CENTRE_W) / (_HEAD_HALF_W * layout["head"])) ** 2
    head_a = _HEAD_A * layout["head"] * np.sqrt(np.clip(head_t, 0, None))
    head_b = _HEAD_B * layout["head"] * np.sqrt(np.clip(head_t, 0, None))
    use_head = (head_t > 0) & (head_a > a)
    a, b = np.where(use_head, head_a, a), np.where(use_head, head_b, b)
    cv = np.where(use_head, _HEAD_V, cv)
    a32, b32 = np.maximum(a, 1e-6).astype(np.float32), np.maximum(b, 1e-6).astype(np.float32)
    u, v = win.u[:, None, None], win.v[None, :, None]
    r2 = (u / a32) ** 2 + ((v - cv.astype(np.float32)) / b32) ** 2
    r2 = np.where(((a > 0) & (w >= 0))[None, None, :], r2, np.float32(1e6)).astype(np.float32)
    # legs: two ellipses below the pelvis, tapering to the ankles
    legs = w < 0
    if legs.any():
        depth = np.clip(-w / max(layout["legs"], 1e-6), 0, 1)
        la = (0.095 - 0.05 * depth).astype(np.float32)
        lb = (0.10 - 0.05 * depth).astype(np.float32)
        for side in (-1, 1):
            cu = np.float32(side * 0.105)
            leg = ((u - cu) / la) ** 2 + (v / lb) ** 2
            r2 = np.where(legs[None, None, :], np.minimum(r2, leg), r2)
    arms = layout["arms"]
    if arms != "none":
        lo, hi = (0.18, 0.66) if arms == "down" else (0.70, 1.0)
        in_arm = (w >= lo) & (w <= hi)
        if in_arm.any():
            for side in (-1, 1):
                if arms == "down":
                    cu = side * (np.interp(w, knots[:, 0], knots[:, 1]) + 0.055)
                else:
                    cu = np.full_like(w, side * 0.14)
                arm = ((u - cu.astype(np.float32)) / np.float32(0.04)) ** 2 + (v / np.float32(0.045)) ** 2
                r2 = np.where(in_arm[None, None, :], np.minimum(r2, arm), r2)
    fat_ratio = np.where((w < 0.69) | (w > _TORSO_TOP + 0.2), FAT_RATIO, 0.97)
    return r2.astype(np.float32), fat_ratio


def _draw_layout(rng: np.random.Generator, tracer: str) -> dict[str, Any]:
    """Everything about the body that does not depend on the grid."""
    knots = _TORSO_KNOTS.copy()
    knots[:, 1] *= rng.uniform(0.9, 1.1, size=len(knots))
    knots[:, 2] *= rng.uniform(0.85, 1.15) * rng.uniform(0.93, 1.07, size=len(knots))
    has_bones = rng.random() >= 0.3
    organs = {}
    for name, (centre, semi, hu) in ORGANS.items():
        semi = np.asarray(semi) * rng.uniform(0.65, 1.45, size=3)
        centre = np.asarray(centre) + rng.normal(0, 0.3, size=3) * np.asarray(ORGANS[name][1])
        lobe = None
        if not name.startswith("lung") and rng.random() < 0.4:
            lobe = (_unit(rng) * rng.uniform(0.4, 0.8), rng.uniform(0.5, 0.85))
        organs[name] = {"centre": centre, "semi": semi, "rotation": _rotation(rng, 25.0),
                        "hu": hu + rng.uniform(-15, 15), "lobe": lobe}
    # the sides move together, so left and right organs stay apart
    uptake = {name: _log_uniform(rng, *span) for name, span in RANDOM_UPTAKE[tracer].items()}
    for pair in (("kidney_right", "kidney_left"), ("parotid_right", "parotid_left"),
                 ("submandibular_right", "submandibular_left")):
        uptake[pair[1]] = uptake[pair[0]] * rng.uniform(0.8, 1.25)
    return {
        "knots": knots, "head": rng.uniform(0.85, 1.15),
        "legs": rng.uniform(0.15, 0.45) if rng.random() < 0.6 else 0.0,
        "arms": str(rng.choice(["down", "up", "none"], p=[0.5, 0.25, 0.25])),
        "organs": organs, "uptake": uptake,
        # each bone present or not, and in 3 cases of 10 no bone at all: no cue may depend on them
        "bones": {bone: bool(has_bones and rng.random() < 0.7) for bone in ("skull", "spine", "ribs", "pelvis", "femurs")},
        "myocardium_only": tracer == "FDG" and rng.random() < 0.5,
        "soft_suv": rng.uniform(0.6, 1.4), "fat_suv": rng.uniform(0.25, 0.8), "marrow_suv": rng.uniform(0.9, 2.2),
        "soft_hu": rng.uniform(20, 60), "fat_hu": rng.uniform(-130, -70), "lung_hu": rng.uniform(-900, -750),
        "bone_hu": rng.uniform(400, 1100),
    }


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / max(np.linalg.norm(v), 1e-9)


def _choose_window(rng, virtual: np.ndarray, n_legs: int, max_inplane: int, max_slices: int):
    """Field of view: head only, a run of the trunk, or the whole body; in-plane around the body."""
    nz = int(virtual[2])
    nz_body = nz - n_legs
    kind = rng.choice(["head", "run", "whole"], p=[0.1, 0.45, 0.45])
    if kind == "head":
        k0 = n_legs + int(nz_body * rng.uniform(0.62, 0.75))
        k1 = nz
    elif kind == "run":
        length = int(nz * rng.uniform(0.3, 0.9))
        k0 = int(rng.integers(0, nz - length + 1))
        k1 = k0 + length
    else:
        k0, k1 = 0, nz
    if k1 - k0 > max_slices:
        k0 = int(rng.integers(k0, k1 - max_slices + 1))
        k1 = k0 + max_slices
    offset, shape = [0, 0, k0], [0, 0, k1 - k0]
    for axis in (0, 1):
        n = int(virtual[axis])
        size = min(n, max_inplane)
        centre = n / 2 + rng.uniform(-0.1, 0.1) * n
        start = int(np.clip(round(centre - size / 2), 0, n - size))
        offset[axis], shape[axis] = start, size
    return offset, shape


def randomised_petct_case(tracer: str = "FDG", seed: Any = 0, *, spacing: Sequence[float] | None = None,
                          max_inplane: int = 224, max_slices: int = 200, n_lesions: int | None = None,
                          case_id: str | None = None) -> PetCtCase:
    """One domain-randomised PET/CT case (see the module docstring). ``spacing`` (mm) fixes the
    voxel size (default: drawn, 2.0-6.0 mm per axis); ``max_inplane`` / ``max_slices`` cap the
    grid (the field of view is cropped to them); ``n_lesions`` None draws 0..14."""
    from scipy.ndimage import gaussian_filter

    tracer = str(tracer).upper()
    if tracer not in TRACERS:
        raise InputError(f"unknown tracer {tracer!r}; choose FDG or PSMA")
    rng = make_rng(seed)
    layout = _draw_layout(rng, tracer)
    if spacing is None:
        xy = rng.uniform(2.0, 6.0)
        spacing = (xy, xy, rng.uniform(2.0, 6.0))
    spacing3 = np.asarray(spacing, dtype=float)
    width = rng.uniform(290.0, 500.0)                  # torso width in mm
    fov_x = width / (2 * 0.29)
    fov_y = fov_x * rng.uniform(0.95, 1.1)
    height = rng.uniform(820.0, 1120.0)               # pelvis floor to the top of the head, mm
    legs_mm = layout["legs"] * height
    virtual = np.round(np.array([fov_x, fov_y, height + legs_mm]) / spacing3).astype(int)
    virtual = np.maximum(virtual, 16)
    n_legs = int(round(legs_mm / spacing3[2]))
    offset, shape = _choose_window(rng, virtual, n_legs, max_inplane, max_slices)
    win = _Window(virtual, n_legs, offset, shape, spacing3)
    r2, fat_ratio = _body_r2(win, layout)
    fr2 = (fat_ratio ** 2).astype(np.float32)[None, None, :]
    inner, inside = r2 <= fr2, r2 <= 1.0
    ct = np.where(inner, np.float32(layout["soft_hu"]),
                  np.where(inside, np.float32(layout["fat_hu"]), np.float32(-1000.0))).astype(np.float32)
    pet = np.where(inner, np.float32(layout["soft_suv"]),
                   np.where(inside, np.float32(layout["fat_suv"]), np.float32(0.0))).astype(np.float32)
    shape3 = win.shape
    uptake = layout["uptake"]
    boxes: dict[str, Box] = {}

    def paint(name: str, sl, mask, hu: float | None, suv: float | None, *, organ: bool = True) -> None:
        if sl is None or not mask.any():
            return
        if hu is not None:
            ct[sl][mask] = hu
        if suv is not None:
            pet[sl][mask] = suv
        if organ:
            previous = boxes.get(name)
            box = Box(sl, mask)
            if previous is not None:  # a second structure of the same organ: merge on the whole grid
                full = previous.full(shape3) | box.full(shape3)
                box = Box((slice(None),) * 3, full)
            boxes[name] = box

    _paint_bones(win, layout, r2, ct, pet, boxes, rng)
    # lungs first, the other organs over them
    for name in sorted(ORGANS, key=lambda n: not n.startswith("lung")):
        spec = layout["organs"][name]
        centre, semi = win.index(spec["centre"]), win.voxels(spec["semi"])
        sl, q = _ellipsoid(shape3, centre, semi, spec["rotation"])
        if sl is None:
            continue
        inside_q = q <= 1.0
        if spec["lobe"] is not None:
            shift, scale = spec["lobe"]
            lsl, lq = _ellipsoid(shape3, centre + shift * semi, semi * scale, spec["rotation"])
            if lsl is not None:
                sl, inside_q = _union(shape3, sl, inside_q, lsl, lq <= 1.0)
        limit = 0.77 ** 2 if name.startswith("lung") else 0.95 if name in _HEAD else FAT_RATIO ** 2 * 0.95
        mask = inside_q & (r2[sl] <= limit)
        hu = layout["lung_hu"] if name.startswith("lung") else spec["hu"]
        suv = uptake.get(name, layout["soft_suv"])
        paint(name, sl, mask, hu, suv)
        if name == "heart" and layout["myocardium_only"] and sl is not None:
            # FDG heart: a hot wall around a blood pool
            pool = _ellipsoid(shape3, centre, semi * rng.uniform(0.55, 0.75), spec["rotation"])
            if pool[0] is not None:
                psl, pq = pool
                pmask = (pq <= 1.0) & (r2[psl] <= limit)
                pet[psl][pmask] = rng.uniform(1.2, 2.5)
    _paint_physiology(win, layout, tracer, r2, ct, pet, paint, rng)

    label = np.zeros(shape3, dtype=np.uint8)
    plans = _plan_lesions(win, layout, r2, boxes, rng, int(rng.integers(0, 15)) if n_lesions is None else n_lesions,
                          background=layout["soft_suv"])
    painted = []
    for plan in plans:
        sl, q = _ellipsoid(shape3, plan["centre_vox"], plan["semi_vox"], plan["rotation"], margin=1.4)
        if sl is None:
            continue
        q = _irregular(q, rng, plan["irregularity"])
        mask = (q <= 1.0) & (r2[sl] <= 1.0)
        if not mask.any():
            continue
        if plan["ct_visible"]:
            ct[sl][mask] = plan["ct_hu"]
        pet[sl][mask] = (plan["suv_max"] * (1.0 - plan["falloff"] * np.clip(q[mask], 0, 1))).astype(np.float32)
        label[sl][mask] = 1
        painted.append((plan, sl, mask))
    geometry = _geometry(win)
    lesions = describe_lesions(label, painted, geometry)

    fwhm = rng.uniform(4.0, 10.0)
    pet = gaussian_filter(pet, sigma=(fwhm / 2.3548) / spacing3, truncate=3.0, output=np.float32)
    voxel_ml = float(np.prod(spacing3))
    alpha = float(np.clip(0.02 * math.sqrt(12.5 / voxel_ml), 0.004, 0.04)) * _log_uniform(rng, 0.3, 3.0)
    noise = rng.standard_normal(size=shape3, dtype=np.float32)
    pet += noise * np.sqrt(np.maximum(pet, 0) * np.float32(alpha))
    np.maximum(pet, 0, out=pet)
    pet *= np.float32(rng.uniform(0.7, 1.4))
    ct += rng.standard_normal(size=shape3, dtype=np.float32) * np.float32(rng.uniform(5.0, 30.0))
    np.clip(ct, -1024, 3071, out=ct)
    if rng.random() < 0.5:  # misregistration: the CT moves, PET and label stay
        ct = _shift(ct, rng.uniform(-MAX_SHIFT_MM, MAX_SHIFT_MM, size=3) / spacing3, fill=-1000.0)
    if case_id is None:
        case_id = f"RANDOMISED_{tracer}_" + ("_".join(map(str, seed)) if isinstance(seed, (list, tuple)) else str(seed))
    return PetCtCase(ct=ct, pet=pet, label=label, geometry=geometry, case_id=case_id, tracer=tracer,
                     lesions=lesions, organ_boxes=boxes, uptake={k: float(v) for k, v in uptake.items()}, seed=seed)


_HEAD = {"brain", "parotid_right", "parotid_left", "submandibular_right", "submandibular_left"}


def _union(shape, sl_a, mask_a, sl_b, mask_b):
    lo = [min(a.start, b.start) for a, b in zip(sl_a, sl_b)]
    hi = [max(a.stop, b.stop) for a, b in zip(sl_a, sl_b)]
    out = np.zeros([h - l for l, h in zip(lo, hi)], dtype=bool)
    for sl, mask in ((sl_a, mask_a), (sl_b, mask_b)):
        inner = tuple(slice(s.start - l, s.stop - l) for s, l in zip(sl, lo))
        out[inner] |= mask
    return tuple(slice(l, h) for l, h in zip(lo, hi)), out


def _geometry(win: _Window) -> Geometry:
    """The window's geometry: the virtual grid centred in x/y, feet near -0.8 of its height."""
    s = win.spacing
    n = win.virtual
    origin = np.array([-(n[0] - 1) * s[0] / 2, -(n[1] - 1) * s[1] / 2, -0.8 * n[2] * s[2]]) + win.offset * s
    return Geometry(win.shape, tuple(float(x) for x in s), tuple(round(float(o), 3) for o in origin))


def _shift(volume: np.ndarray, shift_vox: np.ndarray, fill: float) -> np.ndarray:
    from scipy.ndimage import shift

    return shift(volume, shift_vox, order=1, mode="constant", cval=fill, output=np.float32)


def _tube(win: _Window, points_uvw: np.ndarray, radius_mm: float):
    """(slices, mask) of a tube through normalised points (spheres along the polyline)."""
    shape = win.shape
    pts = np.array([win.index(p) for p in points_uvw])
    semi = radius_mm / win.spacing
    lo = np.maximum(np.floor(pts.min(0) - semi).astype(int), 0)
    hi = np.minimum(np.ceil(pts.max(0) + semi).astype(int) + 1, np.asarray(shape))
    if np.any(hi <= lo):
        return None, None
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    mask = np.zeros(tuple(hi - lo), dtype=bool)
    step = max(0.5 * float(semi.min()), 0.5)
    for a, b in zip(pts[:-1], pts[1:]):
        n = max(int(np.linalg.norm(b - a) / step), 1)
        for t in np.linspace(0, 1, n + 1):
            c = a + t * (b - a) - lo
            s2, q = _ellipsoid(mask.shape, c, semi)
            if s2 is not None:
                mask[s2] |= q <= 1.0
    return sl, mask


def _paint_bones(win, layout, r2, ct, pet, boxes, rng) -> None:
    shape = win.shape
    bones, hu, marrow = layout["bones"], layout["bone_hu"], layout["marrow_suv"]
    w = win.w
    inner_limit = FAT_RATIO ** 2
    if bones["spine"]:
        period = rng.uniform(0.028, 0.036)
        on = (w >= 0.12) & (w <= 0.76) & ((w % period) < 0.8 * period)
        if on.any():
            c = win.index((0.0, 0.11, 0.0))
            s = win.voxels((0.03, 0.028, 1.0))
            q2 = ((np.arange(shape[0]) - c[0]) / s[0])[:, None] ** 2 + ((np.arange(shape[1]) - c[1]) / s[1])[None, :] ** 2
            spine = (q2 <= 1.0)[:, :, None] & on[None, None, :]
            ct[spine] = hu * 0.6
            pet[spine] = marrow
            boxes["spine"] = Box((slice(None),) * 3, spine)
    if bones["ribs"]:
        period = rng.uniform(0.025, 0.035)
        on = (w >= 0.44) & (w <= 0.66) & ((w % period) < 0.35 * period)
        rib = (r2 >= 0.78 ** 2) & (r2 <= 0.84 ** 2) & on[None, None, :]
        ct[rib] = hu * 0.8
    if bones["pelvis"]:
        for u in (-0.13, 0.13):
            sl, q = _ellipsoid(shape, win.index((u, 0.05, 0.2)), win.voxels((0.07, 0.05, 0.07)))
            if sl is not None:
                shell = (q <= 1.0) & (q > 0.72 ** 2) & (r2[sl] <= inner_limit)
                ct[sl][shell] = hu * 0.8
                pet[sl][shell] = marrow
    if bones["femurs"] and layout["legs"] > 0:
        legs = w < 0
        if legs.any():
            for side in (-1, 1):
                c = win.index((side * 0.105, 0.0, 0.0))
                s = win.voxels((0.02, 0.02, 1.0))
                q2 = (((np.arange(shape[0]) - c[0]) / s[0])[:, None] ** 2
                      + ((np.arange(shape[1]) - c[1]) / s[1])[None, :] ** 2)
                femur = (q2 <= 1.0)[:, :, None] & legs[None, None, :]
                ct[femur] = hu
    if bones["skull"]:
        head = layout["head"]
        sl, q = _ellipsoid(shape, win.index((0.0, _HEAD_V, _HEAD_CENTRE_W)),
                           win.voxels((_HEAD_A * head, _HEAD_B * head, _HEAD_HALF_W * head)) * 0.96)
        if sl is not None:
            skull = (q <= 1.0) & (q * (0.96 / 0.86) ** 2 > 1.0)
            ct[sl][skull] = hu


def _paint_physiology(win, layout, tracer, r2, ct, pet, paint, rng) -> None:
    """Hot structures that are not lesions: ureters, bowel loops, brown fat, muscle, lacrimal
    glands, ganglia, and random hot spots of normal CT."""
    up = layout["uptake"]
    organs = layout["organs"]
    soft = layout["soft_hu"]
    bladder = organs["bladder"]["centre"]
    for side in ("kidney_right", "kidney_left"):
        if rng.random() < 0.6:
            k = organs[side]["centre"] - np.array([0, 0, organs[side]["semi"][2] * 0.8])
            mid = (k + bladder) / 2 + np.array([rng.uniform(-0.02, 0.02), rng.uniform(-0.03, 0.03), 0])
            sl, mask = _tube(win, np.array([k, mid, bladder + np.array([0, 0, 0.03])]), rng.uniform(2.0, 4.5))
            if sl is not None:
                paint("ureter", sl, mask & (r2[sl] <= FAT_RATIO ** 2), soft, up["ureter"] * rng.uniform(0.3, 1.0),
                      organ=False)
    if rng.random() < 0.85:
        for _ in range(int(rng.integers(1, 5))):
            p = np.array([rng.uniform(-0.15, 0.15), rng.uniform(-0.1, 0.06), rng.uniform(0.13, 0.36)])
            points = [p]
            for _ in range(int(rng.integers(3, 8))):
                p = p + _unit(rng) * np.array([0.04, 0.03, 0.03])
                p = np.clip(p, [-0.18, -0.12, 0.1], [0.18, 0.08, 0.38])
                points.append(p)
            sl, mask = _tube(win, np.array(points), rng.uniform(5.0, 14.0))
            if sl is not None:
                paint("bowel", sl, mask & (r2[sl] <= FAT_RATIO ** 2 * 0.9), soft + rng.uniform(-20, 20),
                      up["bowel"] * rng.uniform(0.6, 1.4))
    if tracer == "FDG" and rng.random() < 0.3:
        for _ in range(int(rng.integers(5, 30))):
            side = rng.choice([-1, 1])
            uvw = (side * rng.uniform(0.04, 0.2), rng.uniform(-0.05, 0.1), rng.uniform(0.6, 0.74))
            sl, q = _ellipsoid(win.shape, win.index(uvw), rng.uniform(3.0, 8.0, size=3) / win.spacing)
            if sl is not None:
                paint("brown_fat", sl, (q <= 1.0) & (r2[sl] <= 1.0), layout["fat_hu"],
                      up["brown_fat"] * rng.uniform(0.5, 1.2), organ=False)
    if rng.random() < 0.3:  # muscle uptake in a band of the limbs or trunk
        band = (win.w >= rng.uniform(-0.4, 0.5)) & (win.w <= rng.uniform(0.5, 0.8))
        muscle = (r2 <= FAT_RATIO ** 2) & (r2 >= 0.5) & band[None, None, :] & (pet == np.float32(layout["soft_suv"]))
        pet[muscle] = layout["soft_suv"] * rng.uniform(1.3, 3.0)
    head = layout["head"]
    if rng.random() < 0.8:
        for side in (-1, 1):
            uvw = (side * 0.035 * head, -0.075 * head, _HEAD_CENTRE_W + 0.03)
            sl, q = _ellipsoid(win.shape, win.index(uvw), rng.uniform(4.0, 8.0, size=3) / win.spacing)
            if sl is not None:
                paint("lacrimal", sl, (q <= 1.0) & (r2[sl] <= 1.0), soft, up["lacrimal"], organ=False)
    if rng.random() < 0.6:
        for _ in range(int(rng.integers(2, 9))):
            side = rng.choice([-1, 1])
            uvw = (side * rng.uniform(0.025, 0.05), rng.uniform(0.07, 0.1), rng.uniform(0.55, 0.8))
            sl, q = _ellipsoid(win.shape, win.index(uvw), rng.uniform(2.5, 6.0, size=3) / win.spacing)
            if sl is not None:
                paint("ganglion", sl, (q <= 1.0) & (r2[sl] <= FAT_RATIO ** 2), soft,
                      up["ganglion"] * rng.uniform(0.7, 1.3), organ=False)
    for _ in range(int(rng.integers(0, 7))):  # random hot spots of normal CT
        for _attempt in range(10):
            centre = rng.uniform(0.05, 0.95, size=3) * (np.asarray(win.shape) - 1)
            if r2[tuple(np.round(centre).astype(int))] > 0.7:
                continue
            sl, q = _ellipsoid(win.shape, centre, rng.uniform(3.0, 18.0, size=3) / win.spacing, _rotation(rng, 90))
            if sl is not None:
                mask = (q <= 1.0) & (r2[sl] <= 1.0)
                pet[sl][mask] = np.maximum(pet[sl][mask], rng.uniform(1.5, 10.0) * (1 - 0.3 * np.clip(q[mask], 0, 1)))
            break


def _plan_lesions(win, layout, r2, boxes, rng, n_lesions: int, *, background: float) -> list[dict[str, Any]]:
    """Lesion centres, shapes and uptake (see the module docstring)."""
    shape = np.asarray(win.shape)
    spacing = win.spacing
    hot = [name for name in ("bladder", "kidney_right", "kidney_left", "heart", "brain", "liver", "spleen",
                             "parotid_right", "parotid_left") if name in boxes]
    inside = np.argwhere(r2[::3, ::3, ::3] <= FAT_RATIO ** 2 * 0.95) * 3
    plans: list[dict[str, Any]] = []
    for index in range(n_lesions):
        kind = str(rng.choice(["tissue", "organ", "near_hot", "touching"], p=[0.45, 0.2, 0.2, 0.15]))
        for _attempt in range(30):
            radius = _log_uniform(rng, *LESION_RADIUS_MM)
            semi = np.maximum(radius * rng.uniform(0.7, 1.3, size=3) / spacing, 0.75)
            if kind == "touching" and plans:
                other = plans[int(rng.integers(0, len(plans)))]
                d = _unit(rng)
                centre = other["centre_vox"] + d * 0.8 * (float(np.abs(d * other["semi_vox"]).max())
                                                          + float(np.abs(d * semi).max()))
            elif kind == "near_hot" and hot:
                organ = boxes[str(rng.choice(hot))]
                idx = np.argwhere(organ.mask)
                if not len(idx):
                    continue
                surface = idx[int(rng.integers(0, len(idx)))] + np.array([s.start or 0 for s in organ.slices])
                centroid = idx.mean(0) + np.array([s.start or 0 for s in organ.slices])
                d = surface - centroid
                d = d / max(np.linalg.norm(d), 1e-6)
                centre = surface + d * float(np.abs(semi).mean()) * rng.uniform(0.6, 1.6)
            elif kind == "organ":
                organs = [n for n in ("liver", "lung_right", "lung_left", "spleen", "spine") if n in boxes]
                if not organs:
                    continue
                box = boxes[str(rng.choice(organs))]
                idx = np.argwhere(box.mask)
                if not len(idx):
                    continue
                centre = idx[int(rng.integers(0, len(idx)))] + np.array([s.start or 0 for s in box.slices])
            else:
                if not len(inside):
                    break
                centre = inside[int(rng.integers(0, len(inside)))] + rng.uniform(0, 3, size=3)
            centre = np.asarray(centre, dtype=float)
            ic = np.round(centre).astype(int)
            if np.any(ic < 1) or np.any(ic >= shape - 1) or r2[tuple(ic)] > 0.8:
                continue
            break
        else:
            continue
        if np.any(np.round(centre).astype(int) < 1) or np.any(np.round(centre).astype(int) >= shape - 1):
            continue
        # contrast: a share of lesions barely above their surroundings
        if rng.random() < 0.25:
            suv = background * rng.uniform(1.6, 3.0)
        else:
            suv = _log_uniform(rng, 2.5, LESION_SUV_MAX)
        ct_visible = rng.random() >= 0.3   # else the lesion keeps the CT of its surroundings
        ct_hu = float(rng.uniform(-10, 130)) if ct_visible else float(layout["soft_hu"])
        plans.append({"index": len(plans), "centre_vox": centre, "semi_vox": semi, "radius_mm": radius,
                      "radii_mm": semi * spacing, "site": kind, "near_organ": None, "placed_touching": None,
                      "suv_max": float(suv), "ct_hu": ct_hu, "ct_visible": ct_visible, "rotation": _rotation(rng, 90.0),
                      "irregularity": rng.uniform(0.0, 0.8) if radius > 6 else 0.0,
                      "falloff": rng.uniform(0.0, 0.5)})
    return plans
