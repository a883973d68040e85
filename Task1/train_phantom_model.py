"""Train a tiny click model on synthetic phantoms with the stock nnU-Net commands (CPU, minutes).

    python -m Task1.train_phantom_model --work-dir work_dirs/phantom_model --out models/task1_phantom

Steps, each a stock command or this package's CLI, run as subprocesses so exactly what a user
types is what runs:

1. ``autopet_common.phantoms.make_petct_case``: N small PET/CT phantoms in the autoPET layout;
2. ``python -m Task1.convert_dataset SRC -d ID`` (CT + PET dataset for the click trainers);
3. ``nnUNetv2_plan_and_preprocess -d ID -c 3d_fullres --verify_dataset_integrity``;
4. ``nnUNetv2_train ID 3d_fullres FOLD -tr TRAINER -device cpu`` with
   ``nnUNet_extTrainer=<repository>/Task1/trainers``;
5. the model folder (plans.json, dataset.json, click_config.json, fold_X/checkpoint_final.pth)
   is copied to ``--out``, ready for :class:`Task1.predict.Task1Predictor` and the entrypoint.

No weights are downloaded. The model is a demonstration of the pipeline, not a useful segmenter.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

REPOSITORY = Path(__file__).resolve().parent.parent
TRAINERS = REPOSITORY / "Task1" / "trainers"
COMPAT = REPOSITORY / "Task1" / "compat"
DEFAULT_SHAPE = (40, 40, 32)
DEFAULT_SPACING = (6.0, 6.0, 8.0)


def write_phantom_source(out_dir: str | os.PathLike, n_cases: int = 5, seed: int = 0,
                         shape: Sequence[int] = DEFAULT_SHAPE, spacing: Sequence[float] = DEFAULT_SPACING) -> Path:
    """Write ``n_cases`` PET/CT phantoms (FDG and PSMA alternating, 1..3 lesions each) in the
    autoPET layout (imagesTr/<case>_0000 CT, _0001 PET, labelsTr/<case>); returns the folder."""
    import numpy as np

    from autopet_common.image_io import write_image
    from autopet_common.phantoms import make_petct_case

    out = Path(out_dir)
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    for n in range(n_cases):
        case = make_petct_case(tracer=("FDG", "PSMA")[n % 2], seed=[seed, n], n_lesions=1 + n % 3,
                               shape=shape, spacing=spacing)
        name = f"phantom_{n:03d}"
        write_image(case.ct.astype(np.float32), case.geometry, out / "imagesTr" / f"{name}_0000.nii.gz")
        write_image(case.pet.astype(np.float32), case.geometry, out / "imagesTr" / f"{name}_0001.nii.gz")
        write_image(case.label.astype(np.uint8), case.geometry, out / "labelsTr" / f"{name}.nii.gz")
    return out


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


def train_phantom_model(work_dir: str | os.PathLike, out: str | os.PathLike | None = None, dataset_id: int = 777,
                        n_cases: int = 5, trainer: str = "autoPETTrainerClicks_tiny", fold: str = "0",
                        seed: int = 0) -> Path:
    """Run steps 1-5 of the module docstring; returns the model folder (``out`` if given)."""
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    env = nnunet_environment(work)
    log_file = work / "train_phantom_model.log"
    source = write_phantom_source(work / "source", n_cases, seed)
    _run([sys.executable, "-m", "Task1.convert_dataset", str(source), "--nnunet-raw", env["nnUNet_raw"],
          "-d", str(dataset_id), "--name", "PhantomClicks", "--overwrite", "--no-progress"], env, log_file)
    _run([str(bin_dir / "nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id), "-c", "3d_fullres",
          "--verify_dataset_integrity", "-np", "1", "-npfp", "1"], env, log_file)
    _run([str(bin_dir / "nnUNetv2_train"), str(dataset_id), "3d_fullres", fold, "-tr", trainer, "-device", "cpu"],
         training_environment(env), log_file)
    model = Path(env["nnUNet_results"]) / f"Dataset{dataset_id:03d}_PhantomClicks" / f"{trainer}__nnUNetPlans__3d_fullres"
    if out is None:
        return model
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ("plans.json", "dataset.json", "dataset_fingerprint.json", "click_config.json"):
        if (model / name).is_file():
            shutil.copy2(model / name, tmp / name)
    (tmp / f"fold_{fold}").mkdir()
    shutil.copy2(model / f"fold_{fold}" / "checkpoint_final.pth", tmp / f"fold_{fold}" / "checkpoint_final.pth")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m Task1.train_phantom_model",
        description="Make tiny PET/CT phantoms, convert them, plan/preprocess and train a click model with the stock "
                    "nnU-Net commands on the CPU, and export the model folder (a demo model, not a segmenter).")
    parser.add_argument("--work-dir", default="work_dirs/phantom_model", help="nnU-Net folders and logs go here")
    parser.add_argument("--out", default="work_dirs/phantom_model/model", help="exported model folder")
    parser.add_argument("--dataset-id", type=int, default=777)
    parser.add_argument("--cases", type=int, default=5, help="number of phantoms (>= 5 for the 5-fold split)")
    parser.add_argument("--trainer", default="autoPETTrainerClicks_tiny",
                        help="autoPETTrainerClicks_smoke (2 epochs x 2 iterations) or _tiny (10 x 5)")
    parser.add_argument("--fold", default="0")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        model = train_phantom_model(args.work_dir, args.out, args.dataset_id, args.cases, args.trainer, args.fold,
                                    args.seed)
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"model folder: {model} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
