"""The one road through Task 1: open a method once, prepare a case once, predict per click set.

    from Task1.session import open_method, clicks_for_step

    method = open_method("models/task1_phantom_organs")      # a recipe, a network folder or "model-free"
    case = method.prepare(ct, pet, geometry)                  # arrays [i, j, k] + their Geometry
    for step in range(11):
        mask, report = method.predict(case, clicks_for_step(clicks, step, geometry.shape))

Three kinds of method share one interface (:class:`Method`): the model-free click-guided baseline
(:mod:`Task1.model_free_baseline`), one network (an nnU-Net folder, :class:`Task1.predict.
Task1Predictor`, or a MONAI folder, :mod:`Task1.monai_backend`) and a submission recipe
(:mod:`Task1.recipe`: routing by tracer and click step, ensembles, its own post-processing chain).
``prepare`` does once per case what does not depend on the clicks (nnU-Net's resampling and
normalisation, the tracer call); ``predict`` does the rest and finishes the mask with the method's
post-processing chain (:mod:`Task1.postprocessing`); it returns the uint8 0/1 mask on the input
grid and a :class:`PredictionReport`, the run's record as data (what the entrypoint writes with
``--report``, what the local challenge's run log and the paper read).

Every caller takes this road: ``inference.py``, :mod:`Task1.batch_predict`, :mod:`Task1.tune_recipe`,
the local challenge's in-process mode, the benchmarks. One home each for: which folder runs as what (:func:`method_kind`), the default model chain of
the entrypoint (:func:`resolve_task1_model`), the clicks of step s (:func:`clicks_for_step`) and
the command-line flags of a method (:func:`add_method_arguments`, :func:`method_options`).
Nothing is imported or probed at import time.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from autopet_common.contract import MODEL_DIR, MODEL_DIR_ENV, MODEL_FREE, REQUIRE_MODEL_ENV
from autopet_common.errors import InputError

SHIPPED_MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "task1_phantom_organs"
# What a run log says about the model that ran (from a network's describe()).
MODEL_FIELDS = ("trainer", "plans", "configuration", "folds", "encoding")

log = logging.getLogger("Task1.session")


# ----------------------------------------------------------------------------- clicks of a step
def clicks_for_step(clicks: Mapping[str, Sequence] | None, step: int | None, shape: Sequence[int]
                    ) -> dict[str, list[list[int]]]:
    """The clicks a method sees at click step ``step`` of the challenge's protocol: the first
    ``step`` tumor and ``step`` background clicks (all of them for ``step`` None), rounded to
    voxels, those outside an image of ``shape`` left out (the entrypoint warns about them)."""
    from autopet_common.click_io import clicks_at_step, split_clicks_inside

    given = {"tumor": list((clicks or {}).get("tumor") or []), "background": list((clicks or {}).get("background") or [])}
    inside, _ = split_clicks_inside(given if step is None else clicks_at_step(given, step), tuple(shape))
    return inside


# ----------------------------------------------------------------------------- which method a folder is
def method_kind(model: str | os.PathLike | None, what: str = "model folder") -> str:
    """"model-free", "recipe" (a folder with ``autopet_recipe.json``), "monai" (``monai_model.json``)
    or "nnunet" (a trained nnU-Net folder at or up to three levels below): the one precedence rule
    for a Task 1 model folder. :class:`InputError` for a folder that is none of them, naming it as
    ``what`` (e.g. "--model folder")."""
    from Task1.model_folder import find_task1_model
    from Task1.monai_backend.config import is_monai_model
    from Task1.recipe import find_recipe

    if model is None or str(model) == MODEL_FREE:
        return MODEL_FREE
    folder = Path(model)
    if not folder.exists():
        raise InputError(f"{what} not found: {folder}")
    if find_recipe(folder) is not None:
        return "recipe"
    if is_monai_model(folder):
        return "monai"
    if find_task1_model(folder) is not None:
        return "nnunet"
    raise InputError(f"{what} {folder} holds no Task 1 model: no autopet_recipe.json, no MONAI model folder "
                     "(monai_model.json) and no trained nnU-Net folder (plans.json, dataset.json and fold_*/ "
                     "at most three levels down)")


def _runnable(folder: Path, what: str = "model folder") -> Path:
    """The folder that runs: a recipe or MONAI folder itself, an nnU-Net folder where it was found
    (up to three levels below); :class:`InputError` when ``folder`` holds no model."""
    from Task1.model_folder import find_task1_model

    kind = method_kind(folder, what)
    return folder if kind in ("recipe", "monai") else find_task1_model(folder)


def _model_at(folder: Path) -> Path | None:
    """:func:`_runnable` for a default place that may hold no model: None there."""
    try:
        return _runnable(folder)
    except InputError:
        return None


def model_required() -> bool:
    """True in a submission container (``AUTOPET_REQUIRE_MODEL=1``): no stand-in model."""
    return os.environ.get(REQUIRE_MODEL_ENV, "").strip().lower() in ("1", "true", "yes")


def resolve_task1_model(model: str | os.PathLike | None = None, *, model_dir: str | os.PathLike | None = None,
                        shipped: str | os.PathLike | None = None, announce: bool = True) -> Path | None:
    """The model the entrypoint runs for Task 1 (None: model-free). ``model``: a folder (checked
    with :func:`method_kind`), ``"model-free"``, or None for the default chain: the team's model at
    ``/opt/ml/model``, ``$AUTOPET_MODEL_DIR``, then, only outside a submission
    (:func:`model_required`), the shipped phantom model and, without it, the model-free baseline;
    either fallback is announced on stderr in one line. ``model_dir`` / ``shipped`` default to
    :data:`MODEL_DIR` and :data:`SHIPPED_MODEL_DIR`, read when called."""
    model_dir = MODEL_DIR if model_dir is None else model_dir
    shipped = SHIPPED_MODEL_DIR if shipped is None else shipped
    if model is not None:
        return None if str(model) == MODEL_FREE else _runnable(Path(model), "--model folder")
    found = _model_at(Path(model_dir))
    if found is not None:
        return found
    if os.environ.get(MODEL_DIR_ENV):
        return _runnable(Path(os.environ[MODEL_DIR_ENV]), f"${MODEL_DIR_ENV}")
    if model_required():
        raise InputError(f"no Task 1 model: {model_dir} holds no model and ${MODEL_DIR_ENV} is not set "
                         f"({REQUIRE_MODEL_ENV}=1: no fallback in a submission; upload your model tarball, or pass "
                         "--model model-free on purpose)")
    found = _model_at(Path(shipped))
    if found is not None:
        if announce:
            print(f"inference: no model given and none in {model_dir}: using the phantom demo model {shipped} "
                  "(trained on synthetic phantoms only; --model to choose another)", file=sys.stderr)
        return found
    if announce:
        print(f"inference: no model given and none in {model_dir}: running the model-free baseline", file=sys.stderr)
    return None


# ----------------------------------------------------------------------------- the report
@dataclass
class PredictionReport:
    """What one prediction did, as data. ``method``: "model-free", "network" or "recipe";
    ``model``: the folder or recipe file; ``models_run``: each network's ``describe()`` (trainer,
    folds, device, mirroring, what the time budget dropped, timings); ``plan``: a recipe's tracer
    call, route and post-processing plan; ``postprocessing``: each operation's voxels before and
    after; ``clicks``: how many of each kind were used; ``seconds``: the prediction's wall time."""

    method: str
    model: str | None
    clicks: dict[str, int]
    postprocessing: list[dict] = field(default_factory=list)
    models_run: list[dict] = field(default_factory=list)
    plan: dict | None = None
    tracer_measurements: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def dropped(self) -> list[str]:
        """What the time budget dropped (mirror axes, folds), over every network that ran."""
        return [str(d) for described in self.models_run for d in described.get("dropped") or []]

    @property
    def device(self) -> str:
        devices = [str(m["device"]) for m in self.models_run if m.get("device")]
        return " + ".join(dict.fromkeys(devices)) if devices else "cpu"

    def model_fields(self) -> dict[str, Any]:
        """The run log's description of the model (``local_challenge``'s ``run_log.json``, the paper):
        ``model``, :data:`MODEL_FIELDS` and ``device``; a recipe's networks joined with " + "."""
        if self.method == MODEL_FREE:
            return {"model": MODEL_FREE, **{k: None for k in MODEL_FIELDS}, "device": "cpu"}
        if self.method == "network" and self.models_run:
            described = self.models_run[0]
            return {"model": described.get("model_dir", self.model), **{k: described.get(k) for k in MODEL_FIELDS},
                    "device": described.get("device")}
        joined = {}
        for key in (*MODEL_FIELDS, "device"):
            values = [str(m.get(key)) for m in self.models_run if m.get(key) is not None]
            joined[key] = " + ".join(dict.fromkeys(values)) if values else None
        return {"model": self.model, "recipe": self.model, **joined, "device": joined["device"] or "cpu"}

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "dropped": self.dropped, "model_fields": self.model_fields()}


