"""Choose a model's decision threshold, click-seeded growth, PET edges, PET regions at clicks and
background cut on validation cases, and write the recipe that runs the model with them.

    python -m Task1.tune_recipe --model models/task1_phantom_organs --make_phantoms 8 --seed 2000 \\
        --work work_dirs/tune --write

nnU-Net picks its post-processing on the validation folds (``nnUNetv2_find_best_configuration``);
this does the same for the settings of the Task 1 protocol that a network's training does not
fix: the lesion-probability ``threshold`` of the mask, ``grow_from_clicks`` (the components of
``probability >= min_probability`` that hold a tumor click are added, see
:func:`Task1.postprocessing.grow_from_clicks`), ``refine_edges`` (each component's edge moved to
its PET contour at a fraction from its surroundings to its peak, the component's or a local one
within ``peak_mm``, see :func:`Task1.postprocessing.refine_edges`), ``add_pet_regions_at_clicks``
(at each tumor click, the lesion its PET shows at a fraction from the surroundings to the click's
peak, when it fits in a ball of ``radius_mm``, see
:func:`Task1.postprocessing.add_pet_regions_at_clicks`), and the click rules' ``background_cut``
(how a component that holds a tumor and a background click is cut, see
:mod:`Task1.postprocessing`) and ``spare_rim`` (an unclicked component whose background clicks
lie only on its outer voxel layer is cut, not removed whole; see
:func:`Task1.postprocessing.cut_at_background_clicks`). Each validation case runs the challenge's
11 click steps once per network pass; every combination of the grid is then scored on the same
probabilities, with the recipe's own post-processing code (:func:`Task1.postprocessing.run_chain`),
so what is chosen is what the recipe runs. The objective is the challenge's two Dice measures
with their ranking weights (DSC@10 and AUC-DSC, 0.25 each): ``DSC@10 + AUC-DSC / 10``, mean over
cases; ties go to the smaller AUC-FPV.

Validation cases must not be the cases the result is reported on. ``--make_phantoms N`` writes N
cases of the training generator (:func:`Task1.train_phantom_model.varied_phantom`) with a seed
that training did not use (training uses seed 0); ``--cohort DIR [DIR ...]`` takes raw cohorts
(``imagesTr/<case>_0000|_0001``, ``labelsTr/<case>``), alone or besides the phantoms (for
example full-size phantoms of ``autopet-phantoms task1 --size full``, so the choice also sees the
real grid). Network passes keep their sliding-window tiles between steps
(:mod:`Task1.incremental`, exact), so full-size cases cost one full pass and the tiles that the
clicks change. ``--write`` writes ``autopet_recipe.json`` into the model folder (one route, the
folder itself, the chosen threshold, then ``grow_from_clicks``, ``refine_edges``,
``add_pet_regions_at_clicks`` and ``click_rules``); the tuning table goes beside it as
``tuning.json``.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from autopet_common.cli import ArgumentParser, device_name, entrypoint, non_negative_float, positive_float, seed
from autopet_common.cli import probability as probability_type  # 'probability' names the network's map here
from autopet_common.contract import TASK1_MAX_CLICKS
from autopet_common.errors import InputError
from Task1.postprocessing import BACKGROUND_CUTS, DEFAULT_BACKGROUND_CUT

STEPS = tuple(range(TASK1_MAX_CLICKS + 1))
THRESHOLDS = (0.5, 0.4, 0.3)
GROW = (None, 0.3, 0.2, 0.1)       # None: no growth
REFINE_EDGES = (None, 0.25, 0.3, 0.35)  # None: the network's edges (Task1.postprocessing.refine_edges)
EDGE_PEAKS = (None, 6.0)  # refine_edges' peak_mm; None: one peak per component
PET_REGIONS = (None, 0.4)  # add_pet_regions_at_clicks' fraction; None: no PET regions at clicks
PET_REGION_RADII = (60.0,)  # add_pet_regions_at_clicks' radius_mm, tried with each fraction
TUNING_FILE = "tuning.json"


@dataclass(frozen=True)
class Setting:
    threshold: float
    grow: float | None
    background_cut: str = DEFAULT_BACKGROUND_CUT
    refine_edges: float | None = None  # the PET contour's fraction; None: the network's edges
    edge_peak_mm: float | None = None  # refine_edges' local peak window; None: the component's peak
    pet_regions: float | None = None  # add_pet_regions_at_clicks' fraction; None: not run
    pet_region_radius_mm: float | None = None  # its ball's radius
    spare_rim: bool = False  # the click rules' spare_rim (only with the cut nearest_not_hotter)

    @property
    def postprocessing(self) -> list[dict]:
        chain = [] if self.grow is None else [{"op": "grow_from_clicks", "min_probability": self.grow}]
        if self.refine_edges is not None:
            chain.append({"op": "refine_edges", "fraction": self.refine_edges}
                         | ({} if self.edge_peak_mm is None else {"peak_mm": self.edge_peak_mm}))
        if self.pet_regions is not None:
            chain.append({"op": "add_pet_regions_at_clicks", "fraction": self.pet_regions,
                          "radius_mm": self.pet_region_radius_mm})
        return chain + [{"op": "click_rules", "protocol_rule": True, "background_cut": self.background_cut}
                        | ({"spare_rim": True} if self.spare_rim else {})]

    def label(self) -> str:
        return (f"threshold {self.threshold:g}, "
                + ("no growth" if self.grow is None else f"grow from clicks >= {self.grow:g}")
                + ("" if self.refine_edges is None else f", PET edges at {self.refine_edges:g}")
                + ("" if self.refine_edges is None or self.edge_peak_mm is None
                   else f" of the peak within {self.edge_peak_mm:g} mm")
                + ("" if self.pet_regions is None
                   else f", PET regions at clicks at {self.pet_regions:g} within {self.pet_region_radius_mm:g} mm")
                + f", background cut {self.background_cut}"
                + (" sparing a rim click's component" if self.spare_rim else ""))


def objective(summary: dict) -> float:
    """DSC@10 + AUC-DSC / 10 (the challenge's two Dice measures, equal ranking weights)."""
    return summary["dice"][-1] + summary["auc_dice"] / 10.0


def case_probabilities(method, ct: np.ndarray, pet: np.ndarray, geometry, clicks: dict,
                       steps: Sequence[int] = STEPS) -> dict[int, np.ndarray]:
    """The network's lesion probability at each step (the case prepared once, the clicks of each
    step from :func:`Task1.session.clicks_for_step`)."""
    from Task1.session import clicks_for_step

    case = method.prepare(ct, pet, geometry)
    return {step: method.probability(case, clicks_for_step(clicks, step, geometry.shape)) for step in steps}


def score_settings(label: np.ndarray, pet: np.ndarray, geometry, clicks: dict, probabilities: dict[int, np.ndarray],
                   settings: Sequence[Setting]) -> dict[Setting, dict[str, list[float]]]:
    """Dice, FPV and FNV per step of each setting on one case (masks from the recipe's own chain,
    :func:`Task1.postprocessing.run_chain`)."""
    from evaluation_metrics import compute_metrics_arrays
    from Task1.postprocessing import ChainContext, run_chain
    from Task1.session import clicks_for_step

    out = {s: {"dice": [], "fpv": [], "fnv": []} for s in settings}
    for step, probability in sorted(probabilities.items()):
        context = ChainContext(pet=pet, clicks=clicks_for_step(clicks, step, geometry.shape), spacing=geometry.spacing,
                               probability=probability)
        for setting in settings:
            mask, _ = run_chain(probability > setting.threshold, setting.postprocessing, context)
            dice, fpv, fnv = compute_metrics_arrays(label, mask, geometry.voxel_volume_ml)
            out[setting]["dice"].append(dice)
            out[setting]["fpv"].append(fpv)
            out[setting]["fnv"].append(fnv)
    return out


def summarise(per_case: list[dict[str, list[float]]]) -> dict:
    """Mean over cases of the per-step curves and of the per-case AUCs."""
    from evaluation_metrics import interactive_auc

    out = {k: [float(np.nanmean([c[k][s] for c in per_case])) for s in range(len(per_case[0][k]))]
           for k in ("dice", "fpv", "fnv")}
    for k in ("dice", "fpv", "fnv"):
        out[f"auc_{k}"] = float(np.nanmean([interactive_auc(c[k]) for c in per_case]))
    return out


def tune_recipe(model: str | os.PathLike, cohorts: str | os.PathLike | Sequence[str | os.PathLike], *,
                thresholds: Sequence[float] = THRESHOLDS, grow: Sequence[float | None] = GROW,
                background_cuts: Sequence[str] | None = None,
                refine_edges: Sequence[float | None] = REFINE_EDGES,
                edge_peaks: Sequence[float | None] = EDGE_PEAKS, pet_regions: Sequence[float | None] = PET_REGIONS,
                pet_region_radii: Sequence[float] = PET_REGION_RADII, spare_rim: Sequence[bool] = (False,),
                device: str = "auto", progress: bool = True) -> dict:
    """Score every (threshold, growth, PET edges and their peak, PET regions at clicks and their
    radius, background cut and, with ``nearest_not_hotter``, each of ``spare_rim``) setting on the
    cohorts' cases; returns ``{"rows": [...], "best": {...}}`` with rows sorted best first (see the
    module docstring for the objective). A row holds the mean curves, the mean AUCs and ``per_case``
    curves (Dice, FPV, FNV per step). ``background_cuts`` None: all of
    :data:`Task1.postprocessing.BACKGROUND_CUTS`."""
    from tqdm import tqdm

    from autopet_common.image_io import read_image
    from clicks import simulate_clicks
    from Task1.batch_predict import find_case_images
    from Task1.session import NetworkMethod, open_method

    cohorts = [Path(cohorts)] if isinstance(cohorts, (str, os.PathLike)) else [Path(c) for c in cohorts]
    cases: dict[str, tuple[Path, Path, Path]] = {}  # case -> (CT, PET, its cohort)
    for cohort in cohorts:
        found = find_case_images(cohort / "imagesTr")
        if not found:
            raise InputError(f"{cohort / 'imagesTr'}: no cases (<case>_0000 / <case>_0001 images)")
        for case, (ct_path, pet_path) in found.items():
            if case in cases:
                raise InputError(f"case {case} is in {cases[case][2]} and in {cohort}: case names must differ")
            cases[case] = (ct_path, pet_path, cohort)
    cuts = tuple(BACKGROUND_CUTS if background_cuts is None else background_cuts)
    unknown = [c for c in cuts if c not in BACKGROUND_CUTS]
    if unknown:
        raise InputError(f"background cut(s) {unknown}: choose from {', '.join(BACKGROUND_CUTS)}")
    method = open_method(model, device=device, incremental=True)
    if not isinstance(method, NetworkMethod):
        raise InputError(f"--model {model}: tuning needs one network folder (nnU-Net or MONAI) whose lesion "
                         f"probability it thresholds; this is {method.name}")
    peaks = [None if p is None else float(p) for p in edge_peaks]
    regions = [(None, None) if f is None else (float(f), float(radius))
               for f in pet_regions for radius in (pet_region_radii if f is not None else [None])]
    settings = [Setting(float(t), None if g is None else float(g), cut, None if r is None else float(r), p, *region,
                        spare)
                for t in thresholds for g in grow for r in refine_edges
                for p in (peaks if r is not None else [None])  # a peak only with PET edges
                for region in regions
                for cut in cuts if g is None or g < t
                for spare in (spare_rim if cut == "nearest_not_hotter" else (False,))]
    scores: dict[Setting, dict] = {s: {} for s in settings}
    for case, (ct_path, pet_path, cohort) in tqdm(cases.items(), desc="validation cases", unit="case",
                                                  disable=not progress):
        ct, geometry = read_image(ct_path, np.float32)
        pet, _ = read_image(pet_path, np.float32)
        label, _ = read_image(cohort / "labelsTr" / f"{case}.nii.gz")
        label = (label > 0).astype(np.uint8)
        clicks = simulate_clicks(label, pet, dataset_name="FDG-PETCT", case=case)
        probabilities = case_probabilities(method, ct, pet, geometry, clicks)
        for setting, curves in score_settings(label, pet, geometry, clicks, probabilities, settings).items():
            scores[setting][case] = curves
    rows = []
    for setting, per_case in scores.items():
        summary = summarise(list(per_case.values()))
        rows.append({"threshold": setting.threshold, "grow_from_clicks": setting.grow,
                     "refine_edges": setting.refine_edges, "edge_peak_mm": setting.edge_peak_mm,
                     "pet_regions": setting.pet_regions, "pet_region_radius_mm": setting.pet_region_radius_mm,
                     "background_cut": setting.background_cut, "spare_rim": setting.spare_rim,
                     "setting": setting.label(),
                     "objective": objective(summary), **summary, "per_case": per_case})
    rows.sort(key=lambda r: (-r["objective"], r["auc_fpv"]))
    return {"model": str(model), "cohorts": [str(c) for c in cohorts], "cases": sorted(cases),
            "rows": rows, "best": rows[0]}


def recipe_for(best: dict, *, description: str) -> dict:
    """The recipe (version 1) that runs the model folder itself with the chosen setting."""
    setting = Setting(best["threshold"], best["grow_from_clicks"], best.get("background_cut", DEFAULT_BACKGROUND_CUT),
                      best.get("refine_edges"), best.get("edge_peak_mm"), best.get("pet_regions"),
                      best.get("pet_region_radius_mm"), bool(best.get("spare_rim", False)))
    return {"version": 1, "description": description, "tracer": {"classify": False},
            "routes": [{"tracer": "any", "steps": [0, TASK1_MAX_CLICKS], "models": [{"folder": "."}]}],
            "threshold": setting.threshold, "postprocessing": setting.postprocessing}


def format_table(result: dict) -> str:
    lines = ["| setting | DSC@0 | DSC@10 | AUC-DSC | AUC-FPV | AUC-FNV | objective |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['setting']} | {r['dice'][0]:.3f} | {r['dice'][-1]:.3f} | {r['auc_dice']:.3f} | "
                     f"{r['auc_fpv']:.2f} | {r['auc_fnv']:.2f} | {r['objective']:.4f} |")
    return "\n".join(lines)


def build_parser() -> ArgumentParser:
    from Task1.train_phantom_model import PHANTOM_SETS  # the training sets have one home

    parser = ArgumentParser(prog="python -m Task1.tune_recipe", description=__doc__.split("\n\n")[0],
                            epilog="See the module docstring (pydoc Task1.tune_recipe) for the objective and "
                                   "the recipe written.")
    parser.add_argument("--model", "-m", required=True, help="model folder (nnU-Net or MONAI)")
    parser.add_argument("--cohort", nargs="+", default=[], metavar="DIR",
                        help="raw validation cohort(s): imagesTr/<case>_0000|_0001, labelsTr/<case> (with or "
                             "without --make_phantoms; at least one of the two)")
    parser.add_argument("--make_phantoms", type=int, metavar="N",
                        help="write N validation phantoms of the training generator into --work/cohort")
    parser.add_argument("--seed", type=seed, default=2000,
                        help="phantom seed for --make_phantoms (training uses 0; default 2000)")
    parser.add_argument("--phantoms", choices=sorted(PHANTOM_SETS), default="varied",
                        help="training set whose generator --make_phantoms uses (Task1.train_phantom_model "
                             "--phantoms; default varied)")
    parser.add_argument("--work", default="work_dirs/tune_recipe", help="folder for phantoms and the table")
    parser.add_argument("--thresholds", type=probability_type, nargs="+", default=list(THRESHOLDS))
    parser.add_argument("--grow", type=probability_type, nargs="*", default=[g for g in GROW if g is not None],
                        help="grow_from_clicks probabilities to try (no growth is always tried; give none "
                             "to try only that)")
    parser.add_argument("--refine_edges", type=probability_type, nargs="*", default=[r for r in REFINE_EDGES if r is not None],
                        metavar="FRACTION",
                        help="refine_edges fractions to try (each component's edge moved to its PET contour "
                             "at that fraction from its surroundings to its peak; the network's own edges are "
                             "always tried; give none to try only those; see Task1.postprocessing)")
    parser.add_argument("--edge_peak_mm", type=non_negative_float, nargs="*", default=[p for p in EDGE_PEAKS if p is not None],
                        metavar="MM",
                        help="refine_edges local peak windows to try with each fraction (the peak of the "
                             "component within that many mm of each voxel; one peak per component is always "
                             "tried; give none to try only that)")
    parser.add_argument("--pet_regions", type=probability_type, nargs="*",
                        default=[f for f in PET_REGIONS if f is not None], metavar="FRACTION",
                        help="add_pet_regions_at_clicks fractions to try (at each tumor click, the lesion its "
                             "PET shows at that fraction from the surroundings to the click's peak, when it fits "
                             "in the ball; none is always tried; give none to try only that)")
    parser.add_argument("--pet_region_radius_mm", type=positive_float, nargs="+", default=list(PET_REGION_RADII),
                        metavar="MM", help="the balls' radii to try with each --pet_regions fraction")
    parser.add_argument("--background_cut", nargs="+", default=None, choices=BACKGROUND_CUTS, metavar="CUT",
                        help=f"click rules' background cuts to try ({', '.join(BACKGROUND_CUTS)}; default all; "
                             "see Task1.postprocessing)")
    parser.add_argument("--spare_rim", action="store_true",
                        help="also try the click rules' spare_rim with the cut nearest_not_hotter (an unclicked "
                             "component whose background clicks lie only on its outer voxel layer is cut, not "
                             "removed whole; see Task1.postprocessing.cut_at_background_clicks)")
    parser.add_argument("--write", action="store_true",
                        help=f"write autopet_recipe.json and {TUNING_FILE} into the model folder")
    parser.add_argument("--device", type=device_name, default="auto",
                        help="auto (cuda when available, else cpu), cpu, cuda, cuda:N or mps (model paths only)")
    return parser


@entrypoint("python -m Task1.tune_recipe")
def main(argv: Sequence[str] | None = None) -> int:
    from autopet_common.image_io import atomic_write_json
    from Task1.recipe import RECIPE_FILE, load_recipe

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.make_phantoms is None and not args.cohort:
        parser.error("give --cohort DIR, --make_phantoms N or both")
    work = Path(args.work)
    cohorts = [Path(c) for c in args.cohort]
    if args.make_phantoms is not None:
        from Task1.train_phantom_model import write_training_phantoms

        if args.seed == 0:
            raise InputError("--seed 0 is the training seed: validation phantoms need another seed")
        cohorts.insert(0, write_training_phantoms(work / "cohort", args.make_phantoms, seed=args.seed,
                                                  phantoms=args.phantoms))
    result = tune_recipe(args.model, cohorts, thresholds=args.thresholds, grow=[None, *args.grow],
                         background_cuts=args.background_cut, refine_edges=[None, *args.refine_edges],
                         edge_peaks=[None, *args.edge_peak_mm], pet_regions=[None, *args.pet_regions],
                         pet_region_radii=args.pet_region_radius_mm,
                         spare_rim=(False, True) if args.spare_rim else (False,), device=args.device)
    result["seed"] = args.seed if args.make_phantoms is not None else None
    atomic_write_json(work / TUNING_FILE, result)
    print(format_table(result))
    print(f"\nbest: {result['best']['setting']} (table in {work / TUNING_FILE})")
    if args.write:
        model = Path(args.model)
        sources = ([f"{args.make_phantoms} validation phantoms of the {args.phantoms} training generator, "
                    f"seed {args.seed}"] if args.make_phantoms is not None else []) + \
                  [f"the cohort {c}" for c in args.cohort]
        source = " and ".join(sources)
        recipe = recipe_for(result["best"], description=f"chosen by python -m Task1.tune_recipe on {source} "
                                                        f"(objective DSC@10 + AUC-DSC / 10); see {TUNING_FILE}")
        atomic_write_json(model / TUNING_FILE, result)
        atomic_write_json(model / RECIPE_FILE, recipe)
        load_recipe(model / RECIPE_FILE)  # what was written must read back
        print(f"wrote {model / RECIPE_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
