"""Overlay pictures of a case: PET maximum intensity projection with truth, predictions and clicks.

A curve says how good a run was; an overlay says where it went wrong (a flooded organ, a
missed lesion, a click far from its lesion). One PNG per case, coronal MIP (projection along
``j``), head at the top, with physical aspect ratio:

- panel 1: PET MIP, truth contour (green) and every simulated click
  (tumor: red ``+``, background: blue ``x``);
- one panel per shown step: the prediction at that step (red contour), the truth (green) and the
  clicks given at that step.

Arrays are indexed ``[i, j, k]`` (NIfTI order, ``k`` feet -> head); clicks are ``[i, j, k]``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


def coronal_mip(volume: np.ndarray) -> np.ndarray:
    """Maximum over ``j`` of a ``[i, j, k]`` volume, as a ``[k, i]`` image with the head on top."""
    return np.asarray(volume).max(axis=1).T[::-1]


def plot_case_overlay(pet: np.ndarray, label: np.ndarray, predictions: Mapping[int, np.ndarray],
                      clicks: Mapping[str, Sequence[Sequence[int]]], spacing: Sequence[float],
                      out_png: str | os.PathLike, title: str = "") -> Path:
    """Write the overlay PNG of one case (see the module docstring); returns its path.

    ``predictions`` maps a step s to its mask; the clicks shown with it are the first s tumor
    and s background clicks, as the protocol gives them.
    """
    import matplotlib

    matplotlib.use("Agg")  # here, not at import: importing this module does no work
    import matplotlib.pyplot as plt

    from autopet_common.image_io import atomic_write_bytes

    pet_mip = coronal_mip(pet)
    nk = pet_mip.shape[0]
    vmax = float(np.percentile(pet_mip, 99.5)) or 1.0
    extent = (0, pet_mip.shape[1] * spacing[0], 0, nk * spacing[2])  # mm, k upwards

    def to_xy(points):
        pts = np.asarray(points, dtype=float).reshape(-1, 3)
        return (pts[:, 0] + 0.5) * spacing[0], (pts[:, 2] + 0.5) * spacing[2]

    def draw(ax, mask, n_clicks, heading):
        ax.imshow(pet_mip, cmap="gray_r", vmin=0, vmax=vmax, extent=extent, interpolation="nearest")
        for volume, colour in ((label, "#1a9850"), (mask, "#d73027")):
            if volume is not None and np.any(volume):
                ax.contour(coronal_mip(volume > 0).astype(float), levels=[0.5], colors=colour,
                           linewidths=1.0, extent=extent,
                           origin="upper")
        for kind, marker, colour in (("tumor", "+", "#d73027"), ("background", "x", "#2166ac")):
            points = list(clicks.get(kind, []))[:n_clicks]
            if points:
                x, y = to_xy(points)
                ax.scatter(x, y, marker=marker, c=colour, s=40, linewidths=1.5)
        ax.set_title(heading, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])

    steps = sorted(predictions)
    n_panels = 1 + len(steps)
    height = 5.0
    width = height * (extent[1] / max(extent[3], 1e-6)) * n_panels + 0.4
    fig, axes = plt.subplots(1, n_panels, figsize=(min(max(width, 6.0), 18.0), height), squeeze=False)
    n_all = max(len(clicks.get("tumor", [])), len(clicks.get("background", [])))
    draw(axes[0, 0], None, n_all, "PET MIP, truth (green), all clicks")
    for ax, step in zip(axes[0, 1:], steps):
        draw(ax, predictions[step], step, f"step {step}: prediction (red)")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(out_png, buffer.getvalue())
