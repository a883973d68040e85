"""A Task 1 job's input folder, read and checked: the CT and PET (CT resampled onto the PET grid
when the grids differ), the clicks inside the image; degenerate images are warned about.

    /input/images/ct/<uuid>.mha, /input/images/pet/<uuid>.mha, /input/lesion-clicks.json

Arrays ``[i, j, k]`` (NIfTI order); clicks are voxel indices of the PET grid.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from autopet_common.contract import TASK1_CLICKS_FILE, TASK1_CT_SUBDIR, TASK1_PET_SUBDIR

log = logging.getLogger("Task1.inputs")


def resample_onto(array: Any, geometry: Any, target: Any, default_value: float) -> Any:
    """Resample ``array[i, j, k]`` on ``geometry`` onto the ``target`` grid (linear)."""
    import numpy as np
    import SimpleITK as sitk
    from autopet_common.image_io import to_sitk

    reference = sitk.Image([int(s) for s in target.shape], sitk.sitkFloat32)
    target.apply_to_sitk(reference)
    moved = sitk.Resample(to_sitk(np.asarray(array, dtype=np.float32), geometry), reference,
                          sitk.Transform(), sitk.sitkLinear, float(default_value), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(moved).transpose(2, 1, 0)


def ct_on_pet_grid(ct: Any, ct_geometry: Any, pet_geometry: Any) -> Any:
    """The CT on the PET's grid: as it is when the grids agree, else resampled (linear, -1024 HU
    outside) with a warning; masks are written on the PET grid."""
    from autopet_common.image_io import same_grid

    if same_grid(ct_geometry, pet_geometry):
        return ct
    log.warning("CT and PET grids differ: resampling CT (linear, -1024 HU outside) onto the "
                "PET grid %s; the mask is written on the PET grid", pet_geometry.shape)
    return resample_onto(ct, ct_geometry, pet_geometry, default_value=-1024.0)


def read_task1_clicks(input_dir: Path, shape: Sequence[int]) -> dict[str, list[list[int]]]:
    """Clicks from ``lesion-clicks.json`` inside the image; absent or empty file = step 0."""
    from autopet_common.click_io import read_clicks_json, split_clicks_inside

    path = input_dir / TASK1_CLICKS_FILE
    if not path.exists():
        log.info("no %s: step 0 (no clicks)", TASK1_CLICKS_FILE)
    clicks = read_clicks_json(path, missing_ok=True)
    inside, outside = split_clicks_inside(clicks, tuple(shape))
    if outside:
        log.warning("skipping %d click(s) outside the image of shape %s in %s: %s", len(outside),
                    tuple(shape), path, ", ".join(f"{kind} {point}" for kind, point in outside))
    log.info("clicks: %d tumor, %d background%s", len(inside["tumor"]), len(inside["background"]),
             "" if inside["tumor"] or inside["background"] else " (step 0)")
    return inside


def read_task1_pet(input_dir: Path):
    """(PET path, PET in SUV, its geometry), checked."""
    import numpy as np
    from autopet_common.image_io import find_single_image, read_image

    pet_path = find_single_image(input_dir / TASK1_PET_SUBDIR, "PET")
    pet, geometry = read_image(pet_path, dtype=np.float32, check_finite=True, what="PET image")
    return pet_path, pet, geometry


def read_task1_inputs(input_dir: Path):
    """(CT path, CT on the PET grid, PET, PET geometry, clicks inside the image), checked."""
    import numpy as np
    from autopet_common.image_io import degenerate_image_problem, find_single_image, read_image

    ct_path = find_single_image(input_dir / TASK1_CT_SUBDIR, "CT")
    pet_path, pet, geometry = read_task1_pet(input_dir)
    ct, ct_geometry = read_image(ct_path, dtype=np.float32, check_finite=True, what="CT image")
    log.info("CT  %s shape %s spacing %s", ct_path.name, ct_geometry.shape, _fmt(ct_geometry.spacing))
    log.info("PET %s shape %s spacing %s", pet_path.name, geometry.shape, _fmt(geometry.spacing))
    for name, array, path in (("PET", pet, pet_path), ("CT", ct, ct_path)):
        problem = degenerate_image_problem(array, name)
        if problem:
            log.warning("the %s image %s %s", name, path.name, problem)
    ct = ct_on_pet_grid(ct, ct_geometry, geometry)
    return ct_path, ct, pet, geometry, read_task1_clicks(input_dir, geometry.shape)


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"