def write_report(report: PredictionReport, path: str | os.PathLike, **extra: Any) -> Path:
    """The report as JSON (atomically), with ``extra`` fields (e.g. the task and the timings)."""
    from autopet_common.image_io import atomic_write_json

    return atomic_write_json(path, {**extra, **report.to_json()})


def read_report_model_fields(path: str | os.PathLike) -> dict[str, Any] | None:
    """The ``model_fields`` of a report file written by :func:`write_report`, or None when the
    file is missing or unreadable (a run that failed before it wrote one)."""
    import json

    try:
        fields = json.loads(Path(path).read_text()).get("model_fields")
    except (OSError, ValueError, AttributeError):
        return None
    return fields if isinstance(fields, dict) else None


# ----------------------------------------------------------------------------- the methods
@dataclass
class PreparedCase:
    """One case, prepared once by a method: the arrays, their grid and the method's own state."""

    ct: np.ndarray
    pet: np.ndarray
    geometry: Any
    state: Any = None
    prepare_seconds: float = 0.0


class Method(Protocol):
    """What every Task 1 method offers (see the module docstring)."""

    name: str

    def prepare(self, ct: np.ndarray, pet: np.ndarray, geometry) -> PreparedCase: ...

    def predict(self, case: PreparedCase, clicks: Mapping[str, Sequence] | None, *,
                budget: float | None = None) -> tuple[np.ndarray, PredictionReport]: ...

    def load_models(self) -> None: ...


