"""Ablation of the winners' recipe parts on held-out phantoms (issue 13), and the tracer and organ checks.

    .venv/bin/python benchmarks/bench_task1_recipe.py --organ_model work_dirs/phantom_model_organs/model

Same held-out cohort and protocol as ``bench_task1_model.py`` (``--cases`` phantoms, FDG and
PSMA alternating, 128x128x96 and 200x200x160 grids, seeds ``[--seed, n]`` never trained on; the
challenge's 10 + 10 clicks; steps 0..10). Each row is a submission recipe
(:mod:`Task1.recipe`, written to a temporary folder) and its masks come from the recipe's own
code: the networks' lesion probabilities are computed once per case and step (the shipped click
model and the organ-supervised model), and every row combines them (ensemble weights, routing by
tracer and step) and runs its post-processing chain with :meth:`Task1.recipe.RecipeRunner.postprocess`.
A consistency check runs one case end to end through :class:`Task1.recipe.RecipeRunner` and
compares the masks.

Also printed: the tracer classifier's calls on held-out phantoms (whole-body field of view, and
the training generator's axially cropped fields of view), and the organ-supervised model's Dice per
organ class at step 0 on the held-out cases. Phantoms say the parts are wired right, not how much
they help on patients.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
STEPS = list(range(11))
SHIPPED = REPO / "models" / "task1_phantom"

CLICK_RULES = [{"op": "click_rules"}]
SUV_FLOOR = [{"op": "suv_floor", "FDG": 1.5, "PSMA": 1.0}]
SMALL_COLD = [{"op": "remove_components", "min_voxels": 10, "min_suvmax": 4.0}]
CLOSE = [{"op": "close_gaps", "distance_mm": 8.0, "min_suv": 2.0}]
CANDIDATES = [{"op": "add_candidates", "min_probability": 0.3, "min_suvmax": 6.0, "min_volume_ml": 0.5}]


def _routes(models, step_split=None):
    if step_split is None:
        return [{"tracer": "any", "steps": [0, 10], "models": models}]
    low, high = step_split
    return [{"tracer": "any", "steps": [0, 4], "models": low}, {"tracer": "any", "steps": [5, 10], "models": high}]


def rows(organs: bool) -> dict[str, dict]:
    """Row name -> recipe content (models "shipped" / "organs" are folders of the recipe)."""
    shipped, organ = [{"folder": "shipped"}], [{"folder": "organs"}]
    out = {
        "shipped model, click rules (today's default)": {"routes": _routes(shipped), "postprocessing": CLICK_RULES},
        "+ SUV floor by tracer (BIRTH: 1.5 FDG, 1.0 PSMA)": {"routes": _routes(shipped),
                                                             "postprocessing": CLICK_RULES + SUV_FLOOR},
        "+ drop components < 10 voxels or SUVmax < 4 (Zhack)": {
            "routes": _routes(shipped), "postprocessing": CLICK_RULES + SUV_FLOOR + SMALL_COLD},
        "+ close gaps < 8 mm (Auto3DSeg-style merge)": {
            "routes": _routes(shipped), "postprocessing": CLICK_RULES + SUV_FLOOR + SMALL_COLD + CLOSE},
        "+ add candidates p >= 0.3 and SUVmax >= 6": {
            "routes": _routes(shipped), "postprocessing": CLICK_RULES + SUV_FLOOR + SMALL_COLD + CLOSE + CANDIDATES},
    }
    if organs:
        out.update({
            "organ-supervised model (same data and budget), click rules": {
                "routes": _routes(organ), "postprocessing": CLICK_RULES},
            "ensemble shipped + organ-supervised (1:1), click rules": {
                "routes": _routes([{"folder": "shipped"}, {"folder": "organs"}]), "postprocessing": CLICK_RULES},
            "step routing: organ model 0-4, shipped model 5-10": {
                "routes": _routes(organ, (organ, shipped)), "postprocessing": CLICK_RULES},
        })
    return out


def write_recipes(work: Path, organ_model: Path | None) -> dict[str, Path]:
    folders = {}
    for n, (name, content) in enumerate(rows(organ_model is not None).items()):
        folder = work / "recipes" / f"row_{n:02d}"
        folder.mkdir(parents=True)
        (folder / "shipped").symlink_to(SHIPPED)
        if organ_model is not None:
            (folder / "organs").symlink_to(organ_model.resolve())
        (folder / "autopet_recipe.json").write_text(json.dumps({"version": 1, **content}))
        folders[name] = folder
    return folders


def evaluate(cohort: Path, folders: dict[str, Path], organ_model: Path | None) -> tuple[dict, dict, dict]:
    from autopet_common.image_io import read_image
    from clicks import simulate_clicks
    from evaluation_metrics import compute_metrics_arrays
    from Task1.batch_predict import find_case_images
    from Task1.recipe import RecipeRunner, load_recipe
    from Task1.session import clicks_for_step, open_method
    from Task1.tracer import classify_tracer

    networks = {"shipped": open_method(SHIPPED, device="cpu")}
    if organ_model is not None:
        networks["organs"] = open_method(organ_model, device="cpu")
    model_free = open_method("model-free")
    recipes = {name: load_recipe(folder / "autopet_recipe.json") for name, folder in folders.items()}
    scores = {name: {} for name in [*recipes, "model-free baseline (reference)"]}
    organ_dice: dict = {}
    seconds = {name: [] for name in networks}
    for case, (ct_path, pet_path) in find_case_images(cohort / "imagesTr").items():
        print(f"  {case}", file=sys.stderr, flush=True)
        ct, geometry = read_image(ct_path, np.float32)
        pet, _ = read_image(pet_path, np.float32)
        label, _ = read_image(cohort / "labelsTr" / f"{case}.nii.gz")
        label = (label > 0).astype(np.uint8)
        clicks = simulate_clicks(label, pet, dataset_name="FDG-PETCT", case=case)
        call = classify_tracer(pet, geometry.spacing)
        prepared = {name: net.prepare(ct, pet, geometry) for name, net in networks.items()}
        per_case = {name: {"dice": [], "fpv": [], "fnv": []} for name in scores}
        free_case = model_free.prepare(ct, pet, geometry)
        for step in STEPS:
            step_clicks = clicks_for_step(clicks, step, geometry.shape)
            probabilities = {}
            for name, net in networks.items():
                t = time.perf_counter()
                probabilities[name] = net.probability(prepared[name], step_clicks)
                seconds[name].append(time.perf_counter() - t)
            masks = {}
            for name, recipe in recipes.items():
                plan = recipe.plan(call, step)
                route = recipe.route_for(plan["tracer"]["used"], step)
                probability = route.ensemble(probabilities[m.folder] for m in route.models)
                masks[name], _ = RecipeRunner.postprocess(probability > recipe.threshold, probability, pet,
                                                          step_clicks, geometry.spacing, plan)
            masks["model-free baseline (reference)"], _ = model_free.predict(free_case, step_clicks)
            for name, mask in masks.items():
                dice, fpv, fnv = compute_metrics_arrays(label, mask, geometry.voxel_volume_ml)
                per_case[name]["dice"].append(dice)
                per_case[name]["fpv"].append(fpv)
                per_case[name]["fnv"].append(fnv)
        for name in scores:
            scores[name][case] = per_case[name]
        if organ_model is not None:
            organ_dice[case] = organ_scores(networks["organs"], prepared["organs"], cohort, case)
    # consistency: the first case end to end through the recipe runner equals the composition above
    first_case = next(iter(find_case_images(cohort / "imagesTr")))
    consistency = check_consistency(cohort, first_case, folders, scores)
    return scores, organ_dice, {"seconds": {k: float(np.median(v)) for k, v in seconds.items()},
                                "consistency": consistency}


def organ_scores(predictor, prepared, cohort: Path, case: str) -> dict:
    """Dice per organ class of the organ-supervised model at step 0 against the phantom's organs."""
    from autopet_common.image_io import read_image
    from Task1.organs import ORGANS_DATASET_KEY, group_organ_map, read_organ_classes

    groups = list(predictor.dataset_json[ORGANS_DATASET_KEY]["groups"])
    organ_map, _ = read_image(cohort / "organsTr" / f"{case}.nii.gz")
    truth = group_organ_map(organ_map, read_organ_classes(cohort / "organsTr"), groups)
    predicted = predictor.predict_label_map(prepared, {"tumor": [], "background": []})
    out = {}
    for n, group in enumerate(groups):
        value = 2 + n
        t, p = truth == value, predicted == value
        if t.any():
            out[group] = float(2 * np.sum(t & p) / (t.sum() + p.sum()))
    return out


