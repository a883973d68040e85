"""Preprocessing (one definition for training and prediction), click mapping, and the training
transforms of the MONAI backend. Arrays are ``[i, j, k]`` (NIfTI order) as everywhere in this
toolkit; a case's affine here is ``diag(spacing)`` (origin 0), so grids are related by spacing
alone and clicks map through the affines MONAI's ``Spacing`` returns."""
from __future__ import annotations

from typing import Any, Hashable, Mapping, Sequence

import numpy as np
from monai.transforms import Randomizable

from Task1.monai_backend.config import MonaiModelConfig


def _affine(spacing: Sequence[float]):
    import torch

    return torch.diag(torch.tensor([*map(float, spacing), 1.0], dtype=torch.float64))


def resample_to_model_grid(channels: Sequence[np.ndarray], spacing: Sequence[float], config: MonaiModelConfig, *,
                           mode: str = "bilinear"):
    """``channels`` (each ``[i, j, k]`` on ``spacing``) on the model's grid as a MONAI ``MetaTensor``
    ``(C, I, J, K)`` whose ``affine`` maps its voxels to mm (``monai.transforms.Spacing``)."""
    import torch
    from monai.data import MetaTensor
    from monai.transforms import Spacing

    stacked = torch.from_numpy(np.stack([np.asarray(c, dtype=np.float32) for c in channels]))
    image = MetaTensor(stacked, affine=_affine(spacing))
    return Spacing(pixdim=config.spacing, mode=mode, padding_mode="border")(image)


def normalise(ct_pet, config: MonaiModelConfig):
    """CT and PET (channels 0 and 1, model grid) to [0, 1] with the configured windows
    (``monai.transforms.ScaleIntensityRange``, clipped)."""
    import torch
    from monai.transforms import ScaleIntensityRange

    out = []
    for channel, (low, high) in zip(ct_pet, (config.ct_window, config.pet_range)):
        scaled = ScaleIntensityRange(a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)(channel[None])[0]
        # a plain tensor: the model-grid affine travels separately (MetaTensor metadata would
        # follow the data into the network and the inferer)
        out.append(scaled.as_tensor() if hasattr(scaled, "as_tensor") else torch.as_tensor(scaled))
    return torch.stack(out).float()


def preprocess_case(ct: np.ndarray, pet: np.ndarray, spacing: Sequence[float], config: MonaiModelConfig):
    """(normalised CT + PET on the model grid ``(2, I, J, K)`` float32 tensor, PET in SUV on that
    grid ``(I, J, K)``, the model grid's affine)."""
    resampled = resample_to_model_grid([ct, pet], spacing, config)
    affine = resampled.affine.clone()
    raw = resampled.as_tensor()
    return normalise(raw, config), raw[1].clone(), affine


def map_points(points: Sequence[Sequence[float]], from_spacing: Sequence[float], to_affine,
               shape: Sequence[int]) -> list[list[int]]:
    """Voxel indices on a grid of ``from_spacing`` (origin 0) to the nearest voxels of the grid
    with affine ``to_affine``, clipped into ``shape``."""
    if not len(points):
        return []
    source = np.asarray(_affine(from_spacing).numpy())
    target = np.linalg.inv(np.asarray(to_affine, dtype=np.float64))
    homogeneous = np.c_[np.asarray(points, dtype=np.float64), np.ones(len(points))]
    mapped = (target @ source @ homogeneous.T).T[:, :3]
    upper = np.asarray(shape) - 1
    return [[int(v) for v in np.clip(np.rint(p), 0, upper)] for p in mapped]


def back_to_input_grid(probability, model_affine, spacing: Sequence[float], shape: Sequence[int]) -> np.ndarray:
    """A map on the model grid ``(I, J, K)`` back onto the input grid (linear,
    ``monai.transforms.SpatialResample``); float32 ``[i, j, k]``."""
    import torch
    from monai.data import MetaTensor
    from monai.transforms import SpatialResample

    image = MetaTensor(torch.as_tensor(probability, dtype=torch.float32)[None], affine=model_affine)
    out = SpatialResample(mode="bilinear", padding_mode="border")(image, dst_affine=_affine(spacing),
                                                                  spatial_size=tuple(int(s) for s in shape))
    return np.ascontiguousarray(out.as_tensor()[0].numpy(), dtype=np.float32)


class AppendClicksd(Randomizable):
    """MONAI dictionary transform: draw a click step 0..max, simulate the challenge's clicks on
    the patch (:func:`clicks.simulate.simulate_patch_clicks` on ``label`` and the SUV patch
    ``suv``), append the encoded click channels to ``image`` and drop ``suv``. The same clicks and
    encodings as the nnU-Net click trainers; seeded through ``Compose.set_random_state``."""

    def __init__(self, config: MonaiModelConfig, *, image_key: str = "image", label_key: str = "label",
                 suv_key: str = "suv"):
        self.config = config
        self.keys = (image_key, label_key, suv_key)

    def randomize(self, data: Any = None) -> None:
        self._step = int(self.R.randint(0, self.config.clicks.max_interaction_step + 1))
        self._seed = int(self.R.randint(0, 2 ** 31 - 1))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        import torch

        from clicks.simulate import ClickDrawSettings, simulate_patch_clicks
        from Task1.click_transforms import click_channels

        image_key, label_key, suv_key = self.keys
        out = dict(data)
        label = np.asarray(torch.as_tensor(out[label_key])[0]) > 0
        suv = np.asarray(torch.as_tensor(out.pop(suv_key))[0], dtype=np.float32)
        clicks_config = self.config.clicks
        self.randomize()
        settings = ClickDrawSettings(symmetric_offsets=clicks_config.symmetric_offsets)
        clicks = simulate_patch_clicks(label, suv, self._step, np.random.default_rng(self._seed), settings=settings)
        maps = click_channels(label.shape, clicks, clicks_config.encoding, clicks_config.encoding_size,
                              clicks_config.click_order)
        image = torch.as_tensor(out[image_key]).float()
        out[image_key] = torch.cat((image, torch.from_numpy(maps)), dim=0)
        out[label_key] = torch.as_tensor(out[label_key]).float()
        return out


def training_transforms(config: MonaiModelConfig):
    """Pad to the patch, crop (1 lesion-centred : 2 random, as nnU-Net's foreground
    oversampling), flip on each axis, then the clicks (:class:`AppendClicksd`)."""
    from monai.transforms import Compose, RandCropByPosNegLabeld, RandFlipd, SpatialPadd

    keys = ["image", "label", "suv"]
    patch = list(config.patch_size)
    return Compose([
        SpatialPadd(keys=keys, spatial_size=patch, mode="constant"),
        RandCropByPosNegLabeld(keys=keys, label_key="label", spatial_size=patch, pos=1, neg=2, num_samples=1,
                               allow_smaller=False),
        RandFlipd(keys=keys, prob=0.5, spatial_axis=0),
        RandFlipd(keys=keys, prob=0.5, spatial_axis=1),
        RandFlipd(keys=keys, prob=0.5, spatial_axis=2),
        AppendClicksd(config),
    ])