def _counts(clicks: Mapping[str, Sequence]) -> dict[str, int]:
    return {"tumor": len(clicks.get("tumor") or []), "background": len(clicks.get("background") or [])}


class _ChainedMethod:
    """Shared by the model-free baseline and a single network: the flag-set post-processing chain."""

    def __init__(self, postprocess: Any = None):
        from Task1.postprocessing import PostprocessOptions

        self.postprocess = postprocess or PostprocessOptions()

    def _finish(self, mask: np.ndarray, probability: np.ndarray | None, case: PreparedCase,
                clicks: Mapping[str, Sequence]) -> tuple[np.ndarray, list[dict]]:
        from Task1.postprocessing import ChainContext, run_chain

        context = ChainContext(pet=case.pet, clicks=clicks, spacing=case.geometry.spacing, probability=probability)
        return run_chain(mask, self.postprocess.chain(), context)

    @staticmethod
    def _clicks(case: PreparedCase, clicks: Mapping[str, Sequence] | None) -> dict[str, list]:
        return clicks_for_step(clicks, None, case.geometry.shape)

    def load_models(self) -> None:
        """Nothing to do: the model-free baseline has none, a network is loaded when opened."""


class ModelFreeMethod(_ChainedMethod):
    """The click-guided PET region growing of :mod:`Task1.model_free_baseline` (no torch)."""

    name = MODEL_FREE

    def prepare(self, ct: np.ndarray, pet: np.ndarray, geometry) -> PreparedCase:
        return PreparedCase(ct, pet, geometry)

    def predict(self, case: PreparedCase, clicks: Mapping[str, Sequence] | None, *,
                budget: float | None = None) -> tuple[np.ndarray, PredictionReport]:
        from Task1.model_free_baseline import segment_model_free

        started = time.perf_counter()
        clicks = self._clicks(case, clicks)
        mask = segment_model_free(case.pet, clicks, case.geometry.spacing)
        mask, chain = self._finish(mask, None, case, clicks)
        return mask, PredictionReport(MODEL_FREE, None, _counts(clicks), chain,
                                      seconds=round(time.perf_counter() - started, 3))


