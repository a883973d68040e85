"""Train a Task 1 click model on synthetic phantoms with the stock nnU-Net commands, on the CPU.

    python -m Task1.train_phantom_model --work_dir work_dirs/phantom_model --out models/task1_phantom

The recipe that made the shipped model (``models/task1_phantom``, see its ``MODEL_CARD.md``);
each step is a stock command or this package's CLI, run as a subprocess so exactly what a user
types is what runs:

1. :func:`write_training_phantoms`: ``--cases`` PET/CT phantoms that vary in everything the
   phantom generator can vary (tracer, voxel spacing 2.5-6 mm, field of view and so body size,
   body position, organ uptake, lesion count, size and SUV, blur, noise, SUV calibration,
   unlabelled hot distractors);
2. ``python -m Task1.convert_dataset SRC -d ID --pet_normalization suv`` (CT + PET, PET in SUV);
3. ``nnUNetv2_plan_and_preprocess -d ID -c 3d_fullres --verify_dataset_integrity --no_pp``;
4. :func:`add_cpu_configuration`: a ``3d_cpu`` configuration added to ``nnUNetPlans.json``
   the way nnU-Net documents plan edits (``inherits_from: 3d_fullres``): 4 mm isotropic
   spacing, 48^3 patch, 4 stages of 16-128 features (1.4 M parameters, a 5.6 MB checkpoint);
5. ``nnUNetv2_preprocess -d ID -c 3d_cpu``;
6. ``nnUNetv2_train ID 3d_cpu 0 -tr autoPETTrainerClicks_cpu -device cpu`` with
   ``nnUNet_extTrainer=<repository>/Task1/trainers`` (seeded, AdamW, about 38 minutes on 2 cores);
7. :func:`export_model`: plans.json, dataset.json, click_config.json and a weights-only
   ``fold_0/checkpoint_final.pth`` (no optimizer state; nnU-Net loads it) to ``--out``.

``--configuration 3d_fullres --trainer autoPETTrainerClicks_tiny --fixed_grid`` is the old
minutes-long demonstration on identical tiny phantoms (a pipeline check, not a segmenter).
No weights are downloaded.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from autopet_common.cli import ArgumentParser, entrypoint, nnunet_dataset_id, non_negative_int, positive_int
from Task1.click_config import CLICK_CONFIG_FILE, CLICK_CONFIG_KEY, ClickConfig

REPOSITORY = Path(__file__).resolve().parent.parent
TRAINERS = REPOSITORY / "Task1" / "trainers"
COMPAT = REPOSITORY / "Task1" / "compat"
DEFAULT_SHAPE = (40, 40, 32)
DEFAULT_SPACING = (6.0, 6.0, 8.0)
CPU_CONFIGURATION = "3d_cpu"
CPU_SPACING = (4.0, 4.0, 4.0)
CPU_PATCH_SIZE = (48, 48, 48)
CPU_FEATURES = (16, 32, 64, 128)
CPU_BATCH_SIZE = 2
# What the exported checkpoint keeps: what nnU-Net's and this project's predictors read.
CHECKPOINT_KEYS = ("network_weights", "init_args", "trainer_name", "inference_allowed_mirroring_axes",
                   "current_epoch", CLICK_CONFIG_KEY)


def _write_case(out: Path, name: str, case, *, organs: bool = False) -> None:
    import numpy as np

    from autopet_common.image_io import write_image

    write_image(case.ct.astype(np.float32), case.geometry, out / "imagesTr" / f"{name}_0000.nii.gz")
    write_image(case.pet.astype(np.float32), case.geometry, out / "imagesTr" / f"{name}_0001.nii.gz")
    write_image(case.label.astype(np.uint8), case.geometry, out / "labelsTr" / f"{name}.nii.gz")
    if organs:
        from autopet_common.phantoms import write_organ_map

        write_organ_map(case, out / "organsTr", name)


def write_phantom_source(out_dir: str | os.PathLike, n_cases: int = 5, seed: int = 0,
                         shape: Sequence[int] = DEFAULT_SHAPE, spacing: Sequence[float] = DEFAULT_SPACING, *,
                         organs: bool = False) -> Path:
    """Write ``n_cases`` PET/CT phantoms on one fixed grid (FDG and PSMA alternating, 1..3
    lesions each) in the autoPET layout (imagesTr/<case>_0000 CT, _0001 PET, labelsTr/<case>);
    returns the folder. For pipeline tests; :func:`write_training_phantoms` makes training data."""
    from autopet_common.phantoms import make_petct_case

    out = Path(out_dir)
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    for n in range(n_cases):
        case = make_petct_case(tracer=("FDG", "PSMA")[n % 2], seed=[seed, n], n_lesions=1 + n % 3,
                               shape=shape, spacing=spacing)
        _write_case(out, f"phantom_{n:03d}", case, organs=organs)
    return out


def varied_phantom(seed: int, n: int, *, max_voxels: int = 176):
    """Case ``n`` of the varied training set of ``seed``: a :class:`~autopet_common.phantoms.PetCtCase`
    with random tracer (alternating), grid, spacing, field of view, body position, lesions and
    :class:`~autopet_common.phantoms.PetVariation`. Deterministic in (seed, n)."""
    import numpy as np

    from autopet_common.image_io import Geometry
    from autopet_common.phantoms import PetVariation, make_petct_case
    from autopet_common.phantoms.anatomy import Box

    rng = np.random.default_rng([seed, n, 20261130])
    tracer = ("FDG", "PSMA")[n % 2]
    spacing = np.array([rng.uniform(2.5, 6.0)] * 2 + [rng.uniform(2.5, 6.0)])
    fov = np.array([rng.uniform(420.0, 720.0)] * 2 + [rng.uniform(550.0, 1000.0)])
    shape = np.clip(np.round(fov / spacing), 32, max_voxels).astype(int)
    n_lesions = 0 if rng.random() < 0.1 else int(rng.integers(1, 13))
    case = make_petct_case(tracer=tracer, seed=[seed, n], n_lesions=n_lesions, shape=tuple(shape),
                           spacing=tuple(spacing), case_id=f"phantom_{n:03d}",
                           variation=PetVariation.random(rng))
    # body position and extent: keep a random run of 60-100 % of the slices, and pad air on one
    # side of each in-plane axis (0-20 %), so the body is not always centred and complete
    keep = int(round(shape[2] * rng.uniform(0.6, 1.0)))
    k0 = int(rng.integers(0, shape[2] - keep + 1))
    pads = [(0, 0), (0, 0), (0, 0)]
    for axis in (0, 1):
        pad = int(round(shape[axis] * rng.uniform(0.0, 0.2)))
        pads[axis] = (pad, 0) if rng.random() < 0.5 else (0, pad)
    crop = (slice(None), slice(None), slice(k0, k0 + keep))
    case.ct = np.pad(case.ct[crop], pads, constant_values=-1024.0)
    case.pet = np.pad(case.pet[crop], pads, constant_values=0.0)
    case.label = np.pad(case.label[crop], pads, constant_values=0)
    # the organs move with the images (whole-grid boxes; the organ map is built from them)
    case.organ_boxes = {name: Box((slice(None),) * 3, np.pad(box.full(shape)[crop], pads))
                        for name, box in case.organ_boxes.items()}
    g = case.geometry
    origin = (g.origin[0] - pads[0][0] * g.spacing[0], g.origin[1] - pads[1][0] * g.spacing[1],
              g.origin[2] + k0 * g.spacing[2])
    case.geometry = Geometry(case.ct.shape, g.spacing, origin, g.direction)
    return case


def write_training_phantoms(out_dir: str | os.PathLike, n_cases: int, seed: int = 0, *,
                            progress: bool = True, organs: bool = False) -> Path:
    """Write ``n_cases`` cases of :func:`varied_phantom` in the autoPET layout; returns the folder.
    With ``organs``, also ``organsTr/<case>.nii.gz`` organ maps (see :func:`write_organ_map`)."""
    from tqdm import tqdm

    out = Path(out_dir)
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    for n in tqdm(range(n_cases), desc="training phantoms", unit="case", disable=not progress):
        _write_case(out, f"phantom_{n:03d}", varied_phantom(seed, n), organs=organs)
    return out


def add_cpu_configuration(plans_file: str | os.PathLike, name: str = CPU_CONFIGURATION, *,
                          spacing: Sequence[float] = CPU_SPACING, patch_size: Sequence[int] = CPU_PATCH_SIZE,
                          features: Sequence[int] = CPU_FEATURES, batch_size: int = CPU_BATCH_SIZE) -> dict:
    """Add a small configuration ``name`` to an nnU-Net plans file, inheriting from 3d_fullres
    (nnU-Net's documented way to edit plans), with its own spacing (so its own preprocessed
    data: run ``nnUNetv2_preprocess -c name``), patch size, batch size and a plain U-Net of
    ``len(features)`` stages, 3x3x3 convolutions, stride 2. Returns the configuration."""
    plans_file = Path(plans_file)
    from autopet_common.image_io import read_json

    plans = read_json(plans_file, "nnU-Net plans")
    base = plans["configurations"]["3d_fullres"]
    architecture = copy.deepcopy(base["architecture"])
    n = len(features)
    architecture["arch_kwargs"].update(
        n_stages=n, features_per_stage=[int(f) for f in features], kernel_sizes=[[3, 3, 3]] * n,
        strides=[[1, 1, 1]] + [[2, 2, 2]] * (n - 1), n_conv_per_stage=[2] * n, n_conv_per_stage_decoder=[2] * (n - 1))
    configuration = {"inherits_from": "3d_fullres", "data_identifier": f"{plans['plans_name']}_{name}",
                     "spacing": [float(s) for s in spacing], "patch_size": [int(p) for p in patch_size],
                     "batch_size": int(batch_size), "architecture": architecture}
    plans["configurations"][name] = configuration
    from autopet_common.image_io import atomic_write_json

    atomic_write_json(plans_file, plans)
    return configuration


def torchvision_is_broken(python: str = sys.executable) -> bool:
    """True when ``import torchvision`` fails in a fresh interpreter (a CPU torch with PyPI's CUDA
    torchvision); see Task1/compat/sitecustomize.py."""
    probe = subprocess.run([python, "-c", "import torchvision"], capture_output=True, text=True)
    return probe.returncode != 0


def nnunet_environment(work_dir: str | os.PathLike, base: dict | None = None) -> dict:
    """Environment for the stock nnU-Net commands: folders under ``work_dir``, the click trainers'
    folder, one preprocessing worker, and the torchvision work-around only when needed. For
    ``nnUNetv2_train`` use :func:`training_environment` (nnU-Net's planner fails with 0 DA workers)."""
    work = Path(work_dir)
    env = dict(os.environ if base is None else base)
    env.update(nnUNet_raw=str(work / "nnUNet_raw"), nnUNet_preprocessed=str(work / "nnUNet_preprocessed"),
               nnUNet_results=str(work / "nnUNet_results"), nnUNet_extTrainer=str(TRAINERS),
               nnUNet_def_n_proc=env.get("nnUNet_def_n_proc", "1"))
    if torchvision_is_broken():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(COMPAT), env.get("PYTHONPATH", "")) if p)
    return env


