"""Per-lesion patches for the learned Task 2 model (LongiSeg style): one network input per lesion.

The challenge's Task 2 winner segmented each follow-up lesion in a patch centred on its point,
from the follow-up CT, the baseline CT, the baseline lesion mask and Gaussian point blobs. Here
a patch is a box of the follow-up grid (``PATCH_HALF_SIZE_MM`` around the point, more for a
large carried lesion; clipped at the image border) around:

- step 2: the follow-up click of the lesion (``kind`` ``"clicked"`` when a baseline lesion has
  the same id, ``"new"`` otherwise);
- step 1: the carried centre of each baseline lesion (``kind`` ``"carried"``).

Channels (``PATCH_CHANNEL_NAMES``, nnU-Net normalisation names; arrays ``[i, j, k]`` on the
patch, float32):

0. follow-up CT (HU);
1. baseline CT carried onto the patch through the lesion's transform (the global registration
   refined around the lesion, :func:`Task2.pipeline.carry_lesions`), -1024 HU outside it;
2. that baseline lesion's mask carried the same way (0/1; zeros for a new lesion); at step 2,
   where a new click lies inside a clicked lesion's carried mask (a split,
   :mod:`Task2.lesion_splits`), each of the two clicks' share of that mask;
3. follow-up point blob: a Gaussian of peak 1 at the follow-up click (zeros at step 1);
4. baseline point blob: a Gaussian of peak 1 at the lesion's carried baseline centre (zeros for
   a new lesion);
5. only with ``proposal`` (``PROPOSAL_CHANNEL_NAMES``): the model-free segmentation of this lesion
   (0/1), what the registration pipeline would answer for it
   (:func:`Task2.pipeline.segment_carried_lesion` at step 1,
   :func:`Task2.pipeline.segment_clicked_lesion` at step 2). The network then refines a proposal
   instead of fitting the lesion from scratch; this is how a learned model can start from the
   pipeline's answer and still see the images.

The same code makes the training samples (:mod:`Task2.convert_dataset` ``--patches``) and the
prediction inputs (:mod:`Task2.patch_model`), so both see the same channels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
from scipy import ndimage as ndi

from autopet_common.image_io import Geometry, to_sitk

PATCH_CHANNEL_NAMES = {"0": "CT", "1": "CT", "2": "noNorm", "3": "noNorm", "4": "noNorm"}
PROPOSAL_CHANNEL = len(PATCH_CHANNEL_NAMES)  # the pipeline's answer for the lesion, after the five patch channels
PROPOSAL_CHANNEL_NAMES = {**PATCH_CHANNEL_NAMES, str(PROPOSAL_CHANNEL): "noNorm"}
PATCH_HALF_SIZE_MM = 48.0     # a 96 mm box: a 3-25 mm lesion, grown 1.6x, with its surroundings
MAX_HALF_SIZE_MM = 96.0       # the box grows with a large carried lesion up to this
BLOB_SIGMA_MM = 4.0           # Gaussian point blobs (peak 1)
AIR_HU = -1024.0


@dataclass
class LesionPatch:
    """One network input: ``channels`` (5, *patch shape) on ``region`` (slices of the follow-up
    grid), for lesion ``lesion_id``; ``centre`` is the patch's point (follow-up voxel index)."""

    lesion_id: int
    kind: str  # "carried" (step 1), "clicked" (step 2, with a baseline lesion) or "new" (step 2)
    region: tuple[slice, ...]
    centre: np.ndarray
    channels: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s.stop - s.start) for s in self.region)


def patch_region(centre, spacing, shape, half_size_mm: float = PATCH_HALF_SIZE_MM) -> tuple[slice, ...]:
    """The box of ``half_size_mm`` around ``centre`` (voxel index), clipped to ``shape``."""
    region = []
    for c, sp, n in zip(np.asarray(centre, float), spacing, shape):
        half = int(np.ceil(half_size_mm / float(sp)))
        lo = int(np.clip(np.round(c) - half, 0, n - 1))
        hi = int(np.clip(np.round(c) + half + 1, lo + 1, n))
        region.append(slice(lo, hi))
    return tuple(region)


def gaussian_blob(shape, centre, spacing, sigma_mm: float = BLOB_SIGMA_MM) -> np.ndarray:
    """A Gaussian of peak 1 at ``centre`` (voxel index, may be fractional or outside ``shape``),
    width ``sigma_mm`` per axis in mm; float32 ``[i, j, k]``."""
    axes = [np.exp(-0.5 * ((np.arange(n) - c) * sp / sigma_mm) ** 2).astype(np.float32)
            for n, c, sp in zip(shape, np.asarray(centre, float), spacing)]
    return axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]


