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
   spacing (``--network_spacing``), 48^3 patch, 4 stages of 16-128 features (1.4 M parameters, a 5.6 MB checkpoint);
5. ``nnUNetv2_preprocess -d ID -c 3d_cpu``;
6. ``nnUNetv2_train ID 3d_cpu 0 -tr autoPETTrainerClicks_cpu -device cpu`` with
   ``nnUNet_extTrainer=<repository>/Task1/trainers`` (seeded, AdamW, about 38 minutes on 2 cores);
7. :func:`export_model`: plans.json, dataset.json, click_config.json and a weights-only
   ``fold_0/checkpoint_final.pth`` (no optimizer state; nnU-Net loads it) to ``--out``.

``--organs`` adds the phantoms' organ maps as targets (``Task1.convert_dataset --organs``,
``-preprocessor_name autoPETOrganPreprocessor``) and trains ``autoPETTrainerClicks_cpu_organs_lesionpatches``:
the recipe of the default model ``models/task1_phantom_organs`` (about 34 minutes on 2 cores).

``--configuration 3d_fullres --trainer autoPETTrainerClicks_tiny --fixed_grid`` is the old
minutes-long demonstration on identical tiny phantoms (a pipeline check, not a segmenter).
No weights are downloaded.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

from autopet_common.cli import (ArgumentParser, entrypoint, nnunet_dataset_id, nnunet_fold, positive_float,
                                positive_int, seed)
from autopet_common.image_io import sha256_of
# The generic steps of a CPU nnU-Net recipe (plans edit, environment, export) have one home,
# autopet_common/nnunet_recipe.py; Task 2's recipe uses them too.
from autopet_common.nnunet_recipe import (CPU_CONFIGURATION, CPU_SPACING, finish_recipe,  # noqa: F401
                                          nnunet_environment, plan_preprocess_train, run_logged,
                                          training_environment)
from Task1.click_config import CLICK_CONFIG_FILE, CLICK_CONFIG_KEY

REPOSITORY = Path(__file__).resolve().parent.parent
TRAINERS = REPOSITORY / "Task1" / "trainers"
# --organs without --trainer: the trainer of the default model models/task1_phantom_organs
ORGAN_TRAINER = "autoPETTrainerClicks_cpu_organs_lesionpatches"
DEFAULT_SHAPE = (40, 40, 32)


def _check_click_config(checkpoint: dict, source: str) -> None:
    """A click model that a predictor of this version cannot read is not exported."""
    from Task1.click_config import ClickConfig

    if CLICK_CONFIG_KEY in checkpoint:
        ClickConfig.from_dict(checkpoint[CLICK_CONFIG_KEY], source=source)


# what a Task 1 click model's export keeps besides nnU-Net's (Task1/click_config.py: its record)
CLICK_EXPORT = {"extra_files": (CLICK_CONFIG_FILE,), "extra_keys": (CLICK_CONFIG_KEY,),
                "check": _check_click_config}
DEFAULT_SPACING = (6.0, 6.0, 8.0)


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


def varied_phantom(seed: int, n: int, *, max_voxels: int = 176, lesion_radius_min_mm: float | None = None,
                   organ_decoys: bool = False, bone_free: bool = False):
    """Case ``n`` of the varied training set of ``seed``: a :class:`~autopet_common.phantoms.PetCtCase`
    with random tracer (alternating), grid, spacing, field of view, body position, lesions and
    :class:`~autopet_common.phantoms.PetVariation`. Deterministic in (seed, n).
    ``lesion_radius_min_mm``: the smallest lesion radius (default: the grid's; see ``PetVariation``);
    the same random draws, so only the lesions change. ``organ_decoys``: add 1..3 organ-sized hot
    structures without a label (``PetVariation.organ_decoys``), drawn apart, so all else stays.
    ``bone_free``: no bones (``PetVariation.bone_free``), which draws nothing, so all else stays."""
    import dataclasses

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
    decoys = int(np.random.default_rng([seed, n, 20261207]).integers(1, 4)) if organ_decoys else 0
    case = make_petct_case(tracer=tracer, seed=[seed, n], n_lesions=n_lesions, shape=tuple(shape),
                           spacing=tuple(spacing), case_id=f"phantom_{n:03d}",
                           variation=dataclasses.replace(PetVariation.random(rng),
                                                         lesion_radius_min_mm=lesion_radius_min_mm,
                                                         organ_decoys=decoys, bone_free=bone_free))
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


