"""Training augmentations beyond nnU-Net's own, as batchgeneratorsv2-style transforms.

:class:`MisalignChannelTransform` moves one image channel (CT by default) against the others
and the label by a small random rigid motion: PET and CT of one study are never perfectly
registered (breathing, patient motion between the CT and the PET bed positions), and a model
trained on perfect alignment learns to trust CT edges that real PET lesions do not follow.

Arrays are patches in nnU-Net's array order ``(channels, x, y, z)``; shifts are in voxels of the
patch, angles in degrees.
"""
from __future__ import annotations

import numpy as np


def rotation_matrix(axis: np.ndarray, degrees: float) -> np.ndarray:
    """3x3 rotation by ``degrees`` about unit vector ``axis`` (Rodrigues' formula)."""
    axis = np.asarray(axis, dtype=float)
    axis = axis / max(np.linalg.norm(axis), 1e-12)
    angle = np.deg2rad(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def misalign(volume: np.ndarray, shift: np.ndarray, axis: np.ndarray, degrees: float) -> np.ndarray:
    """``volume`` resampled (linear, edge values outside) after a rotation about its centre and a
    shift (voxels): the output at ``o`` is the input at ``R (o - c) + c + shift``."""
    from scipy.ndimage import affine_transform

    volume = np.asarray(volume, dtype=np.float32)
    centre = (np.asarray(volume.shape, dtype=float) - 1) / 2
    matrix = rotation_matrix(axis, degrees)
    offset = centre - matrix @ centre + np.asarray(shift, dtype=float)
    return affine_transform(volume, matrix, offset=offset, order=1, mode="nearest")


class MisalignChannelTransform:
    """With probability ``probability``, move image channel ``channel`` by a random shift of up to
    ``max_shift`` voxels per axis and a rotation of up to ``max_degrees`` about a random axis.
    Leaves the other channels and the segmentation as they are. Draws from NumPy's global state
    (seeded per data-loader worker by nnU-Net)."""

    def __init__(self, channel: int = 0, max_shift: float = 2.0, max_degrees: float = 3.0, probability: float = 0.5):
        self.channel = int(channel)
        self.max_shift = float(max_shift)
        self.max_degrees = float(max_degrees)
        self.probability = float(probability)

    def __call__(self, **data_dict):
        import torch

        rng = np.random.default_rng(np.random.randint(0, 2 ** 31 - 1))
        if rng.random() >= self.probability:
            return data_dict
        image = data_dict["image"]
        shift = rng.uniform(-self.max_shift, self.max_shift, size=3)
        degrees = float(rng.uniform(-self.max_degrees, self.max_degrees))
        axis = rng.normal(size=3)
        source = image[self.channel]
        moved = misalign(source.numpy() if isinstance(source, torch.Tensor) else source, shift, axis, degrees)
        if isinstance(image, torch.Tensor):
            image[self.channel] = torch.from_numpy(moved).to(image.dtype)
        else:
            image[self.channel] = moved
        return data_dict

    def __repr__(self) -> str:
        return (f"MisalignChannelTransform(channel={self.channel}, max_shift={self.max_shift}, "
                f"max_degrees={self.max_degrees}, probability={self.probability})")
