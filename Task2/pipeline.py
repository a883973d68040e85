"""One Task 2 follow-up: register, carry the baseline across, segment. Arrays in, arrays out.

Conventions: arrays ``[i, j, k]`` (NIfTI order); CT in HU; points are ``{lesion id: (i, j, k)}``
float voxel indices of their own image's grid (baseline points on the baseline grid,
follow-up points on the follow-up grid). File I/O lives in :mod:`Task2.inference`.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from scipy import ndimage as ndi

from autopet_common.errors import InputError
from autopet_common.image_io import Geometry, to_sitk

from .registration import (RegistrationParameters, carry_points, register_ct,
                           resample_to_followup, transform_to_dict)
from .segmentation import baseline_lesion_models, segment_at_click, segment_step1

log = logging.getLogger(__name__)


class PointOutsideImageError(InputError):
    """Every click of a point file lies outside its image."""


@dataclass
class FollowupResult:
    mask: np.ndarray  # bool, follow-up grid
    step: int  # 1 (no follow-up clicks) or 2
    registration: dict = field(default_factory=dict)
    carried_points: dict = field(default_factory=dict)  # lesion id -> follow-up index
    skipped_points: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    # Registered baseline CT and instance labels on the follow-up grid (for the nnU-Net path).
    carried_labels: np.ndarray | None = None


def baseline_instances(mask: np.ndarray, points: Mapping[int, Any], spacing=(1.0, 1.0, 1.0)
                       ) -> tuple[np.ndarray, dict[int, int]]:
    """Instance labels of the baseline lesions and the map lesion id -> instance label.

    A mask with several values is taken as already labelled (lesion ids); a binary mask is
    split into 26-connected components. A baseline point names the instance it lies in (or
    the nearest one within 10 mm)."""
    mask = np.asarray(mask)
    values = np.unique(mask)
    values = values[values > 0]
    if values.size > 1:
        instances = np.zeros(mask.shape, dtype=np.int32)
        for n, v in enumerate(values, start=1):
            instances[mask == v] = n
    else:
        instances, _ = ndi.label(mask > 0, structure=np.ones((3, 3, 3), bool))
        instances = instances.astype(np.int32)
    id_to_label: dict[int, int] = {}
    if not points or not instances.any():
        return instances, id_to_label
    spacing = np.asarray(spacing, dtype=float)
    for lesion_id, point in points.items():
        idx = np.round(np.asarray(point, dtype=float)).astype(int)
        if np.any(idx < 0) or np.any(idx >= np.asarray(mask.shape)):
            continue
        label = int(instances[tuple(idx)])
        if label == 0:
            r = [int(np.ceil(10.0 / s)) for s in spacing]
            box = tuple(slice(max(0, i - a), i + a + 1) for i, a in zip(idx, r))
            found = np.argwhere(instances[box] > 0)
            if found.size:
                offs = np.array([s.start for s in box])
                d = np.sum(((found + offs - idx) * spacing) ** 2, axis=1)
                best = found[np.argmin(d)]
                if d.min() <= 100.0:
                    label = int(instances[box][tuple(best)])
        if label:
            id_to_label[int(lesion_id)] = label
    return instances, id_to_label


def split_points_inside(points: Mapping[int, Any], shape, what: str
                        ) -> tuple[dict[int, np.ndarray], list[tuple[int, list]]]:
    """Round points and keep those inside ``shape``; the rest are reported (and logged)."""
    inside, outside = {}, []
    for lesion_id, point in points.items():
        idx = np.round(np.asarray(point, dtype=float)).astype(int)
        if np.all(idx >= 0) and np.all(idx < np.asarray(shape)):
            inside[int(lesion_id)] = np.asarray(point, dtype=float)
        else:
            outside.append((int(lesion_id), [float(v) for v in point]))
            log.warning("%s: point of lesion %s at %s lies outside the image %s; skipped",
                        what, lesion_id, list(point), tuple(shape))
    return inside, outside


def segment_followup(baseline_ct: np.ndarray, baseline_geometry: Geometry,
                     baseline_mask: np.ndarray, followup_ct: np.ndarray,
                     followup_geometry: Geometry, baseline_points: Mapping[int, Any],
                     followup_points: Mapping[int, Any],
                     params: RegistrationParameters | None = None,
                     names: tuple[str, str] = ("follow-up CT", "baseline CT"),
                     keep_carried: bool = False) -> FollowupResult:
    """Segment the lesions of one follow-up CT (model-free).

    Step 1 when ``followup_points`` is empty (search around each carried baseline lesion),
    step 2 otherwise (one lesion per click). Raises
    :class:`~Task2.registration.RegistrationError` when the CTs cannot be registered and
    :class:`PointOutsideImageError` when every follow-up click lies outside the follow-up CT.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    fu_points, outside = split_points_inside(followup_points, followup_geometry.shape,
                                             f"{names[0]} clicks")
    if followup_points and not fu_points:
        raise PointOutsideImageError(
            f"every click for the {names[0]} lies outside its image of shape "
            f"{tuple(followup_geometry.shape)}: " + ", ".join(f"lesion {i} at {p}" for i, p in outside))
    base_points, _ = split_points_inside(baseline_points, baseline_geometry.shape,
                                         f"{names[1]} clicks")
    instances, id_to_label = baseline_instances(baseline_mask, base_points, baseline_geometry.spacing)
    timings["prepare_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    reg = register_ct(to_sitk(followup_ct, followup_geometry), to_sitk(baseline_ct, baseline_geometry),
                      params, names)
    timings["registration_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    carried = resample_to_followup(instances.astype(np.uint16), baseline_geometry, followup_geometry,
                                   reg.transform, nearest=True).astype(np.int32)
    carried_points = carry_points(base_points, baseline_geometry, followup_geometry, reg.transform)
    models = baseline_lesion_models(baseline_ct, instances, baseline_geometry.spacing)
    timings["carry_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    spacing = followup_geometry.spacing
    if not fu_points:
        step = 1
        mask = segment_step1(followup_ct, spacing, carried, models)
    else:
        step = 2
        mask = np.zeros(followup_ct.shape, dtype=bool)
        for lesion_id, point in fu_points.items():
            label = id_to_label.get(lesion_id)
            prior = None
            if label is not None:
                prior = carried == label
                if not prior.any():
                    prior = None  # the carried lesion fell outside the follow-up field of view
            model = models.get(label) if label is not None else None
            mask |= segment_at_click(followup_ct, spacing, point, model if prior is not None else None,
                                     prior)
    timings["segmentation_s"] = time.perf_counter() - t0
    return FollowupResult(mask=mask, step=step, registration=transform_to_dict(reg),
                          carried_points={k: [float(x) for x in v] for k, v in carried_points.items()},
                          skipped_points=outside, timings=timings,
                          carried_labels=carried if keep_carried else None)
