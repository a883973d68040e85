"""The generic steps of a CPU training recipe with the stock nnU-Net commands (Task 1's
``Task1.train_phantom_model`` and Task 2's ``Task2.train_patch_model``): the environment the
commands need, a small plans configuration added the documented way, running a command with
its output in a log, and exporting a weights-only model folder.

What is task-specific comes from the caller: the trainers' folder (``nnUNet_extTrainer``), the
extra files and checkpoint keys an export keeps, and a check of the exported checkpoint.
"""
from __future__ import annotations

import copy
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from typing import Any, Callable

from autopet_common.image_io import sha256_of

# the torchvision work-around (see compat/sitecustomize.py), put on the stock commands' path when needed
COMPAT = Path(__file__).resolve().parent / "compat"
CPU_CONFIGURATION = "3d_cpu"
CPU_SPACING = (4.0, 4.0, 4.0)
CPU_PATCH_SIZE = (48, 48, 48)
CPU_FEATURES = (16, 32, 64, 128)
CPU_BATCH_SIZE = 2
# What the exported checkpoint keeps: what nnU-Net's predictor reads (a task adds its own keys).
CHECKPOINT_KEYS = ("network_weights", "init_args", "trainer_name", "inference_allowed_mirroring_axes",
                   "current_epoch")


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
    torchvision); see autopet_common/compat/sitecustomize.py."""
    probe = subprocess.run([python, "-c", "import torchvision"], capture_output=True, text=True)
    return probe.returncode != 0


def nnunet_environment(work_dir: str | os.PathLike, base: dict | None = None, *,
                       trainers: str | os.PathLike) -> dict:
    """Environment for the stock nnU-Net commands: folders under ``work_dir``, the caller's trainers'
    folder (``nnUNet_extTrainer``), one preprocessing worker, and the torchvision work-around only when needed. For
    ``nnUNetv2_train`` use :func:`training_environment` (nnU-Net's planner fails with 0 DA workers)."""
    work = Path(work_dir)
    env = dict(os.environ if base is None else base)
    env.update(nnUNet_raw=str(work / "nnUNet_raw"), nnUNet_preprocessed=str(work / "nnUNet_preprocessed"),
               nnUNet_results=str(work / "nnUNet_results"), nnUNet_extTrainer=str(trainers),
               nnUNet_def_n_proc=env.get("nnUNet_def_n_proc", "1"))
    if torchvision_is_broken():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(COMPAT), env.get("PYTHONPATH", "")) if p)
    return env


def training_environment(env: dict) -> dict:
    """``env`` with data augmentation in the main process (``nnUNet_n_proc_DA=0``) unless set:
    on a small CPU machine extra worker processes only compete for the cores."""
    return {**env, "nnUNet_n_proc_DA": os.environ.get("nnUNet_n_proc_DA", "0")}


def run_logged(command: list[str], env: dict, log_file: Path) -> None:
    print("$", " ".join(command), flush=True)
    with open(log_file, "a") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        done = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = log_file.read_text().splitlines()[-25:]
        raise RuntimeError(f"command failed ({done.returncode}): {' '.join(command)}\n" + "\n".join(tail))


