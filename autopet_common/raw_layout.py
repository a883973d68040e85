"""nnU-Net's raw layout of a PET/CT cohort: ``imagesTr/<case>_0000`` (CT), ``<case>_0001`` (PET) and
``labelsTr/<case>`` (or ``imagesTs`` / ``labelsTs``), any of :data:`autopet_common.image_io.IMAGE_SUFFIXES`.
The one reader of that naming for the local challenge and the viewer."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from autopet_common.errors import InputError


@dataclass(frozen=True)
class RawCase:
    """One case's files: CT, PET and the label (None when the cohort has none for it)."""

    case_id: str
    ct_path: Path
    pet_path: Path
    label_path: Path | None


def image_with_stem(folder: Path, stem: str) -> Path | None:
    """``folder/<stem><suffix>`` for the first image suffix that exists, else None."""
    from autopet_common.image_io import IMAGE_SUFFIXES

    return next((folder / f"{stem}{s}" for s in IMAGE_SUFFIXES if (folder / f"{stem}{s}").is_file()), None)


def raw_cohort(folder: str | os.PathLike) -> tuple[Path, Path, list[RawCase]] | None:
    """(images folder, labels folder, cases sorted by id) of a raw cohort, or None when ``folder``
    has no ``imagesTr/`` nor ``imagesTs/``. The labels folder may not exist; a case's label is
    None when it has none. :class:`InputError` for a CT without its PET."""
    from autopet_common.image_io import list_images, strip_image_suffix

    folder = Path(folder)
    for images_name, labels_name in (("imagesTr", "labelsTr"), ("imagesTs", "labelsTs")):
        images, labels = folder / images_name, folder / labels_name
        if images.is_dir():
            break
    else:
        return None
    cases = []
    for ct_path in list_images(images):
        stem = strip_image_suffix(ct_path)
        if not stem.endswith("_0000"):
            continue
        case_id = stem[: -len("_0000")]
        pet_path = image_with_stem(images, f"{case_id}_0001")
        if pet_path is None:
            raise InputError(f"case {case_id}: PET image {images / (case_id + '_0001')}.* not found")
        label_path = image_with_stem(labels, case_id) if labels.is_dir() else None
        cases.append(RawCase(case_id, ct_path, pet_path, label_path))
    return images, labels, cases
