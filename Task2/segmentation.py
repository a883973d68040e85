"""Model-free segmentation of follow-up lesions (Task 2), guided by the carried baseline.

Conventions: arrays ``[i, j, k]`` (NIfTI order); CT in HU; spacing in mm per axis; points are
voxel indices ``[i, j, k]`` of the follow-up grid (rounded here).

Every lesion is segmented inside a box around its point, never on the whole scan.

- Intensity model of a baseline lesion (:func:`baseline_lesion_models`): mean and sd of the
  baseline CT inside it, median of a ring around it ("surround").
- Lesion with a baseline counterpart (:func:`segment_with_prior`; step 1 at the carried centre,
  step 2 at the click): the carried baseline shape is scaled about the point (0.35x..1.9x) and
  the scale is chosen by summed evidence: each voxel votes ``sign * (HU - threshold)``
  (threshold halfway between lesion and surround, votes clipped), which works near the noise
  level where thresholding single voxels fails, and a voxel far past the lesion's own intensity
  (bone beside a soft-tissue lesion, :func:`beyond_lesion`) votes against; a scale other than 1
  must win by a significant margin (:func:`fit_scale`). With enough contrast the boundary is
  then refined by thresholding the smoothed CT (~2 mm Gaussian) within one voxel of the fitted
  shape. Step 1 drops a lesion whose fitted shape no longer shows the baseline contrast
  (vanished).
- New lesion (:func:`segment_new_lesion`, step 2 only): radial profile from the click (the
  lesion's centre of gravity): the first two consecutive shells whose median departs from
  the core's intensity mark the boundary; the ball is refined by thresholding halfway when the
  contrast allows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import ndimage as ndi

SMOOTHING_MM = 2.0
NEW_LESION_MAX_RADIUS_MM = 25.0
MIN_CONTRAST_SIGMAS = 2.0  # half-contrast must exceed this many smoothed-noise sds


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


@dataclass
class CarriedLesion:
    """A baseline lesion carried onto the follow-up grid: a boolean ``mask`` on the follow-up
    sub-grid ``region`` (tuple of slices), its carried centre (follow-up voxel index), the
    baseline intensity model, and the transform (follow-up -> baseline, SimpleITK) that carried
    it (the global one, refined around this lesion). ``split``: the mask is this lesion's share
    of a baseline lesion that split at step 2 (:mod:`Task2.lesion_splits`)."""

    label: int
    region: tuple[slice, ...]
    mask: np.ndarray
    centre: np.ndarray
    model: LesionModel
    transform: Any = None
    split: bool = False


def _scaled_shape(prior: CarriedLesion, box: tuple[slice, ...], centre: np.ndarray,
                  scale: float) -> np.ndarray:
    """The carried shape, scaled by ``scale`` about its centre and moved to ``centre``,
    sampled on ``box`` (nearest neighbour)."""
    grids = np.meshgrid(*[np.arange(s.start, s.stop, dtype=np.float32) for s in box], indexing="ij")
    com = np.asarray(ndi.center_of_mass(prior.mask), dtype=np.float32)
    coords = [com[a] + (grids[a] - np.float32(centre[a])) / np.float32(scale) for a in range(3)]
    return ndi.map_coordinates(prior.mask.astype(np.uint8), coords, order=0, mode="constant",
                               cval=0).astype(bool)


SCALES = tuple(sorted(set([1.0] + [float(s) for s in np.geomspace(0.35, 1.9, 19)])))


def _vote_limit(model: LesionModel) -> float:
    """How far one voxel's vote in :func:`fit_scale` may go either way (HU): half the contrast,
    at least 2 of the lesion's sds."""
    return max(abs(model.contrast) / 2.0, 2.0 * model.sd_hu)


def beyond_lesion(values: np.ndarray, model: LesionModel) -> np.ndarray:
    """Voxels past the lesion's own intensity, on the side away from its surround, by more than
    the surround lies on the other side (twice :func:`_vote_limit`, so at least 4 of the
    lesion's sds): bone or a contrast-filled vessel beside a soft-tissue lesion, neither lesion
    nor its surround. Why so far: the sd comes from the baseline lesion's few voxels and can
    underestimate the noise, and a lesion voxel taken for something else costs a full vote."""
    sign = 1.0 if model.contrast >= 0 else -1.0
    return sign * (np.asarray(values, dtype=np.float32) - model.mean_hu) > 2.0 * _vote_limit(model)


