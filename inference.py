#!/usr/bin/env python
"""Grand Challenge entrypoint for autoPET/CT IV (Task 1 PET/CT; Task 2 dispatched to Task2).

Container contract (Task 1), one run per case and click step:

    /input/images/ct/<uuid>.mha          CT in HU
    /input/images/pet/<uuid>.mha         PET in SUV (another uuid; normally the same grid)
    /input/lesion-clicks.json            "Multiple points" clicks; absent or empty = step 0
 -> /output/images/tumor-lesion-segmentation/<CT uuid>.mha
                                         exactly one binary uint8 mask on the PET grid
                                         (= the input grid; written atomically)

If CT and PET grids differ, CT is resampled (linear, -1024 HU outside) onto the PET grid and the
log says so; clicks are voxel indices [i, j, k] on that grid. Clicks outside the image are
skipped with a warning.

Which Task 1 model runs (first match): ``--model DIR`` (a trained nnU-Net folder, a MONAI model
folder of Task1/monai_backend, or a recipe folder) or ``--model model-free`` (the click-guided
PET baseline, Task1/model_free_baseline.py); the team's model at ``/opt/ml/model``; a model
baked into the image at ``$AUTOPET_MODEL_DIR``; then, only outside a submission, the phantom
demo model shipped in ``models/task1_phantom_organs`` (organ-supervised, run through the recipe
in its folder; trained on synthetic phantoms, never on patients) and, without it, the model-free
baseline. Either
fallback is announced on stderr in one line. With ``AUTOPET_REQUIRE_MODEL=1`` (set in the
Dockerfile) there is no fallback: no model is an error. The nnU-Net predictor runs within
``--time_budget``. Every mask is finished by Task1/postprocessing.py (background clicks cut
their region; once the clicks show that every lesion has one, unclicked components go).

A model folder with ``autopet_recipe.json`` is a submission recipe (Task1/recipe.py): it routes
each case by tracer and click step to its models, ensembles them and runs its own
post-processing chain; ``--explain`` prints that plan for an input without running it.

Bad input (missing or corrupt image, two images in one folder, malformed click JSON, unknown
point names, NaN voxels) prints ``error: <message>`` to stderr, exits with status 2 and writes
no output file.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from autopet_common.cli import ArgumentParser, configure_logging, device_name, entrypoint, int_list, non_negative_float, positive_float
# The contract's paths have one home, autopet_common/contract.py (a constant module: no work).
from autopet_common.contract import INPUT_DIR as DEFAULT_INPUT
from autopet_common.contract import MODEL_DIR as DEFAULT_MODEL_DIR
from autopet_common.contract import OUTPUT_DIR as DEFAULT_OUTPUT
from autopet_common.contract import TASK1_CLICKS_FILE, TASK1_CT_SUBDIR, TASK1_OUTPUT_SUBDIR, TASK1_PET_SUBDIR
from autopet_common.contract import TIME_BUDGET_SECONDS

SHIPPED_MODEL_DIR = Path(__file__).resolve().parent / "models" / "task1_phantom_organs"
MODEL_DIR_ENV = "AUTOPET_MODEL_DIR"          # a model baked into the image on purpose
REQUIRE_MODEL_ENV = "AUTOPET_REQUIRE_MODEL"  # "1" in the container: no fallback model
MODEL_FREE = "model-free"
# Seconds kept back from the budget for writing the mask, process exit and container teardown.
DEFAULT_MARGIN_SECONDS = 30.0

log = logging.getLogger("inference")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports ru_maxrss in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def peak_gpu_mb() -> float | None:
    """Peak GPU memory allocated by torch in this process, in MB; None when torch or CUDA is
    not in use (torch is never imported just to ask)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return None
        return torch.cuda.max_memory_allocated() / 2 ** 20
    except Exception:  # a broken CUDA setup must not break the log line
        return None


