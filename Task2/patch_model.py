"""The learned Task 2 model (LongiSeg style): one forward pass per lesion patch, stitched with ids.

A patch model is an nnU-Net folder trained on :mod:`Task2.lesion_patches` samples (its
dataset.json has the five patch channels, ``PATCH_CHANNEL_NAMES``, or six with the model-free
proposal, ``PROPOSAL_CHANNEL_NAMES``). Prediction:

1. register and carry the baseline (:func:`Task2.pipeline.carry_baseline`, as the model-free
   method does: the registration places the patch, the network segments);
2. one patch per lesion (:meth:`Task2.lesion_patches.PatchMaker.step_patches`), one forward
   pass each (nnU-Net resamples the patch to the model's spacing and back);
3. stitching (:func:`stitch_patches`): each voxel goes to the lesion with the highest
   probability; a lesion keeps the connected part of its voxels that holds its point (else its
   largest part); voxels under ``threshold`` stay background. The voxel value is the lesion id
   (:mod:`Task2.lesion_ids`);
4. ``click_fallback`` (default on): a step-2 click says a lesion is there, so where the network
   marks nothing for a clicked lesion, the model-free segmentation of that lesion
   (:func:`Task2.segmentation.segment_with_prior` / :func:`~Task2.segmentation.segment_new_lesion`)
   fills in, on voxels no other lesion holds;
5. with the proposal channel (a model trained with ``--proposal``), at both steps: a lesion whose
   proposal (the pipeline's answer) is smaller than the network's grid resolves
   (``MIN_RESOLVED_VOXELS`` voxels of the model's spacing, 3 voxels across) gets the proposal in
   place of what the network drew, empty or not (:func:`keep_unresolved_proposals`): at 2 mm a
   lesion of a few voxels of a 0.8 mm grid is a speck the network can neither draw nor rule out
   (on validation pairs the network drew such specks worse than the proposal, one of 0.06 ml as
   0.27 ml where the proposal had 0.07 ml; see the model card's "Eighth round");
6. with the proposal channel, at step 1, when the model folder holds ``patch_rules.json``
   (written by ``python -m Task2.tune_patch_model --write``, its value chosen on validation
   pairs): a carried lesion whose proposal is empty (the pipeline's detection found nothing
   there) and whose drawn voxels have a mean probability below ``min_confidence`` is left out
   (:func:`drop_unconfirmed_lesions`): a baseline lesion that vanished is where the network,
   taught that carried lesions mostly persist, still draws something, less surely than a lesion
   it finds.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .lesion_patches import PATCH_CHANNEL_NAMES, PROPOSAL_CHANNEL, PROPOSAL_CHANNEL_NAMES, LesionPatch

DEFAULT_THRESHOLD = 0.5
MIN_RESOLVED_VOXELS = 27  # a lesion narrower than 3 voxels of the network's grid is below its resolution
RULES_FILE = "patch_rules.json"  # rule 6's setting, in the model folder (Task2.tune_patch_model --write)


def patch_channel_names(model_dir: str | os.PathLike) -> dict | None:
    """The channel names of ``model_dir``'s dataset.json when it is an nnU-Net folder trained on
    Task 2 lesion patches (with or without the proposal channel), else None."""
    try:
        channels = json.loads((Path(model_dir) / "dataset.json").read_text()).get("channel_names", {})
        channels = {str(k): v for k, v in channels.items()}
    except (OSError, ValueError, AttributeError):
        return None
    return channels if channels in (PATCH_CHANNEL_NAMES, PROPOSAL_CHANNEL_NAMES) else None


def is_patch_model(model_dir: str | os.PathLike) -> bool:
    """True when ``model_dir`` is an nnU-Net folder trained on Task 2 lesion patches."""
    return patch_channel_names(model_dir) is not None


def predict_patch(predictor: Any, patch: LesionPatch, spacing: Sequence[float]) -> np.ndarray:
    """Lesion probability on the patch (float32 ``[i, j, k]``) from an ``nnUNetPredictor``."""
    # nnU-Net's SimpleITK reader gives (c, z, y, x) and spacing (z, y, x)
    data = np.ascontiguousarray(patch.channels.transpose(0, 3, 2, 1))
    _, probabilities = predictor.predict_single_npy_array(data, {"spacing": [float(s) for s in spacing[::-1]]},
                                                          None, None, True)
    return np.asarray(probabilities[1], dtype=np.float32).transpose(2, 1, 0)


def stitch_patches(shape: Sequence[int], patches: Sequence[LesionPatch], probabilities: Sequence[np.ndarray],
                   threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Lesion-id label map ``[i, j, k]`` of ``shape`` from per-patch probabilities (see the
    module docstring). uint16 (ids below 65536)."""
    import cc3d

    best = np.zeros(shape, dtype=np.float16)
    labels = np.zeros(shape, dtype=np.uint16)
    for patch, probability in zip(patches, probabilities):
        view_best, view_labels = best[patch.region], labels[patch.region]
        wins = (probability >= threshold) & (probability > view_best)
        view_best[wins] = probability[wins]
        view_labels[wins] = patch.lesion_id
    for patch in patches:  # each lesion keeps the part that holds its point
        view = labels[patch.region]
        own = view == patch.lesion_id
        if not own.any():
            continue
        parts, n = cc3d.connected_components(own.astype(np.uint8), connectivity=26, return_N=True)
        if n <= 1:
            continue
        point = tuple(int(np.clip(round(c - s.start), 0, s.stop - s.start - 1))
                      for c, s in zip(patch.centre, patch.region))
        keep = parts[point] or int(np.argmax(np.bincount(parts.ravel())[1:]) + 1)
        view[own & (parts != keep)] = 0
    return labels


