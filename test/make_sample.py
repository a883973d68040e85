"""Regenerate the committed sample data (deterministic): ``python test/make_sample.py``.

Writes
- ``test/input/images/ct/<uuid>.mha`` and ``test/input/images/pet/<uuid>.mha``: one FDG
  PET/CT case at the "small" preset (128 x 128 x 96 at 4 x 4 x 6 mm) with 5 lesions, in the
  Grand Challenge Task 1 input layout (``test/input/lesion-clicks.json`` is written by the
  click tools, not here);
- ``test/sample_cohort/test_input_case/label.nii.gz`` + ``lesions.json``: that case's lesion
  mask and metadata (the truth the clicks are simulated from);
- ``test/sample_cohort/``: a 2-case nnU-Net raw cohort (one FDG, one PSMA, "tiny" preset):
  ``imagesTr``, ``labelsTr``, ``dataset.json``, ``lesions.json``.

Old files in those folders are replaced. Nothing else is touched.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

TEST_DIR = Path(__file__).resolve().parent
INPUT_SEED = 2032
COHORT_SEED = 7


def make_input_case():
    """The PET/CT case of ``test/input/images`` (in memory, identical to the files)."""
    from autopet_common.phantoms import make_petct_case

    return make_petct_case(size="small", tracer="FDG", seed=INPUT_SEED, n_lesions=5,
                           case_id="SAMPLE_FDG_small")


def _replace_dir(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src), str(dst))


def write_samples(test_dir: Path = TEST_DIR) -> None:
    from autopet_common.image_io import atomic_write_json, write_image, write_mask
    from autopet_common.phantoms import write_task1_cohort
    from autopet_common.phantoms.common import deterministic_uuid, make_rng

    with tempfile.TemporaryDirectory(dir=test_dir) as tmp:
        tmp = Path(tmp)
        case = make_input_case()
        rng = make_rng([INPUT_SEED, 1])
        ct_uuid, pet_uuid = deterministic_uuid(rng), deterministic_uuid(rng)
        write_image(np.round(case.ct).astype(np.int16), case.geometry, tmp / "images" / "ct" / f"{ct_uuid}.mha")
        write_image(case.pet, case.geometry, tmp / "images" / "pet" / f"{pet_uuid}.mha")
        cohort = write_task1_cohort(tmp / "cohort", n_cases=2, tracer="mixed", size="tiny",
                                    seed=COHORT_SEED, n_lesions=4, gc_layout=False)
        write_mask(case.label, case.geometry, cohort / "test_input_case" / "label.nii.gz")
        atomic_write_json(cohort / "test_input_case" / "lesions.json", {
            "case_id": case.case_id, "tracer": case.tracer, "seed": INPUT_SEED,
            "ct": f"test/input/images/ct/{ct_uuid}.mha", "pet": f"test/input/images/pet/{pet_uuid}.mha",
            "geometry": case.geometry.to_dict(), "lesions": case.lesions})
        _replace_dir(tmp / "images", test_dir / "input" / "images")
        _replace_dir(cohort, test_dir / "sample_cohort")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    write_samples()
    for path in sorted((TEST_DIR / "input" / "images").rglob("*.mha")) + sorted((TEST_DIR / "sample_cohort").rglob("*.*")):
        print(f"{path.stat().st_size / 1e6:6.2f} MB  {path.relative_to(TEST_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