def randomised_phantom(seed: int, n: int):
    """Case ``n`` of the domain-randomised training set of ``seed`` (tracer alternating; see
    :mod:`autopet_common.phantoms.randomised`). Deterministic in (seed, n)."""
    from autopet_common.phantoms.randomised import randomised_petct_case

    return randomised_petct_case(("FDG", "PSMA")[n % 2], [seed, n, 20261204], case_id=f"phantom_{n:03d}")


def mixed_phantom(seed: int, n: int):
    """Case ``n`` of the mixed training set: :func:`varied_phantom` for every third case (the
    standard anatomy stays in the training distribution), :func:`randomised_phantom` otherwise."""
    return varied_phantom(seed, n) if n % 3 == 0 else randomised_phantom(seed, n)


def mostly_varied_phantom(seed: int, n: int):
    """Case ``n`` of the mostly-varied training set: :func:`randomised_phantom` for every third case
    (n % 3 == 2), :func:`varied_phantom` otherwise: the mixed set's shares the other way round."""
    return randomised_phantom(seed, n) if n % 3 == 2 else varied_phantom(seed, n)


def small_lesions_phantom(seed: int, n: int):
    """Case ``n`` of the varied set with lesions from 3 mm radius on every grid (the varied set's
    smallest is the grid's largest spacing, up to 6 mm): at the real autoPET grid a quarter of the
    lesions are below 5 mm radius, and a network that never saw such a lesion clicked may answer
    the click with a blob of the hot organ around it. A model trained on it was not better than
    the default (the default's model card, "Fourth try")."""
    return varied_phantom(seed, n, lesion_radius_min_mm=3.0)


def organ_decoys_phantom(seed: int, n: int):
    """Case ``n`` of the varied set with 1..3 organ-sized hot structures that carry no label, anywhere
    in the body (hard negatives: the organs of a body the network never saw are hot and large; issue
    33). Everything else is :func:`varied_phantom`'s case, draw for draw."""
    return varied_phantom(seed, n, organ_decoys=True)


def bone_free_half_phantom(seed: int, n: int):
    """Case ``n`` of the varied set, without bones in about half of the cases (a draw of its own,
    ``[seed, n, 20261208]``). At step 0 the default marks the hot organs of a body without bones
    (set (c) of issue 33 has none), and on 8 FDG validation phantoms of its own generator with the
    bones made soft tissue its step-0 false positives grow from 0-0.7 ml to 7-21 ml a case; so
    bones may be what it places organs by. Everything else is :func:`varied_phantom`'s case, draw for draw."""
    import numpy as np

    return varied_phantom(seed, n, bone_free=bool(np.random.default_rng([seed, n, 20261208]).random() < 0.5))


# --phantoms: training set name -> case maker (seed, n)
PHANTOM_SETS = {"varied": varied_phantom, "randomised": randomised_phantom, "mixed": mixed_phantom,
                "mostly_varied": mostly_varied_phantom, "small_lesions": small_lesions_phantom,
                "organ_decoys": organ_decoys_phantom, "bone_free_half": bone_free_half_phantom}


def write_training_phantoms(out_dir: str | os.PathLike, n_cases: int, seed: int = 0, *,
                            progress: bool = True, organs: bool = False, phantoms: str = "varied") -> Path:
    """Write ``n_cases`` cases of the training set ``phantoms`` (:data:`PHANTOM_SETS`:
    :func:`varied_phantom`, :func:`randomised_phantom`, :func:`mixed_phantom`,
    :func:`mostly_varied_phantom` or :func:`small_lesions_phantom`) in the autoPET
    layout; returns the folder.
    With ``organs``, also ``organsTr/<case>.nii.gz`` organ maps (see :func:`write_organ_map`)."""
    from tqdm import tqdm

    make_case = PHANTOM_SETS[phantoms]
    out = Path(out_dir)
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    for n in tqdm(range(n_cases), desc=f"{phantoms} training phantoms", unit="case", disable=not progress):
        _write_case(out, f"phantom_{n:03d}", make_case(seed, n), organs=organs)
    return out