def fit_scale(raw: np.ndarray, shapes: dict[float, np.ndarray], model: LesionModel,
              significance: float = 2.0) -> tuple[float, float]:
    """Pick the scale whose shape best separates lesion-like from surround-like voxels.

    Score(s) = sum over the shape's voxels of ``sign * (v - threshold)``, clipped to
    ``+-half``, threshold halfway between lesion and surround intensity. Summing over many
    voxels makes it work at contrasts near the noise level, where thresholding single voxels
    fails. A voxel :func:`beyond_lesion` votes ``-half``: a one-sided vote would count bone
    beside a soft-tissue lesion as the most lesion-like voxel of all and let a shrunk lesion's
    shape grow into it (:func:`_grow` already keeps to a band around the lesion). A scale other
    than 1 (no change since baseline) must beat scale 1 by ``significance`` times the noise of
    the score difference (noise sd of one voxel's evidence times the square root of the number
    of voxels that differ), so noise alone does not resize a lesion. Returns ``(best scale,
    best score)``."""
    threshold = (model.mean_hu + model.surround_hu) / 2.0
    sign = 1.0 if model.contrast >= 0 else -1.0
    half = _vote_limit(model)
    evidence = np.clip(sign * (raw - threshold), -half, half)
    evidence[beyond_lesion(raw, model)] = -half
    sigma_e = min(model.sd_hu, half)
    reference_scale = min(shapes, key=lambda s: abs(np.log(s)))
    reference = shapes[reference_scale]
    reference_score = float(evidence[reference].sum())
    best, best_score, best_margin = reference_scale, reference_score, 0.0
    for scale, shape in shapes.items():
        score = float(evidence[shape].sum())
        changed = int(np.count_nonzero(shape != reference))
        margin = (score - reference_score) - significance * sigma_e * np.sqrt(max(changed, 1))
        if margin > best_margin:
            best, best_score, best_margin = scale, score, margin
    return best, best_score


def _refine_by_threshold(smoothed: np.ndarray, gain: float, shape: np.ndarray, model: LesionModel,
                         seed: Sequence[int], spacing: np.ndarray) -> np.ndarray:
    """With enough contrast, let the voxels decide the boundary near the fitted shape (one
    voxel either side), so that non-uniform growth is followed."""
    half = abs(model.contrast) / 2.0
    if half < MIN_CONTRAST_SIGMAS * model.sd_hu * gain or not shape.any():
        return shape
    limit = ndi.binary_dilation(shape, _ball(np.maximum(1.0, 1.0 / (spacing / spacing.min()))))
    grown = _grow(smoothed, seed, model.mean_hu, model.surround_hu, model.sd_hu * gain, limit)
    if grown is None or not (0.5 * shape.sum() <= grown.sum() <= 1.6 * shape.sum()):
        return shape
    return grown


def segment_with_prior(followup_ct: np.ndarray, spacing: Sequence[float], prior: CarriedLesion,
                       centre: Sequence[float], detect: bool = False) -> np.ndarray:
    """Segment a follow-up lesion at ``centre`` (voxel index) using its carried baseline lesion.

    The carried shape is scaled (:func:`fit_scale`) and, with enough contrast, refined by
    thresholding. With ``detect`` (step 1, no click) the lesion counts as vanished when the
    fitted shape does not show the baseline contrast. Returns a boolean mask on the follow-up
    grid (only the box around ``centre`` can be set)."""
    spacing = np.asarray(spacing, dtype=float)
    shape3 = followup_ct.shape
    centre = np.clip(np.asarray(centre, dtype=float), 0, np.asarray(shape3) - 1)
    seed = np.round(centre).astype(int)
    extent_mm = max((s.stop - s.start) * sp for s, sp in zip(prior.region, spacing)) / 2
    box = _box(seed, max(SCALES) * extent_mm + 3 * spacing.max(), spacing, shape3)
    offs = np.array([s.start for s in box])
    raw = followup_ct[box].astype(np.float32)
    shapes = {s: _scaled_shape(prior, box, centre, s) for s in SCALES}
    shapes = {s: m for s, m in shapes.items() if m.any()}
    out = np.zeros(shape3, dtype=bool)
    if not shapes:
        return out
    model = prior.model
    if abs(model.contrast) < 0.5 * model.sd_hu:
        fitted = shapes.get(1.0, shapes[min(shapes, key=lambda s: abs(s - 1.0))])
        scale = 1.0
    else:
        scale, _ = fit_scale(raw, shapes, model)
        fitted = shapes[scale]
    if detect and abs(model.contrast) >= 0.5 * model.sd_hu:
        # bone beside the lesion is neither lesion nor surround: it must not hide the contrast
        other = beyond_lesion(raw, model)
        ring = ndi.binary_dilation(fitted, _ball(np.maximum(1.0, 2.0 * spacing.min() / spacing)))
        ring &= ~fitted & ~other
        kept = fitted & ~other
        if ring.any() and kept.any():
            measured = float(raw[kept].mean() - raw[ring].mean())
            if measured * np.sign(model.contrast) < 0.4 * abs(model.contrast):
                return out  # the baseline lesion's contrast is gone: vanished
    sigmas = smoothing_sigmas(spacing)
    smoothed = ndi.gaussian_filter(raw, sigmas, mode="nearest")
    local_seed = seed - offs
    if not fitted[tuple(local_seed)]:
        inside = np.argwhere(fitted)
        local_seed = inside[np.argmin(np.sum((inside - local_seed) ** 2, axis=1))]
    region = _refine_by_threshold(smoothed, _noise_gain(sigmas), fitted, model, local_seed, spacing)
    out[box] = region
    return out


