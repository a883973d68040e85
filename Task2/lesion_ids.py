"""Lesion ids in Task 2 outputs: which id each segmented follow-up lesion carries.

The challenge names lesions by id: the baseline mask may hold ids as voxel values, and the
points of both scans are named by lesion id ("3" or "Lesion 3"). The output label map carries
them on: at step 2 a lesion has the id of the follow-up click it grows from; at step 1 the id of
the baseline lesion it was carried from (the mask's value where the mask holds ids, else the id
of the baseline point inside it); a lesion with no id from either gets a new one above every
known id. Arrays ``[i, j, k]``; 0 is background. ``binary`` outputs (``--binary``) write 0/1.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np


def instance_ids(baseline_mask: np.ndarray, instances: np.ndarray, id_to_label: Mapping[int, int],
                 reserved: set[int] = frozenset()) -> dict[int, int]:
    """``{instance label: lesion id}`` for every baseline instance (see the module docstring).

    ``instances`` numbers a labelled mask's values in increasing order (as
    :func:`Task2.pipeline.baseline_instances` does); ``id_to_label`` maps baseline point ids to
    instances; ``reserved`` are ids used elsewhere (the follow-up clicks), never handed out anew."""
    n = int(instances.max()) if instances.size else 0
    values = np.unique(np.asarray(baseline_mask))
    values = values[values > 0]
    out: dict[int, int] = {}
    if values.size > 1 and values.size == n:  # the mask holds ids
        out = {label: int(round(float(v))) for label, v in enumerate(values, start=1)}
    else:
        out = {label: lesion_id for lesion_id, label in id_to_label.items()}
    known = set(out.values()) | set(id_to_label) | set(reserved)
    next_id = max(known, default=0) + 1
    for label in range(1, n + 1):
        if label not in out:
            out[label] = next_id
            next_id += 1
    return out


def label_dtype(labels: np.ndarray):
    """The smallest unsigned type that holds every id (uint8 for 0/1 masks)."""
    top = int(labels.max()) if labels.size else 0
    return np.uint8 if top < 256 else (np.uint16 if top < 65536 else np.uint32)


def ids_by_clicks(mask: np.ndarray, clicks: Mapping[int, np.ndarray], start_id: int) -> np.ndarray:
    """Ids for a binary mask from another method (the nnU-Net path): each 26-connected component
    takes the id of the first follow-up click inside it; the others get new ids from
    ``start_id`` on."""
    import cc3d

    components, n = cc3d.connected_components(np.asarray(mask, bool).astype(np.uint8), connectivity=26,
                                              return_N=True)
    ids = np.zeros(n + 1, dtype=np.int64)
    for lesion_id, point in sorted(clicks.items()):
        idx = tuple(int(round(float(v))) for v in point)
        if all(0 <= i < s for i, s in zip(idx, mask.shape)) and components[idx] and not ids[components[idx]]:
            ids[components[idx]] = int(lesion_id)
    for component in range(1, n + 1):
        if not ids[component]:
            ids[component] = start_id
            start_id += 1
    return ids[components]
