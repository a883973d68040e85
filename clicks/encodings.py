"""Click encodings for model input: Gaussian and distance-transform "ball" heatmaps.

Conventions:

- Arrays are indexed ``[i, j, k]`` in NIfTI order; click points are voxel indices in that
  order (floats are rounded to the nearest voxel, halves up). Outputs are float32 in [0, 1].
- ``spacing`` is the voxel size in mm along (x, y, z) = (i, j, k). It only matters when a
  size is given in mm (``sigma_in_mm`` / ``radius_in_mm`` / ``size_in_mm``).
- Several clicks are combined by the voxel-wise maximum, so every click keeps its peak of 1.
- Points outside the grid are ignored here; callers decide whether to warn
  (:func:`autopet_common.click_io.split_clicks_inside`).
- Each click is rendered on a small box around it (never a full-volume transform per click):
  the ball on its radius, the Gaussian on +-4 sigma (beyond that the value is below
  exp(-8) = 3.4e-4 and is set to 0).
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

GAUSSIAN_TRUNCATE = 4.0
DEFAULT_SIGMA = 3.0    # the challenge's reference heatmaps: sigma 3 voxels
DEFAULT_RADIUS = 2.0   # the autoPET III winners' ball radius, in voxels
ENCODINGS = ("edt", "gaussian")


def _voxel_points(shape: Sequence[int], points: Iterable[Sequence[float]]) -> list[tuple[int, int, int]]:
    out = []
    for point in points:
        p = tuple(int(math.floor(float(v) + 0.5)) for v in point)
        if len(p) == len(shape) and all(0 <= c < s for c, s in zip(p, shape)):
            out.append(p)
    return out


def _per_axis(size: float, spacing: Sequence[float] | None, in_mm: bool, ndim: int) -> np.ndarray:
    """A size (sigma or radius) in voxels along each axis."""
    if size <= 0 or not math.isfinite(size):
        raise ValueError(f"encoding size must be a positive number, got {size!r}")
    if not in_mm:
        return np.full(ndim, float(size))
    if spacing is None:
        raise ValueError("a size in mm needs the voxel spacing (mm along x, y, z)")
    spacing = np.asarray(spacing, dtype=float)
    if spacing.shape != (ndim,) or np.any(spacing <= 0):
        raise ValueError(f"spacing must be {ndim} positive numbers (mm), got {spacing.tolist()}")
    return float(size) / spacing


def _render(shape: Sequence[int], points, half_widths: np.ndarray, profile) -> np.ndarray:
    """Max-combine ``profile(normalised squared distance)`` on a box around each point.

    ``half_widths`` (voxels, per axis) scale the axes so that the normalised distance is 1 at
    one size unit; the box reaches ``reach`` size units (set by the caller via ``profile.reach``).
    """
    shape = tuple(int(s) for s in shape)
    heatmap = np.zeros(shape, dtype=np.float32)
    extent = np.floor(half_widths * profile.reach + 1e-9).astype(int)
    for point in _voxel_points(shape, points):
        lo = [max(0, c - e) for c, e in zip(point, extent)]
        hi = [min(s, c + e + 1) for c, e, s in zip(point, extent, shape)]
        axes = [((np.arange(a, b) - c) / w) ** 2 for a, b, c, w in zip(lo, hi, point, half_widths)]
        dist2 = axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :]
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        np.maximum(heatmap[box], profile(dist2).astype(np.float32), out=heatmap[box])
    return heatmap


def _gaussian_profile(dist2: np.ndarray) -> np.ndarray:
    values = np.exp(-0.5 * dist2)
    values[dist2 > GAUSSIAN_TRUNCATE ** 2] = 0.0
    return values


_gaussian_profile.reach = GAUSSIAN_TRUNCATE


def _ball_profile(dist2: np.ndarray) -> np.ndarray:
    return np.clip(1.0 - np.sqrt(dist2), 0.0, 1.0)


_ball_profile.reach = 1.0


def gaussian_heatmap(shape: Sequence[int], points: Iterable[Sequence[float]], sigma: float = DEFAULT_SIGMA,
                     spacing: Sequence[float] | None = None, sigma_in_mm: bool = False) -> np.ndarray:
    """Gaussian heatmap ``exp(-d^2 / (2 sigma^2))`` with peak 1 at each click, max-combined.

    ``sigma`` is in voxels (challenge default 3), or in mm with ``sigma_in_mm`` and ``spacing``
    (then anisotropic in voxels). Returns float32 ``[i, j, k]`` of ``shape``.
    """
    ndim = len(shape)
    return _render(shape, points, _per_axis(sigma, spacing, sigma_in_mm, ndim), _gaussian_profile)


def ball_heatmap(shape: Sequence[int], points: Iterable[Sequence[float]], radius: float = DEFAULT_RADIUS,
                 spacing: Sequence[float] | None = None, radius_in_mm: bool = False) -> np.ndarray:
    """Distance-transform "ball": ``max(0, 1 - d / radius)``: 1 at the click, linearly falling
    to 0 at distance ``radius``; overlapping balls are combined by maximum.

    ``radius`` is in voxels, or in mm with ``radius_in_mm`` and ``spacing`` (d is then measured
    in mm). Returns float32 ``[i, j, k]`` of ``shape``.
    """
    ndim = len(shape)
    return _render(shape, points, _per_axis(radius, spacing, radius_in_mm, ndim), _ball_profile)


def encode_clicks(shape: Sequence[int], clicks: dict, encoding: str = "edt", size: float | None = None,
                  spacing: Sequence[float] | None = None, size_in_mm: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Encode a simulator-format click dict as ``(tumor_map, background_map)``.

    ``encoding`` is ``"edt"`` (ball, ``size`` = radius, default 2) or ``"gaussian"``
    (``size`` = sigma, default 3). Both maps are float32 ``[i, j, k]`` of ``shape``.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown click encoding {encoding!r}; choose one of {ENCODINGS}")
    if encoding == "edt":
        size = DEFAULT_RADIUS if size is None else size
        render = lambda pts: ball_heatmap(shape, pts, size, spacing, size_in_mm)
    else:
        size = DEFAULT_SIGMA if size is None else size
        render = lambda pts: gaussian_heatmap(shape, pts, size, spacing, size_in_mm)
    return render(clicks.get("tumor", [])), render(clicks.get("background", []))