def check_consistency(cohort: Path, case: str, folders: dict[str, Path], scores: dict) -> str:
    """Run the last (most composed) recipe row end to end on ``case`` with RecipeRunner and
    compare its Dice per step with the composed one."""
    from autopet_common.image_io import read_image
    from clicks import simulate_clicks
    from evaluation_metrics import compute_metrics_arrays
    from Task1.session import open_method, predict_steps

    name = list(folders)[-1]
    ct, geometry = read_image(cohort / "imagesTr" / f"{case}_0000.nii.gz", np.float32)
    pet, _ = read_image(cohort / "imagesTr" / f"{case}_0001.nii.gz", np.float32)
    label, _ = read_image(cohort / "labelsTr" / f"{case}.nii.gz")
    label = (label > 0).astype(np.uint8)
    clicks = simulate_clicks(label, pet, dataset_name="FDG-PETCT", case=case)
    method = open_method(folders[name], device="cpu")
    results = predict_steps(method, method.prepare(ct, pet, geometry), clicks, STEPS)
    direct = [compute_metrics_arrays(label, results[s][0], geometry.voxel_volume_ml)[0] for s in STEPS]
    composed = scores[name][case]["dice"]
    same = np.allclose(np.nan_to_num(direct, nan=-1), np.nan_to_num(composed, nan=-1))
    return f"{name!r} on {case}: RecipeRunner end to end {'equals' if same else 'DIFFERS FROM'} the composition"


