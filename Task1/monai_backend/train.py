"""Train a MONAI click model (``dynunet`` or ``segresnetds``) on the CPU or a GPU.

    python -m Task1.monai_backend.train --family segresnetds --out models/task1_monai_segresnetds

Data: a raw cohort (``--source``: ``imagesTr/<case>_0000|_0001``, ``labelsTr/<case>``), or by
default the phantoms of the nnU-Net phantom model (``varied_phantom(seed 0, n)``, n < ``--cases``,
written to ``--work_dir``). The cases are split as nnU-Net's fold 0 does by default (the last
fifth, in sorted order, is validation). Each case is resampled and normalised once
(:func:`Task1.monai_backend.data.preprocess_case`, the predictor's own preprocessing); each
training sample is a patch (1 lesion-centred : 2 random), flipped, with challenge-rule clicks of a
random step 0..10 appended (:class:`Task1.monai_backend.data.AppendClicksd`). Loss: MONAI's
``DiceCELoss`` (softmax, one-hot), for ``segresnetds`` inside ``DeepSupervisionLoss`` (weights
1/2^i); optimiser AdamW with ``WarmupCosineSchedule`` (5 % warm-up). Seeded
(``monai.utils.set_determinism``): a rerun on the same machine repeats itself.

The model folder (``--out``) gets ``model.pt`` (weights only) and ``monai_model.json`` (the
configuration the predictor reads, with a ``training`` record: command, data, seed, schedule,
seconds, last loss, validation Dice at steps 0 and 10). Progress bars show the epochs.
"""
from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from autopet_common.cli import ArgumentParser, device_name, entrypoint, seed
from autopet_common.errors import InputError
from Task1.monai_backend.config import FAMILIES, MODEL_CONFIG_FILE, WEIGHTS_FILE, MonaiModelConfig

DEFAULT_SCHEDULE = {"dynunet": {"epochs": 60, "iterations": 50}, "segresnetds": {"epochs": 60, "iterations": 50}}


def load_cases(source: Path, config: MonaiModelConfig, *, progress: bool = True) -> dict[str, dict]:
    """Every case of a raw cohort, preprocessed: {case: {"image", "suv", "label"}} (channel-first
    tensors on the model grid)."""
    import torch
    from tqdm import tqdm

    from autopet_common.image_io import read_image
    from Task1.batch_predict import find_case_images
    from Task1.monai_backend.data import preprocess_case, resample_to_model_grid

    cases = find_case_images(source / "imagesTr")
    if not cases:
        raise InputError(f"{source / 'imagesTr'}: no training cases (<case>_0000 / <case>_0001 images)")
    out = {}
    for case, (ct_path, pet_path) in tqdm(sorted(cases.items()), desc="preprocessing", unit="case",
                                          disable=not progress):
        ct, geometry = read_image(ct_path, np.float32, check_finite=True, what="CT image")
        pet, pet_geometry = read_image(pet_path, np.float32, check_finite=True, what="PET image")
        label_path = source / "labelsTr" / f"{case}.nii.gz"
        label, label_geometry = read_image(label_path)
        if pet.shape != ct.shape or label.shape != ct.shape:
            raise InputError(f"{case}: CT {ct.shape}, PET {pet.shape} and label {label.shape} ({label_path}) "
                             "must share one grid")
        image, suv, _ = preprocess_case(ct, pet, geometry.spacing, config)
        lesion = resample_to_model_grid([(label == 1).astype(np.float32)], geometry.spacing, config, mode="nearest")
        out[case] = {"image": image.half(), "suv": suv[None].half(),
                     "label": torch.as_tensor(lesion.as_tensor() > 0.5, dtype=torch.uint8)}
    return out