def fill_empty_clicked_lesions(labels: np.ndarray, patches: Sequence[LesionPatch], carried, followup_ct: np.ndarray,
                               spacing: Sequence[float]) -> list[int]:
    """Step 2: the model-free segmentation (:func:`Task2.pipeline.segment_clicked_lesion`) for
    every clicked lesion the network left empty (in place, on free voxels only); returns the ids
    filled in."""
    from .pipeline import segment_clicked_lesion

    filled = []
    for patch in patches:
        if np.any(labels[patch.region] == patch.lesion_id):
            continue
        region = segment_clicked_lesion(followup_ct, spacing, carried, patch.lesion_id, patch.centre)
        labels[region & (labels == 0)] = patch.lesion_id
        filled.append(patch.lesion_id)
    return filled


def keep_unresolved_proposals(labels: np.ndarray, patches: Sequence[LesionPatch], spacing: Sequence[float],
                              network_spacing: Sequence[float]) -> list[int]:
    """Rule 5 of the module docstring (in place): each lesion whose proposal is non-empty and
    smaller than ``MIN_RESOLVED_VOXELS`` voxels of ``network_spacing`` loses what the network drew
    for it and gets its proposal, on voxels no other lesion holds. Returns the ids so set."""
    smallest_ml = MIN_RESOLVED_VOXELS * float(np.prod(network_spacing)) / 1000.0
    voxel_ml = float(np.prod(spacing)) / 1000.0
    kept = []
    for patch in patches:
        proposal = patch.channels[PROPOSAL_CHANNEL] > 0
        if not proposal.any() or np.count_nonzero(proposal) * voxel_ml >= smallest_ml:
            continue
        view = labels[patch.region]
        view[view == patch.lesion_id] = 0
        view[proposal & (view == 0)] = patch.lesion_id
        kept.append(patch.lesion_id)
    return kept


def drop_unconfirmed_lesions(labels: np.ndarray, patches: Sequence[LesionPatch], probabilities: Sequence[np.ndarray],
                             min_confidence: float) -> list[int]:
    """Rule 6 of the module docstring (in place): each step-1 (``"carried"``) lesion with an
    empty proposal channel whose drawn voxels have a mean probability below ``min_confidence``
    is set to background. Returns the ids left out."""
    dropped = []
    for patch, confidence in unconfirmed_lesions(labels, patches, probabilities):
        if confidence < min_confidence:
            view = labels[patch.region]
            view[view == patch.lesion_id] = 0
            dropped.append(patch.lesion_id)
    return dropped


def unconfirmed_lesions(labels: np.ndarray, patches: Sequence[LesionPatch],
                        probabilities: Sequence[np.ndarray]) -> list[tuple[LesionPatch, float]]:
    """The lesions rule 6 judges: each step-1 (``"carried"``) patch with an empty proposal channel
    whose lesion ``labels`` draws, with the mean probability of its drawn voxels."""
    found = []
    for patch, probability in zip(patches, probabilities):
        if patch.kind != "carried" or patch.channels[PROPOSAL_CHANNEL].any():
            continue
        drawn = labels[patch.region] == patch.lesion_id
        if drawn.any():
            found.append((patch, float(probability[drawn].mean())))
    return found


