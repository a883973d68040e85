"""Benchmark: does training-time click simulation slow nnU-Net's data loader?

Measures, per training sample (one patch of CT + PET + label, as nnU-Net's data loader hands it to
the transforms):

1. nnU-Net's stock training transforms (spatial, intensity, mirroring, deep-supervision targets);
2. the same with the click transform of ``autoPETTrainerClicks`` inserted (random step 0..10,
   challenge rules on the patch, ball encoding);
3. the click simulation alone: ours (components labelled once, distance transforms on bounding
   boxes) and the simple reference algorithm (a full-patch distance transform per component, as
   the published simulator does on whole volumes), measured in the same run on the same patches.

Prints a Markdown table: median of several runs (ms), peak Python/NumPy heap during the runs
(tracemalloc; torch's own allocations are not counted) and the ratio against the reference.

    .venv/bin/python benchmarks/bench_task1.py [--patch 128 128 128] [--runs 7]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc

# the benchmark runs in a fresh interpreter: work around a broken torchvision the same way the
# stock commands do (see autopet_common/compat/sitecustomize.py) before nnU-Net imports it
def _load_torchvision_workaround() -> None:
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "autopet_common", "compat",
                        "sitecustomize.py")
    spec = importlib.util.spec_from_file_location("task1_torchvision_workaround", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


_load_torchvision_workaround()

import numpy as np  # noqa: E402


def make_patch(shape, seed):
    """A PET/CT patch with 3 lesions of different sizes and some non-tumor uptake (z-scored PET)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    label = np.zeros(shape, bool)
    for radius in (12, 6, 3):
        centre = [rng.integers(radius + 1, s - radius - 1) for s in shape]
        label |= ((grid - centre) ** 2).sum(-1) <= radius ** 2
    pet = rng.normal(0, 1, size=shape).astype(np.float32)
    pet[label] += 6
    for _ in range(4):
        c = [rng.integers(4, s - 4) for s in shape]
        pet[c[0] - 2:c[0] + 2, c[1] - 2:c[1] + 2, c[2] - 2:c[2] + 2] += 5
    ct = rng.normal(0, 1, size=shape).astype(np.float32)
    return ct, pet, label


def reference_patch_clicks(label, pet, n_clicks, rng):
    """The simple algorithm: full-patch EDT per sampled component (scipy), as the published code."""
    import cc3d
    from scipy.ndimage import distance_transform_edt

    out = {"tumor": [], "background": []}
    threshold = np.percentile(pet[~label], 99.75)
    for kind, mask in (("tumor", label), ("background", (pet > threshold) & ~label)):
        comps = cc3d.connected_components(mask.astype(np.uint8), connectivity=26)
        labels = np.unique(comps)[1:]
        if len(labels) == 0 or n_clicks == 0:
            continue
        sampled = rng.choice(labels, size=min(n_clicks, len(labels)), replace=False)
        for lab in sampled:
            dist = distance_transform_edt(comps == lab)
            out[kind].append(list(np.unravel_index(int(np.argmax(dist)), dist.shape)))
        while len(out[kind]) < n_clicks:
            for lab in sampled:
                comp = comps == lab
                dist = distance_transform_edt(comp)
                pick = np.argwhere(dist == dist[comp].min()) if kind == "tumor" else np.argwhere(comp)
                out[kind].append(pick[rng.choice(len(pick))].tolist())
                if len(out[kind]) >= n_clicks:
                    break
    return out


def measure(fn, runs):
    times = []
    tracemalloc.start()
    for run in range(runs):
        t = time.perf_counter()
        fn(run)
        times.append(time.perf_counter() - t)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return statistics.median(times) * 1000, statistics.mean(times) * 1000, peak / 2 ** 20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patch", type=int, nargs=3, default=(128, 128, 128), help="patch size (voxels)")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)

    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from clicks.simulate import simulate_patch_clicks
    from Task1.click_transforms import AppendClickChannelsTransform
    from Task1.trainers.autoPETClickTrainers import autoPETTrainerClicks

    torch.set_num_threads(1)  # as in nnU-Net's data-loader workers
    patch = tuple(args.patch)
    # nnU-Net samples a larger region than the patch so rotations do not pad; 1.2x is typical
    region = tuple(int(round(p * 1.2)) for p in patch)
    samples = [make_patch(region, seed) for seed in range(args.runs)]
    ds_scales = [[1, 1, 1], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]]
    stock = nnUNetTrainer.get_training_transforms(patch, (-0.52, 0.52), ds_scales, (0, 1, 2), False)
    with_clicks = autoPETTrainerClicks._insert_click_transform(
        nnUNetTrainer.get_training_transforms(patch, (-0.52, 0.52), ds_scales, (0, 1, 2), False),
        AppendClickChannelsTransform(pet_channel=1))

    def run_transforms(transforms):
        def fn(run):
            ct, pet, label = samples[run]
            np.random.seed(run)
            transforms(image=torch.from_numpy(np.stack([ct, pet])),
                       segmentation=torch.from_numpy(label[None].astype(np.int16)))
        return fn

    patches = [make_patch(patch, 100 + seed) for seed in range(args.runs)]
    steps = [int(s) for s in np.random.default_rng(0).integers(0, 11, size=args.runs)]
    steps[0] = 10  # always include the most expensive step

    def ours(run):
        _, pet, label = patches[run]
        simulate_patch_clicks(label, pet, steps[run], np.random.default_rng(run))

    def reference(run):
        _, pet, label = patches[run]
        reference_patch_clicks(label, pet, steps[run], np.random.default_rng(run))

    run_transforms(stock)(0)  # warm-up (imports, caches)
    rows = []
    t_stock, a_stock, m_stock = measure(run_transforms(stock), args.runs)
    t_clicks, a_clicks, m_clicks = measure(run_transforms(with_clicks), args.runs)
    t_ref, a_ref, m_ref = measure(reference, args.runs)
    t_ours, a_ours, m_ours = measure(ours, args.runs)
    rows.append(("nnU-Net training transforms, CT+PET (stock)", t_stock, a_stock, m_stock, 1.0, "reference"))
    rows.append(("+ click channels (autoPETTrainerClicks)", t_clicks, a_clicks, m_clicks, t_clicks / t_stock,
                 f"{a_clicks - a_stock:+.0f} ms per sample (mean)"))
    rows.append(("click simulation, simple reference (full-patch EDT per component)", t_ref, a_ref, m_ref, 1.0,
                 "reference"))
    rows.append(("click simulation, ours (bounding-box EDT)", t_ours, a_ours, m_ours, t_ours / t_ref,
                 f"{t_ref / t_ours:.0f}x faster than the reference"))

    print(f"Patch {patch} (sampled region {region}), {args.runs} runs, steps {steps}, 1 torch thread, "
          f"{os.cpu_count()} CPU(s)\n")
    print("| what | median ms / sample | mean ms / sample | peak heap MiB | time ratio vs reference (median) | note |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name, ms, mean, mib, ratio, note in rows:
        print(f"| {name} | {ms:.1f} | {mean:.1f} | {mib:.1f} | {ratio:.2f} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