class Phase:
    """Context manager that logs a phase's wall time and the peak memory after it."""

    def __init__(self, name: str, timings: dict[str, float]):
        self.name, self.timings = name, timings

    def __enter__(self) -> "Phase":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        seconds = time.perf_counter() - self.start
        self.timings[self.name] = seconds
        gpu = peak_gpu_mb()
        gpu_text = f", peak GPU {gpu:.0f} MB" if gpu is not None else ""
        log.info("phase %-10s %7.2f s  (peak RSS %.0f MB%s)%s", self.name, seconds, peak_rss_mb(),
                 gpu_text, "  [failed]" if exc[0] else "")


# ----------------------------------------------------------------------------- task & model

def detect_task(input_dir: Path) -> int:
    """1 or 2: from ``/input/inputs.json`` when the platform wrote one (the interface is the
    sorted tuple of its socket slugs, as the platform's template keys it), else from the folder
    layout (the rules of :mod:`autopet_common.contract`); the log says which.
    :class:`InputError` when it is neither, or the interface is unknown."""
    from autopet_common.contract import (INPUTS_FILE, TASK1_SOCKETS, TASK2_SOCKETS, is_task1_input, is_task2_input,
                                         task_of_interface)
    from autopet_common.errors import InputError

    if (input_dir / INPUTS_FILE).exists():  # a folder there is refused by the reader, naming it
        from autopet_common.socket_values import mismatched_relative_paths, read_inputs_json, slugs_of

        values = read_inputs_json(input_dir / INPUTS_FILE)
        slugs = slugs_of(values)
        task = task_of_interface(slugs)
        if task is None:
            raise InputError(f"{input_dir / INPUTS_FILE}: unknown interface {list(slugs)} (see "
                             "autopet_common/contract.py INTERFACES)")
        shape = "legacy 'interface'" if any(v.descriptor_key == "interface" for v in values) else "'socket'"
        log.info("task %d from %s (%s shape; interface %s)", task, INPUTS_FILE, shape, ", ".join(slugs))
        # the inputs are read where the contract puts them; a platform that says otherwise is named
        for text in mismatched_relative_paths(values, TASK1_SOCKETS if task == 1 else TASK2_SOCKETS):
            log.warning("%s gives another place for socket %s; this entrypoint reads the contract's path",
                        INPUTS_FILE, text)
        return task
    if not input_dir.is_dir():
        raise InputError(f"input folder not found: {input_dir}")
    if is_task2_input(input_dir):
        log.info("task 2 from the folder layout (no %s)", INPUTS_FILE)
        return 2
    if is_task1_input(input_dir):
        log.info("task 1 from the folder layout (no %s)", INPUTS_FILE)
        return 1
    found = sorted(p.relative_to(input_dir).as_posix() for p in input_dir.glob("*/*"))[:10]
    raise InputError(f"cannot tell the task from {input_dir}: expected images/ct + images/pet "
                     f"(Task 1) or images/primary-followup-ct (Task 2); found {found or 'nothing'}")


def find_nnunet_model(folder: Path) -> Path | None:
    """The model folder rule has one home, :func:`Task1.model_folder.find_nnunet_model`."""
    from Task1.model_folder import find_nnunet_model as find

    return find(folder)


def find_model(folder: Path, task: int) -> Path | None:
    """Task 1: a MONAI or nnU-Net folder (:func:`Task1.model_folder.find_task1_model`); Task 2: nnU-Net."""
    if task == 1:
        from Task1.model_folder import find_task1_model

        return find_task1_model(folder)
    return find_nnunet_model(folder)


def model_required() -> bool:
    """True in a submission container (``AUTOPET_REQUIRE_MODEL=1``): Task 1 needs the team's
    model, and neither the phantom demo model nor the model-free baseline stands in silently."""
    return os.environ.get(REQUIRE_MODEL_ENV, "").strip().lower() in ("1", "true", "yes")


def _model_folder(path: Path, what: str, task: int) -> Path:
    from autopet_common.errors import InputError
    from Task1.recipe import find_recipe

    if not path.exists():
        raise InputError(f"{what} not found: {path}")
    if task == 1 and find_recipe(path) is not None:  # a submission recipe (Task1/recipe.py) composes the models
        return path
    found = find_model(path, task)
    if found is None:
        raise InputError(f"{what} {path} holds no trained nnU-Net folder (plans.json, dataset.json "
                         "and fold_*/ expected at most three levels down)"
                         + (" and no MONAI model folder (monai_model.json)" if task == 1 else ""))
    return found


