"""Plain reference implementation of the challenge metrics, written from their description.

Deliberately simple and slow: one full-volume mask per connected component, as the published
script computes it. Used only to test the fast functions of :mod:`evaluation_metrics.metrics`
for exactness and as the baseline of ``benchmarks/bench_metrics.py``. Arrays ``[i, j, k]``,
foreground ``> 0``, volumes in ml.
"""
from __future__ import annotations

import math

import numpy as np


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    import cc3d

    labels = cc3d.connected_components(mask.astype(np.uint8), connectivity=18)
    return labels, int(labels.max())


def reference_dice(gt: np.ndarray, pred: np.ndarray) -> float:
    gt = (np.asarray(gt) > 0).astype(np.float64)
    pred = (np.asarray(pred) > 0).astype(np.float64)
    if gt.sum() == 0:
        return math.nan
    return float(2 * (gt * pred).sum() / (gt.sum() + pred.sum()))


def _untouched_voxels(mask: np.ndarray, other: np.ndarray) -> int:
    """Voxels of the components of ``mask`` that share no voxel with ``other``."""
    labels, n = _components(mask)
    total = 0
    for idx in range(1, n + 1):
        component = np.isin(labels, idx)  # a full-volume mask per component, on purpose
        if (component * other).sum() == 0:
            total += int(component.sum())
    return total


def reference_false_positive_volume(gt: np.ndarray, pred: np.ndarray, voxel_volume_ml: float) -> float:
    gt, pred = np.asarray(gt) > 0, np.asarray(pred) > 0
    return _untouched_voxels(pred, gt) * float(voxel_volume_ml)


def reference_false_negative_volume(gt: np.ndarray, pred: np.ndarray, voxel_volume_ml: float) -> float:
    gt, pred = np.asarray(gt) > 0, np.asarray(pred) > 0
    if not gt.any():
        return math.nan
    return _untouched_voxels(gt, pred) * float(voxel_volume_ml)


def reference_metrics(gt: np.ndarray, pred: np.ndarray, voxel_volume_ml: float) -> tuple[float, float, float]:
    return (reference_dice(gt, pred), reference_false_positive_volume(gt, pred, voxel_volume_ml),
            reference_false_negative_volume(gt, pred, voxel_volume_ml))


def reference_detection(gt: np.ndarray, pred: np.ndarray, min_overlap: float = 0.0) -> dict:
    """tp / fn / fp counted one full-volume component mask at a time."""
    gt, pred = np.asarray(gt) > 0, np.asarray(pred) > 0

    def found(component: np.ndarray, other: np.ndarray) -> bool:
        size = component.sum()
        hit = (component & other).sum()
        return hit > 0 and hit >= min_overlap * size

    gt_labels, n_gt = _components(gt)
    pred_labels, n_pred = _components(pred)
    tp = sum(found(gt_labels == i, pred) for i in range(1, n_gt + 1))
    fp = sum(not found(pred_labels == i, gt) for i in range(1, n_pred + 1))
    return {"tp": int(tp), "fn": int(n_gt - tp), "fp": int(fp)}


def reference_auc(values: list[float]) -> float:
    """Trapezoid rule over x = 0..n-1, summed one interval at a time."""
    total = 0.0
    for left, right in zip(values[:-1], values[1:]):
        total += (left + right) / 2.0
    return total
