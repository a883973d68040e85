"""Command line: per-lesion centre-of-gravity points of a mask, as a Task 2 JSON file.

    python -m clicks.lesion_points baseline_mask.nii.gz baseline-lesion-clicks.json

One point per 26-connected component of a binary mask, or per label id of a multi-label
mask; points are float voxel indices [i, j, k] ("Points of interest" format, names = ids).
"""
from __future__ import annotations

import argparse
import sys
from autopet_common.cli import ArgumentParser, entrypoint


@entrypoint("python -m clicks.lesion_points")
def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m clicks.lesion_points", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mask", help="lesion mask image (.nii.gz, .mha, ...)")
    parser.add_argument("output_json", help="output Task 2 points file")
    args = parser.parse_args(argv)

    from .simulate import write_lesion_centre_points

    points = write_lesion_centre_points(args.mask, args.output_json)
    print(f"{args.output_json}: {len(points)} lesion point(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