def resolve_model(model: str | os.PathLike | None, task: int = 1) -> Path | None:
    """The nnU-Net folder to run, or None for the model-free method; see the module docstring.

    ``model``: a folder, ``"model-free"``, or None for the default chain (``/opt/ml/model``,
    ``$AUTOPET_MODEL_DIR``, then for Task 1 outside a submission the shipped phantom model).
    Raises :class:`InputError` for a folder that holds no model, and for Task 1 without any
    model when :func:`model_required`."""
    from autopet_common.errors import InputError

    from Task1.recipe import find_recipe

    if model is not None:
        return None if str(model) == MODEL_FREE else _model_folder(Path(model), "--model folder", task)
    if task == 1 and find_recipe(DEFAULT_MODEL_DIR) is not None:
        return DEFAULT_MODEL_DIR
    found = find_model(DEFAULT_MODEL_DIR, task)
    if found is not None:
        return found
    if os.environ.get(MODEL_DIR_ENV):
        return _model_folder(Path(os.environ[MODEL_DIR_ENV]), f"${MODEL_DIR_ENV}", task)
    if task != 1:
        return None  # Task 2's default method is model-free registration (Task2/README.md)
    if model_required():
        raise InputError(f"no Task 1 model: {DEFAULT_MODEL_DIR} holds no trained nnU-Net folder and "
                         f"${MODEL_DIR_ENV} is not set ({REQUIRE_MODEL_ENV}=1: no fallback in a submission; "
                         "upload your model tarball, or pass --model model-free on purpose)")
    shipped = SHIPPED_MODEL_DIR if find_recipe(SHIPPED_MODEL_DIR) is not None else find_model(SHIPPED_MODEL_DIR, 1)
    if shipped is not None:
        print(f"inference: no model given and none in {DEFAULT_MODEL_DIR}: using the phantom demo model "
              f"{shipped} (trained on synthetic phantoms only; --model to choose another)", file=sys.stderr)
        return shipped
    print(f"inference: no model given and none in {DEFAULT_MODEL_DIR}: running the model-free baseline",
          file=sys.stderr)
    return None


# ----------------------------------------------------------------------------- Task 1

