"""Command line: ``python -m autopet_common.phantoms {task1,task2} ...`` (also ``autopet-phantoms``)."""
from __future__ import annotations

import argparse

from ..cli import ArgumentParser, entrypoint, non_negative_int, positive_int, probability, seed
from .common import PRESETS
from .task2 import GRID_SETS, VANISH_PROBABILITY


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="autopet-phantoms",
        description="Write synthetic autoPET/CT IV phantoms (deterministic by seed). "
                    "task1: whole-body PET/CT cohort in nnU-Net raw layout (+ Grand Challenge layout). "
                    "task2: longitudinal CT pairs in the Grand Challenge Task 2 input layout.")
    sub = parser.add_subparsers(dest="command", required=True)

    t1 = sub.add_parser("task1", help="PET/CT cohort: imagesTr/<case>_0000 (CT), _0001 (PET), labelsTr, "
                                      "dataset.json, lesions.json, gc/<case>/images/{ct,pet}/<uuid>.mha")
    t1.add_argument("--out", required=True, help="output folder (the dataset folder itself, or its "
                                                 "parent when --dataset_id is given)")
    t1.add_argument("--n_cases", type=positive_int, default=3, help="number of cases (default 3)")
    t1.add_argument("--tracer", default="FDG", choices=["FDG", "PSMA", "mixed"],
                    help="tracer; 'mixed' alternates FDG and PSMA (default FDG)")
    t1.add_argument("--size", default="tiny", choices=[p for p in PRESETS if p != "ct_real"],
                    help="grid preset: tiny 64x64x48, small 128x128x96, medium 200x200x160, "
                         "full 400x400x326 at 2.04x2.04x3 mm (default tiny)")
    t1.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")
    t1.add_argument("--n_lesions", type=non_negative_int, default=None,
                    help="lesions per case (default: 0..15 drawn per case)")
    t1.add_argument("--dataset_id", type=non_negative_int, default=None,
                    help="write into <out>/DatasetXXX_<name> for nnU-Net (nnUNet_raw = <out>)")
    t1.add_argument("--dataset_name", default=None, help="dataset name after the id (default PhantomFDG ...)")
    t1.add_argument("--no_gc", action="store_true", help="skip the Grand Challenge .mha layout")
    t1.add_argument("--empty_every", type=positive_int, default=None,
                    help="every N-th case has no lesion (default: none forced)")
    t1.add_argument("--anatomy", default="standard", choices=["standard", "randomised", "second"],
                    help="standard (default); randomised: domain-randomised body, organs, uptake, field of view "
                         "and physics, the grid drawn per case (--size unused), the training data of "
                         "models/task1_phantom_organs; second: another body (no bones, other organ shapes and "
                         "places) that no training generator makes, for generalisation checks")
    t1.add_argument("--organs", action="store_true",
                    help="also write organsTr/<case>.nii.gz organ maps (TotalSegmentator numbering, "
                         "organ_classes.json) for Task1.convert_dataset --organs")

    t2 = sub.add_parser("task2", help="longitudinal CT pairs: <pair>/input/images/..., clicks JSON, "
                                      "truth/followup-tumor-lesion-seg.mha, transform.json")
    t2.add_argument("--out", required=True, help="output folder")
    t2.add_argument("--n_pairs", type=positive_int, default=2, help="number of pairs (default 2)")
    t2.add_argument("--size", default="tiny", choices=[*PRESETS, *GRID_SETS],
                    help="grid preset (ct_real = 512x512x300 at 0.8x0.8x2.5 mm), or a grid and spacing per pair: "
                         "varied (2.4-5 mm in-plane, see varied_grid), varied_fine (0.7-2 mm in-plane, see "
                         "fine_grid), mixed (every third pair varied_fine); default tiny")
    t2.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")
    t2.add_argument("--n_merging", type=non_negative_int, default=0,
                    help="per pair: baseline lesion pairs that merge into one follow-up lesion (default 0)")
    t2.add_argument("--n_splitting", type=non_negative_int, default=0,
                    help="per pair: baseline lesions that split into two follow-up lesions (default 0)")
    t2.add_argument("--event_every", type=positive_int, default=1,
                    help="put the merging and splitting lesions on every k-th pair only (pairs n with "
                         "(n + 1) %% k == 0; default 1, every pair; 2: the odd pairs)")
    t2.add_argument("--vanish_probability", type=probability, default=VANISH_PROBABILITY,
                    help="chance that a baseline lesion vanishes at follow-up; the other statuses share the rest "
                         f"(default {VANISH_PROBABILITY})")
    return parser


@entrypoint("autopet-phantoms")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "task1":
        from .task1_cohort import write_task1_cohort
        root = write_task1_cohort(args.out, n_cases=args.n_cases, tracer=args.tracer, size=args.size,
                                  seed=args.seed, dataset_id=args.dataset_id,
                                  dataset_name=args.dataset_name, gc_layout=not args.no_gc,
                                  empty_every=args.empty_every, n_lesions=args.n_lesions,
                                  progress=True, organs=args.organs, anatomy=args.anatomy)
    else:
        from .task2 import write_task2_cohort
        root = write_task2_cohort(args.out, n_pairs=args.n_pairs, size=args.size, seed=args.seed,
                                  progress=True, n_merging=args.n_merging, n_splitting=args.n_splitting,
                                  event_every=args.event_every, vanish_probability=args.vanish_probability)
    print(root)
    return 0
