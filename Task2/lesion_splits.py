"""Step 2's lesion splits, read from the clicks and the carried baseline: the shape each click starts from.

At step 2 every follow-up lesion has one click, and a lesion that continues a baseline lesion
carries that lesion's id. A click with no baseline lesion (a new id) that falls inside a clicked
baseline lesion's carried mask (within one voxel) is a part that split off: the carried mask is
divided between the clicks, each voxel to the nearest click (mm), and each part starts from its
share (:func:`Task2.segmentation.segment_with_prior` places a shape's centre of gravity on the
click and scales it). Without this the whole carried shape is centred on one part's click (about
twice too large, and off to one side) and the split-off part is segmented as a new lesion, with
no shape to start from.

Merges are not handled here: a baseline lesion without a click that merged into a clicked one is
left out, as a vanished one is. Starting the clicked lesion from the union of both carried shapes
was measured and not kept (model card of ``models/task2_phantom_patches``, "Tenth round").

Conventions: arrays ``[i, j, k]`` of the follow-up grid; clicks are voxel indices; spacing in mm.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Sequence

import numpy as np
from scipy import ndimage as ndi

from .segmentation import CarriedLesion


def _centre(mask: np.ndarray, region: tuple[slice, ...]) -> np.ndarray:
    return np.asarray(ndi.center_of_mass(mask), dtype=float) + [s.start for s in region]


def split_between(lesion: CarriedLesion, clicks: Mapping[int, Sequence[float]], spacing: Sequence[float]
                  ) -> dict[int, CarriedLesion]:
    """The carried mask divided between ``clicks`` (id -> follow-up index), each voxel to the
    nearest click in mm; per id the lesion with its share (ids whose share is empty are left
    out)."""
    ids = list(clicks)
    local = np.argwhere(lesion.mask)
    voxels = local + [s.start for s in lesion.region]
    points = np.asarray([clicks[i] for i in ids], dtype=float)
    d2 = (((voxels[:, None, :] - points[None, :, :]) * np.asarray(spacing, float)) ** 2).sum(axis=2)
    nearest = np.argmin(d2, axis=1)
    out = {}
    for n, lesion_id in enumerate(ids):
        chosen = local[nearest == n]
        if chosen.size == 0:
            continue
        mask = np.zeros_like(lesion.mask)
        mask[tuple(chosen.T)] = True
        out[lesion_id] = replace(lesion, mask=mask, centre=_centre(mask, lesion.region), split=True)
    return out


def _inside(lesion: CarriedLesion, point: Sequence[float]) -> bool:
    """Whether ``point`` (follow-up index) lies in the lesion's carried mask, within one voxel."""
    idx = np.round(np.asarray(point, float)).astype(int) - [s.start for s in lesion.region]
    if np.any(idx < -1) or np.any(idx > np.asarray(lesion.mask.shape)):
        return False
    box = tuple(slice(max(0, i - 1), max(0, i + 2)) for i in idx)
    return bool(lesion.mask[box].any())


def split_priors(lesions: Mapping[int, CarriedLesion], ids: Mapping[int, int], clicks: Mapping[int, Sequence[float]],
                 spacing: Sequence[float]) -> tuple[dict[int, CarriedLesion], list[tuple[int, int]]]:
    """The carried shape each clicked lesion starts from, after splits (module docstring).

    ``lesions``: carried baseline lesions by instance label; ``ids``: instance label -> lesion
    id; ``clicks``: lesion id -> follow-up index. Returns (lesion id -> carried lesion, for every
    click that has one) and the splits found as ``(split-off id, from id)``."""
    by_id = {ids[label]: lesion for label, lesion in lesions.items() if label in ids}
    priors = {i: by_id[i] for i in clicks if i in by_id}
    new_clicks = {i: p for i, p in clicks.items() if i not in by_id}
    splits = []
    for lesion_id, lesion in sorted(priors.items()):
        inside = {i: p for i, p in new_clicks.items() if i not in priors and _inside(lesion, p)}
        if not inside:
            continue
        shares = split_between(lesion, {lesion_id: clicks[lesion_id], **inside}, spacing)
        for i, share in shares.items():
            priors[i] = share
            if i != lesion_id:
                splits.append((i, lesion_id))
    return priors, splits