def segment_new_lesion(followup_ct: np.ndarray, spacing: Sequence[float], point: Sequence[float],
                       noise_sd: float | None = None) -> np.ndarray:
    """Segment a lesion that has no baseline counterpart at ``point`` (voxel index, taken as
    the lesion's centre, as the challenge's clicks are centres of gravity).

    Radial profile: the lesion intensity is the median of a small core at the click; going
    outwards in shells, the first shell whose median departs significantly from it marks the
    boundary (radius) and gives the surround intensity. With enough contrast the boundary is
    then refined by thresholding halfway, within one shell beyond that radius; otherwise the ball
    is used."""
    spacing = np.asarray(spacing, dtype=float)
    shape3 = followup_ct.shape
    seed = np.clip(np.round(np.asarray(point, dtype=float)).astype(int), 0, np.asarray(shape3) - 1)
    box = _box(seed, NEW_LESION_MAX_RADIUS_MM + 4 * spacing.max(), spacing, shape3)
    offs = np.array([s.start for s in box])
    local = seed - offs
    raw = followup_ct[box].astype(np.float32)
    grids = np.ogrid[tuple(slice(0, n) for n in raw.shape)]
    dist = np.sqrt(sum(((g - c) * s) ** 2 for g, c, s in zip(grids, local, spacing)))
    sd = noise_sd if noise_sd is not None else _local_sd(followup_ct, seed, spacing)
    step = float(spacing.min())
    core_r = max(1.5 * step, 4.0)
    core = dist <= core_r
    lesion_hu = float(np.median(raw[core]))
    radius, surround_hu = None, None
    r = core_r
    candidate = None  # (radius, sign) of a first departing shell, confirmed by the next one
    while r <= NEW_LESION_MAX_RADIUS_MM:
        shell = (dist > r) & (dist <= r + step)
        n = int(shell.sum())
        if n >= 3:
            med = float(np.median(raw[shell]))
            # sd of a median of n normal values ~ 1.25 sd / sqrt(n); need 4 of them.
            departs = abs(med - lesion_hu) > max(4.0 * 1.25 * sd / np.sqrt(n), 0.5 * sd)
            direction = np.sign(med - lesion_hu)
            if departs and candidate is not None and candidate[1] == direction:
                radius = candidate[0]
                outer = (dist > radius) & (dist <= radius + 2 * float(spacing.max()))
                surround_hu = float(np.median(raw[outer]))
                break
            candidate = (r, direction) if departs else None
        r += step
    out = np.zeros(shape3, dtype=bool)
    if radius is None:
        # No boundary found (no contrast): a small default lesion at the click.
        out[box] = dist <= max(5.0, 1.2 * float(spacing.max()))
        return out
    ball = dist <= radius
    sigmas = smoothing_sigmas(spacing)
    gain = _noise_gain(sigmas)
    smoothed = ndi.gaussian_filter(raw, sigmas, mode="nearest")
    region = ball
    grown = _grow(smoothed, local, lesion_hu, surround_hu, sd * gain, dist <= radius + step)
    if grown is not None and 0.4 * ball.sum() <= grown.sum() <= 2.5 * ball.sum():
        region = grown
    out[box] = region
    return out


def _local_sd(ct: np.ndarray, seed: Sequence[int], spacing: Sequence[float]) -> float:
    """Noise sd near ``seed``: robust spread of the difference to a 3x3x3 mean."""
    box = _box(seed, 4 * float(np.max(spacing)), spacing, ct.shape)
    crop = ct[box].astype(np.float32)
    resid = crop - ndi.uniform_filter(crop, 3, mode="nearest")
    mad = float(np.median(np.abs(resid - np.median(resid))))
    # For white noise, x - mean3(x) has sd sqrt(26/27) of x's sd.
    return max(1.0, 1.4826 * mad / np.sqrt(26.0 / 27.0))