def read_patch_rules(model_dir: str | os.PathLike) -> dict:
    """The rule settings in ``model_dir``'s :data:`RULES_FILE` (``{}`` without one); a file that
    is not a JSON object with a ``min_confidence`` of 0..1 raises ``InputError`` naming it."""
    from autopet_common.errors import InputError
    from autopet_common.image_io import read_json

    path = Path(model_dir) / RULES_FILE
    if not path.is_file():
        return {}
    try:
        value = read_json(path, "patch rules file")["min_confidence"]
    except (KeyError, TypeError) as exc:
        raise InputError(f"{path}: expected a JSON object with a 'min_confidence' of 0..1 ({exc})") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InputError(f"{path}: 'min_confidence' must be a number 0..1, got {value!r}")
    return {"min_confidence": float(value)}


class PatchModelSegmenter:
    """Loads a patch model once; :meth:`segment` runs one follow-up (arrays in, label map out)."""

    def __init__(self, model_dir: str | os.PathLike, device: str = "auto", threshold: float = DEFAULT_THRESHOLD,
                 *, click_fallback: bool = True, min_confidence: float | None = None):
        """``min_confidence``: rule 6's setting; None reads it from the model folder's
        :data:`RULES_FILE` (no file: rule 6 is off); 0 turns it off."""
        from .nnunet_predict import load_predictor

        self.model_dir = Path(model_dir)
        self.proposal = patch_channel_names(self.model_dir) == PROPOSAL_CHANNEL_NAMES
        if min_confidence is None:
            min_confidence = read_patch_rules(self.model_dir).get("min_confidence", 0.0)
        self.min_confidence = float(min_confidence) if self.proposal else 0.0
        self.predictor = load_predictor(self.model_dir, device)
        self.threshold = threshold
        self.click_fallback = click_fallback

    def predict_patches(self, carried, baseline_geometry, followup_ct, followup_geometry) -> tuple[list, list]:
        """The lesion patches of a carried baseline and the network's probability on each."""
        from .lesion_patches import PatchMaker

        patches = PatchMaker(carried, baseline_geometry, followup_ct, followup_geometry,
                             proposal=self.proposal).step_patches()
        return patches, [predict_patch(self.predictor, patch, followup_geometry.spacing) for patch in patches]

    def label_map(self, patches, probabilities, carried, followup_ct, followup_geometry, *,
                  min_confidence: float | None = None, scores: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """Rules 3-6 of the module docstring on the network's ``probabilities``: the lesion-id label
        map. ``min_confidence``: rule 6's setting (None: the segmenter's); ``scores``: what is
        stitched, when not the probabilities themselves (rule 6 always reads the probabilities)."""
        min_confidence = self.min_confidence if min_confidence is None else min_confidence
        labels = stitch_patches(followup_ct.shape, patches, probabilities if scores is None else scores,
                                self.threshold)
        if self.proposal and min_confidence > 0:
            drop_unconfirmed_lesions(labels, patches, probabilities, min_confidence)
        if self.proposal:
            keep_unresolved_proposals(labels, patches, followup_geometry.spacing,
                                      self.predictor.configuration_manager.spacing)
        if self.click_fallback and carried.step == 2:
            fill_empty_clicked_lesions(labels, patches, carried, followup_ct, followup_geometry.spacing)
        return labels

    def segment(self, baseline_ct, baseline_geometry, baseline_mask, followup_ct, followup_geometry,
                baseline_points, followup_points, params=None,
                names: tuple[str, str] = ("follow-up CT", "baseline CT"), *, local_refinement: bool = True):
        """A :class:`Task2.pipeline.FollowupResult` whose ``labels`` come from the network
        (arguments as :func:`Task2.pipeline.segment_followup`)."""
        from .pipeline import FollowupResult, carry_baseline
        from .registration import transform_to_dict

        carried = carry_baseline(baseline_ct, baseline_geometry, baseline_mask, followup_ct, followup_geometry,
                                 baseline_points, followup_points, params, names, local_refinement)
        timings = carried.timings
        t0 = time.perf_counter()
        patches, probabilities = self.predict_patches(carried, baseline_geometry, followup_ct, followup_geometry)
        timings["network_s"] = time.perf_counter() - t0
        labels = self.label_map(patches, probabilities, carried, followup_ct, followup_geometry)
        return FollowupResult(mask=labels > 0, labels=labels, step=carried.step,
                              registration=transform_to_dict(carried.registration),
                              carried_points=carried.carried_points(), skipped_points=carried.skipped_points,
                              timings=timings)
