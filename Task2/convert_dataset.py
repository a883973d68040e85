"""Build an nnU-Net v2 raw dataset for Task 2 from longitudinal pairs (registration done once, here).

Input: a cohort of pair folders ``<pair>/input/`` (Grand Challenge Task 2 layout) and
``<pair>/truth/followup-tumor-lesion-seg.mha`` (the follow-up lesion mask), as written by
``autopet_common.phantoms.write_task2_cohort``. Output, under
``<nnUNet_raw>/Dataset<ID>_<name>/``::

    imagesTr/<pair>_0000.nii.gz   follow-up CT (HU)
    imagesTr/<pair>_0001.nii.gz   baseline CT registered onto the follow-up (HU)
    imagesTr/<pair>_0002.nii.gz   registered baseline lesion mask (0/1)
    imagesTr/<pair>_0003.nii.gz   follow-up click map (ball, radius 3 voxels)
    labelsTr/<pair>.nii.gz        follow-up lesion mask (0/1)
    dataset.json                  channel_names CT, CT, noNorm, noNorm

Train with ``nnUNet_extTrainer=<repo>/Task2/trainers nnUNetv2_train ID 3d_fullres FOLD -tr
autoPETTrainerLongitudinal`` (the trainer blanks the click channel half of the time, so one
model serves step 1 and step 2).

``--patches`` makes the per-lesion dataset of the learned (LongiSeg-style) model instead
(:mod:`Task2.lesion_patches`): per pair and lesion, a step-1 sample ``<pair>_L<id>_s1`` (patch
at the carried baseline centre, no follow-up blob) for every carried baseline lesion and a
step-2 sample ``<pair>_L<id>_s2`` (patch at the follow-up click) for every follow-up lesion;
five channels ``_0000``..``_0004`` (follow-up CT, carried baseline CT, carried baseline lesion
mask, follow-up blob, baseline blob) and the label of that lesion only (its id in the truth).
A vanished lesion's step-1 sample has an empty label. Train with
``-tr autoPETTrainerLongitudinalPatches_cpu`` (``python -m Task2.train_patch_model`` runs it all).

Usage::

    python -m Task2.convert_dataset --cohort COHORT --output NNUNET_RAW --dataset_id 502 [--patches]
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from autopet_common.cli import ArgumentParser, entrypoint, nnunet_dataset_id
from autopet_common.errors import InputError
from autopet_common.output_folder import check_folder_name, staged_folder
from autopet_common.image_io import atomic_write_json, read_image, write_image

from .channels import CHANNEL_NAMES, followup_channels
from .lesion_patches import PATCH_CHANNEL_NAMES, PROPOSAL_CHANNEL_NAMES
from .cohort import TRUTH_NAME, find_pairs
from .inference import read_followup_inputs


def read_pair(pair_dir: Path):
    """The primary follow-up's inputs (:class:`Task2.inference.FollowupInputs`) and its truth
    label map, checked to share the follow-up grid."""
    from autopet_common.image_io import check_same_grid

    item = read_followup_inputs(pair_dir / "input")[0]
    truth, truth_geometry = read_image(pair_dir / TRUTH_NAME, what=f"follow-up truth of {pair_dir.name}")
    check_same_grid(item.followup_geometry, truth_geometry, f"follow-up CT of {pair_dir.name}",
                    f"follow-up truth of {pair_dir.name}")
    return item, truth


def convert_pair(pair_dir: Path, images_dir: Path, labels_dir: Path, case_id: str | None = None,
                 params=None) -> str:
    """Write one pair's four channels and label; returns the case id."""
    case_id = case_id or pair_dir.name
    item, truth = read_pair(pair_dir)
    channels = followup_channels(item.baseline_ct, item.baseline_geometry, item.baseline_mask,
                                 item.followup_ct, item.followup_geometry, item.followup_points, params)
    for index, channel in enumerate(channels):
        write_image(channel, item.followup_geometry, images_dir / f"{case_id}_{index:04d}.nii.gz",
                    dtype=np.uint8 if index == 2 else np.float32)
    write_image((truth > 0).astype(np.uint8), item.followup_geometry, labels_dir / f"{case_id}.nii.gz")
    return case_id