def resample_onto(array: Any, geometry: Any, target: Any, default_value: float) -> Any:
    """Resample ``array[i, j, k]`` on ``geometry`` onto the ``target`` grid (linear)."""
    import numpy as np
    import SimpleITK as sitk
    from autopet_common.image_io import to_sitk

    reference = sitk.Image([int(s) for s in target.shape], sitk.sitkFloat32)
    target.apply_to_sitk(reference)
    moved = sitk.Resample(to_sitk(np.asarray(array, dtype=np.float32), geometry), reference,
                          sitk.Transform(), sitk.sitkLinear, float(default_value), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(moved).transpose(2, 1, 0)


def read_task1_clicks(input_dir: Path, shape: Sequence[int]) -> dict[str, list[list[int]]]:
    """Clicks from ``lesion-clicks.json`` inside the image; absent or empty file = step 0."""
    from autopet_common.click_io import read_clicks_json, split_clicks_inside

    path = input_dir / TASK1_CLICKS_FILE
    if not path.exists():
        log.info("no %s: step 0 (no clicks)", TASK1_CLICKS_FILE)
    clicks = read_clicks_json(path, missing_ok=True)
    inside, outside = split_clicks_inside(clicks, tuple(shape))
    if outside:
        log.warning("skipping %d click(s) outside the image of shape %s in %s: %s", len(outside),
                    tuple(shape), path, ", ".join(f"{kind} {point}" for kind, point in outside))
    log.info("clicks: %d tumor, %d background%s", len(inside["tumor"]), len(inside["background"]),
             "" if inside["tumor"] or inside["background"] else " (step 0)")
    return inside


def run_task1(input_dir: Path, output_dir: Path, model_dir: Path | None, *, time_budget: float,
              margin: float, device: str, started: float, timings: dict[str, float],
              postprocess: Any = None, predictor_options: dict[str, Any] | None = None) -> Path:
    import numpy as np
    from Task1.postprocessing import PostprocessOptions, postprocess_task1
    from autopet_common.image_io import degenerate_image_problem, find_single_image, read_image, same_grid, write_mask
    from autopet_common.output_folder import check_inside, remove_stale_files

    with Phase("read", timings):
        ct_path = find_single_image(input_dir / TASK1_CT_SUBDIR, "CT")
        pet_path = find_single_image(input_dir / TASK1_PET_SUBDIR, "PET")
        pet, geometry = read_image(pet_path, dtype=np.float32, check_finite=True, what="PET image")
        ct, ct_geometry = read_image(ct_path, dtype=np.float32, check_finite=True, what="CT image")
        log.info("CT  %s shape %s spacing %s", ct_path.name, ct_geometry.shape, _fmt(ct_geometry.spacing))
        log.info("PET %s shape %s spacing %s", pet_path.name, geometry.shape, _fmt(geometry.spacing))
        for name, array, path in (("PET", pet, pet_path), ("CT", ct, ct_path)):
            problem = degenerate_image_problem(array, name)
            if problem:
                log.warning("the %s image %s %s", name, path.name, problem)
        if not same_grid(ct_geometry, geometry):
            log.warning("CT and PET grids differ: resampling CT (linear, -1024 HU outside) onto the "
                        "PET grid %s; the mask is written on the PET grid", geometry.shape)
            ct = resample_onto(ct, ct_geometry, geometry, default_value=-1024.0)
        clicks = read_task1_clicks(input_dir, geometry.shape)

    from Task1.recipe import RecipeRunner, find_recipe, warn_if_options_ignored

    recipe = find_recipe(model_dir)
    report = None
    if model_dir is None:
        from Task1.model_free_baseline import segment_model_free

        log.info("model: %s (click-guided 41%% SUVmax region growing; no torch); device: cpu", MODEL_FREE)
        with Phase("predict", timings):
            mask = segment_model_free(pet, clicks, geometry.spacing)
    elif recipe is not None:
        warn_if_options_ignored(postprocess)
        with Phase("load", timings):
            log.info("model: recipe %s", recipe)
            runner = RecipeRunner(recipe, device=device)
        remaining = max(time_budget - margin - (time.perf_counter() - started), 1.0)
        with Phase("predict", timings):
            mask, report = runner.predict(ct, pet, geometry, clicks, time_budget=remaining)
        log.info("recipe plan: %s", json.dumps(report["plan"]))
        log.info("recipe run: %s", json.dumps({k: v for k, v in report.items() if k != "plan"}, default=str))
    else:
        from Task1.model_folder import load_predictor  # lazily: torch is only imported on this path

        with Phase("load", timings):
            log.info("model: %s", model_dir)
            predictor = load_predictor(model_dir, device=device, **(predictor_options or {}))
        # The predictor counts its budget from the start of predict(): give it what is left of
        # ours after reading and loading, minus the margin for writing and exit.
        remaining = max(time_budget - margin - (time.perf_counter() - started), 1.0)
        predictor.time_budget = remaining
        log.info("%.0f s of the %.0f s budget left for prediction", remaining, time_budget)
        with Phase("predict", timings):
            mask = predictor.predict(ct, pet, geometry, clicks)
        description = predictor.describe()
        log.info("device: %s", description.get("device"))
        log.info("predictor: %s", json.dumps(description, default=str))
        if description.get("dropped"):
            log.warning("dropped to fit the time budget: %s", ", ".join(map(str, description["dropped"])))

    mask = np.asarray(mask) > 0
    if mask.shape != tuple(geometry.shape):
        raise RuntimeError(f"prediction shape {mask.shape} does not match the input grid {geometry.shape}")
    if report is None:  # a recipe brings its own post-processing chain
        mask, report = postprocess_task1(mask, pet, clicks, geometry.spacing, postprocess or PostprocessOptions())
        log.info("post-processing: %s", json.dumps(report))
    log.info("mask: %d voxel(s), %.2f ml", int(mask.sum()), float(mask.sum()) * geometry.voxel_volume_ml)

    from autopet_common.image_io import strip_image_suffix

    out_path = output_dir / TASK1_OUTPUT_SUBDIR / f"{strip_image_suffix(ct_path)}.mha"
    with Phase("write", timings):
        check_inside(output_dir, out_path.relative_to(output_dir))  # a link planted during the run, too
        write_mask(mask, geometry, out_path)
        # the mask folder is the entrypoint's: an older mask under another name would make two
        remove_stale_files(out_path.parent, keep=[out_path])
    log.info("wrote %s", out_path)
    return out_path


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"


# ----------------------------------------------------------------------------- entry points

def run_inference(input_dir: str | os.PathLike = DEFAULT_INPUT, output_dir: str | os.PathLike = DEFAULT_OUTPUT,
                  model: str | os.PathLike | None = None, task: str | int = "auto",
                  time_budget: float = TIME_BUDGET_SECONDS, margin: float = DEFAULT_MARGIN_SECONDS,
                  device: str = "auto", remove_below_suv: float | None = None,
                  predictor_options: dict[str, Any] | None = None, *, click_rules: bool = True,
                  protocol_rule: bool = True, binary: bool = False) -> list[Path]:
    """Run one challenge step: read ``input_dir``, write the mask(s) under ``output_dir``.

    ``model``: None (``/opt/ml/model`` if it holds a trained nnU-Net folder, else model-free),
    ``"model-free"``, or an nnU-Net folder. ``task``: "auto", 1 or 2. ``time_budget``: seconds
    for the whole run; the nnU-Net predictor gets what is left after reading minus ``margin``.
    ``remove_below_suv``: drop predicted voxels with PET below this SUV (the challenge's
    data-centric baseline used 1.0); ``click_rules`` / ``protocol_rule``: see
    Task1/postprocessing.py. ``binary``: Task 2 writes 0/1 instead of lesion ids. Returns the
    written file(s). Raises
    :class:`autopet_common.errors.InputError` on bad input, before writing anything; masks an
    earlier run left in the output's mask folders are removed first, so a failed run leaves none.
    """
    from autopet_common.contract import OUTPUT_FOLDERS
    from autopet_common.output_folder import clear_owned_folders

    started = time.perf_counter()
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    timings: dict[str, float] = {}
    # before anything can fail: no mask of an earlier run stays to read as this run's, and no
    # output folder that is a link out of the output is written through
    clear_owned_folders(output_dir, OUTPUT_FOLDERS)
    task_number = detect_task(input_dir) if str(task) == "auto" else int(task)
    if task_number not in (1, 2):
        raise ValueError(f"task must be 'auto', 1 or 2, got {task!r}")
    model_dir = resolve_model(model, task_number)
    log.info("task %d; input %s; output %s; model %s; device %s; budget %.0f s (margin %.0f s)",
             task_number, input_dir, output_dir, model_dir or MODEL_FREE,
             "cpu" if model_dir is None and task_number == 1 else device, time_budget, margin)
    if task_number == 2:
        try:
            from Task2.inference import run_task2
        except ImportError as exc:
            raise RuntimeError(f"Task 2 input but Task2.inference is not available: {exc}") from exc
        import inspect

        options: dict[str, Any] = {"model_dir": model_dir, "device": device}
        if "time_budget" in inspect.signature(run_task2).parameters:
            options["time_budget"] = max(time_budget - margin - (time.perf_counter() - started), 1.0)
        if binary:
            options["binary"] = True
        with Phase("task2", timings):
            written = [Path(p) for p in run_task2(input_dir, output_dir, **options)]
    else:
        from Task1.postprocessing import PostprocessOptions

        postprocess = PostprocessOptions(click_rules=click_rules, protocol_rule=protocol_rule,
                                         remove_below_suv=remove_below_suv)
        written = [run_task1(input_dir, output_dir, model_dir, time_budget=time_budget, margin=margin,
                             device=device, started=started, timings=timings, postprocess=postprocess,
                             predictor_options=predictor_options)]
    total = time.perf_counter() - started
    log.info("total %.2f s (budget %.0f s)%s; peak RSS %.0f MB", total, time_budget,
             "  OVER BUDGET" if total > time_budget else "", peak_rss_mb())
    return written


def _folds(text: str) -> list:
    """``all`` or comma-separated fold numbers."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if parts == ["all"]:
        return ["all"]
    return int_list(",".join(parts))


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="inference.py",
        description=__doc__.split("\n\n")[0] + "\n\n" + "\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="input folder (default /input)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="output folder (default /output)")
    parser.add_argument("--model", default=None,
                        help="trained nnU-Net, MONAI or recipe folder, or 'model-free' to force the classical "
                             "baseline (default: /opt/ml/model, $AUTOPET_MODEL_DIR, then outside a submission "
                             "the shipped phantom model models/task1_phantom_organs, then model-free)")
    parser.add_argument("--task", default="auto", choices=["auto", "1", "2"],
                        help="challenge task; auto detects it from the input layout (default auto)")
    parser.add_argument("--time_budget", type=positive_float, default=TIME_BUDGET_SECONDS,
                        help="seconds for the whole run; the challenge allows 300 (default 300)")
    parser.add_argument("--margin", type=non_negative_float, default=DEFAULT_MARGIN_SECONDS,
                        help=f"seconds kept back from the budget for writing and exit (default {DEFAULT_MARGIN_SECONDS:g})")
    parser.add_argument("--device", type=device_name, default="auto",
                        help="auto (cuda when available, else cpu), cpu, cuda, cuda:N or mps (model paths only)")
    parser.add_argument("--folds", type=_folds, default=None,
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
    parser.add_argument("--binary", action="store_true",
                        help="Task 2: write 0/1 masks instead of lesion ids (default: voxel value = lesion id, "
                             "as the challenge's Task 2 baseline writes)")
    parser.add_argument("--explain", action="store_true",
                        help="Task 1 with a recipe model folder (autopet_recipe.json): print what the recipe runs for "
                             "this input (tracer call, route, models, post-processing) and exit without writing")
    parser.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    return parser


def explain_task1(input_dir: Path, model: str | None) -> str:
    """The recipe plan for a Task 1 input (``--explain``); the same plan a run logs."""
    import numpy as np
    from autopet_common.errors import InputError
    from autopet_common.image_io import find_single_image, read_image
    from Task1.recipe import explain, find_recipe

    model_dir = resolve_model(model, 1)
    recipe = find_recipe(model_dir)
    if recipe is None:
        raise InputError(f"--explain needs a recipe model folder ({'model-free' if model_dir is None else model_dir} "
                         "has no autopet_recipe.json)")
    pet, geometry = read_image(find_single_image(input_dir / TASK1_PET_SUBDIR, "PET"), dtype=np.float32,
                               check_finite=True, what="PET image")
    return explain(recipe, pet, geometry.spacing, read_task1_clicks(input_dir, geometry.shape))


@entrypoint("inference.py")
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.quiet)
    # matplotlib (imported with nnU-Net's trainer module) wants a writable config folder; on the
    # platform HOME is not writable and /tmp is a fresh volume
    os.environ.setdefault("MPLCONFIGDIR", os.path.join(tempfile.gettempdir(), "matplotlib"))
    if args.explain:
        print(explain_task1(args.input, args.model))
        return 0
    predictor_options: dict[str, Any] = {"checkpoint": args.checkpoint, "use_mirroring": not args.disable_mirroring}
    if args.folds:
        predictor_options["folds"] = args.folds
    run_inference(args.input, args.output, model=args.model, task=args.task, time_budget=args.time_budget,
                  margin=args.margin, device=args.device, remove_below_suv=args.remove_below_suv,
                  predictor_options=predictor_options, click_rules=not args.no_click_rules,
                  protocol_rule=not args.no_protocol_rule, binary=args.binary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