class NetworkMethod(_ChainedMethod):
    """One network: an nnU-Net folder or a MONAI folder (:func:`Task1.model_folder.load_predictor`)."""

    def __init__(self, folder: str | os.PathLike, *, device: str = "auto", postprocess: Any = None,
                 predictor_options: Mapping[str, Any] | None = None, incremental: bool = False):
        from Task1.model_folder import find_task1_model, load_predictor

        super().__init__(postprocess)
        folder = find_task1_model(folder) or folder  # an nnU-Net folder may lie up to three levels below
        self.predictor = load_predictor(folder, device=device, incremental=incremental, **dict(predictor_options or {}))
        self.name = str(self.predictor.model_dir)

    def prepare(self, ct: np.ndarray, pet: np.ndarray, geometry) -> PreparedCase:
        started = time.perf_counter()
        state = self.predictor.prepare(ct, pet, geometry)
        return PreparedCase(ct, pet, geometry, state, time.perf_counter() - started)

    def predict(self, case: PreparedCase, clicks: Mapping[str, Sequence] | None, *,
                budget: float | None = None) -> tuple[np.ndarray, PredictionReport]:
        started = time.perf_counter()
        clicks = self._clicks(case, clicks)
        self.predictor.time_budget = budget
        mask = self.predictor.predict_prepared(case.state, clicks)
        described = self.predictor.describe()
        mask, chain = self._finish(mask, None, case, clicks)
        return mask, PredictionReport("network", self.name, _counts(clicks), chain, [described],
                                      seconds=round(time.perf_counter() - started, 3))

    def probability(self, case: PreparedCase, clicks: Mapping[str, Sequence] | None, *,
                    budget: float | None = None) -> np.ndarray:
        """The network's lesion probability (float32 in [0, 1] on the input grid) for ``clicks``:
        what a recipe's threshold and tuning work on."""
        self.predictor.time_budget = budget
        return self.predictor.predict_probability(case.state, self._clicks(case, clicks))


class RecipeMethod:
    """A submission recipe (:class:`Task1.recipe.RecipeRunner`): its routes, ensembles and chain.
    ``prepare`` classifies the tracer once; each network preprocesses the case once, when a route
    first needs it."""

    def __init__(self, folder: str | os.PathLike, *, device: str = "auto", postprocess: Any = None,
                 incremental: bool = False):
        from Task1.recipe import RecipeRunner, warn_if_options_ignored

        warn_if_options_ignored(postprocess)
        self.runner = RecipeRunner(folder, device=device, incremental=incremental)
        self.name = str(self.runner.recipe.path)

    def load_models(self) -> None:
        """Load every network of the recipe now (by default each loads when a route first needs it)."""
        self.runner.load_models()

    def prepare(self, ct: np.ndarray, pet: np.ndarray, geometry) -> PreparedCase:
        started = time.perf_counter()
        state = {"tracer_call": self.runner.tracer_call(pet, geometry.spacing), "prepared": {}}
        return PreparedCase(ct, pet, geometry, state, time.perf_counter() - started)

    def predict(self, case: PreparedCase, clicks: Mapping[str, Sequence] | None, *,
                budget: float | None = None) -> tuple[np.ndarray, PredictionReport]:
        clicks = clicks_for_step(clicks, None, case.geometry.shape)
        mask, report = self.runner.predict(case.ct, case.pet, case.geometry, clicks, time_budget=budget,
                                           tracer_call=case.state["tracer_call"], prepared=case.state["prepared"])
        return mask, PredictionReport("recipe", self.name, _counts(clicks), report["postprocessing"],
                                      report["models_run"], report["plan"], report["tracer_measurements"],
                                      report["seconds"])