def plan_preprocess_train(env: dict, log_file: Path, *, dataset_id: int, dataset_name: str, trainer: str,
                          configuration: str = CPU_CONFIGURATION, fold: str = "0",
                          spacing: Sequence[float] = CPU_SPACING, patch_size: Sequence[int] = CPU_PATCH_SIZE,
                          plan_args: Sequence[str] = (), pretrained_weights: str | os.PathLike | None = None
                          ) -> tuple[Path, float]:
    """The stock commands of a recipe, each logged to ``log_file``: ``nnUNetv2_plan_and_preprocess
    -c 3d_fullres`` (with ``plan_args``); for any other ``configuration`` first ``--no_pp``, then
    :func:`add_cpu_configuration` (``spacing``, ``patch_size``) and ``nnUNetv2_preprocess -c
    configuration``; then ``nnUNetv2_train ... -tr trainer -device cpu`` (with
    ``-pretrained_weights`` when given: a checkpoint to start from). Returns the training output
    folder and the seconds ``nnUNetv2_train`` took."""
    import time

    bin_dir = Path(sys.executable).parent
    plan = [str(bin_dir / "nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id), "-c", "3d_fullres",
            "--verify_dataset_integrity", "-np", "1", "-npfp", "2", *plan_args]
    if configuration == "3d_fullres":
        run_logged(plan, env, log_file)
    else:
        run_logged(plan + ["--no_pp"], env, log_file)
        plans_file = Path(env["nnUNet_preprocessed"]) / f"Dataset{dataset_id:03d}_{dataset_name}" / "nnUNetPlans.json"
        add_cpu_configuration(plans_file, configuration, spacing=spacing, patch_size=patch_size)
        run_logged([str(bin_dir / "nnUNetv2_preprocess"), "-d", str(dataset_id), "-c", configuration, "-np", "2"],
                   env, log_file)
    started = time.perf_counter()
    run_logged([str(bin_dir / "nnUNetv2_train"), str(dataset_id), configuration, str(fold), "-tr", trainer,
                "-device", "cpu"] + (["-pretrained_weights", str(pretrained_weights)] if pretrained_weights else []),
               training_environment(env), log_file)
    model = (Path(env["nnUNet_results"]) / f"Dataset{dataset_id:03d}_{dataset_name}"
             / f"{trainer}__nnUNetPlans__{configuration}")
    return model, time.perf_counter() - started


def finish_recipe(model: Path, out: str | os.PathLike | None, *, module: str, record: dict, fold: str = "0",
                  **export: Any) -> Path:
    """Write ``training_recipe.json`` into the training output ``model`` (``record``, the
    command line when ``python -m module`` ran, and ``cpu_threads``), then export it to ``out``
    (None: return ``model`` as it is) with ``export``: :func:`export_model`'s options.

    ``cpu_threads``: ``nnUNetv2_train -device cpu`` sets torch's intra-op threads to the
    machine's CPU count, and the seeded weights depend on it (the smoke schedule gave other
    weights with 1 thread than with 2), so a rerun is bit-identical only with the same count."""
    from autopet_common.image_io import atomic_write_json

    script = module.rsplit(".", 1)[-1] + ".py"
    command = f"python -m {module} " + " ".join(sys.argv[1:]) if sys.argv[0].endswith(script) else None
    atomic_write_json(Path(model) / "training_recipe.json",
                      {"command": command, **record, "cpu_threads": multiprocessing.cpu_count()})
    if out is None:
        return Path(model)
    return export_model(model, out, fold=fold, **export)


def export_model(model: str | os.PathLike, out: str | os.PathLike, *, fold: str = "0", extra_files: tuple = (),
                 extra_keys: tuple = (), check: Callable[[dict, str], Any] | None = None) -> Path:
    """Copy a trained model folder to ``out`` with a weights-only checkpoint (the keys in
    ``CHECKPOINT_KEYS`` and ``extra_keys``: no optimizer state, a third of the size), the plans,
    dataset files and ``extra_files``; atomic (temp folder, rename). ``check(checkpoint, source)``
    may refuse the slim checkpoint before anything is written. Writes ``checkpoint.sha256``.
    Returns ``out``."""
    import torch

    model, out = Path(model), Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / f"fold_{fold}").mkdir(parents=True)
    for name in ("plans.json", "dataset.json", "dataset_fingerprint.json", *extra_files, "training_recipe.json"):
        if (model / name).is_file():
            shutil.copy2(model / name, tmp / name)
    if (model / f"fold_{fold}" / "progress.png").is_file():
        shutil.copy2(model / f"fold_{fold}" / "progress.png", tmp / f"fold_{fold}" / "progress.png")
    checkpoint = torch.load(model / f"fold_{fold}" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    slim = {key: checkpoint[key] for key in (*CHECKPOINT_KEYS, *extra_keys) if key in checkpoint}
    if check is not None:  # e.g. a model that a predictor of this version cannot read is not exported
        check(slim, f"{model}/fold_{fold}/checkpoint_final.pth")
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


