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

from .lesion_splits import split_priors
from .lesion_ids import instance_ids
from .registration import (RegistrationParameters, carry_points, refine_locally, register_ct,
                           resample_region, resample_to_followup, transform_to_dict)
from .segmentation import (CarriedLesion, baseline_lesion_models, segment_new_lesion,
                           segment_with_prior)

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
    labels: np.ndarray | None = None  # lesion ids on the follow-up grid (Task2.lesion_ids), 0 background


def baseline_instances(mask: np.ndarray, points: Mapping[int, Any], spacing=(1.0, 1.0, 1.0)
                       ) -> tuple[np.ndarray, dict[int, int]]:
    """Instance labels of the baseline lesions and the map lesion id -> instance label.

    A mask with several values is taken as already labelled (lesion ids); a binary mask is
    split into 26-connected components. A baseline point names the instance it lies in (or
    the nearest one within 10 mm)."""
    mask = np.asarray(mask)
    if np.issubdtype(mask.dtype, np.integer) and mask.min() >= 0 and mask.max() < 65536:
        values = np.nonzero(np.bincount(mask.ravel(order="K")))[0]  # one pass, no sort
    else:
        values = np.unique(mask)
    values = values[values > 0]
    if values.size > 1:
        instances = np.zeros(mask.shape, dtype=np.int32)
        if np.issubdtype(mask.dtype, np.integer):
            lookup = np.zeros(int(values.max()) + 1, dtype=np.int32)
            lookup[values.astype(np.int64)] = np.arange(1, values.size + 1, dtype=np.int32)
            for k in range(0, mask.shape[2], 16):  # slabs: no full-size int64 index array
                instances[:, :, k:k + 16] = lookup[mask[:, :, k:k + 16]]
        else:
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


@dataclass
class CarriedBaseline:
    """The baseline carried onto one follow-up: what the model-free and the learned
    (:mod:`Task2.lesion_patches`) methods share. ``lesions`` are keyed by baseline instance
    label, ``ids`` maps instance label -> lesion id (:mod:`Task2.lesion_ids`)."""

    followup_points: dict  # lesion id -> follow-up index (clicks inside the image)
    skipped_points: list
    instances: np.ndarray  # baseline instance labels
    ids: dict  # instance label -> lesion id
    lesions: dict  # instance label -> CarriedLesion
    registration: Any  # Task2.registration.RegistrationResult
    baseline_image: Any  # SimpleITK baseline CT (made once)
    timings: dict = field(default_factory=dict)
    # step 2: lesion id -> the carried shape its click starts from, after splits
    # (Task2.lesion_splits.split_priors), and the splits found as (split-off id, from id)
    priors: dict = field(default_factory=dict)
    splits: list = field(default_factory=list)

    @property
    def step(self) -> int:
        return 2 if self.followup_points else 1

    def carried_points(self) -> dict[int, list[float]]:
        return {self.ids[label]: [float(x) for x in lesion.centre] for label, lesion in self.lesions.items()}