def train_phantom_model(work_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
                        dataset_id: int = 777, n_cases: int = 60, trainer: str | None = None,
                        configuration: str = CPU_CONFIGURATION, fold: str = "0", seed: int = 0,
                        fixed_grid: bool = False, organs: bool = False, phantoms: str = "varied",
                        network_spacing: float = CPU_SPACING[0],
                        pretrained_weights: str | os.PathLike | None = None) -> Path:
    """Run the steps of the module docstring; returns the model folder (``out`` if given).
    With ``organs``: the phantoms' organ maps go through ``convert_dataset --organs`` and
    ``-preprocessor_name autoPETOrganPreprocessor`` (use an organ-supervised trainer). ``trainer``
    None: ``ORGAN_TRAINER`` with ``organs``, else ``autoPETTrainerClicks_cpu`` (the two shipped models').
    ``phantoms``: the training set (:data:`PHANTOM_SETS`). ``network_spacing``: the isotropic
    voxel size (mm) of the ``3d_cpu`` configuration, the grid the network sees (the 48^3 patch
    covers 48 such voxels; finer means less context per patch and more tiles per case).
    ``pretrained_weights``: a checkpoint, or a model folder holding one, to start from
    (:func:`pretrained_checkpoint`; nnU-Net's ``-pretrained_weights``, with a fine-tuning trainer
    such as ``autoPETTrainerClicks_cpu_organs_finetune``)."""
    trainer = trainer or (ORGAN_TRAINER if organs else "autoPETTrainerClicks_cpu")
    checkpoint = None if pretrained_weights is None else pretrained_checkpoint(pretrained_weights)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    env = nnunet_environment(work, trainers=TRAINERS)
    log_file = work / "train_phantom_model.log"
    print(f"nnU-Net output goes to {log_file} (tail -f it to follow the training)", flush=True)
    shutil.rmtree(work / "source", ignore_errors=True)
    if fixed_grid:
        source = write_phantom_source(work / "source", n_cases, seed, organs=organs)
    else:
        source = write_training_phantoms(work / "source", n_cases, seed, organs=organs, phantoms=phantoms)
    name = "PhantomClicksOrgans" if organs else "PhantomClicks"
    run_logged([sys.executable, "-m", "Task1.convert_dataset", str(source), "--nnunet_raw", env["nnUNet_raw"],
                "-d", str(dataset_id), "--name", name, "--overwrite", "--no_progress",
                "--pet_normalization", "zscore" if fixed_grid else "suv"]
               + (["--organs", str(source / "organsTr")] if organs else []), env, log_file)
    plan_args = []
    if organs:
        from Task1.preprocessors import install_hook

        install_hook()  # what setup.sh does: the stock command finds the preprocessor by name
        plan_args = ["-preprocessor_name", "autoPETOrganPreprocessor"]
    model, training_seconds = plan_preprocess_train(env, log_file, dataset_id=dataset_id, dataset_name=name,
                                                    trainer=trainer, configuration=configuration, fold=fold,
                                                    spacing=(float(network_spacing),) * 3, plan_args=plan_args,
                                                    pretrained_weights=checkpoint)
    return finish_recipe(model, out, module="Task1.train_phantom_model", fold=fold, **CLICK_EXPORT, record={
        "cases": n_cases, "seed": seed, "trainer": trainer, "configuration": configuration, "fold": fold,
        "fixed_grid": fixed_grid, "organs": organs, "phantoms": phantoms,
        "network_spacing": float(network_spacing), "training_seconds": round(training_seconds, 1),
        **({} if checkpoint is None else {"pretrained_weights": str(checkpoint),
                                          "pretrained_sha256": sha256_of(checkpoint)})})


