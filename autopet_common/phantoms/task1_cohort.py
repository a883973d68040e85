"""Task 1 cohorts on disk: phantoms of one of the three anatomies in nnU-Net raw layout (and
Grand Challenge layout). The anatomies: :mod:`.task1` (standard), :mod:`.randomised` (training
data), :mod:`.second_anatomy` (generalisation checks only)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..image_io import atomic_write_json, write_image, write_mask
from ..output_folder import check_folder_name, staged_contents
from .common import deterministic_uuid, make_rng
from .task1 import TRACERS, PetCtCase, make_petct_case, write_organ_map


ANATOMIES = ("standard", "randomised", "second")


def _make_case(anatomy: str, *, size: str, tracer: str, seed, empty: bool, n_lesions: int | None,
               case_id: str) -> PetCtCase:
    """One case of ``anatomy`` (see :func:`write_task1_cohort`)."""
    if anatomy == "standard":
        return make_petct_case(size=size, tracer=tracer, seed=seed, empty=empty, n_lesions=n_lesions, case_id=case_id)
    count = 0 if empty else n_lesions
    if anatomy == "randomised":
        from .randomised import randomised_petct_case

        return randomised_petct_case(tracer, seed, n_lesions=count, case_id=case_id)
    from .second_anatomy import second_anatomy_case

    return second_anatomy_case(tracer, seed, size=size, n_lesions=count, case_id=case_id)


def _case_tracers(tracer: str, n_cases: int) -> list[str]:
    t = str(tracer).upper()
    if t == "MIXED":
        return [TRACERS[i % 2] for i in range(n_cases)]
    if t not in TRACERS:
        raise InputError(f"unknown tracer {tracer!r}; choose FDG, PSMA or mixed")
    return [t] * n_cases


def write_task1_cohort(out_dir, n_cases: int = 3, tracer: str = "FDG", size: str = "tiny",
                       seed: int = 0, dataset_id: int | None = None, dataset_name: str | None = None,
                       gc_layout: bool = True, empty_every: int | None = None,
                       n_lesions: int | None = None, progress: bool = False, organs: bool = False,
                       anatomy: str = "standard") -> Path:
    """Write a Task 1 cohort in nnU-Net raw layout (and Grand Challenge layout); return its folder.

    Layout under the returned folder (``out_dir``, or ``out_dir/DatasetXXX_Name`` when
    ``dataset_id`` is given): ``imagesTr/<case>_0000.nii.gz`` (CT, HU, int16),
    ``imagesTr/<case>_0001.nii.gz`` (PET, SUV, float32), ``labelsTr/<case>.nii.gz`` (uint8),
    ``dataset.json``, ``lesions.json`` (per-case lesion metadata) and, with ``gc_layout``,
    ``gc/<case>/images/ct/<uuid>.mha`` + ``gc/<case>/images/pet/<uuid>.mha``.
    ``tracer`` may be ``"mixed"`` (FDG, PSMA alternating). With ``empty_every=N`` every N-th
    case has no lesion. Case ``n`` uses seed ``[seed, n]``. With ``organs``, ``organsTr/<case>.nii.gz``
    holds each case's organ map (:func:`write_organ_map`) for ``Task1.convert_dataset --organs``.
    ``anatomy`` (:data:`ANATOMIES`): ``standard`` (this module), ``randomised``
    (:mod:`.randomised`, training data; its grid is drawn per case, ``size`` is not used) or
    ``second`` (:mod:`.second_anatomy`, for generalisation checks only).
    """
    if anatomy not in ANATOMIES:
        raise InputError(f"unknown anatomy {anatomy!r}; choose one of {', '.join(ANATOMIES)}")
    if n_cases < 1:
        raise InputError(f"n_cases must be >= 1, got {n_cases}")
    if empty_every is not None and empty_every < 1:
        raise InputError(f"empty_every must be >= 1, got {empty_every}")
    tracers = _case_tracers(tracer, n_cases)
    root = Path(out_dir)
    if dataset_id is not None:
        if not 1 <= int(dataset_id) <= 999:
            raise InputError(f"dataset_id must be in 1..999, got {dataset_id}")
        name = dataset_name or f"Phantom{str(tracer).upper() if str(tracer).upper() != 'MIXED' else 'PETCT'}"
        root = root / f"Dataset{int(dataset_id):03d}_{check_folder_name(name, 'dataset name')}"
    # the cohort's entries are built aside and replace the old ones whole: a rerun with fewer
    # cases leaves no stale case next to a dataset.json that counts fewer
    with staged_contents(root, ("imagesTr", "labelsTr", "organsTr", "gc", "dataset.json", "lesions.json")) as work:
        _write_task1_cases(work, root.name, n_cases, tracers, size, seed, empty_every, n_lesions, gc_layout,
                           progress, organs, anatomy)
    return root


def _write_task1_cases(root: Path, name: str, n_cases: int, tracers: list, size: str, seed: int,
                       empty_every: int | None, n_lesions: int | None, gc_layout: bool, progress: bool,
                       organs: bool = False, anatomy: str = "standard") -> None:
    uuid_rng = make_rng([seed, 987654321])
    meta: dict[str, Any] = {}
    iterator = range(n_cases)
    if progress:
        from tqdm import tqdm
        iterator = tqdm(iterator, desc="task1 phantoms", unit="case")
    for n in iterator:
        case_tracer = tracers[n]
        case_id = f"PHANTOM_{case_tracer}_{n:04d}"
        empty = bool(empty_every) and (n + 1) % empty_every == 0
        case = _make_case(anatomy, size=size, tracer=case_tracer, seed=[seed, n], empty=empty,
                          n_lesions=n_lesions, case_id=case_id)
        ct16 = np.round(case.ct).astype(np.int16)
        write_image(ct16, case.geometry, root / "imagesTr" / f"{case_id}_0000.nii.gz")
        write_image(case.pet, case.geometry, root / "imagesTr" / f"{case_id}_0001.nii.gz", dtype=np.float32)
        write_mask(case.label, case.geometry, root / "labelsTr" / f"{case_id}.nii.gz")
        if organs:
            write_organ_map(case, root / "organsTr", case_id)
        entry: dict[str, Any] = {"tracer": case_tracer, "seed": [seed, n], "empty": empty,
                                 "geometry": case.geometry.to_dict(), "lesions": case.lesions}
        if gc_layout:
            ct_uuid, pet_uuid = deterministic_uuid(uuid_rng), deterministic_uuid(uuid_rng)
            write_image(ct16, case.geometry, root / "gc" / case_id / "images" / "ct" / f"{ct_uuid}.mha")
            write_image(case.pet, case.geometry, root / "gc" / case_id / "images" / "pet" / f"{pet_uuid}.mha")
            entry["gc"] = {"ct": f"gc/{case_id}/images/ct/{ct_uuid}.mha",
                           "pet": f"gc/{case_id}/images/pet/{pet_uuid}.mha"}
        meta[case_id] = entry
        del case
    atomic_write_json(root / "dataset.json", {
        "name": name,
        "description": f"Synthetic autoPET/CT IV Task 1 phantoms ({anatomy} anatomy, "
                       f"{'grid drawn per case' if anatomy == 'randomised' else size}, seed {seed}); not patient data.",
        "channel_names": {"0": "CT", "1": "PET"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": n_cases,
        "file_ending": ".nii.gz",
    })
    atomic_write_json(root / "lesions.json", meta)