def open_method(model: str | os.PathLike | None, *, device: str = "auto", postprocess: Any = None,
                predictor_options: Mapping[str, Any] | None = None, incremental: bool = False) -> Method:
    """The method for ``model`` (a folder, ``"model-free"`` or None for model-free; which kind a
    folder is: :func:`method_kind`). ``postprocess``: the flag set
    (:class:`Task1.postprocessing.PostprocessOptions`; a recipe runs its own chain and says so when
    flags were set); ``predictor_options``: a network's (folds, checkpoint, use_mirroring, ...);
    ``incremental``: nnU-Net click models keep each prepared case's sliding-window tiles and
    predict again only the tiles a new click set changes (:mod:`Task1.incremental`; the
    interactive session's setting, about 1 GB per full-size case; no time budget then)."""
    kind = method_kind(model)
    if kind == MODEL_FREE:
        return ModelFreeMethod(postprocess)
    if kind == "recipe":
        return RecipeMethod(model, device=device, postprocess=postprocess, incremental=incremental)
    return NetworkMethod(model, device=device, postprocess=postprocess, predictor_options=predictor_options,
                         incremental=incremental)


def predict_steps(method: Method, case: PreparedCase, clicks: Mapping[str, Sequence], steps: Sequence[int], *,
                  budget: float | None = None) -> dict[int, tuple[np.ndarray, PredictionReport]]:
    """(mask, report) at each click step of the protocol, the case prepared once."""
    return {step: method.predict(case, clicks_for_step(clicks, step, case.geometry.shape), budget=budget)
            for step in steps}


# ----------------------------------------------------------------------------- command-line flags
def add_method_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that choose and tune a Task 1 method, for every command line that runs one
    (``inference.py``; the local challenge reads the entrypoint's flags with it in process)."""
    from autopet_common.cli import device_name, int_list, non_negative_float

    def folds(text: str) -> list:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        return ["all"] if parts == ["all"] else int_list(",".join(parts))

    parser.add_argument("--device", type=device_name, default="auto",
                        help="auto (cuda when available, else cpu), cpu, cuda, cuda:N or mps (model paths only)")
    parser.add_argument("--folds", type=folds, default=None,
                        help="comma-separated folds of the nnU-Net model (default: all, trimmed to the budget)")
    parser.add_argument("--checkpoint", default="checkpoint_final.pth", help="nnU-Net checkpoint file name")
    parser.add_argument("--disable_mirroring", action="store_true", help="no test-time mirroring (nnU-Net path)")
    parser.add_argument("--remove_below_suv", type=non_negative_float, default=None, metavar="SUV",
                        help="post-processing: remove predicted voxels with SUV below this (e.g. 1.0)")
    parser.add_argument("--no_click_rules", action="store_true",
                        help="keep the method's raw mask: no background-click cut, no protocol rule")
    parser.add_argument("--no_protocol_rule", action="store_true",
                        help="keep unclicked detections even once every lesion has a click "
                             "(for clicks that do not follow the challenge's simulator)")


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`open_method`'s keyword arguments from the flags of :func:`add_method_arguments`."""
    from Task1.postprocessing import PostprocessOptions

    options: dict[str, Any] = {"checkpoint": args.checkpoint, "use_mirroring": not args.disable_mirroring}
    if args.folds:
        options["folds"] = args.folds
    return {"device": args.device, "predictor_options": options,
            "postprocess": PostprocessOptions(click_rules=not args.no_click_rules,
                                              protocol_rule=not args.no_protocol_rule,
                                              remove_below_suv=args.remove_below_suv)}
