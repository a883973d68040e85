"""The submission recipe: one file that composes models, routing and post-processing for Task 1.

A model folder (``--model DIR`` or ``/opt/ml/model``) that holds ``autopet_recipe.json`` at its
top is run by the recipe instead of as one nnU-Net folder. Without the file nothing changes.

    {
      "version": 1,
      "tracer": {"classify": true, "unknown_as": null},
      "routes": [
        {"tracer": "FDG",  "steps": [0, 4],  "models": [{"folder": "fdg", "folds": [0, 1]}]},
        {"tracer": "PSMA", "steps": [0, 4],  "models": [{"folder": "psma"}]},
        {"tracer": "any",  "steps": [5, 10], "models": [{"folder": "full_guidance", "weight": 2},
                                                         {"folder": "fdg", "weight": 1}]}
      ],
      "test_time_augmentation": {"mirroring": "fit_budget", "tile_step_size": null},
      "threshold": 0.5,
      "postprocessing": [
        {"op": "grow_from_clicks", "min_probability": 0.3},
        {"op": "click_rules", "protocol_rule": true, "background_cut": "nearest_not_hotter"},
        {"op": "suv_floor", "FDG": 1.5, "PSMA": 1.0},
        {"op": "remove_components", "min_voxels": 10, "min_suvmax": 4.0},
        {"op": "close_gaps", "distance_mm": 8.0, "min_suv": 2.0},
        {"op": "add_candidates", "min_probability": 0.3, "min_suvmax": 6.0, "min_volume_ml": 0.5}
      ]
    }

- ``tracer``: ``classify`` runs :func:`Task1.tracer.classify_tracer` on the PET (once per case);
  ``unknown_as`` ("FDG", "PSMA" or null) is what an undecided call counts as. With
  ``classify: false`` every case is "unknown".
- ``routes``: the first route whose ``tracer`` ("FDG", "PSMA", "unknown" or "any") and step range
  (the click step: clicks of the more numerous kind, 0..10) match is run. Every tracer x step
  must be covered (checked when the recipe is read). ``models``: folders relative to the recipe
  (or ``"model-free"``), optional ``folds`` and ``weight``; the lesion probabilities of the
  models are averaged with the weights and thresholded at ``threshold``.
- ``test_time_augmentation``: ``mirroring`` "fit_budget" (the checkpoint's mirror axes, fewer when
  the time budget needs it) or "off"; ``tile_step_size`` (null: the trainer's). The time left is
  shared among a route's models.
- ``postprocessing``: an ordered chain of the operations of :data:`Task1.postprocessing.OPERATIONS`
  (the one registry, beside their code; run by :func:`Task1.postprocessing.run_chain`);
  per-tracer parameters are given as ``{"FDG": .., "PSMA": .., "unknown": ..}``. ``suv_floor``
  takes its floor per tracer directly. ``click_rules`` takes ``protocol_rule`` (true or false),
  ``background_cut`` (one of :data:`Task1.postprocessing.BACKGROUND_CUTS`, default "nearest") and
  ``spare_rim`` (true or false, default false; true only with "nearest_not_hotter").

``python -m Task1.recipe DIR [--pet PET] [--clicks JSON]`` (and ``inference.py --explain``) prints
what the recipe does for an input; it is the same :meth:`Recipe.plan` that a run logs.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from autopet_common.cli import ArgumentParser, entrypoint
from autopet_common.contract import MODEL_FREE, TASK1_MAX_CLICKS
from autopet_common.errors import InputError

RECIPE_FILE = "autopet_recipe.json"
RECIPE_VERSION = 1
TRACER_KEYS = ("FDG", "PSMA", "unknown")
MIRRORING = ("fit_budget", "off")


class RecipeError(InputError):
    """A recipe file that cannot be run as written."""


@dataclass(frozen=True)
class ModelRef:
    folder: str
    folds: tuple | None = None
    weight: float = 1.0


@dataclass(frozen=True)
class Route:
    tracer: str
    steps: tuple[int, int]
    models: tuple[ModelRef, ...]

    def matches(self, tracer: str, step: int) -> bool:
        return self.tracer in ("any", tracer) and self.steps[0] <= step <= self.steps[1]

    def ensemble(self, probabilities: Iterable[np.ndarray]) -> np.ndarray:
        """The weighted mean of the route's models' lesion probabilities, given in model order
        (an iterable, so only one model's map need be held besides the sum)."""
        total = None
        for ref, probability in zip(self.models, probabilities, strict=True):
            total = probability * ref.weight if total is None else total + probability * ref.weight
        return total / sum(ref.weight for ref in self.models)


@dataclass(frozen=True)
class Recipe:
    path: Path
    routes: tuple[Route, ...]
    classify_tracer: bool = True
    unknown_as: str | None = None
    mirroring: str = "fit_budget"
    tile_step_size: float | None = None
    threshold: float = 0.5
    postprocessing: tuple[tuple[str, dict], ...] = ()
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def folder(self) -> Path:
        return self.path.parent

    def route_for(self, tracer: str, step: int) -> Route:
        for route in self.routes:
            if route.matches(tracer, step):
                return route
        raise RecipeError(f"{self.path}: no route for tracer {tracer} at step {step}")  # load_recipe prevents it

    def plan(self, tracer_call: Any, step: int) -> dict:
        """What runs for a case with this tracer call (:class:`Task1.tracer.TracerCall` or None
        when not classified) at this click step: the route, models, test-time augmentation and the
        post-processing with the parameters of the case's tracer."""
        called = getattr(tracer_call, "tracer", None)
        tracer = called or (self.unknown_as if self.classify_tracer else None) or "unknown"
        route = self.route_for(tracer, step)
        return {
            "recipe": str(self.path),
            "tracer": {"classified": self.classify_tracer, "call": called, "used": tracer,
                       "reason": getattr(tracer_call, "reason", "tracer classification off")},
            "step": step,
            "route": {"tracer": route.tracer, "steps": list(route.steps)},
            "models": [{"folder": m.folder, "folds": (list(m.folds) if m.folds is not None else "all")
                        if m.folder != MODEL_FREE else None,
                        "weight": m.weight} for m in route.models],
            "threshold": self.threshold,
            "test_time_augmentation": {"mirroring": self.mirroring, "tile_step_size": self.tile_step_size},
            "postprocessing": [{"op": op, **_for_tracer(op, params, tracer)} for op, params in self.postprocessing],
        }


def _for_tracer(op: str, params: dict, tracer: str) -> dict:
    from Task1.postprocessing import OPERATIONS

    if op == "suv_floor":
        return {"floor": params.get(tracer)}
    operation = OPERATIONS[op]
    return {key: (value.get(tracer, operation.defaults[key]) if key in operation.per_tracer and isinstance(value, dict)
                  else value) for key, value in params.items()}


# ------------------------------------------------------------------------------------ reading

def find_recipe(folder: str | os.PathLike | None) -> Path | None:
    """``folder/autopet_recipe.json`` when it exists."""
    if folder is None:
        return None
    path = Path(folder) / RECIPE_FILE
    return path if path.is_file() else None


def _expect(condition: bool, path: Path, where: str, message: str) -> None:
    if not condition:
        raise RecipeError(f"{path}: {where}: {message}")


def _keys(obj: Any, allowed: Sequence[str], path: Path, where: str, required: Sequence[str] = ()) -> dict:
    _expect(isinstance(obj, dict), path, where, f"expected an object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(allowed))
    _expect(not unknown, path, where, f"unknown key(s) {unknown}; allowed: {list(allowed)}")
    missing = [k for k in required if k not in obj]
    _expect(not missing, path, where, f"missing key(s) {missing}")
    return obj


def _number(value: Any, path: Path, where: str, *, low: float = 0.0, high: float = float("inf"),
            allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value) and low <= value <= high
    _expect(ok, path, where, f"expected a number in [{low:g}, {high:g}]{' or null' if allow_none else ''}, got {value!r}")
    return value


FRACTIONS = ("min_probability", "fraction")  # operation parameters in [0, 1]


def _operation(item: Any, path: Path, where: str) -> tuple[str, dict]:
    from Task1.postprocessing import BACKGROUND_CUTS, OPERATIONS

    _expect(isinstance(item, dict) and item.get("op") in OPERATIONS, path, where,
            f"expected {{\"op\": one of {list(OPERATIONS)}, ...}}, got {item!r}")
    op = item["op"]
    defaults, per_tracer = OPERATIONS[op].defaults, OPERATIONS[op].per_tracer
    _keys(item, ["op", *defaults], path, where)
    params = {**defaults, **{k: v for k, v in item.items() if k != "op"}}
    for key, value in params.items():
        here = f"{where}.{key}"
        if op == "click_rules" and key == "background_cut":
            _expect(value in BACKGROUND_CUTS, path, here, f"expected one of {list(BACKGROUND_CUTS)}, got {value!r}")
        elif op == "click_rules":
            _expect(isinstance(value, bool), path, here, f"expected true or false, got {value!r}")
        elif key in per_tracer and isinstance(value, dict):
            _keys(value, TRACER_KEYS, path, here)
            for tracer, v in value.items():
                _number(v, path, f"{here}.{tracer}", high=1.0 if key in FRACTIONS else float("inf"))
        else:
            # null only where the operation's own default is None: suv_floor's "no floor for this
            # tracer", and the keys below that a recipe must give (checked there)
            _number(value, path, here, high=1.0 if key in FRACTIONS else float("inf"),
                    allow_none=defaults[key] is None)
    if op == "click_rules" and params["spare_rim"]:
        _expect(params["background_cut"] == "nearest_not_hotter", path, f"{where}.spare_rim",
                f"true only with the background_cut 'nearest_not_hotter', not {params['background_cut']!r}")
    required = {"add_candidates": ("min_probability", "min_suvmax"), "grow_from_clicks": ("min_probability",),
                "refine_edges": ("fraction",), "add_pet_regions_at_clicks": ("fraction", "radius_mm")}
    if op in required:
        for key in required[op]:
            _expect(params[key] is not None, path, f"{where}.{key}", "required")
    return op, params


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Read and check a recipe file (see the module docstring); raises :class:`RecipeError`
    naming the file and the key."""
    from autopet_common.image_io import read_json

    path = Path(path)
    raw = read_json(path, "recipe", error=RecipeError)
    _keys(raw, ["version", "tracer", "routes", "test_time_augmentation", "threshold", "postprocessing",
                "description"], path, "top level", required=["version", "routes"])
    _expect(raw["version"] == RECIPE_VERSION, path, "version",
            f"this toolkit reads version {RECIPE_VERSION}, the file has {raw['version']!r}")
    tracer = _keys(raw.get("tracer", {}), ["classify", "unknown_as"], path, "tracer")
    classify = tracer.get("classify", True)
    _expect(isinstance(classify, bool), path, "tracer.classify", "expected true or false")
    unknown_as = tracer.get("unknown_as")
    _expect(unknown_as in (None, "FDG", "PSMA"), path, "tracer.unknown_as", "expected FDG, PSMA or null")

    routes = []
    _expect(isinstance(raw["routes"], list) and raw["routes"], path, "routes", "expected a non-empty list")
    for n, item in enumerate(raw["routes"]):
        where = f"routes[{n}]"
        _keys(item, ["tracer", "steps", "models"], path, where, required=["models"])
        route_tracer = item.get("tracer", "any")
        _expect(route_tracer in (*TRACER_KEYS, "any"), path, f"{where}.tracer",
                f"expected one of {[*TRACER_KEYS, 'any']}, got {route_tracer!r}")
        steps = item.get("steps", [0, TASK1_MAX_CLICKS])
        _expect(isinstance(steps, list) and len(steps) == 2 and all(isinstance(s, int) for s in steps)
                and 0 <= steps[0] <= steps[1] <= TASK1_MAX_CLICKS, path, f"{where}.steps",
                f"expected [first, last] within 0..{TASK1_MAX_CLICKS}, got {steps!r}")
        _expect(isinstance(item["models"], list) and item["models"], path, f"{where}.models",
                "expected a non-empty list")
        models = []
        for m, model in enumerate(item["models"]):
            mwhere = f"{where}.models[{m}]"
            _keys(model, ["folder", "folds", "weight"], path, mwhere, required=["folder"])
            folder = model["folder"]
            _expect(isinstance(folder, str) and folder, path, f"{mwhere}.folder", "expected a folder name")
            if folder != MODEL_FREE:
                target = (path.parent / folder).resolve()
                _expect(target.is_dir(), path, f"{mwhere}.folder", f"model folder {target} not found")
            folds = model.get("folds")
            _expect(folds is None or (isinstance(folds, list) and folds and
                                      all(f == "all" or (isinstance(f, int) and f >= 0) for f in folds)),
                    path, f"{mwhere}.folds", f"expected a list of fold numbers (or \"all\"), got {folds!r}")
            weight = _number(model.get("weight", 1.0), path, f"{mwhere}.weight", low=1e-9)
            models.append(ModelRef(folder, tuple(folds) if folds is not None else None, float(weight)))
        routes.append(Route(route_tracer, (steps[0], steps[1]), tuple(models)))

    tta = _keys(raw.get("test_time_augmentation", {}), ["mirroring", "tile_step_size"], path,
                "test_time_augmentation")
    mirroring = tta.get("mirroring", "fit_budget")
    _expect(mirroring in MIRRORING, path, "test_time_augmentation.mirroring", f"expected one of {MIRRORING}")
    tile = _number(tta.get("tile_step_size"), path, "test_time_augmentation.tile_step_size", low=0.1, high=1.0,
                   allow_none=True)
    threshold = _number(raw.get("threshold", 0.5), path, "threshold", low=0.0, high=1.0)
    chain = raw.get("postprocessing", [{"op": "click_rules"}])
    _expect(isinstance(chain, list), path, "postprocessing", "expected a list of operations")
    operations = tuple(_operation(item, path, f"postprocessing[{n}]") for n, item in enumerate(chain))

    recipe = Recipe(path, tuple(routes), classify, unknown_as, mirroring, tile, float(threshold), operations, raw)
    used = ("FDG", "PSMA", "unknown") if classify else ("unknown",)
    for tracer_key in used:
        effective = tracer_key if tracer_key != "unknown" or not unknown_as else unknown_as
        gaps = [s for s in range(TASK1_MAX_CLICKS + 1) if not any(r.matches(effective, s) for r in routes)]
        _expect(not gaps, path, "routes", f"no route for tracer {effective} at step(s) {gaps}: every tracer x "
                                          "step must be covered (add a route with \"tracer\": \"any\")")
    return recipe


# ------------------------------------------------------------------------------------ running

def warn_if_options_ignored(postprocess: Any) -> None:
    """A recipe brings its own post-processing chain: say so when post-processing options
    (``inference.py --no_click_rules``, ``--no_protocol_rule``, ``--remove_below_suv``) were set."""
    import logging

    from Task1.postprocessing import PostprocessOptions

    if postprocess is not None and postprocess != PostprocessOptions():
        logging.getLogger("Task1.recipe").warning(
            "a recipe model folder runs its own post-processing chain; the post-processing options %s are ignored",
            postprocess)


def click_step(clicks: Mapping[str, Sequence] | None) -> int:
    """The click step of a click set: clicks of the more numerous kind, at most 10."""
    clicks = clicks or {}
    return min(max(len(clicks.get("tumor") or []), len(clicks.get("background") or [])), TASK1_MAX_CLICKS)


class RecipeRunner:
    """Runs a recipe: models loaded when a route first needs them and kept for later calls."""

    def __init__(self, recipe: Recipe | str | os.PathLike, *, device: str = "auto", incremental: bool = False):
        if not isinstance(recipe, Recipe):
            path = Path(recipe)
            recipe = load_recipe(path / RECIPE_FILE if path.is_dir() else path)
        self.recipe = recipe
        self.device = device
        self.incremental = incremental  # Task1.incremental for the nnU-Net click models it loads
        self._predictors: dict[ModelRef, Any] = {}
        self.last_report: dict = {}

    def predictor(self, ref: ModelRef):
        if ref not in self._predictors:
            from Task1.model_folder import load_predictor

            self._predictors[ref] = load_predictor(
                self.recipe.folder / ref.folder, folds=list(ref.folds) if ref.folds is not None else None,
                device=self.device, use_mirroring=self.recipe.mirroring != "off",
                tile_step_size=self.recipe.tile_step_size, incremental=self.incremental)
        return self._predictors[ref]

    def load_models(self) -> None:
        """Load every network the recipe's routes name now, not when a route first needs it (a
        server loads them before its first request)."""
        for route in self.recipe.routes:
            for ref in route.models:
                if ref.folder != MODEL_FREE:
                    self.predictor(ref)

    def tracer_call(self, pet: np.ndarray, spacing: Sequence[float]):
        if not self.recipe.classify_tracer:
            return None
        from Task1.tracer import classify_tracer

        return classify_tracer(pet, spacing)

    def predict(self, ct: np.ndarray, pet: np.ndarray, geometry, clicks: Mapping[str, Sequence] | None, *,
                time_budget: float | None = None, tracer_call: Any = "classify",
                prepared: dict | None = None) -> tuple[np.ndarray, dict]:
        """(uint8 0/1 mask on the input grid, report with the plan that ran). ``clicks`` must lie
        inside the image. ``time_budget``: seconds for the models, shared among them."""
        from Task1.model_free_baseline import segment_model_free

        started = time.perf_counter()
        clicks = {"tumor": list((clicks or {}).get("tumor") or []),
                  "background": list((clicks or {}).get("background") or [])}
        call = self.tracer_call(pet, geometry.spacing) if tracer_call == "classify" else tracer_call
        plan = self.recipe.plan(call, click_step(clicks))
        route = self.recipe.route_for(plan["tracer"]["used"], plan["step"])
        prepared = {} if prepared is None else prepared
        described = []

        def probabilities():
            for n, ref in enumerate(route.models):
                if ref.folder == MODEL_FREE:
                    described.append({"folder": MODEL_FREE})
                    yield segment_model_free(pet, clicks, geometry.spacing).astype(np.float32)
                    continue
                predictor = self.predictor(ref)
                if time_budget is not None:  # what is left, shared among the models still to run
                    left = time_budget - (time.perf_counter() - started)
                    predictor.time_budget = max(left / (len(route.models) - n), 1.0)
                if ref not in prepared:
                    prepared[ref] = predictor.prepare(ct, pet, geometry)
                probability = predictor.predict_probability(prepared[ref], clicks)
                described.append(predictor.describe())
                yield probability

        probability = route.ensemble(probabilities())
        mask, post_report = self.postprocess(probability > self.recipe.threshold, probability, pet, clicks,
                                             geometry.spacing, plan)
        self.last_report = {"plan": plan, "tracer_measurements": getattr(call, "measurements", {}),
                            "models_run": described, "postprocessing": post_report,
                            "seconds": round(time.perf_counter() - started, 3)}
        return mask, self.last_report

    @staticmethod
    def postprocess(mask: np.ndarray, probability: np.ndarray, pet: np.ndarray, clicks: Mapping[str, Sequence],
                    spacing: Sequence[float], plan: dict) -> tuple[np.ndarray, list]:
        """The plan's post-processing chain in order (:func:`Task1.postprocessing.run_chain`);
        returns (uint8 mask, what each operation did)."""
        from Task1.postprocessing import ChainContext, run_chain

        context = ChainContext(pet=pet, clicks=clicks, spacing=spacing, probability=probability)
        return run_chain(mask, plan["postprocessing"], context)


def explain(recipe: Recipe | str | os.PathLike, pet: np.ndarray | None = None, spacing: Sequence[float] | None = None,
            clicks: Mapping[str, Sequence] | None = None) -> str:
    """Human-readable :meth:`Recipe.plan` for an input (the PET decides the tracer; without a
    PET every tracer is listed)."""
    import json

    if not isinstance(recipe, Recipe):
        path = Path(recipe)
        recipe = load_recipe(path / RECIPE_FILE if path.is_dir() else path)
    step = click_step(clicks)
    lines = [f"recipe {recipe.path}", f"click step {step} (tumor {len((clicks or {}).get('tumor') or [])}, "
                                      f"background {len((clicks or {}).get('background') or [])})"]
    if pet is not None:
        from Task1.tracer import classify_tracer

        calls = [classify_tracer(pet, spacing) if recipe.classify_tracer else None]
    else:
        from Task1.tracer import TracerCall

        calls = [TracerCall(t, "if the PET says so") for t in ("FDG", "PSMA")] + \
                [TracerCall(None, "if the PET does not say")] if recipe.classify_tracer else [None]
    for call in calls:
        plan = recipe.plan(call, step)
        lines.append(json.dumps(plan, indent=2))
    return "\n".join(lines)


@entrypoint("python -m Task1.recipe")
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m Task1.recipe",
                            description="Check a Task 1 submission recipe (autopet_recipe.json) and print what it runs "
                                        "for an input: tracer call, route, models, test-time augmentation, "
                                        "post-processing. See Task1/recipe.py for the format.")
    parser.add_argument("recipe", help="the model folder holding autopet_recipe.json, or the file")
    parser.add_argument("--pet", default=None, help="a PET image: classify its tracer as a run would")
    parser.add_argument("--clicks", default=None, help="a clicks JSON (lesion-clicks.json format): its click step")
    args = parser.parse_args(argv)
    pet = spacing = clicks = None
    if args.pet:
        from autopet_common.image_io import read_image

        pet, geometry = read_image(args.pet, np.float32, check_finite=True, what="PET image")
        spacing = geometry.spacing
    if args.clicks:
        from autopet_common.click_io import read_clicks_json

        clicks = read_clicks_json(args.clicks, missing_ok=False)
    print(explain(args.recipe, pet, spacing, clicks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
