"""The cases a viewer offers: found in a cohort folder or given as CT + PET pairs, read on demand.

Layouts of ``--cohort``:

- nnU-Net raw: ``imagesTr/<case>_0000`` (CT), ``<case>_0001`` (PET), labels in ``labelsTr/<case>``
  when present (or ``imagesTs`` / ``labelsTs``); a label enables the replay of the challenge's
  clicks.
- the challenge's job layout: ``images/ct/<uuid>.mha`` and ``images/pet/<uuid>.mha`` in the folder
  itself, or in each of its sub-folders (one case each, named by the folder).

Arrays are ``[i, j, k]`` on the PET grid: a CT on another grid is resampled onto it (linear,
-1024 HU outside), as the entrypoint does, so clicks and masks use the PET's voxel indices.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from autopet_common.errors import InputError


@dataclass(frozen=True)
class CaseSource:
    """Where one case's images are: CT, PET and, optionally, the lesion label."""

    name: str
    ct_path: Path
    pet_path: Path
    label_path: Path | None = None
    dataset_name: str = "FDG-PETCT"


@dataclass
class LoadedCase:
    """One case read and checked: CT on the PET grid, PET (SUV), label or None, the PET geometry."""

    name: str
    ct: np.ndarray
    pet: np.ndarray
    label: np.ndarray | None
    geometry: object
    dataset_name: str = "FDG-PETCT"


def _raw_cases(folder: Path) -> list[CaseSource]:
    from autopet_common.raw_layout import raw_cohort

    found = raw_cohort(folder)
    if found is None:
        return []
    return [CaseSource(raw.case_id, raw.ct_path, raw.pet_path, raw.label_path,
                       "PSMA-FDG-PETCT" if "PSMA" in raw.case_id.upper() else "FDG-PETCT") for raw in found[2]]


def _job_case(folder: Path) -> CaseSource | None:
    from autopet_common.contract import TASK1_CT_SUBDIR, TASK1_PET_SUBDIR
    from autopet_common.image_io import find_single_image

    if not ((folder / TASK1_CT_SUBDIR).is_dir() and (folder / TASK1_PET_SUBDIR).is_dir()):
        return None
    return CaseSource(folder.name, find_single_image(folder / TASK1_CT_SUBDIR, "CT"),
                      find_single_image(folder / TASK1_PET_SUBDIR, "PET"))


def find_cases(cohort: str | os.PathLike | None = None, pairs: Iterable[Sequence[str]] = ()) -> list[CaseSource]:
    """The cases of ``cohort`` (see the module docstring) and of the ``(CT, PET)`` ``pairs``, each
    name once; :class:`InputError` naming the folder or file when there is none or one is missing."""
    from autopet_common.image_io import strip_image_suffix

    cases: list[CaseSource] = []
    if cohort is not None:
        folder = Path(cohort)
        if not folder.is_dir():
            raise InputError(f"--cohort folder not found: {folder}")
        cases = _raw_cases(folder)
        if not cases:
            job = _job_case(folder)
            cases = [job] if job else [c for c in (_job_case(sub) for sub in sorted(folder.iterdir()) if sub.is_dir())
                                       if c is not None]
        if not cases:
            raise InputError(f"--cohort {folder} holds no case: expected imagesTr/<case>_0000 + _0001 (nnU-Net raw) "
                             "or images/ct + images/pet (the challenge's job layout), in it or its sub-folders")
    for ct, pet in pairs:
        for what, path in (("CT", ct), ("PET", pet)):
            if not Path(path).is_file():
                raise InputError(f"--case {what} image not found: {path}")
        name = strip_image_suffix(Path(ct))
        cases.append(CaseSource(name[:-5] if name.endswith("_0000") else name, Path(ct), Path(pet)))
    names = [c.name for c in cases]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(f"case name(s) given twice: {', '.join(twice)}")
    return cases


def load_case(source: CaseSource) -> LoadedCase:
    """Read a case: PET (SUV) and CT on the PET grid (resampled when the grids differ), label on
    the same grid; :class:`InputError` naming the file for a missing, corrupt or mismatched one."""
    from autopet_common.image_io import check_same_grid, read_image
    from Task1.inputs import ct_on_pet_grid

    pet, geometry = read_image(source.pet_path, dtype=np.float32, check_finite=True, what=f"case {source.name} PET")
    ct, ct_geometry = read_image(source.ct_path, dtype=np.float32, check_finite=True, what=f"case {source.name} CT")
    ct = ct_on_pet_grid(ct, ct_geometry, geometry)
    label = None
    if source.label_path is not None:
        label, label_geometry = read_image(source.label_path, what=f"case {source.name} label")
        check_same_grid(label_geometry, geometry, f"label {source.label_path}", f"PET {source.pet_path}")
        label = (label > 0).astype(np.uint8)
    return LoadedCase(source.name, ct, pet, label, geometry, source.dataset_name)
