"""Would blending the learned Task 2 model's probability with its proposal help? A study on
validation pairs (not adopted; the model card's "Fourth round" reports it).

    .venv/bin/python benchmarks/bench_task2_proposal_blend.py --pairs 12 --real 2

With the proposal channel the network sees the model-free pipeline's answer for each lesion
(channel 5). This script stitches ``w * probability + (1 - w) * proposal`` at 0.5 instead of the
probability alone (w = 1 is the shipped stitching), then applies the segmenter's rules as
:class:`Task2.patch_model.PatchModelSegmenter` does (rule 6 at step 1 with the model's
``patch_rules.json`` value, and also without it; rule 5; the click fallback at step 2). Pairs:
:func:`Task2.tune_patch_model.validation_pairs` of seed 2000, the pairs rule 6 was chosen on,
never the benchmark's held-out seed 1000. Each pair and step runs the network once; every weight
is scored on the same probabilities. Prints the mean Dice (pairs with a follow-up lesion) and
mean FPV (ml) per step and weight.

``--test_time_mirroring`` runs the network with nnU-Net's test-time mirroring on all three axes
(the shipped checkpoint turns it off for CPU time; training mirrored, so the weights allow it):
the ``w = 1`` rows are then the shipped stitching with mirroring, and the median network seconds
per step are printed beside the table.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WEIGHTS = (1.0, 0.9, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55)


def blend_scores(segmenter, pair, weights=WEIGHTS) -> tuple[dict, list[float]]:
    """{(step, w, rule 6 on): (Dice, FPV ml)} for one pair, and the network's seconds per step."""
    import time

    from evaluation_metrics.metrics import dice_score, false_positive_volume
    from Task2.lesion_patches import PROPOSAL_CHANNEL
    from Task2.patch_model import read_patch_rules
    from Task2.pipeline import carry_baseline

    geometry, truth = pair.followup_geometry, pair.followup_labels > 0
    voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
    min_confidence = read_patch_rules(segmenter.model_dir).get("min_confidence", 0.0)
    scores, seconds = {}, []
    for step, points in ((1, {}), (2, dict(pair.followup_centres))):
        carried = carry_baseline(pair.baseline_ct, pair.baseline_geometry, pair.baseline_labels, pair.followup_ct,
                                 geometry, dict(pair.baseline_centres), points)
        started = time.perf_counter()
        patches, probabilities = segmenter.predict_patches(carried, pair.baseline_geometry, pair.followup_ct, geometry)
        seconds.append(time.perf_counter() - started)
        for w in weights:
            blended = [w * p + (1 - w) * (patch.channels[PROPOSAL_CHANNEL] > 0) for p, patch in zip(probabilities, patches)]
            for rule6 in ((False, True) if step == 1 and min_confidence > 0 else (False,)):
                mask = segmenter.label_map(patches, probabilities, carried, pair.followup_ct, geometry,
                                           min_confidence=min_confidence if rule6 else 0.0, scores=blended) > 0
                scores[(step, w, rule6)] = (dice_score(truth, mask), false_positive_volume(truth, mask, voxel_ml))
    return scores, seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(REPO / "models" / "task2_phantom_patches"),
                        help="lesion-patch model folder with the proposal channel")
    parser.add_argument("--pairs", type=int, default=12, help="validation pairs of the training distribution")
    parser.add_argument("--real", type=int, default=2, help="validation pairs of 512x512x~300 at 0.8x0.8x2.5 mm")
    parser.add_argument("--seed", type=int, default=2000, help="validation seed (not 0, training; not 1000, held-out)")
    parser.add_argument("--test_time_mirroring", action="store_true",
                        help="predict with nnU-Net's mirroring on all three axes (8 passes per patch)")
    args = parser.parse_args(argv)

    from Task2.patch_model import PatchModelSegmenter
    from Task2.tune_patch_model import validation_pairs

    with contextlib.redirect_stdout(sys.stderr):  # nnU-Net's loading chatter stays out of the table
        segmenter = PatchModelSegmenter(args.model, "cpu", min_confidence=0.0)
    if args.test_time_mirroring:
        segmenter.predictor.allowed_mirroring_axes = (0, 1, 2)  # the predictor was made with use_mirroring=True
    per_pair, seconds = [], []
    for name, pair in validation_pairs(args.pairs, args.real, args.seed):
        scores, pair_seconds = blend_scores(segmenter, pair)
        per_pair.append(scores)
        seconds += pair_seconds
        print(f"{name}: done", file=sys.stderr, flush=True)
    print(f"validation pairs: {len(per_pair)} (seed {args.seed}); test-time mirroring "
          f"{'on' if args.test_time_mirroring else 'off'}; network {np.median(seconds):.1f} s per step (median)\n")
    print("| step | w | rule 6 | Dice | FPV (ml) |\n|---:|---:|---|---:|---:|")
    for key in per_pair[0]:
        dice = [p[key][0] for p in per_pair]
        step, w, rule6 = key
        print(f"| {step} | {w:.2f} | {'on' if rule6 else 'off'} | {np.nanmean(dice):.4f} | "
              f"{np.mean([p[key][1] for p in per_pair]):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
