"""Model-free segmentation of follow-up lesions (Task 2), guided by the carried baseline.

Conventions: arrays ``[i, j, k]`` (NIfTI order); CT in HU; spacing in mm per axis; points are
voxel indices ``[i, j, k]`` of the follow-up grid (rounded here).

Method. Every lesion is segmented inside a box, never on the whole scan:

1. An intensity model of the baseline lesion: mean and spread of the baseline CT inside it
   and the median of a ring around it (:func:`baseline_lesion_models`).
2. The follow-up CT in the box is smoothed (Gaussian, ~2 mm) to tame noise; a voxel is a
   lesion candidate when it is closer to the lesion intensity than to the surrounding one
   (a band of half-width |lesion - surround| / 2 around the lesion intensity, so tissue on
   either side of it is excluded).
3. Region growing = the 26-connected candidate component at the seed, holes filled, limited
   to a ball that allows the lesion to grow (1.7x the carried lesion's radius) or, for new
   lesions, 25 mm.
4. When the contrast is too low to separate lesion and surroundings (relative to the smoothed
   noise), or the grown region is implausible (far too small or large), the carried baseline
   shape is used instead (step 2: centred on the click).

Step 1 (no follow-up clicks): :func:`segment_step1` looks for each carried lesion inside a box
around its carried position and keeps the candidate component that overlaps the carried shape;
no overlap with a well-contrasted lesion means the lesion vanished.
Step 2: :func:`segment_at_click` segments the lesion at each click; a click whose lesion id
matches a baseline lesion uses that lesion's model and shape, a new lesion gets a model from
the intensities around the click (radial profile).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import ndimage as ndi

SMOOTHING_MM = 2.0
NEW_LESION_MAX_RADIUS_MM = 25.0
MIN_CONTRAST_SIGMAS = 3.0  # half-contrast must exceed this many smoothed-noise sds


@dataclass(frozen=True)
class LesionModel:
    """Intensity and size of one baseline lesion (HU, mm)."""

    mean_hu: float
    sd_hu: float
    surround_hu: float
    volume_mm3: float

    @property
    def contrast(self) -> float:
        return self.mean_hu - self.surround_hu

    @property
    def radius_mm(self) -> float:
        return float((3.0 * self.volume_mm3 / (4.0 * np.pi)) ** (1.0 / 3.0))


def _ball(radius_vox: Sequence[float]) -> np.ndarray:
    r = [max(0, int(np.floor(x))) for x in radius_vox]
    grids = np.ogrid[tuple(slice(-a, a + 1) for a in r)]
    q = sum((g / max(rv, 1e-6)) ** 2 for g, rv in zip(grids, radius_vox))
    return q <= 1.0


def _box(center: Sequence[float], half_mm: float | Sequence[float], spacing: Sequence[float],
         shape: Sequence[int]) -> tuple[slice, ...]:
    half = np.broadcast_to(np.asarray(half_mm, dtype=float), (3,))
    out = []
    for c, h, s, n in zip(center, half, spacing, shape):
        r = int(np.ceil(h / s)) + 1
        lo, hi = int(np.floor(c)) - r, int(np.ceil(c)) + r + 1
        out.append(slice(max(0, lo), min(int(n), hi)))
    return tuple(out)


def smoothing_sigmas(spacing: Sequence[float]) -> np.ndarray:
    """Gaussian sigma per axis in voxels: ~``SMOOTHING_MM``, kept within [0.5, 2] voxels."""
    return np.clip(SMOOTHING_MM / np.asarray(spacing, dtype=float), 0.5, 2.0)


def _noise_gain(sigmas: Sequence[float]) -> float:
    """Factor by which the Gaussian filter shrinks the sd of white noise."""
    size = [2 * int(np.ceil(3 * s)) + 1 for s in sigmas]
    delta = np.zeros(size)
    delta[tuple(n // 2 for n in size)] = 1.0
    return float(np.sqrt(np.sum(ndi.gaussian_filter(delta, sigmas) ** 2)))


def baseline_lesion_models(baseline_ct: np.ndarray, instances: np.ndarray,
                           spacing: Sequence[float]) -> dict[int, LesionModel]:
    """Intensity model per instance label of the baseline lesion map.

    The surrounding intensity is the median of a ring 1..max(2 voxels, 5 mm) outside the
    lesion (other lesions excluded)."""
    spacing = np.asarray(spacing, dtype=float)
    models: dict[int, LesionModel] = {}
    objects = ndi.find_objects(instances)
    ring_mm = max(5.0, 2.0 * float(spacing.max()))
    for label, sl in enumerate(objects, start=1):
        if sl is None:
            continue
        center = [(s.start + s.stop - 1) / 2 for s in sl]
        extent = max((s.stop - s.start) * sp for s, sp in zip(sl, spacing)) / 2
        box = _box(center, extent + ring_mm + spacing.max(), spacing, instances.shape)
        inst = instances[box]
        ct = baseline_ct[box].astype(np.float32)
        lesion = inst == label
        values = ct[lesion]
        ring = ndi.binary_dilation(lesion, _ball(ring_mm / spacing)) & ~lesion & (inst == 0)
        surround = float(np.median(ct[ring])) if ring.any() else float(np.median(ct[~lesion])) \
            if (~lesion).any() else float(values.mean())
        models[label] = LesionModel(float(values.mean()), float(values.std()) if values.size > 1 else 10.0,
                                    surround, float(lesion.sum() * np.prod(spacing)))
    return models


def _grow(smoothed: np.ndarray, seed: Sequence[int], lesion_hu: float, surround_hu: float,
          noise_sd: float, limit: np.ndarray | None) -> np.ndarray | None:
    """Candidate band around ``lesion_hu`` (closer to it than to ``surround_hu``), component
    at ``seed`` (or the nearest candidate within 2 voxels), holes filled. None when the
    contrast is too low to tell lesion from surroundings."""
    half = abs(lesion_hu - surround_hu) / 2.0
    if half < MIN_CONTRAST_SIGMAS * noise_sd:
        return None
    band = np.abs(smoothed - lesion_hu) < half
    if limit is not None:
        band &= limit
    seed = tuple(int(s) for s in seed)
    if not band[seed]:
        near = _box(seed, 2.0, (1.0, 1.0, 1.0), band.shape)
        idx = np.argwhere(band[near])
        if idx.size == 0:
            return np.zeros_like(band)
        offs = np.array([s.start for s in near])
        d = np.sum((idx + offs - np.asarray(seed)) ** 2, axis=1)
        seed = tuple(int(v) for v in idx[np.argmin(d)] + offs)
    labels, _ = ndi.label(band, structure=np.ones((3, 3, 3), bool))
    region = labels == labels[seed]
    return ndi.binary_fill_holes(region)


def _smoothed_crop(ct: np.ndarray, box: tuple[slice, ...], spacing: Sequence[float]
                   ) -> tuple[np.ndarray, float]:
    sigmas = smoothing_sigmas(spacing)
    return ndi.gaussian_filter(ct[box].astype(np.float32), sigmas, mode="nearest"), _noise_gain(sigmas)


def _ball_mask(shape: Sequence[int], center: Sequence[float], radius_mm: float,
               spacing: Sequence[float]) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    q = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, center, spacing))
    return q <= radius_mm ** 2


def _shift_mask(mask: np.ndarray, offset: Sequence[int]) -> np.ndarray:
    """Translate a boolean mask by an integer voxel offset (no wrap-around)."""
    out = np.zeros_like(mask)
    src, dst = [], []
    for o, n in zip(offset, mask.shape):
        o = int(o)
        src.append(slice(max(0, -o), min(n, n - o)))
        dst.append(slice(max(0, o), min(n, n + o)))
    out[tuple(dst)] = mask[tuple(src)]
    return out


def segment_at_click(followup_ct: np.ndarray, spacing: Sequence[float], point: Sequence[float],
                     model: LesionModel | None = None, prior: np.ndarray | None = None,
                     noise_sd: float | None = None) -> np.ndarray:
    """Segment the follow-up lesion at ``point`` (voxel index ``[i, j, k]``, rounded and
    clipped). ``model`` / ``prior`` (boolean array on the follow-up grid: the carried baseline
    lesion) come from the baseline lesion with the click's id, or are None for a new lesion.
    Returns a boolean mask on the follow-up grid."""
    spacing = np.asarray(spacing, dtype=float)
    shape = followup_ct.shape
    seed = np.clip(np.round(np.asarray(point, dtype=float)).astype(int), 0, np.asarray(shape) - 1)
    out = np.zeros(shape, dtype=bool)
    has_prior = prior is not None and prior.any() and model is not None
    radius_cap = (1.7 * model.radius_mm + 1.5 * spacing.max()) if has_prior else NEW_LESION_MAX_RADIUS_MM
    box = _box(seed, radius_cap + 2 * spacing.max(), spacing, shape)
    offs = np.array([s.start for s in box])
    local_seed = seed - offs
    smoothed, gain = _smoothed_crop(followup_ct, box, spacing)
    limit = _ball_mask(smoothed.shape, local_seed, radius_cap, spacing)

    shifted_prior = None
    if has_prior:
        # The carried shape, moved so that its centre of gravity sits on the click.
        com = np.array(ndi.center_of_mass(prior))
        moved = _shift_mask(prior, np.round(seed - com).astype(int))
        shifted_prior = moved[box]
        sd = noise_sd if noise_sd is not None else model.sd_hu
        # The lesion intensity at follow-up is measured at the click (it may have changed);
        # the surround comes from the baseline ring.
        core = _ball_mask(smoothed.shape, local_seed, max(0.4 * model.radius_mm, spacing.min()), spacing)
        lesion_hu = float(np.median(smoothed[core])) if core.any() else model.mean_hu
        if abs(lesion_hu - model.mean_hu) > abs(model.contrast) / 2:
            lesion_hu = model.mean_hu  # the click sits off the lesion core: trust the baseline
        grown = _grow(smoothed, local_seed, lesion_hu, model.surround_hu, sd * gain, limit)
        prior_vox = max(1, int(prior.sum()))
        if grown is None or not (0.1 * prior_vox <= grown.sum() <= 6.0 * prior_vox):
            grown = shifted_prior
    else:
        sd = noise_sd if noise_sd is not None else _local_sd(followup_ct, seed, spacing)
        grown = _grow_new(smoothed, local_seed, spacing, sd * gain, limit)
    out[box] = grown
    return out


def _local_sd(ct: np.ndarray, seed: Sequence[int], spacing: Sequence[float]) -> float:
    """Noise sd near ``seed``: robust spread of the difference to a 3x3x3 mean."""
    box = _box(seed, 4 * float(np.max(spacing)), spacing, ct.shape)
    crop = ct[box].astype(np.float32)
    resid = crop - ndi.uniform_filter(crop, 3, mode="nearest")
    mad = float(np.median(np.abs(resid - np.median(resid))))
    # For white noise, x - mean3(x) has sd sqrt(26/27) of x's sd.
    return max(1.0, 1.4826 * mad / np.sqrt(26.0 / 27.0))


def _grow_new(smoothed: np.ndarray, seed: np.ndarray, spacing: np.ndarray, noise_sd: float,
              limit: np.ndarray) -> np.ndarray:
    """A lesion without baseline: lesion intensity at the click, surround from the radial
    profile (the first shell, going out, that clearly differs from the click's intensity)."""
    core = _ball_mask(smoothed.shape, seed, max(spacing.min(), 3.0), spacing)
    lesion_hu = float(np.median(smoothed[core]))
    grids = np.ogrid[tuple(slice(0, n) for n in smoothed.shape)]
    dist = np.sqrt(sum(((g - c) * s) ** 2 for g, c, s in zip(grids, seed, spacing)))
    step = float(spacing.min())
    surround = None
    r = step
    while r < NEW_LESION_MAX_RADIUS_MM + step:
        shell = (dist >= r) & (dist < r + step)
        if shell.any():
            med = float(np.median(smoothed[shell]))
            if abs(med - lesion_hu) > 2 * MIN_CONTRAST_SIGMAS * noise_sd:
                surround = med
                break
        r += step
    if surround is not None:
        grown = _grow(smoothed, seed, lesion_hu, surround, noise_sd, limit)
        if grown is not None and grown.any():
            return grown
    # No contrast: a small default lesion at the click rather than nothing (the click says a
    # lesion is there).
    return _ball_mask(smoothed.shape, seed, 2.0 * float(spacing.max()), spacing)


def segment_step1(followup_ct: np.ndarray, spacing: Sequence[float], carried: np.ndarray,
                  models: Mapping[int, LesionModel], search_margin_mm: float = 10.0) -> np.ndarray:
    """Step 1 (no follow-up clicks): find each carried baseline lesion in the follow-up.

    ``carried`` holds the baseline instance labels resampled onto the follow-up grid.
    Returns a boolean mask on the follow-up grid."""
    spacing = np.asarray(spacing, dtype=float)
    out = np.zeros(followup_ct.shape, dtype=bool)
    for label, sl in enumerate(ndi.find_objects(carried), start=1):
        if sl is None or label not in models:
            continue
        model = models[label]
        center = [(s.start + s.stop - 1) / 2 for s in sl]
        half = np.array([(s.stop - s.start) * sp / 2 for s, sp in zip(sl, spacing)])
        box = _box(center, half * 1.7 + search_margin_mm, spacing, carried.shape)
        prior = carried[box] == label
        smoothed, gain = _smoothed_crop(followup_ct, box, spacing)
        half_contrast = abs(model.contrast) / 2
        if half_contrast < MIN_CONTRAST_SIGMAS * model.sd_hu * gain:
            out[box] |= prior  # cannot tell the lesion from its surround: keep the carried shape
            continue
        band = np.abs(smoothed - model.mean_hu) < half_contrast
        allowed = ndi.binary_dilation(prior, _ball((0.7 * model.radius_mm + search_margin_mm) / spacing))
        band &= allowed
        labels, n = ndi.label(band, structure=np.ones((3, 3, 3), bool))
        if n == 0:
            continue  # well-contrasted lesion absent: vanished
        near_prior = ndi.binary_dilation(prior, _ball(np.maximum(1.0, search_margin_mm / 2 / spacing)))
        overlap = np.bincount(labels[near_prior], minlength=n + 1)
        overlap[0] = 0
        best = int(np.argmax(overlap))
        if overlap[best] == 0:
            continue
        region = ndi.binary_fill_holes(labels == best)
        if region.sum() < 0.05 * prior.sum():
            continue
        out[box] |= region
    return out
