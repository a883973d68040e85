"""Task 2 on longitudinal phantoms with known transforms: registration accuracy (TRE),
segmentation quality at both steps, the Grand Challenge file contract, secondary inputs and
bad input."""
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autopet_common.errors import GridMismatchError, InputError
from autopet_common.image_io import read_image, write_image
from autopet_common.phantoms import baseline_to_followup, write_task2_cohort

from Task2.inference import is_task2_input, read_followup_inputs, run_task2
from Task2.pipeline import PointOutsideImageError, segment_followup
from Task2.registration import RegistrationError

REPO = Path(__file__).resolve().parents[1]
N_PAIRS = 3
OUT = Path("images") / "primary-followup-ct-tumor-lesion-seg"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return write_task2_cohort(tmp_path_factory.mktemp("task2_cohort"), n_pairs=N_PAIRS, size="small", seed=0)


@pytest.fixture(scope="module")
def cohort_results(cohort):
    """Both steps of the model-free pipeline on every pair (arrays in, arrays out)."""
    results = []
    for pair in sorted(p for p in cohort.iterdir() if p.is_dir()):
        item = read_followup_inputs(pair / "input")[0]
        truth, _ = read_image(pair / "truth" / "followup-tumor-lesion-seg.mha")
        meta = json.loads((pair / "transform.json").read_text())
        step2 = segment_followup(item.baseline_ct, item.baseline_geometry, item.baseline_mask, item.followup_ct,
                                 item.followup_geometry, item.baseline_points, item.followup_points)
        step1 = segment_followup(item.baseline_ct, item.baseline_geometry, item.baseline_mask, item.followup_ct,
                                 item.followup_geometry, item.baseline_points, {})
        results.append(dict(pair=pair, item=item, truth=truth > 0, meta=meta, step1=step1, step2=step2))
    return results


def _dice_counts(pred, truth):
    return 2 * int(np.count_nonzero(pred & truth)), int(np.count_nonzero(pred)) + int(np.count_nonzero(truth))


def test_target_registration_error_on_lesion_centres_below_2mm(cohort_results):
    errors = []
    for r in cohort_results:
        item, transform = r["item"], r["meta"]["transform"]
        for lesion_id, point in item.baseline_points.items():
            true_mm = baseline_to_followup(item.baseline_geometry.index_to_physical(point), transform)
            carried_mm = item.followup_geometry.index_to_physical(r["step2"].carried_points[lesion_id])
            errors.append(float(np.linalg.norm(true_mm - carried_mm)))
    assert len(errors) >= 5
    # Measured: max 1.49 mm, mean 0.80 mm over these 10 lesions (4 x 4 x 6 mm voxels).
    assert max(errors) < 2.0, errors


def test_step2_dice_on_phantom_cohort(cohort_results):
    num = den = 0
    for r in cohort_results:
        assert r["step2"].step == 2
        n, d = _dice_counts(r["step2"].mask, r["truth"])
        num, den = num + n, den + d
    # Pooled over the cohort; measured 0.83 on these 3 pairs (0.74 on 8 pairs, Task2/README.md).
    assert num / den >= 0.7, num / den


def test_step1_finds_carried_lesions(cohort_results):
    num = den = 0
    for r in cohort_results:
        assert r["step1"].step == 1
        assert r["step1"].mask.shape == r["truth"].shape
        n, d = _dice_counts(r["step1"].mask, r["truth"])
        num, den = num + n, den + d
    # Step 1 cannot know about new lesions; it still overlaps the truth clearly.
    assert num / den >= 0.4, num / den


