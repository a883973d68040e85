"""Task 2 (longitudinal CT) inference on the Grand Challenge input layout.

Reads, per follow-up (``primary`` and, when present, ``secondary``)::

    INPUT/images/<p>-baseline-ct/<uuid>.mha
    INPUT/images/<p>-baseline-ct-tumor-lesion-seg/<uuid>.mha   (or ...-segmentation/)
    INPUT/images/<p>-followup-ct/<uuid>.mha
    INPUT/<p>-baseline-lesion-clicks.json                       ("Points of interest")
    INPUT/<p>-followup-lesion-clicks.json                       (empty list = step 1)

and writes ``OUTPUT/images/<p>-followup-ct-tumor-lesion-seg/<follow-up uuid>.mha``: a binary
uint8 mask on the follow-up CT's grid. A secondary follow-up without its own baseline uses the
primary baseline. Every input is read and checked before anything is written; bad input raises
an :class:`autopet_common.errors.InputError` subclass naming the file.

Model-free by default (registration + intensity model + region growing, see
:mod:`Task2.segmentation`); ``--model`` runs a trained nnU-Net: the learned per-lesion model
(:mod:`Task2.patch_model`, one patch per lesion) or a whole-follow-up model whose inputs are the
follow-up CT, the registered baseline CT, the registered baseline mask and the click map
(:mod:`Task2.nnunet_predict`).

Usage::

    python Task2/inference.py --input /input --output /output [--model DIR] [--deformable]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from autopet_common.cli import ArgumentParser, configure_logging, device_name, entrypoint, positive_float
from autopet_common.contract import (INPUT_DIR, MODEL_FREE, OUTPUT_DIR, TASK2_BASELINE_SEG_FOLDERS, TASK2_PREFIXES, TIME_BUDGET_SECONDS,
                                     is_task2_input, task2_baseline_ct_subdir, task2_followup_ct_subdir,
                                     task2_output_subdir, task2_points_file)
from autopet_common.errors import InputError
from autopet_common.output_folder import check_inside, remove_stale_files
from Task2.lesion_ids import label_dtype
from autopet_common.image_io import (Geometry, check_same_grid, find_single_image, read_image,
                                     strip_image_suffix, write_image, write_mask)

log = logging.getLogger("Task2.inference")



@dataclass
class FollowupInputs:
    """Everything one follow-up needs, read and checked."""

    prefix: str
    baseline_prefix: str
    followup_path: Path
    baseline_ct: np.ndarray
    baseline_geometry: Geometry
    baseline_mask: np.ndarray
    followup_ct: np.ndarray
    followup_geometry: Geometry
    baseline_points: dict
    followup_points: dict

    @property
    def output_name(self) -> str:
        return f"{strip_image_suffix(self.followup_path)}.mha"


def _seg_folder(images: Path, prefix: str) -> Path:
    for pattern in TASK2_BASELINE_SEG_FOLDERS:
        folder = images / pattern.format(p=prefix)
        if folder.is_dir():
            return folder
    return images / TASK2_BASELINE_SEG_FOLDERS[0].format(p=prefix)  # find_single_image names the missing folder


def _read_points(path: Path, required: bool) -> dict:
    from autopet_common.click_io import read_task2_points

    if not path.exists():  # a folder (or anything else) under the name is the reader's error
        if required:
            raise InputError(f"point file not found: {path}")
        log.warning("%s not found: treated as an empty point list", path)
        return {}
    return read_task2_points(path)


def _warn_if_degenerate(ct: np.ndarray, name: str) -> None:
    from autopet_common.image_io import degenerate_image_problem

    problem = degenerate_image_problem(ct, "CT")
    if problem:
        log.warning("the %s %s", name, problem)


def resolve_task2_model(model: str | os.PathLike | None = None, *,
                        model_dir: str | os.PathLike | None = None) -> Path | None:
    """The Task 2 model folder to run (None: the model-free registration pipeline, Task 2's
    default). ``model``: a folder holding a trained nnU-Net folder (at most three levels down),
    ``"model-free"``, or None for the default chain: ``/opt/ml/model``, then ``$AUTOPET_MODEL_DIR``."""
    from autopet_common.contract import MODEL_DIR, MODEL_DIR_ENV, MODEL_FREE
    from autopet_common.nnunet_folder import find_nnunet_model

    def checked(folder: Path, what: str) -> Path:
        if not folder.exists():
            raise InputError(f"{what} not found: {folder}")
        found = find_nnunet_model(folder)
        if found is None:
            raise InputError(f"{what} {folder} holds no trained nnU-Net folder (plans.json, dataset.json and fold_*/ "
                             "expected at most three levels down)")
        return found

    if model is not None:
        return None if str(model) == MODEL_FREE else checked(Path(model), "--model folder")
    found = find_nnunet_model(MODEL_DIR if model_dir is None else model_dir)
    if found is not None:
        return found
    if os.environ.get(MODEL_DIR_ENV):
        return checked(Path(os.environ[MODEL_DIR_ENV]), f"${MODEL_DIR_ENV}")
    return None


def read_followup_inputs(input_dir: str | os.PathLike) -> list[FollowupInputs]:
    """Read and check the inputs of every follow-up present in ``input_dir``.

    CTs keep their stored pixel type (int16 HU files stay int16: half the memory of float32
    at 512 x 512 x 300); float CTs are checked for NaN / infinite values."""
    input_dir = Path(input_dir)
    images = input_dir / "images"
    if not is_task2_input(input_dir):
        raise InputError(f"{input_dir} is not a Task 2 input: no images/primary-followup-ct/ folder")
    prefixes = [p for p in TASK2_PREFIXES if (input_dir / task2_followup_ct_subdir(p)).is_dir()]
    if not prefixes:
        raise InputError(f"{input_dir}: no follow-up CT folder (images/primary-followup-ct/)")
    baselines: dict[str, tuple] = {}
    out = []
    for prefix in prefixes:
        base_prefix = prefix if (input_dir / task2_baseline_ct_subdir(prefix)).is_dir() else "primary"
        if base_prefix not in baselines:
            ct_path = find_single_image(input_dir / task2_baseline_ct_subdir(base_prefix), f"{base_prefix} baseline CT")
            seg_path = find_single_image(_seg_folder(images, base_prefix), f"{base_prefix} baseline lesion mask")
            ct, ct_geom = read_image(ct_path, check_finite=True, what=f"{base_prefix} baseline CT")
            _warn_if_degenerate(ct, f"{base_prefix} baseline CT {ct_path}")
            seg, seg_geom = read_image(seg_path, what=f"{base_prefix} baseline lesion mask")
            check_same_grid(ct_geom, seg_geom, f"{base_prefix} baseline CT {ct_path.name}",
                            f"{base_prefix} baseline lesion mask {seg_path.name}")
            points = _read_points(input_dir / task2_points_file(base_prefix, "baseline"), required=False)
            baselines[base_prefix] = (ct, ct_geom, np.asarray(seg), points)
        fu_path = find_single_image(input_dir / task2_followup_ct_subdir(prefix), f"{prefix} follow-up CT")
        fu_ct, fu_geom = read_image(fu_path, check_finite=True, what=f"{prefix} follow-up CT")
        _warn_if_degenerate(fu_ct, f"{prefix} follow-up CT {fu_path}")
        fu_points = _read_points(input_dir / task2_points_file(prefix, "followup"), required=False)
        ct, ct_geom, seg, points = baselines[base_prefix]
        out.append(FollowupInputs(prefix, base_prefix, fu_path, ct, ct_geom, seg, fu_ct, fu_geom,
                                  points, fu_points))
    return out


def run_task2(input_dir: str | os.PathLike, output_dir: str | os.PathLike, *,
              model_dir: str | os.PathLike | None = None, device: str = "auto",
              time_budget: float | None = None, deformable: bool = False, binary: bool = False) -> list[Path]:
    """Segment every follow-up in ``input_dir``; write one mask per follow-up under
    ``output_dir/images/<prefix>-followup-ct-tumor-lesion-seg/``. Returns the written paths.

    ``model_dir``: a trained nnU-Net folder (see Task2/README.md: the learned lesion-patch model
    of :mod:`Task2.patch_model`, or a whole-follow-up model) or None for the model-free method.
    Nothing is written unless every follow-up succeeded."""
    from Task2.pipeline import segment_followup
    from Task2.registration import RegistrationParameters

    from autopet_common.contract import TASK2_OUTPUT_FOLDERS
    from autopet_common.output_folder import clear_owned_folders

    started = time.perf_counter()
    output_dir = Path(output_dir)
    clear_owned_folders(output_dir, TASK2_OUTPUT_FOLDERS)  # no earlier mask outlives a failed run
    inputs = read_followup_inputs(input_dir)
    params = RegistrationParameters(deformable=deformable)
    if model_dir is not None and str(model_dir) in ("", MODEL_FREE):
        model_dir = None
    segmenter = None
    if model_dir is not None:
        from Task2.nnunet_predict import is_task2_model
        from Task2.patch_model import PatchModelSegmenter, is_patch_model

        if is_patch_model(model_dir):  # the learned per-lesion model: loaded once for every follow-up
            segmenter = PatchModelSegmenter(model_dir, device)
        elif not is_task2_model(model_dir):
            # E.g. /opt/ml/model holds a Task 1 (PET/CT) model: it cannot read Task 2 inputs.
            log.warning("%s is not a Task 2 nnU-Net model (dataset.json without the 4 Task 2 channels "
                        "CT, CT, noNorm, noNorm or the 5 or 6 lesion-patch channels): using the model-free method",
                        model_dir)
            model_dir = None
    results = []
    for item in inputs:
        names = (f"{item.prefix} follow-up CT {item.followup_path.name}", f"{item.baseline_prefix} baseline CT")
        if model_dir is not None and segmenter is None:
            from Task2.nnunet_predict import predict_followup

            mask = predict_followup(item, Path(model_dir), params=params, device=device, names=names)
            step = 2 if item.followup_points else 1
            from Task2.lesion_ids import ids_by_clicks

            known = set(item.followup_points) | set(item.baseline_points)
            labels = ids_by_clicks(mask, dict(item.followup_points), start_id=max(known, default=0) + 1)
        else:
            segment = segmenter.segment if segmenter is not None else segment_followup
            result = segment(item.baseline_ct, item.baseline_geometry, item.baseline_mask,
                             item.followup_ct, item.followup_geometry, item.baseline_points,
                             item.followup_points, params, names)
            mask, labels, step = result.mask, result.labels, result.step
            log.info("%s: step %d (%s), body Dice %.3f -> %.3f after registration, %s", item.prefix, step,
                     "lesion-patch model" if segmenter is not None else "model-free",
                     result.registration["body_dice_before"], result.registration["body_dice_after"],
                     ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items()))
        results.append((item, labels))
    written = []
    for item, labels in results:
        path = check_inside(output_dir, task2_output_subdir(item.prefix) / item.output_name)
        if binary:
            written.append(write_mask(labels > 0, item.followup_geometry, path))
        else:  # voxel values are lesion ids (Task2.lesion_ids)
            written.append(write_image(labels.astype(label_dtype(labels)), item.followup_geometry, path))
        remove_stale_files(path.parent, keep=[path])  # the folder holds this run's mask only
        ids = sorted(int(v) for v in np.unique(labels) if v)
        log.info("wrote %s (%d lesion voxels, lesion ids %s)", path, int(np.count_nonzero(labels)),
                 "0/1" if binary else ids)
    elapsed = time.perf_counter() - started
    if time_budget is not None and elapsed > time_budget:
        log.warning("Task 2 took %.1f s, over the %.0f s budget", elapsed, time_budget)
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python Task2/inference.py",
        description="Task 2 (longitudinal CT): segment the follow-up lesions from a baseline CT, its "
                    "lesion mask and points, and the follow-up CT (step 1: no follow-up clicks; step 2: "
                    "one click per follow-up lesion). Writes OUTPUT/images/<primary|secondary>-followup-"
                    "ct-tumor-lesion-seg/<follow-up uuid>.mha.")
    parser.add_argument("--input", type=Path, default=INPUT_DIR, help="Grand Challenge input folder (default /input)")
    parser.add_argument("--output", type=Path, default=OUTPUT_DIR, help="output folder (default /output)")
    parser.add_argument("--model", default=None,
                        help="trained Task 2 nnU-Net folder (see Task2/README.md); default: model-free")
    parser.add_argument("--device", type=device_name, default="auto",
                        help="auto (cuda when available, else cpu), cpu, cuda, cuda:N or mps (model paths only)")
    parser.add_argument("--deformable", action="store_true",
                        help="add a BSpline refinement after the affine registration (slower)")
    parser.add_argument("--time_budget", type=positive_float, default=TIME_BUDGET_SECONDS, help="seconds; only warns when exceeded")
    parser.add_argument("--binary", action="store_true",
                        help="write 0/1 masks instead of lesion ids (default: voxel value = lesion id)")
    parser.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    return parser


@entrypoint("python Task2/inference.py")
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.quiet)
    written = run_task2(args.input, args.output, model_dir=args.model, device=args.device,
                        time_budget=args.time_budget, deformable=args.deformable, binary=args.binary)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
