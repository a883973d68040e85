"""The four nnU-Net input channels of a Task 2 follow-up (shared by conversion and prediction).

Arrays ``[i, j, k]`` on the follow-up grid: 0 follow-up CT (HU), 1 baseline CT registered onto
the follow-up (HU, -1024 outside the baseline's field of view), 2 registered baseline lesion
mask (0/1), 3 click map (ball heatmap around each follow-up click; all zeros at step 1).
Registration is the model-free pipeline's (rigid + affine, optional BSpline).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from autopet_common.image_io import Geometry, to_sitk

CHANNEL_NAMES = {"0": "CT", "1": "CT", "2": "noNorm", "3": "noNorm"}
CLICK_RADIUS_VOXELS = 3.0


def followup_channels(baseline_ct: np.ndarray, baseline_geometry: Geometry, baseline_mask: np.ndarray,
                      followup_ct: np.ndarray, followup_geometry: Geometry,
                      followup_points: Mapping[int, Any], params=None,
                      names: tuple[str, str] = ("follow-up CT", "baseline CT")) -> list[np.ndarray]:
    """Register once and return the four channels (float32, follow-up grid)."""
    from clicks.encodings import ball_heatmap

    from .pipeline import split_points_inside
    from .registration import register_ct, resample_to_followup

    reg = register_ct(to_sitk(followup_ct, followup_geometry), to_sitk(baseline_ct, baseline_geometry),
                      params, names)
    registered_ct = resample_to_followup(baseline_ct.astype(np.float32), baseline_geometry, followup_geometry,
                                         reg.transform, nearest=False, default=-1024.0)
    registered_mask = resample_to_followup((np.asarray(baseline_mask) > 0).astype(np.uint8), baseline_geometry,
                                           followup_geometry, reg.transform, nearest=True)
    inside, _ = split_points_inside(followup_points, followup_geometry.shape, names[0] + " clicks")
    points = [tuple(int(v) for v in np.round(p)) for p in inside.values()]
    clicks = (ball_heatmap(followup_geometry.shape, points, radius=CLICK_RADIUS_VOXELS) if points
              else np.zeros(followup_geometry.shape, np.float32))
    return [followup_ct.astype(np.float32), registered_ct.astype(np.float32),
            registered_mask.astype(np.float32), np.asarray(clicks, dtype=np.float32)]
