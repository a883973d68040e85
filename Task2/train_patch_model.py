"""Train the learned Task 2 model (per-lesion patches, LongiSeg style) on phantom pairs, on the CPU.

    python -m Task2.train_patch_model --work_dir work_dirs/task2_patch_model --out models/task2_phantom_patches

The recipe of the shipped ``models/task2_phantom_patches`` (see its ``MODEL_CARD.md``); each step
is a stock command or this package's CLI, run as a subprocess, so what runs is what a user types:

1. ``--pairs`` longitudinal phantom pairs, each on a grid of its own, seed ``--seed``;
   ``--grids mixed`` (default; :func:`autopet_common.phantoms.task2.pair_grid`: two pairs in three
   on a 2.4-5 mm in-plane :func:`~autopet_common.phantoms.task2.varied_grid`, every third on a
   0.7-2 mm :func:`~autopet_common.phantoms.task2.fine_grid`, finer than the network's 2 mm grid
   as the challenge's 0.8 mm CT is) or ``--grids varied`` (all coarse: the first recipe);
   a baseline lesion vanishes with ``--vanish_probability`` (default :data:`TRAINING_VANISH_PROBABILITY`,
   more step-1 samples whose answer is empty than the phantoms' own 0.15); every second pair also
   has a merging pair of lesions and a splitting lesion (:data:`EVENTS`, ``--no_events`` leaves
   them out);
2. ``python -m Task2.convert_dataset --patches --proposal``: registration and carrying once per
   pair, then a step-1 and a step-2 sample per lesion (:mod:`Task2.lesion_patches`); the sixth
   channel is the model-free pipeline's segmentation of the lesion (``--no_proposal``: five
   channels, the first recipe);
3. ``nnUNetv2_plan_and_preprocess -d ID -c 3d_fullres --no_pp``, then a ``3d_cpu``
   configuration added to the plans (:func:`autopet_common.nnunet_recipe.add_cpu_configuration`:
   2 mm isotropic, 48^3 patch = the 96 mm lesion box, 4 stages of 16-128 features, a
   checkpoint of about 5.6 MB) and ``nnUNetv2_preprocess -c 3d_cpu``;
4. ``nnUNetv2_train ID 3d_cpu 0 -tr autoPETTrainerLongitudinalPatches_cpu -device cpu`` with
   ``nnUNet_extTrainer=<repository>/Task2/trainers`` (seeded AdamW);
5. export of a weights-only model folder to ``--out``.

No weights are downloaded; the data are synthetic.
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

from autopet_common.cli import (ArgumentParser, entrypoint, nnunet_dataset_id, nnunet_fold, positive_int,
                                probability, seed)
from autopet_common.nnunet_recipe import (CPU_CONFIGURATION, finish_recipe, nnunet_environment,
                                          plan_preprocess_train, run_logged)

TRAINERS = Path(__file__).resolve().parent / "trainers"
DATASET_NAME = "Task2LesionPatches"
PATCH_SPACING = (2.0, 2.0, 2.0)
PATCH_SIZE = (48, 48, 48)  # 96 mm at 2 mm: the lesion box of Task2.lesion_patches
DEFAULT_TRAINER = "autoPETTrainerLongitudinalPatches_cpu"
# events: one merging pair and one splitting lesion on every second pair, as the benchmark's held-out pairs
EVENTS = {"n_merging": 1, "n_splitting": 1, "event_every": 2}
# more vanished baseline lesions than the phantoms' own 0.15: step-1 samples whose answer is empty
TRAINING_VANISH_PROBABILITY = 0.35


def train_patch_model(work_dir: str | Path, out: str | Path | None = None, *, dataset_id: int = 504,
                      n_pairs: int = 48, seed: int = 0, trainer: str = DEFAULT_TRAINER, fold: str = "0",
                      progress: bool = True, proposal: bool = True, grids: str = "mixed",
                      vanish_probability: float = TRAINING_VANISH_PROBABILITY, events: bool = True) -> Path:
    """Run the steps of the module docstring; returns the model folder (``out`` if given).
    ``grids``: a size of :func:`autopet_common.phantoms.write_task2_cohort` (``"mixed"``,
    ``"varied"``, ...); ``events``: merging and splitting lesions on every second pair
    (:data:`EVENTS`). The defaults are the shipped model's recipe."""
    from autopet_common.phantoms import write_task2_cohort

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    env = nnunet_environment(work, trainers=TRAINERS)
    log_file = work / "train_patch_model.log"
    print(f"nnU-Net output goes to {log_file} (tail -f it to follow the training)", flush=True)
    cohort = work / "pairs"
    shutil.rmtree(cohort, ignore_errors=True)
    started = time.perf_counter()
    write_task2_cohort(cohort, n_pairs=n_pairs, size=grids, seed=seed, progress=progress,
                       vanish_probability=vanish_probability, **(EVENTS if events else {}))
    run_logged([sys.executable, "-m", "Task2.convert_dataset", "--cohort", str(cohort), "--output",
                env["nnUNet_raw"], "--dataset_id", str(dataset_id), "--name", DATASET_NAME, "--patches",
                "--no_progress", *(["--proposal"] if proposal else [])], env, log_file)
    data_seconds = time.perf_counter() - started
    model, training_seconds = plan_preprocess_train(env, log_file, dataset_id=dataset_id, dataset_name=DATASET_NAME,
                                                    trainer=trainer, fold=fold, spacing=PATCH_SPACING,
                                                    patch_size=PATCH_SIZE)
    n_samples = len(list((Path(env["nnUNet_raw"]) / f"Dataset{dataset_id:03d}_{DATASET_NAME}" / "labelsTr").glob("*")))
    return finish_recipe(model, out, module="Task2.train_patch_model", fold=fold, record={
        "pairs": n_pairs, "seed": seed, "proposal_channel": proposal, "grids": f"{grids} (autopet_common.phantoms.task2.pair_grid)",
        "vanish_probability": vanish_probability, "events": EVENTS if events else None,
        "samples": n_samples, "trainer": trainer, "configuration": CPU_CONFIGURATION, "fold": fold,
        "data_seconds": round(data_seconds, 1), "training_seconds": round(training_seconds, 1)})


