"""Benchmark of Task 2 methods on held-out longitudinal phantom pairs: Dice, FPV, FNV, ids, time.

    .venv/bin/python benchmarks/bench_task2_model.py [--pairs 8] [--real 1] [--model DIR]

1. Held-out pairs, never used in training (the shipped model trained on ``size="varied"`` pairs
   of seed 0): ``--pairs`` pairs of seed ``--seed`` (default 1000), alternating between the
   ``varied`` grids and the ``small`` preset (128x128x96 at 4x4x6 mm); every second pair has a
   merging pair of lesions and a splitting lesion; plus ``--real`` pairs of the ``ct_real``
   preset (512x512x300 at 0.8x0.8x2.5 mm, a grid and spacing far outside training).
2. Methods, in this process, each on the same inputs, steps 1 (no follow-up clicks) and 2 (one
   click per follow-up lesion):
   - ``registration + propagation``: the model-free pipeline
     (:func:`Task2.pipeline.segment_followup`: registration, carrying, intensity and shape
     model) - the reference;
   - ``learned model alone``: the lesion-patch network
     (:class:`Task2.patch_model.PatchModelSegmenter`) with its patches placed and its baseline
     channels carried through the scanners' coordinates only (identity transform, no
     registration);
   - ``registration places, network segments``: the same network, with the registration
     (global + per-lesion refinement) placing each patch and carrying the baseline channels;
   - ``combination``: that, and at step 2 the model-free segmentation of every clicked lesion
     the network left empty (what ``--model`` runs, ``click_fallback``).
3. Scores per pair and step with the project's metrics (Dice, FPV and FNV in ml of the binary
   masks; :func:`evaluation_metrics.evaluate.lesion_tracking` for the ids), averaged over pairs;
   ``id acc.`` = kept / (kept + swapped) pooled over pairs; time per step is the median over
   pairs (model loaded once; reading and writing not included).

Prints Markdown tables; ``--json`` also writes the per-pair rows.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
REFERENCE = "registration + propagation"


def heldout_pairs(n_pairs: int, n_real: int, seed: int):
    """Yield (name, LongitudinalPair) of the held-out set (see the module docstring)."""
    from autopet_common.phantoms import make_longitudinal_pair
    from autopet_common.phantoms.task2 import varied_grid

    for n in range(n_pairs):
        events = {"n_merging": 1, "n_splitting": 1} if n % 2 else {}
        if n % 4 < 2:
            shape, spacing = varied_grid(seed, n)
            grid = {"shape": shape, "spacing": spacing}
            name = f"varied_{n:02d}"
        else:
            grid = {"size": "small"}
            name = f"small_{n:02d}"
        yield name + ("_events" if events else ""), make_longitudinal_pair(seed=[seed, n], **grid, **events)
    for n in range(n_real):
        yield f"ct_real_{n:02d}", make_longitudinal_pair(size="ct_real", seed=[seed, 500 + n])


def score(pair, labels: np.ndarray) -> dict:
    from evaluation_metrics.evaluate import lesion_tracking
    from evaluation_metrics.metrics import dice_score, false_negative_volume, false_positive_volume

    truth = pair.followup_labels
    voxel_ml = float(np.prod(pair.followup_geometry.spacing)) / 1000.0
    gt, pred = truth > 0, labels > 0
    tracking = lesion_tracking(truth, labels, voxel_ml)
    return {"dice": dice_score(gt, pred), "fpv": false_positive_volume(gt, pred, voxel_ml),
            "fnv": false_negative_volume(gt, pred, voxel_ml),
            **{k: tracking[k] for k in ("n_kept", "n_swapped", "n_lost", "n_new")}}


def run(method, pair, points: dict) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    result = method(pair.baseline_ct, pair.baseline_geometry, pair.baseline_labels, pair.followup_ct,
                    pair.followup_geometry, dict(pair.baseline_centres), points)
    return result.labels, time.perf_counter() - started


def methods(model: str | None) -> dict:
    from Task2.pipeline import segment_followup
    from Task2.registration import RegistrationParameters

    out = {REFERENCE: segment_followup}
    if model:
        from Task2.patch_model import PatchModelSegmenter

        segmenter = PatchModelSegmenter(model, "cpu", click_fallback=False)
        combined = PatchModelSegmenter(model, "cpu")

        def without_registration(*args):
            return segmenter.segment(*args, RegistrationParameters(identity=True), local_refinement=False)

        out["learned model alone"] = without_registration
        out["registration places, network segments"] = segmenter.segment
        out["combination"] = combined.segment
    return out


def summarise(rows: list[dict], method: str, step: int) -> dict:
    chosen = [r for r in rows if r["method"] == method and r["step"] == step]
    kept, swapped = sum(r["n_kept"] for r in chosen), sum(r["n_swapped"] for r in chosen)
    return {"dice": float(np.nanmean([r["dice"] for r in chosen])),
            "fpv": float(np.mean([r["fpv"] for r in chosen])), "fnv": float(np.mean([r["fnv"] for r in chosen])),
            "id_accuracy": kept / (kept + swapped) if kept + swapped else float("nan"),
            "lost": sum(r["n_lost"] for r in chosen), "new": sum(r["n_new"] for r in chosen),
            "seconds": statistics.median(r["seconds"] for r in chosen)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(REPO / "models" / "task2_phantom_patches"),
                        help="lesion-patch model folder ('' for the model-free rows only)")
    parser.add_argument("--pairs", type=int, default=8, help="held-out pairs on varied and small grids")
    parser.add_argument("--real", type=int, default=1, help="held-out pairs of 512x512x300 at 0.8x0.8x2.5 mm")
    parser.add_argument("--seed", type=int, default=1000, help="phantom seed (training used 0)")
    parser.add_argument("--json", default=None, help="also write the per-pair rows here")
    args = parser.parse_args(argv)

    import contextlib

    with contextlib.redirect_stdout(sys.stderr):  # nnU-Net's loading chatter stays out of the tables
        runners = methods(args.model or None)
    rows = []
    for name, pair in heldout_pairs(args.pairs, args.real, args.seed):
        for method, segment in runners.items():
            for step, points in ((1, {}), (2, dict(pair.followup_centres))):
                labels, seconds = run(segment, pair, points)
                rows.append({"pair": name, "method": method, "step": step, "seconds": seconds,
                             "shape": list(pair.followup_geometry.shape), **score(pair, labels)})
                print(f"{name} {method} step {step}: Dice {rows[-1]['dice']:.3f}, {seconds:.1f} s", file=sys.stderr,
                      flush=True)
    groups = {"all held-out pairs": lambda r: True,
              "512x512x300 pairs only": lambda r: r["pair"].startswith("ct_real")}
    for title, keep in groups.items():
        chosen = [r for r in rows if keep(r)]
        if not chosen:
            continue
        n = len({r["pair"] for r in chosen})
        print(f"\n{title} ({n} pairs)\n")
        print("| method | step | Dice | FPV (ml) | FNV (ml) | id acc. | lost | new ids | s / step | time / reference |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for step in (1, 2):
            reference = summarise(chosen, REFERENCE, step)["seconds"]
            for method in runners:
                s = summarise(chosen, method, step)
                print(f"| {method} | {step} | {s['dice']:.3f} | {s['fpv']:.2f} | {s['fnv']:.2f} | "
                      f"{s['id_accuracy']:.3f} | {s['lost']} | {s['new']} | {s['seconds']:.1f} | "
                      f"{s['seconds'] / reference:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
