"""The challenge's segmentation metrics on arrays: fast, exact, with lesion-level detection.

Conventions
-----------
- Masks are 3D arrays indexed ``[i, j, k]`` (NIfTI order) of any dtype; foreground is ``> 0``.
  (The index order does not change any metric; it is stated so callers never transpose.)
- Volumes are in millilitres: ``voxel_volume_ml`` is the product of the voxel spacing in mm
  divided by 1000 (the published script reads it from the NIfTI header's ``pixdim[1..3]``).
- Connected components are 18-connected (faces and edges, not corners), as in the published
  evaluation script.

Definitions (autoPET/CT IV, ``../shared/challenge-facts.md``)
-------------------------------------------------------------
- Dice = 2 |G & P| / (|G| + |P|) over all voxels; NaN when the ground truth is empty (such
  cases are left out of the Dice ranking).
- False positive volume (FPV): total volume of the predicted components that touch no
  ground-truth voxel. 0 when the prediction is empty.
- False negative volume (FNV): total volume of the ground-truth components that touch no
  predicted voxel. NaN when the ground truth is empty.
- Interactive AUC: trapezoid rule over x = 0, 1, ..., n-1 (one value per step); a NaN step
  makes the AUC NaN, as ``scipy.integrate.cumulative_trapezoid`` does in the published script.

Speed: each mask is labelled once (cc3d, 18-connectivity) on the bounding box of the union of
both foregrounds, and per-component sizes and overlaps are counted with ``np.bincount`` over
the foreground voxels only. No full-volume mask is ever built per component.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

CONNECTIVITY = 18

__all__ = [
    "CONNECTIVITY", "CaseMeasures", "measure_case", "dice_score", "false_positive_volume",
    "false_negative_volume", "compute_metrics_arrays", "lesion_detection", "detection_rates",
    "interactive_auc",
]


def _foreground(mask: np.ndarray, name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"{name} must be a 3D array [i, j, k], got shape {mask.shape}")
    return mask if mask.dtype == bool else mask > 0


def _check_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt_fg = _foreground(gt, "gt")
    pred_fg = _foreground(pred, "pred")
    if gt_fg.shape != pred_fg.shape:
        raise ValueError(f"gt and pred have different shapes: {gt_fg.shape} vs {pred_fg.shape}")
    return gt_fg, pred_fg


def _union_bbox(gt_fg: np.ndarray, pred_fg: np.ndarray) -> tuple[slice, ...] | None:
    """Bounding box of the union of both foregrounds (None when both are empty).

    Cropping to it never cuts a component, so every count below is unchanged, and the labelling
    and counting touch only the part of a whole-body volume that holds lesions.
    """
    slices = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        present = np.any(gt_fg, axis=other) | np.any(pred_fg, axis=other)
        idx = np.flatnonzero(present)
        if idx.size == 0:
            return None
        slices.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(slices)


def _label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    import cc3d  # imported lazily: importing this module does no work

    labels, n = cc3d.connected_components(mask, connectivity=CONNECTIVITY, return_N=True,
                                          binary_image=True)
    return labels, int(n)


@dataclass(frozen=True)
class CaseMeasures:
    """Everything measured on one (ground truth, prediction) pair, in voxels.

    Per-component arrays are indexed by component label 1..n (index 0 unused, zero).
    """

    gt_voxels: int
    pred_voxels: int
    overlap_voxels: int
    gt_sizes: np.ndarray          # voxels of each ground-truth component
    gt_overlap: np.ndarray        # voxels of each ground-truth component that are predicted
    pred_sizes: np.ndarray        # voxels of each predicted component
    pred_overlap: np.ndarray      # voxels of each predicted component inside the ground truth

    @property
    def n_gt_components(self) -> int:
        return int(self.gt_sizes.size - 1)

    @property
    def n_pred_components(self) -> int:
        return int(self.pred_sizes.size - 1)

    def dice(self) -> float:
        if self.gt_voxels == 0:
            return math.nan
        return 2.0 * self.overlap_voxels / (self.gt_voxels + self.pred_voxels)

    def false_positive_voxels(self) -> int:
        return int(self.pred_sizes[1:][self.pred_overlap[1:] == 0].sum())

    def false_negative_voxels(self) -> int:
        return int(self.gt_sizes[1:][self.gt_overlap[1:] == 0].sum())

    def metrics(self, voxel_volume_ml: float) -> tuple[float, float, float]:
        """(Dice, FPV ml, FNV ml) with the challenge's empty-case conventions."""
        fpv = self.false_positive_voxels() * float(voxel_volume_ml)
        fnv = math.nan if self.gt_voxels == 0 else self.false_negative_voxels() * float(voxel_volume_ml)
        return self.dice(), fpv, fnv

    def detection(self, min_overlap: float = 0.0) -> dict:
        """Lesion-level detection counts and rates (see :func:`lesion_detection`)."""
        if not 0.0 <= min_overlap <= 1.0:
            raise ValueError(f"min_overlap must lie in [0, 1], got {min_overlap}")
        gt_found = _found(self.gt_overlap[1:], self.gt_sizes[1:], min_overlap)
        pred_true = _found(self.pred_overlap[1:], self.pred_sizes[1:], min_overlap)
        tp = int(np.count_nonzero(gt_found))
        fn = int(gt_found.size - tp)
        fp = int(pred_true.size - np.count_nonzero(pred_true))
        return {"tp": tp, "fn": fn, "fp": fp, **detection_rates(tp, fn, fp)}