def test_run_task2_step1_and_secondary_followup(cohort, tmp_path):
    """Primary follow-up at step 1 (empty click list) plus a secondary follow-up without its own
    baseline (it uses the primary one): the baseline CT itself, with step-2 clicks named
    'Lesion N', must give back the baseline lesions. Masks are binary, on their follow-up grid,
    named by the follow-up's uuid."""
    pair = sorted(p for p in cohort.iterdir() if p.is_dir())[1]
    inp = tmp_path / "input"
    shutil.copytree(pair / "input", inp)
    (inp / "primary-followup-lesion-clicks.json").write_text(json.dumps({"name": "Points of interest", "points": []}))
    base_ct = next((inp / "images" / "primary-baseline-ct").iterdir())
    (inp / "images" / "secondary-followup-ct").mkdir()
    shutil.copyfile(base_ct, inp / "images" / "secondary-followup-ct" / "0000aaaa-secondary.mha")
    points = json.loads((inp / "primary-baseline-lesion-clicks.json").read_text())
    for entry in points["points"]:
        entry["name"] = f"Lesion {entry['name']}"
    (inp / "secondary-followup-lesion-clicks.json").write_text(json.dumps(points))
    assert is_task2_input(inp)

    written = run_task2(inp, tmp_path / "output")

    fu = next((inp / "images" / "primary-followup-ct").iterdir())
    assert written == [tmp_path / "output" / OUT / fu.name,
                       tmp_path / "output" / "images" / "secondary-followup-ct-tumor-lesion-seg" / "0000aaaa-secondary.mha"]
    step1, geometry = read_image(written[0])
    _, fu_geometry = read_image(fu)
    assert geometry == fu_geometry
    base_ids = set(np.unique(read_image(next((inp / "images" / "primary-baseline-ct-tumor-lesion-seg").iterdir()))[0]))
    # voxel values are lesion ids: at step 1 those carried from the baseline mask
    assert step1.dtype == np.uint8 and step1.any() and set(np.unique(step1)) - {0} <= base_ids - {0}
    binary = run_task2(inp, tmp_path / "binary", binary=True)
    assert set(np.unique(read_image(binary[0])[0])) == {0, 1}
    assert np.array_equal(read_image(binary[0])[0] > 0, step1 > 0)
    secondary, secondary_geometry = read_image(written[1])
    base_mask, base_geometry = read_image(next((inp / "images" / "primary-baseline-ct-tumor-lesion-seg").iterdir()))
    assert secondary_geometry == base_geometry
    n, d = _dice_counts(secondary > 0, base_mask > 0)
    assert n / d >= 0.7, n / d


# ----------------------------------------------------------------------------- bad input

def test_baseline_mask_on_another_grid_is_rejected(cohort, tmp_path):
    pair = sorted(p for p in cohort.iterdir() if p.is_dir())[0]
    inp = tmp_path / "input"
    shutil.copytree(pair / "input", inp)
    seg_path = next((inp / "images" / "primary-baseline-ct-tumor-lesion-seg").iterdir())
    seg, geometry = read_image(seg_path)
    write_image(seg[:-2], geometry.with_shape(seg[:-2].shape), seg_path)
    with pytest.raises(GridMismatchError, match="baseline CT .* baseline lesion mask .* not on the same grid"):
        run_task2(inp, tmp_path / "output")
    assert not (tmp_path / "output").exists()


def test_grids_that_cannot_be_registered(cohort, tmp_path):
    pair = sorted(p for p in cohort.iterdir() if p.is_dir())[0]
    inp = tmp_path / "input"
    shutil.copytree(pair / "input", inp)
    fu_path = next((inp / "images" / "primary-followup-ct").iterdir())
    ct, geometry = read_image(fu_path)
    write_image(np.full(ct.shape, -1000, np.int16), geometry, fu_path)  # air only: no body
    with pytest.raises(RegistrationError, match="follow-up CT .*no body found"):
        run_task2(inp, tmp_path / "output")
    write_image(np.zeros((6, 6, 6), np.int16), geometry.with_shape((6, 6, 6)), fu_path)
    (inp / "primary-followup-lesion-clicks.json").write_text(json.dumps({"points": []}))
    with pytest.raises(RegistrationError, match="too small to register"):
        run_task2(inp, tmp_path / "output")
    assert not (tmp_path / "output").exists()


