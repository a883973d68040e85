"""Training-time clicks for nnU-Net: an augmentation transform that appends click channels.

The clicks themselves come from :func:`clicks.simulate.simulate_patch_clicks`, the same code
(and the same challenge rules: component sampling, distance-transform centres, surface and
high-uptake fill-up clicks, the 99.75th-percentile background region, the background quirk)
as the challenge's click simulator; the channels from :func:`clicks.encodings.encode_clicks`,
as at prediction time. What training changes on purpose is a named setting
(:class:`clicks.simulate.ClickDrawSettings`): symmetric offsets when offsets are used, and
padding (nnU-Net's label -1) excluded from background clicks.

Arrays here are patches in nnU-Net's array order (whatever axis order the plans use); click
points are voxel indices of that array. The transform draws a generator per sample from
NumPy's global state, which nnU-Net's data-loader workers seed independently.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from autopet_common.contract import TASK1_MAX_CLICKS
from clicks.simulate import (ClickDrawSettings, case_share_of_tumor_clicks, random_patch_clicks,
                             simulate_patch_clicks)
# the tumor class (organ-supervised targets hold organ classes 2, 3, ... besides it)
from Task1.organs import LESION_LABEL

MAX_INTERACTION_STEP = TASK1_MAX_CLICKS


def click_channels(shape: Sequence[int], clicks: dict[str, list], encoding: str = "edt",
                   size: float | None = None, order: Sequence[str] = ("tumor", "background")) -> np.ndarray:
    """The click channels as float32 ``(len(order), *shape)``, in ``order`` (tumor, background).

    Built with :func:`clicks.encodings.encode_clicks` so training and prediction use one
    definition. ``encoding`` "edt" (distance-transform ball) or "gaussian"; ``size`` is the ball
    radius or Gaussian sigma in voxels (None: the encodings module's default).
    """
    from clicks.encodings import encode_clicks

    tumor_map, background_map = encode_clicks(tuple(int(s) for s in shape), clicks, encoding=encoding,
                                              size=size)
    maps = {"tumor": tumor_map, "background": background_map}
    return np.stack([maps[kind] for kind in order]).astype(np.float32, copy=False)


class AppendClickChannelsTransform:
    """nnU-Net (batchgeneratorsv2) transform: draw a step, simulate clicks on the patch, append
    the click channels to the image.

    Must run while the segmentation still holds -1 for padding (before ``RemoveLabelTansform``)
    so padded voxels are excluded; it leaves the segmentation unchanged.
    Parameters are plain attributes so trainer variants can change one of them.
    """

    def __init__(self, pet_channel: int = 1, max_step: int = MAX_INTERACTION_STEP, encoding: str = "edt",
                 encoding_size: float | None = None, *, settings: ClickDrawSettings | None = None,
                 fixed_step: int | None = None, order: Sequence[str] = ("tumor", "background"),
                 random_fraction: float = 0.0, case_extra_lesions: int = 0):
        self.pet_channel = pet_channel
        self.max_step = max_step
        self.encoding = encoding
        self.encoding_size = encoding_size
        self.settings = ClickDrawSettings(symmetric_offsets=True) if settings is None else settings
        self.fixed_step = fixed_step
        self.order = tuple(order)
        # share of samples whose clicks are drawn uniformly at random (clicks.simulate.random_patch_clicks)
        self.random_fraction = float(random_fraction)
        # 0: the patch's lesions get all of the step's tumor clicks, as if they were the whole
        # case. n > 0: the patch stands in a case with 0..n further lesions (drawn per sample),
        # and its lesions get their share of the step's tumor clicks
        # (clicks.simulate.case_share_of_tumor_clicks); background clicks are unchanged.
        self.case_extra_lesions = int(case_extra_lesions)
        if self.case_extra_lesions < 0:
            raise ValueError(f"case_extra_lesions must be >= 0, got {case_extra_lesions!r}")

    def tumor_clicks_for(self, lesion: np.ndarray, step: int, rng) -> int | None:
        """The patch's tumor clicks at ``step`` (None: ``step``, the patch is the whole case)."""
        if not self.case_extra_lesions or step <= 0 or not lesion.any():
            return None
        import cc3d

        n_patch = int(cc3d.connected_components(lesion, connectivity=26, return_N=True)[1])
        n_case = n_patch + int(rng.integers(0, self.case_extra_lesions + 1))
        return case_share_of_tumor_clicks(n_patch, n_case, step, rng)

    def __call__(self, **data_dict):
        import torch

        image = data_dict["image"]
        seg = data_dict["segmentation"]
        seg0 = seg[0].numpy() if hasattr(seg, "numpy") else np.asarray(seg[0])
        pet = image[self.pet_channel]
        pet = pet.numpy() if hasattr(pet, "numpy") else np.asarray(pet)
        # a generator per sample, seeded from NumPy's global state (seeded per worker by nnU-Net)
        rng = np.random.default_rng(np.random.randint(0, 2 ** 31 - 1))
        step = self.fixed_step if self.fixed_step is not None else int(rng.integers(0, self.max_step + 1))
        lesion = seg0 == LESION_LABEL
        if self.random_fraction and rng.random() < self.random_fraction:
            clicks = random_patch_clicks(lesion, step, rng, valid=seg0 >= 0)
        else:
            clicks = simulate_patch_clicks(lesion, pet, step, rng, valid=seg0 >= 0, settings=self.settings,
                                           tumor_clicks=self.tumor_clicks_for(lesion, step, rng))
        maps = click_channels(seg0.shape, clicks, self.encoding, self.encoding_size, self.order)
        n = image.shape[0]
        if isinstance(image, torch.Tensor):
            # one allocation, each channel written once (a torch.cat of new arrays costs twice)
            out = torch.empty((n + len(maps), *image.shape[1:]), dtype=image.dtype)
            out[:n] = image
            for c, click_map in enumerate(maps):
                out[n + c] = torch.from_numpy(click_map)
        else:
            out = np.concatenate((np.asarray(image), maps.astype(np.asarray(image).dtype)), axis=0)
        data_dict["image"] = out
        return data_dict

    def __repr__(self) -> str:
        return (f"AppendClickChannelsTransform(pet_channel={self.pet_channel}, max_step={self.max_step}, "
                f"encoding={self.encoding!r}, encoding_size={self.encoding_size}, settings={self.settings}, "
                f"random_fraction={self.random_fraction}, case_extra_lesions={self.case_extra_lesions})")
