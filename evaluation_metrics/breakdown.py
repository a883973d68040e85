"""Where a prediction's Dice is lost: every wrong voxel sorted into one of six kinds.

The challenge's false positive and false negative volumes count whole components only: a
predicted component that touches no lesion, a lesion that no predicted voxel touches. A model that
finds every lesion loses its Dice elsewhere, mostly at lesion boundaries, which neither measure
sees. :func:`error_breakdown` tells these errors apart, so a benchmark can say what limits a model
(and what a click could fix).

Conventions as in :mod:`evaluation_metrics.metrics`: masks are 3D arrays ``[i, j, k]``, foreground
``> 0``, components 18-connected; ``spacing`` is the voxel size in mm per axis (same order);
volumes are in millilitres.

The kinds (they do not overlap; together they are all false negative and false positive voxels):

- ``missed``: the voxels of lesions (ground-truth components) that no predicted voxel touches;
  their volume is the challenge's false negative volume.
- ``boundary_fn``: voxels of found lesions that are not predicted, at most ``boundary_mm`` deep
  (distance to the nearest voxel outside the lesion).
- ``inner_fn``: the same, deeper inside.
- ``spurious``: the voxels of predicted components that touch no lesion; their volume is the
  challenge's false positive volume.
- ``boundary_fp``: predicted voxels outside the ground truth, in components that touch a lesion,
  at most ``boundary_mm`` from the nearest lesion voxel.
- ``spread_fp``: the same, further out: a lesion drawn into its neighbourhood.

``boundary_mm`` defaults to the largest voxel spacing, so "boundary" is the first voxel layer
inside or outside a lesion on any grid.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .metrics import _check_pair, _label, _union_bbox

__all__ = ["ERROR_KINDS", "ErrorBreakdown", "error_breakdown"]

ERROR_KINDS = ("missed", "boundary_fn", "inner_fn", "spurious", "boundary_fp", "spread_fp")
FALSE_NEGATIVE_KINDS = ("missed", "boundary_fn", "inner_fn")


@dataclass(frozen=True)
class ErrorBreakdown:
    """Volumes (ml) of one (ground truth, prediction) pair: the true positives and each error kind."""

    boundary_mm: float
    true_positive: float
    missed: float
    boundary_fn: float
    inner_fn: float
    spurious: float
    boundary_fp: float
    spread_fp: float

    def dice(self) -> float:
        """The pair's Dice (NaN when the ground truth is empty), from the volumes."""
        return self.dice_without()

    def dice_without(self, *kinds: str) -> float:
        """The Dice if the errors of ``kinds`` were corrected: false negatives of those kinds
        predicted, false positives of those kinds left out. ``dice_without(k) - dice()`` is the
        Dice that kind ``k`` costs."""
        unknown = set(kinds) - set(ERROR_KINDS)
        if unknown:
            raise ValueError(f"unknown error kind(s) {sorted(unknown)}; choose from {', '.join(ERROR_KINDS)}")
        tp = self.true_positive + sum(getattr(self, k) for k in kinds if k in FALSE_NEGATIVE_KINDS)
        errors = sum(getattr(self, k) for k in ERROR_KINDS if k not in kinds)
        gt = self.true_positive + sum(getattr(self, k) for k in FALSE_NEGATIVE_KINDS)
        if gt == 0:
            return math.nan
        return 2.0 * tp / (2.0 * tp + errors)

    def dice_cost(self) -> dict[str, float]:
        """Per kind, the Dice it costs (NaN when the ground truth is empty)."""
        base = self.dice()
        return {k: self.dice_without(k) - base for k in ERROR_KINDS}

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _distance(mask: np.ndarray, spacing) -> np.ndarray:
    """Euclidean distance (mm) of each voxel of ``mask`` to the nearest voxel outside it."""
    import edt  # imported lazily: importing this module does no work

    return edt.edt(np.ascontiguousarray(mask, dtype=np.uint8), anisotropy=tuple(float(s) for s in spacing),
                   black_border=False, parallel=1)


def error_breakdown(gt: np.ndarray, pred: np.ndarray, spacing, *,
                    boundary_mm: float | None = None) -> ErrorBreakdown:
    """Sort the false negative and false positive voxels of ``pred`` against ``gt`` into
    :data:`ERROR_KINDS` (module docstring); returns their volumes in ml.

    ``spacing``: voxel size in mm per axis (positive, finite); ``boundary_mm``: how deep the
    boundary layer reaches inside and outside a lesion (default: the largest spacing).
    """
    gt_fg, pred_fg = _check_pair(gt, pred)
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be 3 positive finite numbers (mm), got {spacing}")
    boundary = max(spacing) if boundary_mm is None else float(boundary_mm)
    if not (math.isfinite(boundary) and boundary >= 0):
        raise ValueError(f"boundary_mm must be a finite number >= 0, got {boundary_mm}")
    voxel_ml = float(np.prod(spacing)) / 1000.0
    volumes = dict.fromkeys(("true_positive",) + ERROR_KINDS, 0.0)
    box = _union_bbox(gt_fg, pred_fg)
    if box is None:
        return ErrorBreakdown(boundary_mm=boundary, **volumes)
    # pad the box so distances up to the boundary layer are not cut by it (the lesions are all
    # inside it, so distances to them are exact anyway)
    pad = [int(math.ceil(boundary / s)) + 1 for s in spacing]
    box = tuple(slice(max(0, b.start - p), min(n, b.stop + p)) for b, p, n in zip(box, pad, gt_fg.shape))
    g, p = gt_fg[box], pred_fg[box]

    both = g & p
    # labels of overlap voxels are all > 0, so index 0 (background) stays False
    gt_labels, n_gt = _label(g)
    found = np.zeros(n_gt + 1, dtype=bool)
    found[np.unique(gt_labels[both])] = True
    pred_labels, n_pred = _label(p)
    touching = np.zeros(n_pred + 1, dtype=bool)
    touching[np.unique(pred_labels[both])] = True

    fn = g & ~p
    fp = p & ~g
    missed = fn & ~found[gt_labels]
    partial = fn & ~missed
    spurious = fp & ~touching[pred_labels]
    attached = fp & ~spurious

    volumes["true_positive"] = float(np.count_nonzero(both)) * voxel_ml
    volumes["missed"] = float(np.count_nonzero(missed)) * voxel_ml
    volumes["spurious"] = float(np.count_nonzero(spurious)) * voxel_ml
    # distance transforms only where there are voxels to sort by them
    if partial.any():
        depth = _distance(g, spacing)
        volumes["boundary_fn"] = float(np.count_nonzero(partial & (depth <= boundary))) * voxel_ml
        volumes["inner_fn"] = float(np.count_nonzero(partial & (depth > boundary))) * voxel_ml
    if attached.any():
        outside = _distance(~g, spacing)
        volumes["boundary_fp"] = float(np.count_nonzero(attached & (outside <= boundary))) * voxel_ml
        volumes["spread_fp"] = float(np.count_nonzero(attached & (outside > boundary))) * voxel_ml
    return ErrorBreakdown(boundary_mm=boundary, **volumes)
