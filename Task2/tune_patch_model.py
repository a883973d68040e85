"""Choose the learned Task 2 model's step-1 confidence rule on validation pairs, and write it into
the model folder.

    python -m Task2.tune_patch_model --model models/task2_phantom_patches --pairs 12 --real 2 --seed 2000 --write

At step 1 the network sees each carried baseline lesion and, with the proposal channel, the
model-free pipeline's answer for it. Where that answer is empty (the pipeline's detection found
nothing), the network either finds a lesion the pipeline missed or redraws one that vanished.
Rule 6 of :mod:`Task2.patch_model` leaves such a lesion out when the mean probability of its
drawn voxels is below ``min_confidence``. This tool picks that value as nnU-Net picks its
post-processing, on validation data: ``--pairs`` pairs of the training generator (the recipe's
grids, vanishing and events, :mod:`Task2.train_patch_model`) plus ``--real`` pairs of the
challenge's CT grid, all of seed ``--seed``, which must be neither the training seed (0) nor the
held-out benchmark's (1000). Each pair runs the network once at step 1; every candidate value
is then scored on the same probabilities with the segmenter's own functions, so what is chosen
is what runs. Objective: the mean step-1 Dice over pairs; ties go to the smaller mean FPV, then
to the smaller value (0 = the rule off). ``--write`` writes ``patch_rules.json`` (read by
:class:`Task2.patch_model.PatchModelSegmenter`) and the table as ``patch_rules_tuning.json``.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from autopet_common.cli import ArgumentParser, device_name, entrypoint, non_negative_int, seed
from autopet_common.errors import InputError

CANDIDATES = (0.0, *(round(0.70 + 0.02 * i, 2) for i in range(15)))  # 0 (off), 0.70 .. 0.98
RESERVED_SEEDS = {0: "the training pairs'", 1000: "the held-out benchmark's (benchmarks/bench_task2_model.py)"}
TUNING_FILE = "patch_rules_tuning.json"


def validation_pairs(n_pairs: int, n_real: int, seed: int) -> Iterator[tuple[str, object]]:
    """(name, LongitudinalPair): ``n_pairs`` of the recipe's training distribution and ``n_real``
    of the ``ct_real`` preset (512 x 512 x ~300 at 0.8 x 0.8 x 2.5 mm), seed ``seed``."""
    from autopet_common.phantoms import make_longitudinal_pair
    from autopet_common.phantoms.task2 import MIXED, pair_events, pair_grid

    from .train_patch_model import EVENTS, TRAINING_VANISH_PROBABILITY

    for n in range(n_pairs):
        events = pair_events(n, EVENTS["n_merging"], EVENTS["n_splitting"], every=EVENTS["event_every"])
        yield f"validation_{n:02d}", make_longitudinal_pair(seed=[seed, n], vanish_probability=TRAINING_VANISH_PROBABILITY,
                                                            **pair_grid(MIXED, seed, n), **events)
    for n in range(n_real):
        yield f"validation_ct_real_{n:02d}", make_longitudinal_pair(size="ct_real", seed=[seed, 500 + n],
                                                                    vanish_probability=TRAINING_VANISH_PROBABILITY)


def step1_scores(segmenter, pair, candidates: Sequence[float] = CANDIDATES) -> dict:
    """Step 1 of ``pair`` through ``segmenter`` (a :class:`Task2.patch_model.PatchModelSegmenter`):
    per candidate ``min_confidence`` the Dice and FPV (ml) of the binary mask, and per carried
    lesion with an empty proposal its truth status and confidence."""
    from evaluation_metrics.metrics import dice_score, false_positive_volume

    from .patch_model import stitch_patches, unconfirmed_lesions
    from .pipeline import carry_baseline

    geometry = pair.followup_geometry
    carried = carry_baseline(pair.baseline_ct, pair.baseline_geometry, pair.baseline_labels, pair.followup_ct,
                             geometry, dict(pair.baseline_centres), {})
    patches, probabilities = segmenter.predict_patches(carried, pair.baseline_geometry, pair.followup_ct, geometry)
    stitched = stitch_patches(pair.followup_ct.shape, patches, probabilities, segmenter.threshold)
    status = {int(r["id"]): r["status"] for r in pair.lesions}
    unconfirmed = [{"id": patch.lesion_id, "status": status.get(patch.lesion_id, "?"), "confidence": round(confidence, 4)}
                   for patch, confidence in unconfirmed_lesions(stitched, patches, probabilities)]
    truth, voxel_ml = pair.followup_labels > 0, float(np.prod(geometry.spacing)) / 1000.0
    scores = {}
    for value in candidates:
        mask = segmenter.label_map(patches, probabilities, carried, pair.followup_ct, geometry,
                                   min_confidence=value) > 0
        scores[value] = {"dice": dice_score(truth, mask), "fpv": false_positive_volume(truth, mask, voxel_ml)}
    return {"scores": scores, "unconfirmed": unconfirmed}


def choose(per_pair: Sequence[dict], candidates: Sequence[float] = CANDIDATES) -> tuple[float, list[dict]]:
    """The chosen value and the table (per candidate: mean Dice over pairs with a follow-up
    lesion, mean FPV over all pairs), by the module docstring's objective."""
    table = []
    for value in candidates:
        dice = [p["scores"][value]["dice"] for p in per_pair]
        table.append({"min_confidence": value,
                      "dice": float(np.nanmean(dice)) if not np.all(np.isnan(dice)) else float("nan"),
                      "fpv_ml": float(np.mean([p["scores"][value]["fpv"] for p in per_pair]))})
    best = max(table, key=lambda row: (round(row["dice"], 9), -round(row["fpv_ml"], 9), -row["min_confidence"]))
    return best["min_confidence"], table