def carry_baseline(baseline_ct: np.ndarray, baseline_geometry: Geometry, baseline_mask: np.ndarray,
                   followup_ct: np.ndarray, followup_geometry: Geometry, baseline_points: Mapping[int, Any],
                   followup_points: Mapping[int, Any], params: RegistrationParameters | None = None,
                   names: tuple[str, str] = ("follow-up CT", "baseline CT"),
                   local_refinement: bool = True) -> CarriedBaseline:
    """Check the points, register the CTs and carry every baseline lesion onto the follow-up.

    Raises :class:`~Task2.registration.RegistrationError` when the CTs cannot be registered and
    :class:`PointOutsideImageError` when every follow-up click lies outside the follow-up CT."""
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
    followup_img = to_sitk(followup_ct, followup_geometry)
    baseline_img = to_sitk(baseline_ct, baseline_geometry)
    reg = register_ct(followup_img, baseline_img, params, names)
    timings["registration_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    models = baseline_lesion_models(baseline_ct, instances, baseline_geometry.spacing)
    lesions = carry_lesions(instances, models, baseline_geometry, followup_geometry, followup_img,
                            baseline_img, reg.transform, local_refinement)
    ids = instance_ids(baseline_mask, instances, id_to_label, reserved=set(fu_points))
    priors, splits = {}, []
    if fu_points:
        priors, splits = split_priors(lesions, ids, fu_points, followup_geometry.spacing)
        for lesion_id, parent in splits:
            log.info("step 2: lesion %s split from lesion %s (its click lies in the carried lesion)",
                     lesion_id, parent)
    timings["carry_s"] = time.perf_counter() - t0
    return CarriedBaseline(fu_points, outside, instances, ids, lesions, reg, baseline_img, timings, priors, splits)


def segment_followup(baseline_ct: np.ndarray, baseline_geometry: Geometry,
                     baseline_mask: np.ndarray, followup_ct: np.ndarray,
                     followup_geometry: Geometry, baseline_points: Mapping[int, Any],
                     followup_points: Mapping[int, Any],
                     params: RegistrationParameters | None = None,
                     names: tuple[str, str] = ("follow-up CT", "baseline CT"),
                     keep_carried: bool = False, local_refinement: bool = True) -> FollowupResult:
    """Segment the lesions of one follow-up CT (model-free).

    Step 1 when ``followup_points`` is empty (search around each carried baseline lesion),
    step 2 otherwise (one lesion per click). Raises
    :class:`~Task2.registration.RegistrationError` when the CTs cannot be registered and
    :class:`PointOutsideImageError` when every follow-up click lies outside the follow-up CT.
    """
    carried_baseline = carry_baseline(baseline_ct, baseline_geometry, baseline_mask, followup_ct,
                                      followup_geometry, baseline_points, followup_points, params, names,
                                      local_refinement)
    timings = carried_baseline.timings
    fu_points, lesions, ids = carried_baseline.followup_points, carried_baseline.lesions, carried_baseline.ids
    instances, reg = carried_baseline.instances, carried_baseline.registration
    outside = carried_baseline.skipped_points
    t0 = time.perf_counter()
    spacing = followup_geometry.spacing
    # the smallest type for the ids (a full-size follow-up CT has ~80 M voxels)
    top = max([*ids.values(), *fu_points, 0])
    labels = np.zeros(followup_ct.shape, dtype=np.uint16 if top < 65536 else np.int64)
    mask = np.zeros(followup_ct.shape, dtype=bool)

    def add(region: np.ndarray, lesion_id: int) -> None:
        labels[region & ~mask] = lesion_id  # where lesions touch, the first one keeps its voxels
        mask[region] = True

    if not fu_points:
        step = 1  # each carried lesion keeps its baseline id
        for label, lesion in lesions.items():
            add(segment_carried_lesion(followup_ct, spacing, lesion), ids[label])
    else:
        step = 2  # each lesion takes the id of the click it grows from
        for lesion_id, point in fu_points.items():
            add(segment_clicked_lesion(followup_ct, spacing, carried_baseline, lesion_id, point), int(lesion_id))
    timings["segmentation_s"] = time.perf_counter() - t0
    carried = None
    if keep_carried:
        carried = resample_to_followup(instances.astype(np.uint16), baseline_geometry, followup_geometry,
                                       reg.transform, nearest=True).astype(np.int32)
    return FollowupResult(mask=mask, labels=labels, step=step, registration=transform_to_dict(reg),
                          carried_points=carried_baseline.carried_points(),
                          skipped_points=outside, timings=timings, carried_labels=carried)


def segment_carried_lesion(followup_ct: np.ndarray, spacing, lesion) -> np.ndarray:
    """Step 1, model-free: a carried baseline lesion (:class:`~Task2.segmentation.CarriedLesion`)
    searched for at its carried centre; empty when it vanished. A boolean mask on the follow-up grid."""
    return segment_with_prior(followup_ct, spacing, lesion, lesion.centre, detect=True)


def segment_clicked_lesion(followup_ct: np.ndarray, spacing, carried: CarriedBaseline, lesion_id: int,
                           point) -> np.ndarray:
    """Step 2, model-free: the lesion a follow-up click names, from the carried shape it starts
    from when there is one (its baseline lesion's, or its share of a lesion that split: ``carried.priors``;
    :func:`~Task2.segmentation.segment_with_prior`), else as a new lesion
    (:func:`~Task2.segmentation.segment_new_lesion`). A boolean mask on the follow-up grid."""
    lesion = carried.priors.get(int(lesion_id))
    if lesion is not None:
        return segment_with_prior(followup_ct, spacing, lesion, point)
    return segment_new_lesion(followup_ct, spacing, point)


def carry_lesions(instances: np.ndarray, models: Mapping[int, Any], baseline_geometry: Geometry,
                  followup_geometry: Geometry, followup_img: Any, baseline_img: Any, transform: Any,
                  local_refinement: bool = True, margin_mm: float = 10.0) -> dict[int, CarriedLesion]:
    """Carry every baseline lesion (instance label) onto the follow-up grid.

    Its centre of gravity is carried through the global transform, refined by a local
    translation around the lesion (:func:`~Task2.registration.refine_locally`), and its mask
    is resampled (nearest neighbour) onto a box of the follow-up grid around the carried centre.
    Lesions carried outside the follow-up field of view are dropped."""
    out: dict[int, CarriedLesion] = {}
    spacing_b = np.asarray(baseline_geometry.spacing)
    spacing_f = np.asarray(followup_geometry.spacing)
    shape_f = np.asarray(followup_geometry.shape)
    import SimpleITK as sitk

    not_lesion = sitk.BinaryThreshold(to_sitk(instances.astype(np.uint16), baseline_geometry), 0, 0, 1, 0)
    for label, sl in enumerate(ndi.find_objects(instances), start=1):
        if sl is None or label not in models:
            continue
        local = instances[sl] == label
        com = np.asarray(ndi.center_of_mass(local)) + np.array([s.start for s in sl])
        centre = carry_points({0: com}, baseline_geometry, followup_geometry, transform)[0]
        lesion_transform = transform
        if local_refinement and np.all(centre >= 0) and np.all(centre <= shape_f - 1):
            radius = max((s.stop - s.start) * sp for s, sp in zip(sl, spacing_b)) / 2
            lesion_transform = refine_locally(followup_img, baseline_img, transform, centre,
                                              half_size_mm=max(60.0, 2.5 * radius),
                                              baseline_exclude=not_lesion)
            centre = carry_points({0: com}, baseline_geometry, followup_geometry, lesion_transform)[0]
        half_mm = max((s.stop - s.start) * sp for s, sp in zip(sl, spacing_b)) / 2 * 1.5 + margin_mm
        region = tuple(slice(int(max(0, np.floor(c - half_mm / sp))), int(min(n, np.ceil(c + half_mm / sp) + 1)))
                       for c, sp, n in zip(centre, spacing_f, shape_f))
        if any(s.stop - s.start < 1 for s in region):
            continue
        sub = instances[sl] == label
        mask = resample_region(sub.astype(np.uint8), baseline_geometry.sub_grid(sl), followup_geometry, region,
                               lesion_transform, nearest=True).astype(bool)
        if not mask.any():
            continue
        out[label] = CarriedLesion(label, region, mask, np.asarray(centre, dtype=float), models[label],
                                   lesion_transform)
    return out