@entrypoint("python -m Task2.train_patch_model")
def main(argv: Sequence[str] | None = None) -> int:
    from autopet_common.phantoms.task2 import VANISH_PROBABILITY as PHANTOM_VANISH_PROBABILITY

    parser = ArgumentParser(
        prog="python -m Task2.train_patch_model",
        description="Make longitudinal phantom pairs, convert them to per-lesion patches, plan (with the "
                    "small 3d_cpu configuration), preprocess and train the learned Task 2 model with the stock "
                    "nnU-Net commands on the CPU, and export a weights-only model folder. The defaults reproduce "
                    "the shipped models/task2_phantom_patches.")
    parser.add_argument("--work_dir", default="work_dirs/task2_patch_model", help="pairs, nnU-Net folders and the log")
    parser.add_argument("--out", default="work_dirs/task2_patch_model/model", help="exported model folder")
    parser.add_argument("--dataset_id", type=nnunet_dataset_id, default=504, help="nnU-Net dataset id (default 504)")
    parser.add_argument("--pairs", type=positive_int, default=48, help="phantom pairs (default 48; >= 5 for the split)")
    parser.add_argument("--seed", type=seed, default=0, help="phantom seed (pair n uses [seed, n])")
    parser.add_argument("--trainer", default=DEFAULT_TRAINER,
                        help=f"{DEFAULT_TRAINER} (the shipped model), autoPETTrainerLongitudinalPatches_smoke (a pipeline "
                             "check) or autoPETTrainerLongitudinalPatches_cpuProposalNoise (proposal channel grown "
                             "or shrunk in training; issue 34's seventh round, not shipped)")
    parser.add_argument("--no_proposal", dest="proposal", action="store_false",
                        help="five input channels: leave out the sixth, the model-free pipeline's segmentation of the "
                             "lesion that the network refines (Task2.lesion_patches); the first recipe")
    parser.add_argument("--grids", choices=("mixed", "varied"), default="mixed",
                        help="mixed (default): every third pair on a 0.7-2 mm in-plane grid (fine_grid), finer than "
                             "the network's 2 mm as the challenge's CT is, the others on 2.4-5 mm (the data step of "
                             "48 mixed pairs took 574 s on 2 cores); varied: all on 2.4-5 mm (the first recipe)")
    parser.add_argument("--vanish_probability", type=probability, default=TRAINING_VANISH_PROBABILITY,
                        help=f"chance that a baseline lesion of a training pair vanishes at follow-up (default "
                             f"{TRAINING_VANISH_PROBABILITY}; the phantoms' own is {PHANTOM_VANISH_PROBABILITY}): "
                             "step-1 samples whose answer is empty")
    parser.add_argument("--no_events", dest="events", action="store_false",
                        help="leave out the merging pair and the splitting lesion that every second training pair "
                             "has by default (as the benchmark's held-out pairs)")
    parser.add_argument("--fold", type=nnunet_fold, default="0",
                        help="nnU-Net fold: 0 (default; 80 %% of the samples train, the shipped model), 1..4 (another "
                             "80 %%) or all")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.pairs < 5:
        parser.error("--pairs must be at least 5 (nnU-Net's 5-fold split)")
    started = time.perf_counter()
    try:
        model = train_patch_model(args.work_dir, args.out, dataset_id=args.dataset_id, n_pairs=args.pairs,
                                  seed=args.seed, trainer=args.trainer, fold=args.fold,
                                  progress=not args.no_progress, proposal=args.proposal, grids=args.grids,
                                  vanish_probability=args.vanish_probability, events=args.events)
    except RuntimeError as exc:  # a stock nnU-Net command failed: its log is named in the message
        print(f"python -m Task2.train_patch_model: error: {exc}", file=sys.stderr)
        return 1
    print(f"model folder: {model} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
