"""Benchmark of Task 2 methods on held-out longitudinal phantom pairs: Dice, FPV, FNV, ids, time.

    .venv/bin/python benchmarks/bench_task2_model.py [--pairs 8] [--real 2] [--model DIR] [--methods combination]

1. Held-out pairs, never used in training (the shipped model trained on pairs of seed 0):
   ``--pairs`` pairs of seed ``--seed`` (default 1000), alternating between the
   ``varied`` grids and the ``small`` preset (128x128x96 at 4x4x6 mm); every second pair has a
   merging pair of lesions and a splitting lesion; plus ``--real`` pairs of the ``ct_real``
   preset (512x512x300 at 0.8x0.8x2.5 mm, the challenge's CT grid).
   ``--anatomy second``: the same seeds and grids from
   :func:`autopet_common.phantoms.second_anatomy.second_anatomy_pair` instead (another body,
   lesion model and growth; no merging or splitting), to see how a method does on pairs of a
   generator it was not built on.
2. Methods, in this process, each on the same inputs, steps 1 (no follow-up clicks) and 2 (one
   click per follow-up lesion; ``--methods`` picks the learned-model rows by their short names):
   - ``registration + propagation``: the model-free pipeline
     (:func:`Task2.pipeline.segment_followup`: registration, carrying, intensity and shape
     model) - the reference;
   - ``learned model alone`` (``alone``): the lesion-patch network
     (:class:`Task2.patch_model.PatchModelSegmenter`) with its patches placed and its baseline
     channels carried through the scanners' coordinates only (identity transform, no
     registration);
   - ``registration places, network segments`` (``placed``): the same network, with the registration
     (global + per-lesion refinement) placing each patch and carrying the baseline channels;
   - ``combination`` (``combination``): that, and at step 2 the model-free segmentation of every clicked lesion
     the network left empty (what ``--model`` runs, ``click_fallback``).
3. Scores per pair and step with the project's metrics (Dice, FPV and FNV in ml of the binary
   masks; :func:`evaluation_metrics.evaluate.lesion_tracking` for the ids), averaged over pairs;
   ``id acc.`` = kept / (kept + swapped) pooled over pairs; time per step is the median over
   pairs (model loaded once; reading and writing not included).

4. Per lesion (``--per_lesion``), to see where a method loses: each follow-up lesion of the truth
   with its status in the phantom's record (grown, shrunk, stable, new, split; a merged pair's
   survivor keeps its own) and its size, scored by the Dice of the prediction (any id) with the
   lesion inside the lesion's box grown by 10 mm, and counted as empty when no predicted voxel
   touches it. Each baseline lesion that vanished at follow-up is listed too, with the volume
   drawn with its id (step 1 carries baseline ids): what a method redraws where nothing is left.

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
# --methods: short name -> table row of a learned-model method (module docstring, 2); the reference always runs
LEARNED_METHODS = {"alone": "learned model alone", "placed": "registration places, network segments",
                   "combination": "combination"}


def heldout_pairs(n_pairs: int, n_real: int, seed: int, anatomy: str = "standard"):
    """Yield (name, LongitudinalPair) of the held-out set (see the module docstring)."""
    from autopet_common.phantoms import make_longitudinal_pair
    from autopet_common.phantoms.second_anatomy import second_anatomy_pair
    from autopet_common.phantoms.task2 import pair_events, varied_grid

    for n in range(n_pairs):
        if n % 4 < 2:
            shape, spacing = varied_grid(seed, n)
            grid = {"size": None, "shape": shape, "spacing": spacing}
            name = f"varied_{n:02d}"
        else:
            grid = {"size": "small"}
            name = f"small_{n:02d}"
        if anatomy == "second":
            yield f"second_{name}", second_anatomy_pair([seed, n], **grid)
            continue
        events = pair_events(n, 1, 1, every=2)
        yield name + ("_events" if events["n_merging"] else ""), make_longitudinal_pair(seed=[seed, n], **grid, **events)
    for n in range(n_real):
        if anatomy == "second":
            yield f"second_ct_real_{n:02d}", second_anatomy_pair([seed, 500 + n], size="ct_real")
        else:
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


LESION_MARGIN_MM = 10.0
SIZE_CLASSES_ML = ((0.5, "< 0.5 ml"), (4.0, "0.5-4 ml"), (float("inf"), ">= 4 ml"))


def lesion_scores(pair, labels: np.ndarray) -> list[dict]:
    """Per follow-up truth lesion: status, size class, local Dice and emptiness (module docstring, 4)."""
    from scipy import ndimage as ndi

    from evaluation_metrics.metrics import dice_score

    truth = pair.followup_labels
    spacing = np.asarray(pair.followup_geometry.spacing, dtype=float)
    status = {int(r["id"]): r["status"] for r in pair.lesions}
    voxel_ml = float(np.prod(spacing)) / 1000.0
    grow = np.ceil(LESION_MARGIN_MM / spacing).astype(int)
    out = []
    for lesion_id, box in enumerate(ndi.find_objects(truth), start=1):
        if box is None:
            continue
        box = tuple(slice(max(0, s.start - g), min(n, s.stop + g)) for s, g, n in zip(box, grow, truth.shape))
        lesion, predicted = truth[box] == lesion_id, labels[box] > 0
        volume = float(lesion.sum()) * voxel_ml
        out.append({"id": lesion_id, "status": status.get(lesion_id, "?"),
                    "size": next(name for limit, name in SIZE_CLASSES_ML if volume < limit), "volume_ml": volume,
                    "dice": dice_score(lesion, predicted), "empty": not np.any(lesion & predicted)})
    return out


def vanished_drawn(pair, labels: np.ndarray) -> list[dict]:
    """Per baseline lesion that vanished at follow-up: the volume (ml) drawn with its id."""
    voxel_ml = float(np.prod(pair.followup_geometry.spacing)) / 1000.0
    return [{"id": int(r["id"]), "radius_mm": r["radius_mm"],
             "drawn_ml": float(np.count_nonzero(labels == int(r["id"]))) * voxel_ml}
            for r in pair.lesions if r["status"] == "vanished"]


def print_lesion_table(rows: list[dict], runners) -> None:
    """Mean local Dice and empty lesions per method and step, by status and by size class."""
    lesions = [dict(lesion, method=r["method"], step=r["step"]) for r in rows for lesion in r["lesions"]]
    for key in ("status", "size"):
        present = {lesion[key] for lesion in lesions}
        groups = [name for _, name in SIZE_CLASSES_ML if name in present] if key == "size" else sorted(present)
        print(f"\nper lesion, by {key}: mean local Dice (empty / lesions)\n")
        print(f"| method | step | {' | '.join(groups)} |")
        print("|---|---:|" + "---:|" * len(groups))
        for step in (1, 2):
            for method in runners:
                cells = []
                for group in groups:
                    chosen = [x for x in lesions if x["method"] == method and x["step"] == step and x[key] == group]
                    cells.append(f"{np.mean([x['dice'] for x in chosen]):.3f} "
                                 f"({sum(x['empty'] for x in chosen)}/{len(chosen)})" if chosen else "-")
                print(f"| {method} | {step} | {' | '.join(cells)} |")
    vanished = [dict(v, method=r["method"], step=r["step"]) for r in rows for v in r["vanished"]]
    if vanished:
        print("\nbaseline lesions that vanished: drawn with their id (lesions drawn / vanished, total ml)\n")
        print("| method | step | drawn | ml |")
        print("|---|---:|---:|---:|")
        for step in (1, 2):
            for method in runners:
                chosen = [v for v in vanished if v["method"] == method and v["step"] == step]
                print(f"| {method} | {step} | {sum(v['drawn_ml'] > 0 for v in chosen)}/{len(chosen)} | "
                      f"{sum(v['drawn_ml'] for v in chosen):.2f} |")


def run(method, pair, points: dict) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    result = method(pair.baseline_ct, pair.baseline_geometry, pair.baseline_labels, pair.followup_ct,
                    pair.followup_geometry, dict(pair.baseline_centres), points)
    return result.labels, time.perf_counter() - started


def methods(model: str | None, keep=tuple(LEARNED_METHODS)) -> dict:
    """Table row -> method: the reference, then the learned-model rows named in ``keep``
    (short names of :data:`LEARNED_METHODS`) when ``model`` is given; only the networks those rows
    use are loaded. Raises ValueError on a name that is not one of them."""
    from Task2.pipeline import segment_followup
    from Task2.registration import RegistrationParameters

    unknown = sorted(set(keep) - set(LEARNED_METHODS))
    if unknown:
        raise ValueError(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(LEARNED_METHODS)}")
    out = {REFERENCE: segment_followup}
    if not model:
        return out
    from Task2.patch_model import PatchModelSegmenter

    if {"alone", "placed"} & set(keep):
        segmenter = PatchModelSegmenter(model, "cpu", click_fallback=False)

        def without_registration(*args):
            return segmenter.segment(*args, RegistrationParameters(identity=True), local_refinement=False)

        if "alone" in keep:
            out[LEARNED_METHODS["alone"]] = without_registration
        if "placed" in keep:
            out[LEARNED_METHODS["placed"]] = segmenter.segment
    if "combination" in keep:
        out[LEARNED_METHODS["combination"]] = PatchModelSegmenter(model, "cpu").segment
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
    parser.add_argument("--real", type=int, default=2, help="held-out pairs of 512x512x300 at 0.8x0.8x2.5 mm "
                                                             "(default 2, as issue 34 asks)")
    parser.add_argument("--seed", type=int, default=1000, help="phantom seed (training used 0)")
    parser.add_argument("--anatomy", choices=("standard", "second"), default="standard",
                        help="standard: pairs of the training generator (other seeds); second: pairs of the second "
                             "anatomy (autopet_common.phantoms.second_anatomy.second_anatomy_pair), another body, "
                             "lesion model and growth that no training pair has, on the same grids")
    parser.add_argument("--methods", default=",".join(LEARNED_METHODS),
                        help=f"comma-separated subset of {','.join(LEARNED_METHODS)} (the learned-model rows; "
                             "the model-free reference is always measured); fewer rows take less time")
    parser.add_argument("--json", default=None, help="also write the per-pair rows here")
    parser.add_argument("--per_lesion", action="store_true",
                        help="also print per-lesion tables by status and size (module docstring, 4)")
    args = parser.parse_args(argv)
    keep = tuple(name.strip() for name in args.methods.split(",") if name.strip())

    import contextlib

    with contextlib.redirect_stdout(sys.stderr):  # nnU-Net's loading chatter stays out of the tables
        try:
            runners = methods(args.model or None, keep)
        except ValueError as exc:  # an unknown --methods name, refused before any model loads
            parser.error(str(exc))
    rows = []
    for name, pair in heldout_pairs(args.pairs, args.real, args.seed, args.anatomy):
        for method, segment in runners.items():
            for step, points in ((1, {}), (2, dict(pair.followup_centres))):
                labels, seconds = run(segment, pair, points)
                rows.append({"pair": name, "method": method, "step": step, "seconds": seconds,
                             "shape": list(pair.followup_geometry.shape), **score(pair, labels),
                             "lesions": lesion_scores(pair, labels), "vanished": vanished_drawn(pair, labels)})
                print(f"{name} {method} step {step}: Dice {rows[-1]['dice']:.3f}, {seconds:.1f} s", file=sys.stderr,
                      flush=True)
    groups = {"all held-out pairs": lambda r: True,
              "512x512x300 pairs only": lambda r: "ct_real" in r["pair"]}
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
    if args.per_lesion:
        print_lesion_table(rows, runners)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