def pretrained_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint to fine-tune from: ``path`` itself when it is a file, else the one
    ``fold_*/checkpoint_final.pth`` of the model folder ``path``. Raises ValueError naming the
    path when there is none, or more than one."""
    path = Path(path)
    if path.is_file():
        return path.resolve()
    found = sorted(path.glob("fold_*/checkpoint_final.pth")) if path.is_dir() else []
    if len(found) != 1:
        what = "no such file or folder" if not path.exists() else (
            f"{len(found)} fold_*/checkpoint_final.pth in it" if found else "no fold_*/checkpoint_final.pth in it")
        raise ValueError(f"--pretrained_weights {path}: {what}; give a checkpoint file or a model folder "
                         "with one fold")
    return found[0].resolve()


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
                        help="autoPETTrainerClicks_cpu (models/task1_phantom; with --organs _cpu_organs_lesionpatches, "
                             "models/task1_phantom_organs), _tiny or _smoke (pipeline checks)")
    parser.add_argument("--configuration", default=CPU_CONFIGURATION,
                        help=f"{CPU_CONFIGURATION} (added to the plans, see --help of the module) or 3d_fullres")
    parser.add_argument("--fold", type=nnunet_fold, default="0",
                        help="nnU-Net fold: 0 (default; 80 %% of the cases train, the shipped models), 1..4 or all")
    parser.add_argument("--seed", type=seed, default=0, help="phantom seed (case n uses [seed, n])")
    parser.add_argument("--organs", action="store_true",
                        help="organ supervision: write the phantoms' organ maps, convert with --organs, preprocess "
                             "with -preprocessor_name autoPETOrganPreprocessor (default trainer "
                             "autoPETTrainerClicks_cpu_organs_lesionpatches, the default model's)")
    parser.add_argument("--phantoms", choices=sorted(PHANTOM_SETS), default="varied",
                        help="training set: varied (the standard anatomy with varied grid, uptake and physics; "
                             "models/task1_phantom and models/task1_phantom_organs), randomised "
                             "(domain-randomised anatomy, uptake, field of view and physics, "
                             "autopet_common/phantoms/randomised.py), mixed (every third case varied, the others "
                             "randomised), mostly_varied (every third case randomised, the others varied), "
                             "small_lesions (varied, with lesions from 3 mm radius on every grid), organ_decoys "
                             "(varied, plus 1-3 unlabelled hot organ-sized structures per case) or bone_free_half "
                             "(varied, about half of the cases without bones)")
    parser.add_argument("--network_spacing", type=positive_float, default=CPU_SPACING[0], metavar="MM",
                        help=f"isotropic voxel size of the {CPU_CONFIGURATION} configuration, the grid the network "
                             f"sees (default {CPU_SPACING[0]:g} mm, the shipped models'; the patch stays 48^3 voxels)")
    parser.add_argument("--pretrained_weights", metavar="PATH", default=None,
                        help="start from this checkpoint, or the one checkpoint of this model folder (nnU-Net's "
                             "-pretrained_weights: every weight but the output layers; use a fine-tuning trainer such "
                             "as autoPETTrainerClicks_cpu_organs_finetune)")
    parser.add_argument("--fixed_grid", action="store_true",
                        help="identical tiny 40x40x32 phantoms instead of the varied set (pipeline checks)")
    args = parser.parse_args(argv)
    if args.cases < 5:
        parser.error("--cases must be at least 5 (nnU-Net's 5-fold split)")
    started = time.perf_counter()
    try:
        model = train_phantom_model(args.work_dir, args.out, dataset_id=args.dataset_id, n_cases=args.cases,
                                    trainer=args.trainer, configuration=args.configuration, fold=args.fold,
                                    seed=args.seed, fixed_grid=args.fixed_grid, organs=args.organs,
                                    phantoms=args.phantoms, network_spacing=args.network_spacing,
                                    pretrained_weights=args.pretrained_weights)
    except ValueError as exc:  # a --pretrained_weights without a checkpoint
        parser.error(str(exc))
    except RuntimeError as exc:  # a stock nnU-Net command failed: its log is named in the message
        print(f"python -m Task1.train_phantom_model: error: {exc}", file=sys.stderr)
        return 1
    print(f"model folder: {model} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
