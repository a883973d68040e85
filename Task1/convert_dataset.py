"""Convert an autoPET Task 1 training folder into an nnU-Net v2 raw dataset.

Source (the layout participants get, also written by ``autopet_common.phantoms``)::

    SOURCE/imagesTr/<case>_0000.nii.gz   CT (HU) on the PET grid
    SOURCE/imagesTr/<case>_0001.nii.gz   PET (SUV)
    SOURCE/labelsTr/<case>.nii.gz        binary lesion mask

Variants:

- ``images`` (2 channels, for ``autoPETTrainerClicks*``, which make clicks on the fly):
  ``channel_names`` ``{"0": "CT", "1": "PET"}``: nnU-Net's CT normalisation (clip to the
  foreground percentiles, dataset mean/std) for CT and per-image z-score for PET (any name
  nnU-Net does not know is z-scored; "PET" says what it is). With ``--pet_normalization suv``
  the PET channel is named ``"noNorm"`` so the network sees SUV as it is: SUV is already a
  standardised unit, while a per-image z-score depends on how much air and hot organs the field
  of view holds (the shipped phantom model uses it). The channel order is then recorded in
  ``dataset.json`` under ``autopet_conversion``.
- ``heatmaps`` (4 channels, the challenge's nnU-Net baseline layout): CT, PET, tumor click
  heatmap ``_0002``, background click heatmap ``_0003``, the heatmaps named ``"noNorm"`` so
  nnU-Net leaves them as drawn (values in [0, 1]). Clicks come from ``--clicks_dir``
  (``<case>.json`` or ``<case>_clicks.json``, simulator or Grand Challenge format) or are
  simulated with the challenge's algorithm (:func:`clicks.simulate_clicks`); ``--step`` keeps the
  first N of each kind. The encoding used is recorded in ``dataset.json`` under
  ``autopet_conversion`` so :class:`Task1.predict.Task1Predictor` draws the same heatmaps.

Organ supervision (``--organs DIR``, ``images`` variant): ``DIR/<case>.nii.gz`` is a multi-label
organ map per case on the case's grid, as ``TotalSegmentator -i <case>_0000.nii.gz -o
DIR/<case>.nii.gz --ml`` writes it (or the phantom writer's ``organsTr/``; a ``DIR/organ_classes.json``
names other numberings). The structures are grouped into the uptake-relevant classes of
:data:`Task1.organs.ORGAN_GROUPS` present in the maps and written as
``labelsTr_organs/<case>.nii.gz`` (class 2, 3, ...); ``labelsTr`` keeps the lesion mask.
``dataset.json`` declares the lesion and organ labels and records the groups under
``autopet_organs``. Preprocess with ``-preprocessor_name autoPETOrganPreprocessor``, which merges
both into one target (see :mod:`Task1.preprocessors`).

The dataset is assembled in a hidden temporary folder next to the target and renamed into
place at the end: an error leaves no partial dataset. Images are hard-linked when possible.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from autopet_common.cli import ArgumentParser, entrypoint, nnunet_dataset_id, non_negative_int, positive_float
from autopet_common.contract import TASK1_MAX_CLICKS
from autopet_common.errors import InputError
from autopet_common.output_folder import check_folder_name, staged_folder

VARIANTS = ("images", "heatmaps")
PET_NORMALIZATIONS = ("zscore", "suv")
HEATMAP_CHANNEL_NAME = "noNorm"
FILE_ENDING = ".nii.gz"


def find_cases(source: str | os.PathLike) -> list[str]:
    """Case identifiers of ``source/imagesTr`` (from the ``_0000`` CT files), sorted; every case
    must have its PET and label. Raises :class:`InputError` naming what is missing."""
    source = Path(source)
    images, labels = source / "imagesTr", source / "labelsTr"
    for folder in (images, labels):
        if not folder.is_dir():
            raise InputError(f"source {source} has no {folder.name}/ folder (expected the autoPET layout "
                             "imagesTr/<case>_0000.nii.gz, _0001.nii.gz, labelsTr/<case>.nii.gz)")
    cases = sorted(p.name[: -len("_0000" + FILE_ENDING)] for p in images.glob("*_0000" + FILE_ENDING)
                   if not p.name.startswith("."))
    if not cases:
        raise InputError(f"no CT images (*_0000{FILE_ENDING}) in {images}")
    for case in cases:
        for path, what in ((images / f"{case}_0001{FILE_ENDING}", "PET image"),
                           (labels / f"{case}{FILE_ENDING}", "label")):
            if not path.is_file():
                raise InputError(f"case {case}: {what} {path} not found")
    return cases


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _case_clicks(case: str, label: np.ndarray, pet: np.ndarray, clicks_dir: Path | None) -> dict:
    from autopet_common.click_io import read_clicks_json

    if clicks_dir is not None:
        for name in (f"{case}.json", f"{case}_clicks.json"):
            if (clicks_dir / name).is_file():
                return read_clicks_json(clicks_dir / name, missing_ok=False)
        raise InputError(f"case {case}: no click file {case}.json or {case}_clicks.json in {clicks_dir}")
    from clicks import simulate_clicks

    return simulate_clicks(label, pet)


def dataset_json_for(variant: str, n_cases: int, name: str, encoding: str | None = None,
                     encoding_size: float | None = None, step: int | None = None,
                     pet_normalization: str = "zscore", organ_groups: Sequence[str] = ()) -> dict:
    """The ``dataset.json`` of a converted dataset."""
    channels = {"0": "CT", "1": "PET" if pet_normalization == "zscore" else HEATMAP_CHANNEL_NAME}
    if variant == "heatmaps":
        channels.update({"2": HEATMAP_CHANNEL_NAME, "3": HEATMAP_CHANNEL_NAME})
    out = {"channel_names": channels, "labels": {"background": 0, "tumor": 1}, "numTraining": n_cases,
           "file_ending": FILE_ENDING, "name": name,
           "description": f"autoPET/CT IV Task 1, {variant} variant, converted by Task1.convert_dataset"}
    if variant == "heatmaps":
        out["autopet_conversion"] = {"variant": variant, "encoding": encoding, "encoding_size": encoding_size,
                                     "step": step, "channels": ["CT", "PET", "tumor clicks", "background clicks"]}
    if pet_normalization != "zscore":
        out.setdefault("autopet_conversion", {"variant": variant, "channels": ["CT", "PET"]})
        out["autopet_conversion"]["pet_normalization"] = pet_normalization
    if organ_groups:
        from Task1.organs import ORGAN_GROUPS, ORGANS_DATASET_KEY, ORGANS_FOLDER, organ_labels

        out["labels"] = organ_labels(organ_groups)
        out[ORGANS_DATASET_KEY] = {"folder": ORGANS_FOLDER,
                                   "groups": {group: list(ORGAN_GROUPS[group]) for group in organ_groups},
                                   "preprocessor": "autoPETOrganPreprocessor"}
    return out


def convert_dataset(source: str | os.PathLike, nnunet_raw: str | os.PathLike, dataset_id: int, *,
                    name: str = "autoPETClicks", variant: str = "images", clicks_dir: str | os.PathLike | None = None,
                    step: int = 10, encoding: str = "gaussian", encoding_size: float | None = None,
                    overwrite: bool = False, progress: bool = True, pet_normalization: str = "zscore",
                    organs: str | os.PathLike | None = None) -> Path:
    """Write ``nnunet_raw/DatasetXXX_<name>`` from ``source``; returns its path.

    See the module docstring for the variants and ``organs``. ``step``, ``encoding`` ("gaussian"
    as the reference, or "edt") and ``encoding_size`` (sigma / radius in voxels) apply to ``heatmaps``.
    """
    from tqdm import tqdm

    from autopet_common.click_io import clicks_at_step
    from autopet_common.image_io import atomic_write_json, read_image, write_image

    if variant not in VARIANTS:
        raise InputError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
    if pet_normalization not in PET_NORMALIZATIONS:
        raise InputError(f"unknown PET normalization {pet_normalization!r}; choose one of {PET_NORMALIZATIONS}")
    if not 1 <= int(dataset_id) <= 999:
        raise InputError(f"dataset id must be in 1..999, got {dataset_id}")
    check_folder_name(name, "dataset name")
    source = Path(source)
    clicks_dir = Path(clicks_dir) if clicks_dir is not None else None
    if clicks_dir is not None and not clicks_dir.is_dir():
        raise InputError(f"click folder not found: {clicks_dir}")
    if Path(nnunet_raw).exists() and not Path(nnunet_raw).is_dir():
        raise InputError(f"nnU-Net raw folder {nnunet_raw} is a file, not a folder")
    target = Path(nnunet_raw) / f"Dataset{int(dataset_id):03d}_{name}"
    existing = list(Path(nnunet_raw).glob(f"Dataset{int(dataset_id):03d}_*")) if Path(nnunet_raw).is_dir() else []
    existing = [p for p in existing if not p.name.startswith(".")]
    if existing and not overwrite:
        raise InputError(f"{existing[0]} already exists (dataset id {dataset_id} is taken); pass overwrite=True "
                         "(--overwrite) to replace it")
    cases = find_cases(source)
    organ_classes, organ_values = None, set()
    if organs is not None:
        from Task1.organs import read_organ_classes

        organs = Path(organs)
        if variant != "images":
            raise InputError("organ supervision (--organs) is for the 'images' variant (click trainers)")
        if not organs.is_dir():
            raise InputError(f"organ folder not found: {organs}")
        organ_classes = read_organ_classes(organs)
    # check every case in full first (headers, voxel data, NaN, label values): a bad case fails
    # before anything is written, and nothing unchecked is linked into the dataset
    for case in tqdm(cases, desc="checking cases", disable=not progress):
        label_geometry = check_case(source, case)
        if organs is not None:
            organ_values |= check_organ_map(organs, case, label_geometry)
    groups: list[str] = []
    if organs is not None:
        from Task1.organs import groups_present

        groups = groups_present(organ_values, organ_classes)
        if not groups:
            raise InputError(f"the organ maps in {organs} hold none of the organ structures "
                             f"({', '.join(sorted(set(organ_classes.values())))} are named); check the "
                             f"numbering or add an organ_classes.json")

    with staged_folder(target, replace=existing) as work:
        (work / "imagesTr").mkdir()
        (work / "labelsTr").mkdir()
        for case in tqdm(cases, desc=f"converting ({variant})", disable=not progress):
            for channel in ("0000", "0001"):
                _link_or_copy(source / "imagesTr" / f"{case}_{channel}{FILE_ENDING}",
                              work / "imagesTr" / f"{case}_{channel}{FILE_ENDING}")
            _link_or_copy(source / "labelsTr" / f"{case}{FILE_ENDING}", work / "labelsTr" / f"{case}{FILE_ENDING}")
            if organs is not None:
                from Task1.organs import ORGANS_FOLDER, group_organ_map

                organ_map, geometry = read_image(organs / f"{case}{FILE_ENDING}", what=f"organ map of case {case}")
                write_image(group_organ_map(organ_map, organ_classes, groups), geometry,
                            work / ORGANS_FOLDER / f"{case}{FILE_ENDING}", dtype=np.uint8)
            if variant == "heatmaps":
                from clicks.encodings import encode_clicks

                pet, geometry = read_image(source / "imagesTr" / f"{case}_0001{FILE_ENDING}", np.float32,
                                           what=f"PET of case {case}")
                label, _ = read_image(source / "labelsTr" / f"{case}{FILE_ENDING}", np.uint8,
                                      what=f"label of case {case}")
                clicks = clicks_at_step(_case_clicks(case, label, pet, clicks_dir), step)
                tumor_map, background_map = encode_clicks(geometry.shape, clicks, encoding=encoding,
                                                          size=encoding_size)
                write_image(tumor_map, geometry, work / "imagesTr" / f"{case}_0002{FILE_ENDING}")
                write_image(background_map, geometry, work / "imagesTr" / f"{case}_0003{FILE_ENDING}")
        atomic_write_json(work / "dataset.json",
                          dataset_json_for(variant, len(cases), name, encoding if variant == "heatmaps" else None,
                                           encoding_size, step if variant == "heatmaps" else None,
                                           pet_normalization, groups))
    return target


def check_case(source: str | os.PathLike, case: str):
    """Read one case in full and check it: CT, PET and label readable (no truncated or corrupt
    data), finite, on one grid, and a label of 0 and 1 only (what ``dataset.json`` declares).
    Raises :class:`InputError` naming the case and file. Returns the label's geometry."""
    from autopet_common.image_io import check_same_grid, read_image

    source = Path(source)
    ct_path = source / "imagesTr" / f"{case}_0000{FILE_ENDING}"
    pet_path = source / "imagesTr" / f"{case}_0001{FILE_ENDING}"
    label_path = source / "labelsTr" / f"{case}{FILE_ENDING}"
    _, ct_g = read_image(ct_path, what=f"CT of case {case}")
    _, pet_g = read_image(pet_path, what=f"PET of case {case}")
    label, lab_g = read_image(label_path, what=f"label of case {case}")
    check_same_grid(ct_g, pet_g, f"CT of case {case}", f"PET of case {case}")
    check_same_grid(pet_g, lab_g, f"PET of case {case}", f"label of case {case}")
    values = np.unique(label)
    if not set(values.tolist()) <= {0, 1}:
        shown = ", ".join(f"{v:g}" for v in values[:8])
        raise InputError(f"label of case {case} {label_path} has values {{{shown}}}; dataset.json declares "
                         "background 0 and tumor 1 only")
    return lab_g


