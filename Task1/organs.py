"""Organ supervision: organ label maps -> the organ classes that shape FDG and PSMA uptake.

The source is a multi-label organ map per case, as ``TotalSegmentator -i ct.nii.gz -o
organs/<case>.nii.gz --ml`` writes it (one value per structure, TotalSegmentator v2's ``total``
task numbering), or as the phantom writer writes it (the same names, an ``organ_classes.json``
beside the maps for the salivary glands, which TotalSegmentator's ``total`` task does not have).
A folder's ``organ_classes.json`` (``{"<value>": "<TotalSegmentator name>"}``) overrides the
default numbering, so maps merged from several TotalSegmentator tasks work too.

Conventions: arrays are any shape and integer valued; grouped classes are numbered from
``FIRST_ORGAN_LABEL`` (2) upwards in the order of :data:`ORGAN_GROUPS`, after background 0 and
the lesion 1, which wins where a lesion lies inside an organ.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from autopet_common.errors import InputError
from autopet_common.organ_classes import ORGAN_CLASSES_FILE, TOTALSEGMENTATOR_TOTAL

ORGANS_DATASET_KEY = "autopet_organs"   # dataset.json entry written by Task1.convert_dataset --organs
ORGANS_FOLDER = "labelsTr_organs"       # grouped organ maps beside labelsTr in the nnU-Net raw dataset
LESION_LABEL = 1                        # the tumor class: click transforms and predictors read it here
FIRST_ORGAN_LABEL = 2

# Uptake-relevant classes (FDG: brain, heart, kidneys, bladder; PSMA: kidneys, salivary glands,
# liver, spleen, bowel) -> the TotalSegmentator structures each is made of.
ORGAN_GROUPS: dict[str, tuple[str, ...]] = {
    "brain": ("brain",),
    "heart": ("heart",),
    "kidneys": ("kidney_right", "kidney_left"),
    "bladder": ("urinary_bladder",),
    "liver": ("liver",),
    "spleen": ("spleen",),
    "salivary_glands": ("parotid_gland_right", "parotid_gland_left", "submandibular_gland_right",
                        "submandibular_gland_left"),
    "bowel": ("small_bowel", "duodenum", "colon"),
}


def read_organ_classes(folder: str | os.PathLike) -> dict[int, str]:
    """The value -> structure name table of an organ folder: its ``organ_classes.json`` or, when
    there is none, TotalSegmentator's ``total`` numbering. Raises :class:`InputError`."""
    from autopet_common.image_io import read_json

    path = Path(folder) / ORGAN_CLASSES_FILE
    if not path.is_file():
        return dict(TOTALSEGMENTATOR_TOTAL)
    table = read_json(path, "organ class table")
    if not isinstance(table, dict) or not table:
        raise InputError(f"{path}: expected a JSON object {{\"<value>\": \"<structure name>\"}}")
    out: dict[int, str] = {}
    for key, name in table.items():
        if not str(key).isdigit() or not 1 <= int(key) <= 65535 or not isinstance(name, str) or not name:
            raise InputError(f"{path}: entry {key!r}: {name!r} is not a positive integer value and a name")
        out[int(key)] = name
    return out


def group_values(classes: Mapping[int, str], groups: Sequence[str]) -> dict[int, int]:
    """Source value -> grouped class label (``FIRST_ORGAN_LABEL`` + index of its group in
    ``groups``) for the structures that belong to one of ``groups``."""
    label_of = {name: FIRST_ORGAN_LABEL + n for n, group in enumerate(groups) for name in ORGAN_GROUPS[group]}
    return {value: label_of[name] for value, name in classes.items() if name in label_of}


def groups_present(values: Iterable[int], classes: Mapping[int, str]) -> list[str]:
    """The groups (in :data:`ORGAN_GROUPS` order) with a structure among ``values``."""
    names = {classes[v] for v in values if v in classes}
    return [group for group, members in ORGAN_GROUPS.items() if names.intersection(members)]


def group_organ_map(organ_map: np.ndarray, classes: Mapping[int, str], groups: Sequence[str]) -> np.ndarray:
    """A multi-label organ map -> uint8 grouped classes (0 elsewhere)."""
    lookup = group_values(classes, groups)
    values = np.asarray(organ_map)
    top = int(values.max(initial=0))
    table = np.zeros(max(top, max(lookup, default=0)) + 1, dtype=np.uint8)
    for value, label in lookup.items():
        table[value] = label
    if values.size and int(values.min()) < 0:
        raise InputError("organ map has negative values")
    return table[values.astype(np.int64, copy=False)]


def merge_lesions_and_organs(lesion: np.ndarray, organs: np.ndarray) -> np.ndarray:
    """One training target: the lesion label where there is a lesion, the organ classes
    elsewhere. Same shape and dtype as ``lesion``."""
    lesion = np.asarray(lesion)
    if lesion.shape != np.shape(organs):
        raise InputError(f"organ map of shape {np.shape(organs)} does not match the lesion label {lesion.shape}")
    return np.where(lesion == LESION_LABEL, lesion, np.asarray(organs).astype(lesion.dtype, copy=False))


def organ_labels(groups: Sequence[str]) -> dict[str, int]:
    """The ``dataset.json`` labels of an organ-supervised dataset."""
    return {"background": 0, "tumor": LESION_LABEL,
            **{group: FIRST_ORGAN_LABEL + n for n, group in enumerate(groups)}}
