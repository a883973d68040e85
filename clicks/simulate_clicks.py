"""Command line: simulate the challenge's clicks for a folder of nnU-Net labels.

Same flags as the challenge's ``simulate_clicks.py`` (which needs a CUDA GPU), plus
``--click_budget``, ``--seed``, ``--encoding``, ``--num_processes``, ``--overwrite`` and
``--background_in_component``. Runs as ``python clicks/simulate_clicks.py`` from the
repository root or as ``python -m clicks.simulate_clicks``. The work is done by
:func:`clicks.batch.simulate_folder`.
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__" and __package__ in (None, ""):
    # Run as a script: Python put clicks/ first on sys.path, where clicks/encodings.py would
    # shadow the standard library's ``encodings``. Use the repository root instead.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

import argparse

# Drop-in names of the published module (importing them does no work).
from autopet_common.cli import (ArgumentParser, entrypoint, non_negative_int, positive_float,  # noqa: E402
                                 positive_int, seed)
from autopet_common.click_io import clicks_to_gc_format  # noqa: E402
from clicks.simulate import identify_click_region, process_image, simulate_clicks  # noqa: E402

__all__ = ["simulate_clicks", "process_image", "clicks_to_gc_format", "identify_click_region", "main"]

DESCRIPTION = """\
Simulate the autoPET/CT IV challenge's clicks, identical to the published simulator
(seed 42), on the CPU.

Per case: up to 10 tumor clicks (centres of up to 10 lesions, then lesion-surface clicks)
and 10 background clicks (centres and voxels of high-uptake PET regions above the 99.75th
percentile outside the label). Longitudinal-CT: 2 tumor clicks, no background, no PET.

Inputs (nnU-Net naming): labels <input_label>/<case>.nii.gz; PET <case>_0001.nii.gz in
--input_pet, or else in the label folder's path with 'labels' replaced by 'images'.
Outputs: <json_output>/<case>_clicks.json, <json_output>/gc/<case>_clicks.json (Grand
Challenge format) and, with -o, heatmaps <output_heatmap>/<case>_0002.nii.gz (tumor) and
_0003.nii.gz (background) on the label's grid (Longitudinal-CT: one channel, _0003).
"""

EPILOG = """\
example:
  python clicks/simulate_clicks.py -i data/labelsTr -d PSMA-FDG-PETCT --json_output clicks/ \\
      -o heatmaps/ --num_processes 2
Exit status: 0 when every case succeeded (or was skipped), 1 when any case failed,
2 for bad arguments or input.
"""


def build_parser() -> argparse.ArgumentParser:
    from clicks.simulate import DATASETS

    parser = ArgumentParser(prog="simulate_clicks.py", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("-i", "--input_label", required=True,
                        help="folder of label images <case>.nii.gz (or one label file)")
    parser.add_argument("-d", "--dataset_name", required=True, choices=list(DATASETS),
                        help="dataset: sets the click budget (10, Longitudinal-CT 2) and whether "
                             "background clicks are made")
    parser.add_argument("--json_output", required=True, help="output folder for the click JSON files")
    parser.add_argument("-i_pet", "--input_pet", default=None,
                        help="folder of PET images <case>_0001.nii.gz (default: label folder with "
                             "'labels' replaced by 'images')")
    parser.add_argument("-o", "--output_heatmap", default=None,
                        help="output folder for click heatmaps (extra nnU-Net channels); none if omitted")
    parser.add_argument("--center_offset", type=non_negative_int, default=None, metavar="N",
                        help="perturb centre clicks by a random 0..N voxels per axis (augmentation; "
                             "kept only if still inside the region)")
    parser.add_argument("--edge_offset", type=non_negative_int, default=None, metavar="N",
                        help="perturb fill-up (edge) clicks by a random 0..N voxels per axis")
    parser.add_argument("--click_budget", type=non_negative_int, default=None, metavar="N",
                        help="clicks per kind (default: 10, Longitudinal-CT 2)")
    parser.add_argument("--seed", type=seed, default=42,
                        help="random seed (default 42 = the challenge's clicks; also seeds the "
                             "perturbation)")
    parser.add_argument("--encoding", choices=["gaussian", "edt"], default="gaussian",
                        help="heatmap encoding: gaussian (peak 1, the reference's shape) or edt "
                             "(distance-transform ball, 1 at the click, 0 at the radius)")
    parser.add_argument("--encoding_size", type=positive_float, default=None, metavar="S",
                        help="gaussian sigma (default 3) or ball radius (default 2), in voxels")
    parser.add_argument("--encoding_in_mm", action="store_true",
                        help="--encoding_size is in mm (uses the label's spacing)")
    parser.add_argument("--num_processes", type=positive_int, default=1, metavar="N",
                        help="cases simulated in parallel (default 1)")
    parser.add_argument("--cluster", default=None, metavar="ADDRESS",
                        help="simulate each case as a Ray task on this cluster (HEAD_IP:6379, or 'local'); the "
                             "outputs are written here, the same files as without it (pip install '.[cluster]')")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo cases whose outputs exist (default: skip them)")
    parser.add_argument("--background_in_component", action="store_true",
                        help="opt-in fix of the reference's quirk: background fill-up clicks on "
                             "small noisy regions stay in the region (default: reproduce the "
                             "test-set behaviour, where they may land anywhere outside the tumor)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


@entrypoint("simulate_clicks.py")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from autopet_common.errors import InputError
    from clicks.batch import simulate_folder, summarise

    results = simulate_folder(
        args.input_label, args.json_output, args.dataset_name, input_pet=args.input_pet,
        output_heatmap=args.output_heatmap, num_processes=args.num_processes, cluster=args.cluster,
        progress=not args.quiet, click_budget=args.click_budget, center_offset=args.center_offset,
        edge_offset=args.edge_offset, seed=args.seed,
        background_in_component=args.background_in_component, encoding=args.encoding,
        encoding_size=args.encoding_size, encoding_in_mm=args.encoding_in_mm,
        overwrite=args.overwrite)
    if not results:
        raise InputError(f"no label images in {args.input_label}")
    summary = summarise(results)
    failed = any(r.status == "failed" for r in results)
    print(summary, file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


class _CallableModule(type(sys)):
    """``clicks.simulate_clicks`` names both this module (the challenge's file name) and the
    package's function. Once this module is imported, Python binds the package attribute to the
    module, so ``from clicks import simulate_clicks`` would return a module; calling the module
    therefore calls the function."""

    def __call__(self, *args, **kwargs):
        return simulate_clicks(*args, **kwargs)


if __name__ != "__main__":
    sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
