"""Regenerate ``test/input/lesion-clicks.json``: the simulator's 10 tumor + 10 background
clicks (seed 42) for the committed sample case, in the Grand Challenge "Multiple points"
format. Run from anywhere: ``python -m clicks.make_sample_clicks``.

Inputs: the sample's lesion mask ``test/sample_cohort/test_input_case/label.nii.gz`` and its
PET ``test/input/images/pet/<uuid>.mha`` (written by ``test/make_sample.py``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from autopet_common.cli import ArgumentParser, entrypoint

REPO = Path(__file__).resolve().parents[1]
SAMPLE_LABEL = REPO / "test" / "sample_cohort" / "test_input_case" / "label.nii.gz"
SAMPLE_PET_FOLDER = REPO / "test" / "input" / "images" / "pet"
SAMPLE_CLICKS = REPO / "test" / "input" / "lesion-clicks.json"


def sample_clicks(label_path: Path = SAMPLE_LABEL, pet_folder: Path = SAMPLE_PET_FOLDER) -> dict:
    """The sample case's clicks (simulator format)."""
    from autopet_common.image_io import find_single_image

    from .simulate import process_image

    pet_path = find_single_image(pet_folder, "sample PET")
    return process_image(str(label_path), str(pet_path), "FDG-PETCT")


@entrypoint("python clicks/make_sample_clicks.py")
def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=str(SAMPLE_CLICKS), help=f"output JSON (default {SAMPLE_CLICKS})")
    args = parser.parse_args(argv)
    from autopet_common.click_io import write_clicks_json

    clicks = sample_clicks()
    write_clicks_json(args.output, clicks, gc_format=True)
    print(f"{args.output}: {len(clicks['tumor'])} tumor + {len(clicks['background'])} background clicks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