def training_environment(env: dict) -> dict:
    """``env`` with data augmentation in the main process (``nnUNet_n_proc_DA=0``) unless set:
    on a small CPU machine extra worker processes only compete for the cores."""
    return {**env, "nnUNet_n_proc_DA": os.environ.get("nnUNet_n_proc_DA", "0")}


def _run(command: list[str], env: dict, log_file: Path) -> None:
    print("$", " ".join(command), flush=True)
    with open(log_file, "a") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        done = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = log_file.read_text().splitlines()[-25:]
        raise RuntimeError(f"command failed ({done.returncode}): {' '.join(command)}\n" + "\n".join(tail))


def train_phantom_model(work_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
                        dataset_id: int = 777, n_cases: int = 60, trainer: str = "autoPETTrainerClicks_cpu",
                        configuration: str = CPU_CONFIGURATION, fold: str = "0", seed: int = 0,
                        fixed_grid: bool = False, organs: bool = False) -> Path:
    """Run the steps of the module docstring; returns the model folder (``out`` if given).
    With ``organs``: the phantoms' organ maps go through ``convert_dataset --organs`` and
    ``-preprocessor_name autoPETOrganPreprocessor`` (use an organ-supervised trainer)."""
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    env = nnunet_environment(work)
    log_file = work / "train_phantom_model.log"
    print(f"nnU-Net output goes to {log_file} (tail -f it to follow the training)", flush=True)
    shutil.rmtree(work / "source", ignore_errors=True)
    if fixed_grid:
        source = write_phantom_source(work / "source", n_cases, seed, organs=organs)
    else:
        source = write_training_phantoms(work / "source", n_cases, seed, organs=organs)
    name = "PhantomClicksOrgans" if organs else "PhantomClicks"
    _run([sys.executable, "-m", "Task1.convert_dataset", str(source), "--nnunet_raw", env["nnUNet_raw"],
          "-d", str(dataset_id), "--name", name, "--overwrite", "--no_progress",
          "--pet_normalization", "zscore" if fixed_grid else "suv"]
         + (["--organs", str(source / "organsTr")] if organs else []), env, log_file)
    plan = [str(bin_dir / "nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id), "-c", "3d_fullres",
            "--verify_dataset_integrity", "-np", "1", "-npfp", "2"]
    if organs:
        from Task1.preprocessors import install_hook

        install_hook()  # what setup.sh does: the stock command finds the preprocessor by name
        plan += ["-preprocessor_name", "autoPETOrganPreprocessor"]
    if configuration == "3d_fullres":
        _run(plan, env, log_file)
    else:
        _run(plan + ["--no_pp"], env, log_file)
        plans_file = Path(env["nnUNet_preprocessed"]) / f"Dataset{dataset_id:03d}_{name}" / "nnUNetPlans.json"
        add_cpu_configuration(plans_file, configuration)
        _run([str(bin_dir / "nnUNetv2_preprocess"), "-d", str(dataset_id), "-c", configuration, "-np", "2"],
             env, log_file)
    started = time.perf_counter()
    _run([str(bin_dir / "nnUNetv2_train"), str(dataset_id), configuration, fold, "-tr", trainer, "-device", "cpu"],
         training_environment(env), log_file)
    training_seconds = time.perf_counter() - started
    model = Path(env["nnUNet_results"]) / f"Dataset{dataset_id:03d}_{name}" / f"{trainer}__nnUNetPlans__{configuration}"
    (model / "training_recipe.json").write_text(json.dumps({
        "command": "python -m Task1.train_phantom_model " + " ".join(sys.argv[1:]) if sys.argv[0].endswith(
            "train_phantom_model.py") else None,
        "cases": n_cases, "seed": seed, "trainer": trainer, "configuration": configuration, "fold": fold,
        "fixed_grid": fixed_grid, "organs": organs, "training_seconds": round(training_seconds, 1)}, indent=2))
    if out is None:
        return model
    return export_model(model, out, fold=fold)


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_model(model: str | os.PathLike, out: str | os.PathLike, *, fold: str = "0") -> Path:
    """Copy a trained model folder to ``out`` with a weights-only checkpoint (the keys in
    ``CHECKPOINT_KEYS``: no optimizer state, a third of the size); atomic (temp folder, rename).
    Writes ``checkpoint.sha256``. Returns ``out``."""
    import torch

    model, out = Path(model), Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / f"fold_{fold}").mkdir(parents=True)
    for name in ("plans.json", "dataset.json", "dataset_fingerprint.json", CLICK_CONFIG_FILE,
                 "training_recipe.json"):
        if (model / name).is_file():
            shutil.copy2(model / name, tmp / name)
    if (model / f"fold_{fold}" / "progress.png").is_file():
        shutil.copy2(model / f"fold_{fold}" / "progress.png", tmp / f"fold_{fold}" / "progress.png")
    checkpoint = torch.load(model / f"fold_{fold}" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    slim = {key: checkpoint[key] for key in CHECKPOINT_KEYS if key in checkpoint}
    if CLICK_CONFIG_KEY in slim:  # a model that a predictor of this version cannot read is not exported
        ClickConfig.from_dict(slim[CLICK_CONFIG_KEY], source=f"{model}/fold_{fold}/checkpoint_final.pth")
    target = tmp / f"fold_{fold}" / "checkpoint_final.pth"
    torch.save(slim, target)
    (tmp / "checkpoint.sha256").write_text(f"{sha256_of(target)}  fold_{fold}/checkpoint_final.pth\n")
    if out.exists():
        # keep what a person wrote next to the model (the model card), replace the rest
        for keep in ("MODEL_CARD.md", "README.md"):
            if (out / keep).is_file():
                shutil.copy2(out / keep, tmp / keep)
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


@entrypoint("python -m Task1.train_phantom_model")
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m Task1.train_phantom_model",
        description="Make varied PET/CT phantoms, convert them, plan (with the small 3d_cpu configuration), "
                    "preprocess and train a click model with the stock nnU-Net commands on the CPU, and export "
                    "a weights-only model folder. The defaults reproduce the shipped models/task1_phantom "
                    "(about 40 minutes on 2 cores).")
    parser.add_argument("--work_dir", default="work_dirs/phantom_model",
                        help="nnU-Net folders and the log go here")
    parser.add_argument("--out", default="work_dirs/phantom_model/model", help="exported model folder")
    parser.add_argument("--dataset_id", type=nnunet_dataset_id, default=777, help="nnU-Net dataset id (default 777)")
    parser.add_argument("--cases", type=positive_int, default=60, help="number of training phantoms (>= 5 for the split)")
    parser.add_argument("--trainer", default=None,
                        help="autoPETTrainerClicks_cpu (the shipped model; _cpu_organs with --organs), _tiny or "
                             "_smoke (pipeline checks)")
    parser.add_argument("--configuration", default=CPU_CONFIGURATION,
                        help=f"{CPU_CONFIGURATION} (added to the plans, see --help of the module) or 3d_fullres")
    parser.add_argument("--fold", default="0")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="phantom seed (case n uses [seed, n])")
    parser.add_argument("--organs", action="store_true",
                        help="organ supervision: write the phantoms' organ maps, convert with --organs, preprocess "
                             "with -preprocessor_name autoPETOrganPreprocessor (default trainer "
                             "autoPETTrainerClicks_cpu_organs)")
    parser.add_argument("--fixed_grid", action="store_true",
                        help="identical tiny 40x40x32 phantoms instead of the varied set (pipeline checks)")
    args = parser.parse_args(argv)
    if args.cases < 5:
        parser.error("--cases must be at least 5 (nnU-Net's 5-fold split)")
    trainer = args.trainer or ("autoPETTrainerClicks_cpu_organs" if args.organs else "autoPETTrainerClicks_cpu")
    started = time.perf_counter()
    try:
        model = train_phantom_model(args.work_dir, args.out, dataset_id=args.dataset_id, n_cases=args.cases,
                                    trainer=trainer, configuration=args.configuration, fold=args.fold,
                                    seed=args.seed, fixed_grid=args.fixed_grid, organs=args.organs)
    except RuntimeError as exc:  # a stock nnU-Net command failed: its log is named in the message
        print(f"python -m Task1.train_phantom_model: error: {exc}", file=sys.stderr)
        return 1
    print(f"model folder: {model} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