def _found(overlap: np.ndarray, sizes: np.ndarray, min_overlap: float) -> np.ndarray:
    # "any voxel" at min_overlap = 0; otherwise at least that fraction of the component.
    return (overlap > 0) & (overlap >= min_overlap * sizes)


def detection_rates(tp: int, fn: int, fp: int) -> dict:
    """Sensitivity tp/(tp+fn), precision tp/(tp+fp), F1 2tp/(2tp+fn+fp); NaN when 0/0."""
    def ratio(num: float, den: float) -> float:
        return num / den if den else math.nan

    return {"sensitivity": ratio(tp, tp + fn), "precision": ratio(tp, tp + fp),
            "f1": ratio(2 * tp, 2 * tp + fn + fp)}


def measure_case(gt: np.ndarray, pred: np.ndarray) -> CaseMeasures:
    """Label each mask once (18-connectivity) and count component sizes and overlaps.

    ``gt`` and ``pred``: 3D arrays ``[i, j, k]`` of the same shape, foreground ``> 0``.
    """
    gt_fg, pred_fg = _check_pair(gt, pred)
    empty = np.zeros(1, dtype=np.int64)
    box = _union_bbox(gt_fg, pred_fg)
    if box is None:
        return CaseMeasures(0, 0, 0, empty, empty, empty, empty)
    gt_fg, pred_fg = gt_fg[box], pred_fg[box]
    both = gt_fg & pred_fg
    gt_labels, n_gt = _label(gt_fg)
    pred_labels, n_pred = _label(pred_fg)
    # bincount over the foreground voxels only (a few % of the box), never over the full box.
    gt_in = gt_labels[gt_fg]
    pred_in = pred_labels[pred_fg]
    gt_sizes = np.bincount(gt_in, minlength=n_gt + 1).astype(np.int64)
    pred_sizes = np.bincount(pred_in, minlength=n_pred + 1).astype(np.int64)
    gt_overlap = np.bincount(gt_labels[both], minlength=n_gt + 1).astype(np.int64)
    pred_overlap = np.bincount(pred_labels[both], minlength=n_pred + 1).astype(np.int64)
    return CaseMeasures(int(gt_in.size), int(pred_in.size), int(gt_overlap[1:].sum()),
                        gt_sizes, gt_overlap, pred_sizes, pred_overlap)


def dice_score(gt: np.ndarray, pred: np.ndarray) -> float:
    """Dice over all voxels, 2|G&P| / (|G|+|P|); NaN when ``gt`` is empty."""
    gt_fg, pred_fg = _check_pair(gt, pred)
    n_gt = int(np.count_nonzero(gt_fg))
    if n_gt == 0:
        return math.nan
    overlap = int(np.count_nonzero(gt_fg & pred_fg))
    return 2.0 * overlap / (n_gt + int(np.count_nonzero(pred_fg)))


def false_positive_volume(gt: np.ndarray, pred: np.ndarray, voxel_volume_ml: float) -> float:
    """Volume (ml) of the 18-connected predicted components touching no ground-truth voxel."""
    return measure_case(gt, pred).false_positive_voxels() * float(voxel_volume_ml)


def false_negative_volume(gt: np.ndarray, pred: np.ndarray, voxel_volume_ml: float) -> float:
    """Volume (ml) of the 18-connected ground-truth components touching no predicted voxel;
    NaN when ``gt`` is empty."""
    return measure_case(gt, pred).metrics(voxel_volume_ml)[2]


def compute_metrics_arrays(gt: np.ndarray, pred: np.ndarray,
                           voxel_volume_ml: float) -> tuple[float, float, float]:
    """(Dice, FPV ml, FNV ml) of one case with one labelling pass per mask."""
    return measure_case(gt, pred).metrics(voxel_volume_ml)


def lesion_detection(gt: np.ndarray, pred: np.ndarray, min_overlap: float = 0.0) -> dict:
    """Lesion-level detection with 18-connected components.

    - A ground-truth lesion is *found* (``tp``) when at least one of its voxels is predicted
      and, for ``min_overlap`` > 0, at least that fraction of its voxels is predicted;
      otherwise it is *missed* (``fn``).
    - A predicted component is *false* (``fp``) when it fails the same criterion against the
      ground truth (at ``min_overlap = 0``: it touches no ground-truth voxel, exactly the
      components counted in the false positive volume).

    Returns ``dict(tp, fn, fp, sensitivity, precision, f1)`` with sensitivity = tp/(tp+fn),
    precision = tp/(tp+fp), f1 = 2tp/(2tp+fn+fp); a rate whose denominator is 0 is NaN.
    """
    return measure_case(gt, pred).detection(min_overlap)


def interactive_auc(values_per_step: Sequence[float]) -> float:
    """Area under a per-step curve, trapezoid rule over x = 0, 1, ..., n-1.

    Equal to ``scipy.integrate.cumulative_trapezoid(values, np.arange(n))[-1]`` of the
    published script: any NaN step makes the result NaN. Needs at least 2 steps.
    """
    values = np.asarray(values_per_step, dtype=float)
    if values.ndim != 1 or values.size < 2:
        raise ValueError(f"interactive_auc needs a 1D sequence of at least 2 values, got {values.shape}")
    return float(np.sum((values[1:] + values[:-1]) / 2.0))
