"""Tracer classification (FDG or PSMA) from the PET alone, model-free.

The physiology it relies on: FDG, a glucose analogue, lights up the brain (SUV 7-10, about 1.2 l
of grey and white matter, several times the soft-tissue background); PSMA ligands leave the brain
cold (SUV well below the background) and light up the salivary glands instead (small paired
glands, 10-30 ml each, SUV 10-20). So:

1. Find the head: from the top of the body down, the slices whose body cross-section is under
   half the widest one (head and neck are narrower than the trunk).
2. **FDG** when the head holds a hot blob (above ``HOT_RATIO`` x the body's median uptake) the
   size of a brain: at least ``BRAIN_BODY_FRACTION`` of the body volume in view (an adult brain
   is about 1.7 % of the body, a salivary gland 0.04 %) and ``BRAIN_HEAD_FRACTION`` of the head
   and neck volume. Relative sizes, so a scaled phantom body is judged like a patient.
3. **PSMA** when it does not and the whole head is in the field of view (air above it, at least
   ``HEAD_MIN_SLICES`` slices of head and neck), or when the head and neck show two or more small
   very hot blobs (salivary glands, above ``GLAND_RATIO`` x the median).
4. Otherwise **unknown** (``tracer=None``): a field of view that ends below the brain without
   gland uptake says nothing here; callers route such cases to tracer-independent models.

Measured on held-out phantoms in ``benchmarks/bench_tracer.py`` (README table). Limits: an FDG
scan whose field of view stops at the skull base, a brain with very low uptake (sedation,
hypoglycaemia, brain lesions), or a PSMA scan with hot brain metastases are not what the rule
expects. Arrays ``[i, j, k]`` with ``k`` running to the head (the autoPET orientation, feet at
``k = 0``); pass ``head_at_top=False`` for the reverse.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TRACERS = ("FDG", "PSMA")
HOT_RATIO = 2.0             # brain uptake / median body uptake: FDG 4-10, PSMA below 1
BRAIN_BODY_FRACTION = 0.008  # of the body volume in view (adult brain about 0.017)
BRAIN_HEAD_FRACTION = 0.2    # of the head-and-neck volume (brain about a third of it)
GLAND_RATIO = 5.0
GLAND_ML = (1.0, 80.0)
HEAD_MIN_SLICES = 3


@dataclass(frozen=True)
class TracerCall:
    """The result of :func:`classify_tracer`: ``tracer`` "FDG", "PSMA" or None (unknown), why,
    and the measurements behind it."""

    tracer: str | None
    reason: str
    measurements: dict = field(default_factory=dict)


def _components(mask: np.ndarray):
    import cc3d

    labels, n = cc3d.connected_components(mask.astype(np.uint8), connectivity=26, return_N=True)
    return labels, np.bincount(labels.ravel(), minlength=n + 1)[1:]


def classify_tracer(pet: np.ndarray, spacing, *, head_at_top: bool = True) -> TracerCall:
    """FDG, PSMA or unknown from a PET volume (SUV or any positive multiple of it: only ratios
    to the body's median uptake are used) and its voxel spacing in mm. See the module docstring."""
    pet = np.asarray(pet, dtype=np.float32)
    if not head_at_top:
        pet = pet[:, :, ::-1]
    voxel_ml = float(np.prod(spacing)) / 1000.0
    positive = pet[pet > 0]
    if positive.size == 0:
        return TracerCall(None, "the PET is empty", {})
    body = pet > 0.3 * float(np.median(positive))
    background = float(np.median(pet[body]))
    area = body.sum(axis=(0, 1))
    slices = np.flatnonzero(area)
    top = int(slices[-1])
    k = top
    while k >= slices[0] and area[k] < 0.5 * area.max():
        k -= 1
    head = slice(k + 1, top + 1)
    head_mm = float((top - k) * spacing[2])
    complete = top < pet.shape[2] - 1  # air above the head: the whole head is in the field of view
    measured = {"background_suv": round(background, 3), "head_mm": round(head_mm, 1), "head_complete": complete}
    if top - k < 1:
        return TracerCall(None, "no head or neck in the field of view", measured)
    region = pet[:, :, head] * body[:, :, head]
    _, hot_sizes = _components(region > HOT_RATIO * background)
    blob = float(hot_sizes.max(initial=0))
    body_fraction = blob / float(body.sum())
    head_fraction = blob / max(float(body[:, :, head].sum()), 1.0)
    _, gland_sizes = _components(region > GLAND_RATIO * background)
    gland_ml = gland_sizes * voxel_ml
    n_glands = int(np.sum((gland_ml >= GLAND_ML[0]) & (gland_ml <= GLAND_ML[1])))
    measured.update(hot_blob_ml=round(blob * voxel_ml, 1), hot_blob_body_fraction=round(body_fraction, 5),
                    hot_blob_head_fraction=round(head_fraction, 4), hot_glands=n_glands)
    if body_fraction >= BRAIN_BODY_FRACTION and head_fraction >= BRAIN_HEAD_FRACTION:
        return TracerCall("FDG", f"hot brain ({blob * voxel_ml:.0f} ml, {100 * body_fraction:.1f} % of the body, "
                                 f"above {HOT_RATIO:g}x the median uptake)", measured)
    if complete and top - k >= HEAD_MIN_SLICES:
        return TracerCall("PSMA", "cold brain (the whole head is in view, no hot brain-sized blob)", measured)
    if n_glands >= 2:
        return TracerCall("PSMA", f"{n_glands} hot gland-sized blobs in head and neck, no hot brain", measured)
    return TracerCall(None, "the field of view ends below the brain and shows no gland uptake", measured)