def convert_pair_patches(pair_dir: Path, images_dir: Path, labels_dir: Path, params=None, *,
                         proposal: bool = False) -> list[str]:
    """Write one pair's lesion patch samples (step 1 and step 2, see the module docstring; with
    ``proposal`` the sixth channel, :mod:`Task2.lesion_patches`); returns their case ids."""
    from .lesion_patches import PatchMaker
    from .pipeline import carry_baseline

    item, truth = read_pair(pair_dir)
    names = (f"follow-up CT of {pair_dir.name}", f"baseline CT of {pair_dir.name}")
    carried = carry_baseline(item.baseline_ct, item.baseline_geometry, item.baseline_mask, item.followup_ct,
                             item.followup_geometry, item.baseline_points, item.followup_points, params, names)
    maker = PatchMaker(carried, item.baseline_geometry, item.followup_ct, item.followup_geometry, proposal=proposal)
    cases = []
    for step, patches in ((1, maker.step_patches({})), (2, maker.step_patches())):
        for patch in patches:
            case_id = f"{pair_dir.name}_L{patch.lesion_id:03d}_s{step}"
            patch_geometry = item.followup_geometry.sub_grid(patch.region)
            for index, channel in enumerate(patch.channels):
                write_image(channel, patch_geometry, images_dir / f"{case_id}_{index:04d}.nii.gz",
                            dtype=np.uint8 if index in (2, 5) else np.float32)
            write_image((truth[patch.region] == patch.lesion_id).astype(np.uint8), patch_geometry,
                        labels_dir / f"{case_id}.nii.gz")
            cases.append(case_id)
    return cases


def convert_cohort(cohort_dir: str | os.PathLike, nnunet_raw: str | os.PathLike, dataset_id: int = 502,
                   name: str = "Task2Longitudinal", progress: bool = True, *, patches: bool = False,
                   proposal: bool = False) -> Path:
    """Convert every pair of ``cohort_dir`` (whole follow-ups, or lesion patches with
    ``patches``, with the model-free proposal channel with ``proposal``); returns the dataset folder."""
    if proposal and not patches:
        raise InputError("the proposal channel is a channel of lesion patches: it needs patches=True")
    from tqdm import tqdm

    if not 1 <= int(dataset_id) <= 999:
        raise InputError(f"dataset_id must be in 1..999, got {dataset_id}")
    check_folder_name(name, "dataset name")
    if Path(nnunet_raw).exists() and not Path(nnunet_raw).is_dir():
        raise InputError(f"nnU-Net raw folder {nnunet_raw} is a file, not a folder")
    pairs = find_pairs(cohort_dir)
    dataset = Path(nnunet_raw) / f"Dataset{int(dataset_id):03d}_{name}"
    # built whole in a temporary folder: a bad pair leaves nothing behind, a rerun no stale case
    with staged_folder(dataset) as work:
        images, labels = work / "imagesTr", work / "labelsTr"
        cases = []
        for pair in tqdm(pairs, desc="pairs", unit="pair", disable=not progress):
            if patches:
                cases += convert_pair_patches(pair, images, labels, proposal=proposal)
            else:
                cases.append(convert_pair(pair, images, labels))
        if not cases:
            raise InputError(f"{cohort_dir}: no lesion patch in any pair (no baseline or follow-up lesions)")
        description = ("autoPET/CT IV Task 2 lesion patches: follow-up CT, carried baseline CT, carried baseline "
                       "lesion mask, follow-up point blob, baseline point blob"
                       + (", model-free proposal" if proposal else "") if patches else
                       "autoPET/CT IV Task 2: follow-up CT, registered baseline CT, registered baseline "
                       "mask, follow-up click map")
        atomic_write_json(work / "dataset.json", {
            "channel_names": (PROPOSAL_CHANNEL_NAMES if proposal else PATCH_CHANNEL_NAMES) if patches
            else CHANNEL_NAMES,
            "labels": {"background": 0, "lesion": 1},
            "numTraining": len(cases),
            "file_ending": ".nii.gz",
            "name": name,
            "description": description,
        })
    return dataset


@entrypoint("python -m Task2.convert_dataset")
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m Task2.convert_dataset",
        description="Build an nnU-Net v2 raw dataset from Task 2 longitudinal pairs: whole follow-ups (4 channels: "
                    "follow-up CT, registered baseline CT, registered baseline mask, click map), or with --patches "
                    "one sample per lesion and step for the learned LongiSeg-style model (5 channels).")
    parser.add_argument("--cohort", type=Path, required=True, help="folder of pairs (<pair>/input, <pair>/truth)")
    parser.add_argument("--output", type=Path, required=True, help="nnUNet_raw folder")
    parser.add_argument("--dataset_id", type=nnunet_dataset_id, default=502, help="nnU-Net dataset id (default 502)")
    parser.add_argument("--name", default="Task2Longitudinal", help="dataset name (default Task2Longitudinal)")
    parser.add_argument("--patches", action="store_true",
                        help="per-lesion patch samples for the learned LongiSeg-style model (5 channels, see the "
                             "module docstring) instead of whole follow-ups")
    parser.add_argument("--proposal", action="store_true",
                        help="with --patches: a sixth channel, the model-free pipeline's segmentation of the "
                             "lesion, for a model that refines it")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.proposal and not args.patches:
        parser.error("--proposal needs --patches")
    dataset = convert_cohort(args.cohort, args.output, args.dataset_id, args.name, progress=not args.no_progress,
                             patches=args.patches, proposal=args.proposal)
    print(dataset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
