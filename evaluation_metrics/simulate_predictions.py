"""Simulated predictions for trying the evaluation without a model (demos, tests, benchmarks).

    python -m evaluation_metrics.simulate_predictions -g LABELS -o PRED [--n_clicks 11] [--task 2] [--seed 0]

For every ground-truth mask ``LABELS/<case>.nii.gz`` (or ``.mha``) it writes ``PRED/<case>`` (static)
and ``PRED/<case>_pred0 .. _pred{N-1}`` (or ``_pred1``, ``_pred2`` with ``--task 2``): a
perturbed copy of the label that improves with the step: early steps miss lesions and carry
false blobs, each step recovers more lesions and removes false blobs. Deterministic by seed.
Arrays ``[i, j, k]``; the output has the label's grid.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from autopet_common.cli import ArgumentParser, entrypoint, positive_int, seed
from autopet_common.errors import InputError
from autopet_common.image_io import image_suffix, list_images, read_image, strip_image_suffix, write_mask


def simulate_prediction_steps(label: np.ndarray, n_steps: int, seed: int = 0) -> list[np.ndarray]:
    """Masks for steps 0..n_steps-1 that get closer to ``label`` (``[i, j, k]``, > 0 = lesion)."""
    import cc3d
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    gt = np.asarray(label) > 0
    labels, n = cc3d.connected_components(gt, connectivity=18, return_N=True)
    boxes = ndimage.find_objects(labels)
    # the step at which each lesion is found, and how each lesion's boundary is wrong
    found_at = rng.integers(0, max(1, n_steps // 2) + 1, size=n)
    style = rng.integers(0, 3, size=n)  # 0 dilated, 1 eroded, 2 exact
    shape = np.array(gt.shape)
    n_false = int(rng.integers(2, 6))
    false_centres = [rng.integers(0, shape) for _ in range(n_false)]
    false_until = rng.integers(1, n_steps + 1, size=n_false)
    steps = []
    for step in range(n_steps):
        pred = np.zeros_like(gt)
        for lesion, box in enumerate(boxes, start=1):
            if box is None or found_at[lesion - 1] > step:
                continue
            box = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in box)
            region = labels[box] == lesion
            if style[lesion - 1] == 0:
                region = ndimage.binary_dilation(region)
            elif style[lesion - 1] == 1 and step < n_steps - 1:
                eroded = ndimage.binary_erosion(region)
                region = eroded if eroded.any() else region
            pred[box] |= region
        for centre, until in zip(false_centres, false_until):
            if step < until:
                pred[tuple(slice(max(0, c - 1), c + 2) for c in centre)] = True
        steps.append(pred)
    return steps


@entrypoint("python -m evaluation_metrics.simulate_predictions")
def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m evaluation_metrics.simulate_predictions",
                            description="Write simulated predictions (improving with the "
                                        "step) for every ground-truth mask in a folder.")
    parser.add_argument("-g", "--gt_path", required=True, help="folder of <case>.nii.gz / .mha masks")
    parser.add_argument("-o", "--output_path", required=True, help="prediction folder to write")
    parser.add_argument("--n_clicks", type=positive_int, default=11, help="interactive steps (default 11)")
    parser.add_argument("--task", type=int, choices=(1, 2), default=1,
                        help="2: write <case>_pred1 and <case>_pred2 only")
    parser.add_argument("--seed", type=seed, default=0)
    args = parser.parse_args(argv)
    gt_dir = Path(args.gt_path)
    if not gt_dir.is_dir():
        raise InputError(f"ground-truth folder not found: {gt_dir}")
    files = list_images(gt_dir, (".nii.gz", ".nii", ".mha"))
    if not files:
        raise InputError(f"no .nii.gz / .mha masks in {gt_dir}")
    from tqdm import tqdm

    for index, path in enumerate(tqdm(files, desc="cases", file=sys.stderr)):
        label, geometry = read_image(path, what="ground truth")
        case, suffix = strip_image_suffix(path), image_suffix(path)
        n_steps = 2 if args.task == 2 else args.n_clicks
        steps = simulate_prediction_steps(label, n_steps, seed=args.seed * 100_003 + index)
        out = Path(args.output_path)
        first = 1 if args.task == 2 else 0
        for step, mask in enumerate(steps, start=first):
            write_mask(mask, geometry, out / f"{case}_pred{step}{suffix}")
        if args.task == 1:
            write_mask(steps[-1], geometry, out / f"{case}{suffix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