def lesion_half_size_mm(lesion, spacing) -> float:
    """Half the box for a carried lesion: room for it to grow 1.6x around its centre, at least
    ``PATCH_HALF_SIZE_MM``, at most ``MAX_HALF_SIZE_MM``."""
    voxels = np.argwhere(lesion.mask)
    if voxels.size == 0:
        return PATCH_HALF_SIZE_MM
    offset = (voxels + [s.start for s in lesion.region] - lesion.centre) * np.asarray(spacing)
    reach = float(np.sqrt((offset ** 2).sum(axis=1)).max())
    return float(np.clip(1.6 * reach + 12.0, PATCH_HALF_SIZE_MM, MAX_HALF_SIZE_MM))


class PatchMaker:
    """Makes the patches of one follow-up from a :class:`Task2.pipeline.CarriedBaseline`;
    ``proposal``: add channel 5 (the model-free segmentation, see the module docstring)."""

    def __init__(self, carried, baseline_geometry: Geometry, followup_ct: np.ndarray, followup_geometry: Geometry,
                 *, proposal: bool = False):
        self.carried = carried
        self.proposal = proposal
        self.baseline_geometry = baseline_geometry
        self.followup_ct = followup_ct
        self.followup_geometry = followup_geometry
        self._objects = ndi.find_objects(carried.instances)

    def _lesion_mask_image(self, label: int):
        sl = self._objects[label - 1]
        return to_sitk((self.carried.instances[sl] == label).astype(np.uint8), self.baseline_geometry.sub_grid(sl))

    def patch(self, lesion_id: int, centre, lesion, followup_click: bool) -> LesionPatch:
        """The patch of lesion ``lesion_id`` centred on ``centre``; ``lesion``: the carried
        shape it starts from (a :class:`~Task2.segmentation.CarriedLesion`, None for a new
        lesion); ``followup_click``: whether ``centre`` is a click."""
        from .registration import resample_image_region

        geometry, spacing = self.followup_geometry, self.followup_geometry.spacing
        half = lesion_half_size_mm(lesion, spacing) if lesion is not None else PATCH_HALF_SIZE_MM
        region = patch_region(centre, spacing, geometry.shape, half)
        shape = tuple(s.stop - s.start for s in region)
        start = np.array([s.start for s in region], dtype=float)
        transform = lesion.transform if lesion is not None else self.carried.registration.transform
        channels = np.zeros((6 if self.proposal else 5, *shape), dtype=np.float32)
        channels[0] = self.followup_ct[region]
        channels[1] = resample_image_region(self.carried.baseline_image, geometry, region, transform,
                                            nearest=False, default=AIR_HU)
        if lesion is not None:
            if lesion.split:  # its share of a lesion that split (Task2.lesion_splits)
                channels[2] = _pasted(lesion.mask, lesion.region, region)
            else:
                channels[2] = resample_image_region(self._lesion_mask_image(lesion.label), geometry, region,
                                                    transform, nearest=True) > 0
            channels[4] = gaussian_blob(shape, lesion.centre - start, spacing)
        if followup_click:
            channels[3] = gaussian_blob(shape, np.asarray(centre, float) - start, spacing)
        if self.proposal:
            from .pipeline import segment_carried_lesion, segment_clicked_lesion

            answer = (segment_clicked_lesion(self.followup_ct, spacing, self.carried, lesion_id, centre)
                      if followup_click else segment_carried_lesion(self.followup_ct, spacing, lesion))
            channels[PROPOSAL_CHANNEL] = answer[region]
        kind = "new" if lesion is None else ("clicked" if followup_click else "carried")
        return LesionPatch(int(lesion_id), kind, region, np.asarray(centre, float), channels)

    def step_patches(self, followup_points: Mapping[int, np.ndarray] | None = None) -> list[LesionPatch]:
        """Step 1 (no points): one patch per carried baseline lesion at its carried centre.
        Step 2: one patch per follow-up click; the carried shape it starts from, if any (its
        baseline lesion's, or its share of one that split: ``carried.priors``), fills channels 1, 2 and 4."""
        carried = self.carried
        points = carried.followup_points if followup_points is None else followup_points
        if not points:
            return [self.patch(carried.ids[label], lesion.centre, lesion, followup_click=False)
                    for label, lesion in sorted(carried.lesions.items())]
        return [self.patch(lesion_id, point, carried.priors.get(int(lesion_id)), followup_click=True)
                for lesion_id, point in sorted(points.items())]


def _pasted(mask: np.ndarray, mask_region: tuple[slice, ...], region: tuple[slice, ...]) -> np.ndarray:
    """``mask`` (on the follow-up sub-grid ``mask_region``) on the sub-grid ``region``, zeros
    where it does not reach."""
    out = np.zeros(tuple(s.stop - s.start for s in region), dtype=np.float32)
    lo = [max(a.start, b.start) for a, b in zip(mask_region, region)]
    hi = [min(a.stop, b.stop) for a, b in zip(mask_region, region)]
    if all(h > low for low, h in zip(lo, hi)):
        out[tuple(slice(low - r.start, h - r.start) for low, h, r in zip(lo, hi, region))] = \
            mask[tuple(slice(low - m.start, h - m.start) for low, h, m in zip(lo, hi, mask_region))]
    return out