def split_fold0(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(training, validation): the last fifth of the sorted names is validation."""
    names = sorted(names)
    n_val = max(1, len(names) // 5) if len(names) > 1 else 0
    return names[:len(names) - n_val], names[len(names) - n_val:]


def train_monai_model(config: MonaiModelConfig, source: str | os.PathLike, out: str | os.PathLike, *,
                      epochs: int, iterations: int, batch_size: int = 2, learning_rate: float = 2e-3,
                      seed: int = 0, device: str = "auto", progress: bool = True,
                      command: str | None = None) -> MonaiModelConfig:
    """Train and write the model folder ``out``; returns the stored configuration."""
    import torch
    from monai.data import DataLoader, Dataset, list_data_collate
    from monai.losses import DeepSupervisionLoss, DiceCELoss
    from monai.optimizers import WarmupCosineSchedule
    from monai.utils import set_determinism
    from tqdm import tqdm

    from autopet_common.image_io import atomic_write_json
    from Task1.monai_backend.config import with_training
    from Task1.monai_backend.data import training_transforms
    from Task1.monai_backend.networks import build_network
    from Task1.predict import resolve_device

    started = time.perf_counter()
    source, out = Path(source), Path(out)
    set_determinism(seed=seed)
    cases = load_cases(source, config, progress=progress)
    train_names, val_names = split_fold0(list(cases))
    transforms = training_transforms(config)
    transforms.set_random_state(seed=seed)
    dataset = Dataset([cases[n] for n in train_names], transform=transforms)
    sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=iterations * batch_size,
                                             generator=torch.Generator().manual_seed(seed))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=0,
                        collate_fn=list_data_collate)
    target = resolve_device(device)
    network = build_network(config).to(target)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True)
    if config.deep_supervision:
        loss_function = DeepSupervisionLoss(loss_function, weight_mode="exp")
    optimizer = torch.optim.AdamW(network.parameters(), lr=learning_rate, weight_decay=1e-5)
    total = epochs * iterations
    scheduler = WarmupCosineSchedule(optimizer, warmup_steps=max(1, total // 20), t_total=total)
    losses = []
    bar = tqdm(range(epochs), desc=f"training {config.family}", unit="epoch", disable=not progress)
    for _ in bar:
        network.train()
        epoch_losses = []
        for batch in loader:
            image = batch["image"].float().to(target)
            label = batch["label"].float().to(target)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_function(network(image), label)
            loss.backward()
            optimizer.step()
            scheduler.step()
            epoch_losses.append(float(loss.detach()))
        losses.append(float(np.mean(epoch_losses)))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    training_seconds = time.perf_counter() - started
    validation = validate(network, config, source, val_names, target) if val_names else {}
    config = with_training(config, command=command, source=str(source), cases=len(cases),
                           training_cases=len(train_names), validation_cases=val_names, seed=seed,
                           epochs=epochs, iterations_per_epoch=iterations, batch_size=batch_size,
                           learning_rate=learning_rate, optimizer="AdamW + WarmupCosineSchedule (5 % warm-up)",
                           loss="DiceCE" + (" with deep supervision (1/2^i)" if config.deep_supervision else ""),
                           seconds=round(training_seconds, 1), last_epoch_loss=round(losses[-1], 4),
                           validation_dice=validation, device=str(target),
                           torch=torch.__version__, monai=__import__("monai").__version__)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{WEIGHTS_FILE}.tmp"
    torch.save({k: v.detach().cpu() for k, v in network.state_dict().items()}, tmp)
    os.replace(tmp, out / WEIGHTS_FILE)
    atomic_write_json(out / MODEL_CONFIG_FILE, config.to_dict())
    write_model_card(out, config)
    return config


def write_model_card(out: Path, config: MonaiModelConfig) -> Path:
    """``MODEL_CARD.md`` from the training record (command, data, seed, schedule, time, checksum,
    validation Dice); held-out results are added by whoever benchmarks the model."""
    from autopet_common.image_io import atomic_write_text, sha256_of

    record = config.training
    digest = sha256_of(out / WEIGHTS_FILE)
    size_mb = (out / WEIGHTS_FILE).stat().st_size / 2 ** 20
    ct, pet = (f"[{a:g}, {b:g}]" for a, b in (config.ct_window, config.pet_range))
    inferer = f"overlap {config.sw_overlap}" + (" (adaptive inferer)" if config.sw_adaptive else "")
    text = f"""# Model card: MONAI {config.family} Task 1 click model

**Not for patients** unless trained on patient data by you. Written by `python -m Task1.monai_backend.train`.

| | |
|---|---|
| family | `{config.family}` (`Task1/monai_backend`), MONAI {record.get('monai')}, torch {record.get('torch')} |
| network | `{config.network}` |
| input | CT {ct} HU and PET {pet} SUV to [0, 1]; tumor and background clicks (`{config.clicks.encoding}`) |
| grid and patch | {config.spacing} mm, {list(config.patch_size)} voxels; sliding window {inferer} |
| weights | `{WEIGHTS_FILE}` ({size_mb:.1f} MB, weights only), sha256 `{digest}` |

## How it was made

```bash
{record.get('command')}
```

- Data: `{record.get('source')}`, {record.get('cases')} cases; {record.get('training_cases')} for training, validation
  {', '.join(record.get('validation_cases') or []) or 'none'}.
- Schedule: {record.get('epochs')} epochs x {record.get('iterations_per_epoch')} iterations, batch {record.get('batch_size')},
  {record.get('optimizer')} from {record.get('learning_rate')}; loss {record.get('loss')}; seed {record.get('seed')}.
- Time: {record.get('seconds')} s on {record.get('device')}; last epoch's mean loss {record.get('last_epoch_loss')}.
- Validation Dice (challenge clicks, mean over the validation cases): {record.get('validation_dice')}.
"""
    return atomic_write_text(out / "MODEL_CARD.md", text)


def validate(network, config: MonaiModelConfig, source: Path, names: Sequence[str], device) -> dict:
    """Mean Dice of the validation cases at click steps 0 and 10 (the challenge's clicks), with
    the predictor's own code."""
    from autopet_common.image_io import read_image
    from clicks import simulate_clicks
    from evaluation_metrics import compute_metrics_arrays
    from Task1.session import clicks_for_step
    from Task1.monai_backend.predict import MonaiPredictor

    predictor = MonaiPredictor.in_memory(config, network, device=device)
    dice = {0: [], 10: []}
    for case in names:
        ct, geometry = read_image(source / "imagesTr" / f"{case}_0000.nii.gz", np.float32)
        pet, _ = read_image(source / "imagesTr" / f"{case}_0001.nii.gz", np.float32)
        label, _ = read_image(source / "labelsTr" / f"{case}.nii.gz")
        label = (label > 0).astype(np.uint8)
        clicks = simulate_clicks(label, pet, dataset_name="FDG-PETCT", case=case) if label.any() else \
            {"tumor": [], "background": []}
        prepared = predictor.prepare(ct, pet, geometry)
        for step in dice:
            mask = predictor.predict_prepared(prepared, clicks_for_step(clicks, step, geometry.shape))
            value = compute_metrics_arrays(label, mask, geometry.voxel_volume_ml)[0]
            if np.isfinite(value):
                dice[step].append(value)
    return {f"step_{s}": round(float(np.mean(v)), 4) if v else None for s, v in dice.items()}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m Task1.monai_backend.train", description=__doc__.split("\n\n")[0],
                            epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--family", required=True, choices=FAMILIES, help="model family")
    parser.add_argument("--out", required=True, help="model folder to write (model.pt, monai_model.json)")
    parser.add_argument("--source", help="raw training cohort (default: phantoms written to --work_dir)")
    parser.add_argument("--work_dir", default=None, help="folder for the phantoms (default work_dirs/monai_<family>)")
    parser.add_argument("--cases", type=int, default=60, help="phantoms to write when no --source (default 60)")
    parser.add_argument("--seed", type=seed, default=0, help="training seed; phantoms use seed 0 (default 0)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the family's CPU schedule")
    parser.add_argument("--iterations", type=int, default=None, help="iterations per epoch")
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--device", type=device_name, default="auto",
                        help="auto (cuda when available, else cpu), cpu, cuda, cuda:N or mps (model paths only)")
    parser.add_argument("--no_progress", action="store_true")
    return parser


@entrypoint("python -m Task1.monai_backend.train")
def main(argv: Sequence[str] | None = None) -> int:
    from Task1.monai_backend.config import family_defaults

    args = build_parser().parse_args(argv)
    schedule = DEFAULT_SCHEDULE[args.family]
    epochs = args.epochs or schedule["epochs"]
    iterations = args.iterations or schedule["iterations"]
    if epochs < 1 or iterations < 1 or args.batch_size < 1:
        raise InputError("--epochs, --iterations and --batch_size must be at least 1")
    if args.source:
        source = Path(args.source)
    else:
        from Task1.train_phantom_model import write_training_phantoms

        work = Path(args.work_dir or f"work_dirs/monai_{args.family}")
        source = work / "source"
        if not (source / "labelsTr").is_dir() or len(list((source / "labelsTr").glob("*.nii.gz"))) != args.cases:
            write_training_phantoms(source, args.cases, seed=0, progress=not args.no_progress)
    command = "python -m Task1.monai_backend.train " + " ".join(shlex.quote(a) for a in
                                                                 (sys.argv[1:] if argv is None else argv))
    config = train_monai_model(family_defaults(args.family), source, args.out, epochs=epochs, iterations=iterations,
                               batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed,
                               device=args.device, progress=not args.no_progress, command=command)
    record = config.training
    print(f"{args.family}: {record['seconds']:.0f} s, last epoch loss {record['last_epoch_loss']}, "
          f"validation Dice {record['validation_dice']}; model folder {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