def test_clicks_outside_the_image(cohort_results, caplog):
    r = cohort_results[0]
    item = r["item"]
    shape = item.followup_geometry.shape
    outside = {99: (shape[0] + 5.0, 1.0, 1.0)}
    with pytest.raises(PointOutsideImageError, match="every click .* lies outside its image"):
        segment_followup(item.baseline_ct, item.baseline_geometry, item.baseline_mask, item.followup_ct,
                         item.followup_geometry, item.baseline_points, outside)
    some_outside = dict(item.followup_points)
    some_outside[99] = outside[99]
    with caplog.at_level(logging.WARNING):
        result = segment_followup(item.baseline_ct, item.baseline_geometry, item.baseline_mask, item.followup_ct,
                                  item.followup_geometry, item.baseline_points, some_outside)
    assert "lesion 99" in caplog.text and "outside the image" in caplog.text
    assert result.skipped_points and result.skipped_points[0][0] == 99
    np.testing.assert_array_equal(result.mask, r["step2"].mask)


def test_cli_reports_bad_input_and_help(tmp_path):
    (tmp_path / "input" / "images" / "primary-followup-ct").mkdir(parents=True)
    done = subprocess.run([sys.executable, str(REPO / "Task2" / "inference.py"), "--input", str(tmp_path / "input"),
                           "--output", str(tmp_path / "out")], capture_output=True, text=True)
    assert done.returncode == 2
    assert "error: " in done.stderr.splitlines()[0] and "primary baseline CT" in done.stderr
    assert not (tmp_path / "out").exists()
    shown = subprocess.run([sys.executable, str(REPO / "Task2" / "inference.py"), "--help"],
                           capture_output=True, text=True)
    assert shown.returncode == 0 and "--deformable" in shown.stdout


def test_malformed_click_json_names_the_file(cohort, tmp_path):
    pair = sorted(p for p in cohort.iterdir() if p.is_dir())[0]
    inp = tmp_path / "input"
    shutil.copytree(pair / "input", inp)
    (inp / "primary-followup-lesion-clicks.json").write_text('{"points": [{"name": "tumour", "point": [1, 2, 3]}]}')
    with pytest.raises(InputError, match="primary-followup-lesion-clicks.json"):
        run_task2(inp, tmp_path / "output")


def test_same_input_gives_the_same_mask(cohort_results, cohort):
    """Deterministic by default: a second run on the same pair reproduces the first bit for bit
    (SimpleITK reads a metric-sampling seed of 0 as "wall clock"; Task2 never passes it)."""
    from Task2.registration import sampling_seed

    assert sampling_seed(0) != 0 and sampling_seed(0) != sampling_seed(1)
    pair = sorted(p for p in cohort.iterdir() if p.is_dir())[0]
    item = read_followup_inputs(pair / "input")[0]
    again = segment_followup(item.baseline_ct, item.baseline_geometry, item.baseline_mask, item.followup_ct,
                             item.followup_geometry, item.baseline_points, {})
    first = cohort_results[0]["step1"]  # step 1 of this pair changed by ~10 voxels between wall-clock seeds
    assert np.count_nonzero(first.mask) > 0
    np.testing.assert_array_equal(again.mask, first.mask)
    for lesion_id, point in first.carried_points.items():
        np.testing.assert_array_equal(again.carried_points[lesion_id], point)


def test_step2_ids_are_the_truth_ids(tmp_path):
    """At step 2 each lesion carries the id of its follow-up click, which the phantom's truth
    shares: the id written where a truth lesion was found equals its truth id."""
    from autopet_common.phantoms import write_task2_cohort

    cohort = write_task2_cohort(tmp_path / "cohort", n_pairs=2, size="tiny", seed=9)
    kept = found = 0
    for pair in sorted(cohort.iterdir()):
        written = run_task2(pair / "input", tmp_path / "out" / pair.name)
        pred = read_image(written[0])[0]
        truth = read_image(pair / "truth" / "followup-tumor-lesion-seg.mha")[0]
        for lesion in set(np.unique(truth)) - {0}:
            values = pred[truth == lesion]
            values = values[values > 0]
            if values.size:
                found += 1
                kept += int(np.bincount(values).argmax() == lesion)
    assert found >= 4 and kept == found