def check_organ_map(organs: str | os.PathLike, case: str, label_geometry) -> set[int]:
    """Read ``organs/<case>.nii.gz`` in full and check it against the case's label geometry:
    present, on the same grid, finite, non-negative integer values. Returns the values it holds."""
    from autopet_common.image_io import check_same_grid, read_image

    path = Path(organs) / f"{case}{FILE_ENDING}"
    if not path.is_file():
        raise InputError(f"case {case}: organ map {path} not found (every case needs one with --organs)")
    organ_map, organ_g = read_image(path, what=f"organ map of case {case}")
    check_same_grid(label_geometry, organ_g, f"label of case {case}", f"organ map of case {case}")
    if organ_map.size and (organ_map.min() < 0 or not np.array_equal(organ_map, np.round(organ_map))):
        raise InputError(f"organ map of case {case} {path} has negative or non-integer values")
    return {int(v) for v in np.unique(organ_map)}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m Task1.convert_dataset",
        description="Convert an autoPET Task 1 folder (imagesTr/<case>_0000 CT, _0001 PET, labelsTr/<case>) into an "
                    "nnU-Net v2 raw dataset: 'images' = CT + PET (for the autoPETTrainerClicks trainers, clicks made "
                    "on the fly), 'heatmaps' = CT + PET + tumor + background click heatmaps (the challenge "
                    "baseline's 4 channels).")
    parser.add_argument("source", help="autoPET folder with imagesTr/ and labelsTr/")
    parser.add_argument("--nnunet_raw", default=os.environ.get("nnUNet_raw"),
                        help="nnU-Net raw folder (default: $nnUNet_raw)")
    parser.add_argument("-d", "--dataset_id", type=nnunet_dataset_id, required=True, help="nnU-Net dataset id (1..999)")
    parser.add_argument("--name", default="autoPETClicks", help="dataset name (DatasetXXX_<name>)")
    parser.add_argument("--variant", choices=VARIANTS, default="images")
    parser.add_argument("--clicks_dir", help="heatmaps: folder of <case>.json / <case>_clicks.json "
                                             "(default: simulate with the challenge's algorithm)")
    parser.add_argument("--step", type=_step, default=10, help="heatmaps: use the first STEP clicks of each kind")
    parser.add_argument("--encoding", choices=("gaussian", "edt"), default="gaussian",
                        help="heatmaps: Gaussian (reference, sigma 3) or distance-transform ball (radius 2)")
    parser.add_argument("--encoding_size", type=positive_float, default=None, help="heatmaps: sigma / radius in voxels")
    parser.add_argument("--pet_normalization", choices=PET_NORMALIZATIONS, default="zscore",
                        help="zscore: nnU-Net's per-image z-score (default); suv: SUV as it is (channel 'noNorm')")
    parser.add_argument("--organs", metavar="DIR", default=None,
                        help="images: organ maps DIR/<case>.nii.gz (TotalSegmentator --ml numbering, or DIR/"
                             "organ_classes.json) grouped into organ classes for organ supervision; preprocess "
                             "with -preprocessor_name autoPETOrganPreprocessor")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset with this id")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def _step(text: str) -> int:
    value = non_negative_int(text)
    if value > TASK1_MAX_CLICKS:
        raise argparse.ArgumentTypeError(f"expected 0..{TASK1_MAX_CLICKS} clicks per kind, got {text!r}")
    return value


@entrypoint("python -m Task1.convert_dataset")
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.nnunet_raw:
        raise InputError("no nnU-Net raw folder: pass --nnunet_raw or set nnUNet_raw")
    target = convert_dataset(args.source, args.nnunet_raw, args.dataset_id, name=args.name, variant=args.variant,
                             clicks_dir=args.clicks_dir, step=args.step, encoding=args.encoding,
                             encoding_size=args.encoding_size, overwrite=args.overwrite,
                             progress=not args.no_progress, pet_normalization=args.pet_normalization,
                             organs=args.organs)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
