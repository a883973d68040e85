"""Analytic whole-body anatomy on a voxel grid: body outline, organs, bones.

Conventions: arrays are indexed ``[i, j, k]`` (NIfTI order, shape ``(nx, ny, nz)``); the
direction is identity, so in ITK's LPS space ``i`` runs to the patient's left, ``j`` to
posterior and ``k`` to superior (feet at ``k = 0``, head at ``k = nz - 1``). CT is in HU,
PET in SUV, lengths in mm.

The anatomy is laid out in *normalised* coordinates: ``u, v`` in ``[-0.5, 0.5]`` across the
in-plane field of view and ``w`` in ``[0, 1]`` from the bottom to the top slice, so every preset
shows the same body scaled to its field of view. Shapes are analytic (ellipses per slice,
ellipsoids on their bounding boxes) so a full 400 x 400 x 326 case takes a few seconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Body outline as per-slice ellipse semi-axes (fractions of the in-plane field of view),
# knots at w: pelvis -> waist -> chest -> shoulders -> neck.
_TORSO_KNOTS = np.array([
    # w,    a,     b,    centre v
    [0.00, 0.25, 0.170, 0.000],
    [0.10, 0.27, 0.180, 0.000],
    [0.22, 0.27, 0.180, 0.000],
    [0.32, 0.245, 0.170, 0.000],
    [0.45, 0.27, 0.185, 0.000],
    [0.60, 0.285, 0.190, 0.000],
    [0.66, 0.29, 0.180, 0.000],
    [0.69, 0.20, 0.120, 0.010],
    [0.71, 0.065, 0.065, 0.020],
    [0.80, 0.060, 0.065, 0.020],
])
_TORSO_TOP = 0.80
_HEAD_CENTRE_W, _HEAD_HALF_W = 0.87, 0.095
_HEAD_A, _HEAD_B, _HEAD_V = 0.085, 0.105, 0.005
# Subcutaneous fat: outer shell of the torso between this fraction of the outline and the skin.
FAT_RATIO = 0.85
# Ribs sit just inside the fat; lungs stay inside the ribs.
_RIB_LO, _RIB_HI = 0.78, 0.84
_LUNG_MAX_R = 0.77

# Organs: name -> (centre (u, v, w), semi-axes (su, sv, sw), CT HU). Patient right is -u.
ORGANS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float], float]] = {
    "lung_right": ((-0.12, -0.005, 0.56), (0.095, 0.12, 0.11), -850.0),
    "lung_left": ((0.12, -0.005, 0.56), (0.09, 0.12, 0.11), -850.0),
    "heart": ((0.04, -0.05, 0.50), (0.075, 0.065, 0.05), 45.0),
    "liver": ((-0.10, -0.01, 0.42), (0.12, 0.11, 0.06), 60.0),
    "spleen": ((0.15, 0.06, 0.42), (0.04, 0.05, 0.04), 50.0),
    "kidney_right": ((-0.09, 0.09, 0.35), (0.032, 0.036, 0.045), 35.0),
    "kidney_left": ((0.09, 0.09, 0.35), (0.032, 0.036, 0.045), 35.0),
    "bladder": ((0.0, -0.05, 0.12), (0.05, 0.05, 0.04), 10.0),
    "brain": ((0.0, 0.005, 0.875), (0.070, 0.090, 0.070), 35.0),
    "parotid_right": ((-0.072, 0.03, 0.80), (0.02, 0.03, 0.025), 30.0),
    "parotid_left": ((0.072, 0.03, 0.80), (0.02, 0.03, 0.025), 30.0),
    "submandibular_right": ((-0.042, -0.045, 0.775), (0.016, 0.016, 0.016), 35.0),
    "submandibular_left": ((0.042, -0.045, 0.775), (0.016, 0.016, 0.016), 35.0),
}
_HEAD_ORGANS = {"brain", "parotid_right", "parotid_left", "submandibular_right", "submandibular_left"}

# Physiological uptake (SUV range) per tracer; organs not listed keep the soft-tissue background.
UPTAKE: dict[str, dict[str, tuple[float, float]]] = {
    "FDG": {"brain": (7.0, 10.0), "heart": (3.0, 8.0), "kidney_right": (3.0, 5.0),
            "kidney_left": (3.0, 5.0), "bladder": (12.0, 25.0), "liver": (2.0, 2.8),
            "spleen": (1.8, 2.4), "parotid_right": (1.5, 2.0), "parotid_left": (1.5, 2.0),
            "submandibular_right": (1.5, 2.0), "submandibular_left": (1.5, 2.0),
            "lung_right": (0.5, 0.6), "lung_left": (0.5, 0.6)},
    "PSMA": {"brain": (0.2, 0.4), "heart": (1.2, 1.8), "kidney_right": (15.0, 30.0),
             "kidney_left": (15.0, 30.0), "bladder": (10.0, 30.0), "liver": (4.0, 7.0),
             "spleen": (4.0, 8.0), "parotid_right": (10.0, 20.0), "parotid_left": (10.0, 20.0),
             "submandibular_right": (10.0, 18.0), "submandibular_left": (10.0, 18.0),
             "lung_right": (0.5, 0.6), "lung_left": (0.5, 0.6)},
}
# Organs whose uptake is high enough that a lesion next to them is hard to separate.
HOT_ORGANS = {"FDG": ("bladder", "kidney_right", "kidney_left", "heart"),
              "PSMA": ("kidney_right", "kidney_left", "bladder", "liver", "spleen",
                       "parotid_right", "parotid_left")}

SOFT_TISSUE_HU, FAT_HU, AIR_HU = 40.0, -100.0, -1000.0
SOFT_TISSUE_SUV, FAT_SUV, MARROW_SUV = 1.0, 0.6, 1.3
# the organ boxes build_anatomy paints as bone (CT 450-900 HU; spine and pelvis with marrow uptake)
BONES = ("ribs", "skull", "spine", "pelvis_right", "pelvis_left")


@dataclass
class Box:
    """A boolean mask on a bounding box ``slices`` of the full grid."""

    slices: tuple[slice, slice, slice]
    mask: np.ndarray

    def full(self, shape: tuple[int, int, int]) -> np.ndarray:
        out = np.zeros(shape, dtype=bool)
        out[self.slices] = self.mask
        return out


@dataclass
class Anatomy:
    """Result of :func:`build_anatomy`: clean CT (HU), optional clean PET (SUV), organ boxes."""

    ct: np.ndarray
    pet: np.ndarray | None
    r2: np.ndarray  # normalised squared radius of the body outline per voxel (<= 1: inside)
    organs: dict[str, Box] = field(default_factory=dict)
    uptake: dict[str, float] = field(default_factory=dict)


def norm_to_index(shape, uvw) -> np.ndarray:
    """Normalised (u, v, w) -> continuous voxel index [i, j, k]."""
    n = np.asarray(shape, dtype=float)
    u, v, w = uvw
    return np.array([(u + 0.5) * n[0] - 0.5, (v + 0.5) * n[1] - 0.5, w * n[2] - 0.5])


def norm_to_voxels(shape, suvw) -> np.ndarray:
    """Normalised semi-axes -> semi-axes in voxels."""
    return np.asarray(suvw, dtype=float) * np.asarray(shape, dtype=float)


def ellipsoid_box(shape, centre, semi) -> Box | None:
    """Axis-aligned ellipsoid (centre and semi-axes in voxels) on its bounding box."""
    centre = np.asarray(centre, dtype=float)
    semi = np.maximum(np.asarray(semi, dtype=float), 1e-6)
    lo = np.maximum(np.floor(centre - semi).astype(int), 0)
    hi = np.minimum(np.ceil(centre + semi).astype(int) + 1, np.asarray(shape))
    if np.any(hi <= lo):
        return None
    axes = [((np.arange(lo[d], hi[d], dtype=np.float32) - centre[d]) / semi[d]) ** 2 for d in range(3)]
    q = axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :]
    slices = tuple(slice(int(lo[d]), int(hi[d])) for d in range(3))
    return Box(slices, q <= 1.0)


def ellipsoid_q(shape, centre, semi):
    """Like :func:`ellipsoid_box` but returns ``(slices, q)`` with the normalised squared radius."""
    centre = np.asarray(centre, dtype=float)
    semi = np.maximum(np.asarray(semi, dtype=float), 1e-6)
    lo = np.maximum(np.floor(centre - semi).astype(int), 0)
    hi = np.minimum(np.ceil(centre + semi).astype(int) + 1, np.asarray(shape))
    if np.any(hi <= lo):
        return None, None
    axes = [((np.arange(lo[d], hi[d], dtype=np.float32) - centre[d]) / semi[d]) ** 2 for d in range(3)]
    q = axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :]
    return tuple(slice(int(lo[d]), int(hi[d])) for d in range(3)), q


def body_profile(nz: int):
    """Per-slice outline semi-axes ``a, b`` and centre ``v`` (normalised), and the fat ratio."""
    w = (np.arange(nz) + 0.5) / nz
    a = np.interp(w, _TORSO_KNOTS[:, 0], _TORSO_KNOTS[:, 1])
    b = np.interp(w, _TORSO_KNOTS[:, 0], _TORSO_KNOTS[:, 2])
    cv = np.interp(w, _TORSO_KNOTS[:, 0], _TORSO_KNOTS[:, 3])
    torso = w <= _TORSO_TOP
    a, b = np.where(torso, a, 0.0), np.where(torso, b, 0.0)
    head_t = 1.0 - ((w - _HEAD_CENTRE_W) / _HEAD_HALF_W) ** 2
    head = head_t > 0
    head_a = _HEAD_A * np.sqrt(np.clip(head_t, 0, None))
    head_b = _HEAD_B * np.sqrt(np.clip(head_t, 0, None))
    use_head = head & (head_a > a)
    a = np.where(use_head, head_a, a)
    b = np.where(use_head, head_b, b)
    cv = np.where(use_head, _HEAD_V, cv)
    # No fat layer in the neck and head (the skull shell handles the head).
    fat_ratio = np.where(w < 0.69, FAT_RATIO, 0.97)
    return a, b, cv, fat_ratio


def body_r2(shape) -> np.ndarray:
    """Normalised squared radius of the body outline, float32 ``(nx, ny, nz)``; > 1 is air."""
    nx, ny, nz = shape
    a, b, cv, _ = body_profile(nz)
    a = np.where(a > 0, a, 1e-6).astype(np.float32)
    b = np.where(b > 0, b, 1e-6).astype(np.float32)
    u = ((np.arange(nx, dtype=np.float32) + 0.5) / nx - 0.5)
    v = ((np.arange(ny, dtype=np.float32) + 0.5) / ny - 0.5)
    u2 = (u[:, None, None] / a[None, None, :]) ** 2                     # (nx, 1, nz)
    v2 = ((v[:, None] - cv[None, :].astype(np.float32)) / b[None, :]) ** 2  # (ny, nz)
    return np.add(u2, v2[None, :, :], dtype=np.float32)


def _paint(target: np.ndarray, box: Box, value) -> None:
    view = target[box.slices]
    view[box.mask] = value


def build_anatomy(shape, spacing, rng: np.random.Generator, tracer: str | None = "FDG",
                  uptake_scale: dict[str, float] | None = None) -> Anatomy:
    """Clean (noise-free, unblurred) CT and, when ``tracer`` is given, PET of a body.

    ``rng`` jitters organ uptake only; the geometry of the body is the same for every seed so
    longitudinal pairs share anatomy. ``uptake_scale`` multiplies the drawn SUV of the organs it
    names (training data with physiological uptake outside the tracer's usual range); it draws
    nothing from ``rng``, so the rest of the phantom is unchanged.
    """
    shape = tuple(int(s) for s in shape)
    nx, ny, nz = shape
    spacing = np.asarray(spacing, dtype=float)
    r2 = body_r2(shape)
    _, _, _, fat_ratio = body_profile(nz)
    fr2 = (fat_ratio ** 2).astype(np.float32)[None, None, :]
    inner = r2 <= fr2
    inside = r2 <= 1.0
    ct = np.where(inner, np.float32(SOFT_TISSUE_HU),
                  np.where(inside, np.float32(FAT_HU), np.float32(AIR_HU))).astype(np.float32, copy=False)
    pet = None
    if tracer is not None:
        pet = np.where(inner, np.float32(SOFT_TISSUE_SUV),
                       np.where(inside, np.float32(FAT_SUV), np.float32(0.0))).astype(np.float32, copy=False)
    del inner, inside
    organs: dict[str, Box] = {}
    uptake: dict[str, float] = {}
    w_of_k = (np.arange(nz) + 0.5) / nz
    z_mm = np.arange(nz) * spacing[2]
    fov_z = nz * spacing[2]

    # Ribs: shells under the fat in the thorax, one rib every ~3 % of the z field of view.
    rib_period = 0.03 * fov_z
    rib_slices = (w_of_k >= 0.44) & (w_of_k <= 0.66) & ((z_mm % rib_period) < 0.35 * rib_period)
    ks = np.nonzero(rib_slices)[0]
    if ks.size:
        k0, k1 = ks[0], ks[-1] + 1
        slab = r2[:, :, k0:k1]
        rib = (slab >= _RIB_LO ** 2) & (slab <= _RIB_HI ** 2) & rib_slices[None, None, k0:k1]
        ct[:, :, k0:k1][rib] = 700.0
        organs["ribs"] = Box((slice(0, nx), slice(0, ny), slice(int(k0), int(k1))), rib)

    for name, (centre, semi, hu) in ORGANS.items():
        box = ellipsoid_box(shape, norm_to_index(shape, centre), norm_to_voxels(shape, semi))
        if box is None:
            continue
        limit = _LUNG_MAX_R ** 2 if name.startswith("lung") else (0.95 if name in _HEAD_ORGANS else FAT_RATIO ** 2 * 0.95)
        box.mask &= r2[box.slices] <= limit
        _paint(ct, box, hu)
        organs[name] = box
        if pet is not None:
            lo, hi = UPTAKE[tracer].get(name, (SOFT_TISSUE_SUV, SOFT_TISSUE_SUV))
            uptake[name] = float(rng.uniform(lo, hi)) * (uptake_scale or {}).get(name, 1.0)
            _paint(pet, box, uptake[name])

    # Skull: ellipsoid shell around the brain.
    head_c = norm_to_index(shape, (0.0, _HEAD_V, _HEAD_CENTRE_W))
    head_s = norm_to_voxels(shape, (_HEAD_A, _HEAD_B, _HEAD_HALF_W))
    sl, q = ellipsoid_q(shape, head_c, head_s * 0.96)
    if sl is not None:
        inner_q = q * (0.96 / 0.86) ** 2
        skull = (q <= 1.0) & (inner_q > 1.0)
        ct[sl][skull] = 900.0
        organs["skull"] = Box(sl, skull)

    # Vertebral column: vertebral bodies (cancellous core, cortical rim) separated by discs.
    period = 0.032 * fov_z
    vert_slices = (w_of_k >= 0.12) & (w_of_k <= 0.76) & ((z_mm % period) < 0.8 * period)
    ks = np.nonzero(vert_slices)[0]
    if ks.size:
        k0, k1 = int(ks[0]), int(ks[-1] + 1)
        c = norm_to_index(shape, (0.0, 0.11, 0.0))
        s = norm_to_voxels(shape, (0.03, 0.028, 1.0))
        i = (np.arange(nx, dtype=np.float32) - c[0]) / s[0]
        j = (np.arange(ny, dtype=np.float32) - c[1]) / s[1]
        q2 = i[:, None] ** 2 + j[None, :] ** 2
        ii = np.nonzero(np.any(q2 <= 1, axis=1))[0]
        jj = np.nonzero(np.any(q2 <= 1, axis=0))[0]
        sl = (slice(int(ii[0]), int(ii[-1] + 1)), slice(int(jj[0]), int(jj[-1] + 1)), slice(k0, k1))
        q2b = q2[sl[0], sl[1]]
        core = (q2b <= 0.75 ** 2)[:, :, None] & vert_slices[None, None, k0:k1]
        rim = ((q2b <= 1.0) & (q2b > 0.75 ** 2))[:, :, None] & vert_slices[None, None, k0:k1]
        ct[sl][core] = 450.0
        ct[sl][rim] = 850.0
        organs["spine"] = Box(sl, core | rim)
        if pet is not None:
            pet[sl][core | rim] = MARROW_SUV
    # Iliac wings: ellipsoid shells either side of the bladder.
    for name, u in (("pelvis_right", -0.13), ("pelvis_left", 0.13)):
        sl, q = ellipsoid_q(shape, norm_to_index(shape, (u, 0.05, 0.2)), norm_to_voxels(shape, (0.07, 0.05, 0.07)))
        if sl is None:
            continue
        shell = (q <= 1.0) & (q > 0.72 ** 2) & (r2[sl] <= FAT_RATIO ** 2)
        ct[sl][shell] = 700.0
        organs[name] = Box(sl, shell)
        if pet is not None:
            pet[sl][shell] = MARROW_SUV
    return Anatomy(ct=ct, pet=pet, r2=r2, organs=organs, uptake=uptake)