def tune_patch_model(model_dir: str | Path, *, n_pairs: int = 12, n_real: int = 2, seed: int = 2000,
                     device: str = "auto", write: bool = False, progress: bool = True) -> dict:
    """Run the module docstring's procedure; returns ``{"min_confidence", "table", "pairs"}``
    (and writes the two files into ``model_dir`` when ``write``)."""
    from tqdm import tqdm

    from autopet_common.image_io import atomic_write_json

    from .patch_model import PROPOSAL_CHANNEL_NAMES, RULES_FILE, PatchModelSegmenter, patch_channel_names

    if seed in RESERVED_SEEDS:
        raise InputError(f"--seed {seed} is {RESERVED_SEEDS[seed]} seed; validation pairs need another")
    if n_pairs + n_real < 1:
        raise InputError("no validation pairs: --pairs and --real are both 0")
    if patch_channel_names(model_dir) != PROPOSAL_CHANNEL_NAMES:
        raise InputError(f"{model_dir}: not a lesion-patch model with the proposal channel (dataset.json); "
                         "rule 6 needs the pipeline's answer as its sixth channel")
    with contextlib.redirect_stdout(sys.stderr):  # nnU-Net's loading chatter stays out of the table
        segmenter = PatchModelSegmenter(model_dir, device, min_confidence=0.0)
    per_pair = []
    for name, pair in tqdm(validation_pairs(n_pairs, n_real, seed), total=n_pairs + n_real, desc="validation pairs",
                           unit="pair", disable=not progress):
        per_pair.append({"pair": name, **step1_scores(segmenter, pair)})
    value, table = choose(per_pair)
    result = {"min_confidence": value, "table": table,
              "pairs": [{"pair": p["pair"], "unconfirmed": p["unconfirmed"],
                         "dice": {str(k): v["dice"] for k, v in p["scores"].items()}} for p in per_pair]}
    if write:
        command = f"python -m Task2.tune_patch_model --model {model_dir} --pairs {n_pairs} --real {n_real} --seed {seed}"
        atomic_write_json(Path(model_dir) / TUNING_FILE, {"command": command, **result})
        atomic_write_json(Path(model_dir) / RULES_FILE, {"min_confidence": value, "chosen_by": command})
    return result


@entrypoint("python -m Task2.tune_patch_model")
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m Task2.tune_patch_model",
        description="Choose the learned Task 2 model's step-1 rule (leave out a carried lesion that the pipeline "
                    "found nothing for and the network draws with a mean probability below min_confidence) on "
                    "validation phantom pairs, print the table, and with --write store it in the model folder "
                    "(patch_rules.json, read by inference.py --model).")
    parser.add_argument("--model", required=True, help="lesion-patch model folder with the proposal channel")
    parser.add_argument("--pairs", type=non_negative_int, default=12,
                        help="validation pairs of the training recipe's distribution (default 12)")
    parser.add_argument("--real", type=non_negative_int, default=2,
                        help="validation pairs of 512x512x~300 at 0.8x0.8x2.5 mm (default 2)")
    parser.add_argument("--seed", type=seed, default=2000,
                        help="phantom seed of the validation pairs (default 2000; not 0, the training pairs', "
                             "nor 1000, the benchmark's)")
    parser.add_argument("--device", type=device_name, default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--write", action="store_true",
                        help=f"write patch_rules.json and {TUNING_FILE} into the model folder")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    result = tune_patch_model(args.model, n_pairs=args.pairs, n_real=args.real, seed=args.seed, device=args.device,
                              write=args.write, progress=not args.no_progress)
    print("| min_confidence | step-1 Dice | FPV (ml) |\n|---:|---:|---:|")
    for row in result["table"]:
        print(f"| {row['min_confidence']:.2f} | {row['dice']:.4f} | {row['fpv_ml']:.2f} |")
    unconfirmed = [u for p in result["pairs"] for u in p["unconfirmed"]]
    vanished = sorted(u["confidence"] for u in unconfirmed if u["status"] == "vanished")
    present = sorted(u["confidence"] for u in unconfirmed if u["status"] != "vanished")
    print(f"\ncarried lesions with an empty proposal that the network draws: {len(vanished)} vanished "
          f"(mean probability {vanished}), {len(present)} present ({present})")
    print(f"chosen min_confidence: {result['min_confidence']:.2f}" + (" (written)" if args.write else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