def tracer_table(seed: int, n_cases: int) -> dict:
    """Tracer calls on held-out phantoms: whole-body fields of view of random grids and uptake,
    and the training generator's cropped fields of view (other seeds)."""
    from autopet_common.phantoms import PetVariation, make_petct_case
    from Task1.tracer import classify_tracer
    from Task1.train_phantom_model import varied_phantom

    result = {}
    for kind in ("whole body", "cropped field of view"):
        counts = {t: {"FDG": 0, "PSMA": 0, None: 0} for t in ("FDG", "PSMA")}
        for n in range(n_cases):
            rng = np.random.default_rng([seed, n, 31])
            if kind == "whole body":
                tracer = ("FDG", "PSMA")[n % 2]
                spacing = (float(rng.uniform(2.0, 6.0)),) * 2 + (float(rng.uniform(2.0, 6.0)),)
                shape = (int(rng.integers(64, 160)),) * 2 + (int(rng.integers(80, 200)),)
                case = make_petct_case(tracer=tracer, seed=[seed, n, 31], shape=shape, spacing=spacing,
                                       variation=PetVariation.random(rng))
            else:
                case = varied_phantom(seed + 1, n)
            counts[case.tracer][classify_tracer(case.pet, case.geometry.spacing).tracer] += 1
        result[kind] = counts
    return result


def _mean_auc(cases: dict, key: str) -> float:
    from evaluation_metrics import interactive_auc

    return float(np.nanmean([interactive_auc(c[key]) for c in cases.values()]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--organ_model", default=None, help="organ-supervised model folder "
                        "(python -m Task1.train_phantom_model --organs)")
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1000, help="phantom seed (training used 0)")
    parser.add_argument("--tracer_cases", type=int, default=40)
    args = parser.parse_args(argv)
    from bench_task1_model import write_heldout_cohort

    organ_model = Path(args.organ_model) if args.organ_model else None
    with tempfile.TemporaryDirectory(prefix="bench_task1_recipe.") as tmp:
        work = Path(tmp)
        cohort = write_heldout_cohort(work / "cohort", args.cases, args.seed, False, organs=True)
        folders = write_recipes(work, organ_model)
        started = time.perf_counter()
        scores, organ_dice, extra = evaluate(cohort, folders, organ_model)
        wall = time.perf_counter() - started
    print(f"\n**Recipe parts, ablation** ({args.cases} held-out phantoms, seeds [{args.seed}, n], 11-step protocol, "
          f"mean over cases; {wall / 60:.0f} min)\n")
    print("| recipe | DSC@0 | DSC@10 | AUC-DSC | AUC-FPV | AUC-FNV |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, cases in scores.items():
        d0 = np.nanmean([c["dice"][0] for c in cases.values()])
        d10 = np.nanmean([c["dice"][-1] for c in cases.values()])
        print(f"| {name} | {d0:.3f} | {d10:.3f} | {_mean_auc(cases, 'dice'):.3f} | {_mean_auc(cases, 'fpv'):.2f} | "
              f"{_mean_auc(cases, 'fnv'):.2f} |")
    print("\nmedian network time per step (probabilities): "
          + ", ".join(f"{k} {v:.2f} s" for k, v in extra["seconds"].items()))
    print(f"consistency: {extra['consistency']}")
    if organ_dice:
        groups = sorted({g for d in organ_dice.values() for g in d})
        print("\n**Organ-supervised model: organ Dice at step 0** (held-out cases; mean over cases where the organ "
              "is in view)\n")
        print("| " + " | ".join(groups) + " | mean |")
        print("|" + "---:|" * (len(groups) + 1))
        means = [float(np.mean([d[g] for d in organ_dice.values() if g in d])) for g in groups]
        print("| " + " | ".join(f"{m:.3f}" for m in means) + f" | {np.mean(means):.3f} |")
    tracer = tracer_table(args.seed, args.tracer_cases)
    print(f"\n**Tracer classifier** (PET only; {args.tracer_cases} held-out phantoms per field-of-view kind)\n")
    print("| field of view | truth | called FDG | called PSMA | unknown | accuracy of calls | coverage |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for kind, counts in tracer.items():
        for truth, called in counts.items():
            decided = called["FDG"] + called["PSMA"]
            total = decided + called[None]
            accuracy = called[truth] / decided if decided else float("nan")
            print(f"| {kind} | {truth} | {called['FDG']} | {called['PSMA']} | {called[None]} | {accuracy:.2f} | "
                  f"{decided / total:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
