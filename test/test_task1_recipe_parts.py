"""The winners' recipe as parts (issue 13): organ maps and organ supervision through the stock
nnU-Net commands, the custom preprocessor, training augmentations (misalignment, mixed clicks),
the tracer classifier, the post-processing operations, and the submission recipe through
inference.py and the local challenge."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from autopet_common.errors import InputError
from autopet_common.image_io import read_image

REPOSITORY = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = REPOSITORY / "models" / "task1_phantom"
ORGAN_MODEL = REPOSITORY / "models" / "task1_phantom_organs"


# ----------------------------------------------------------------------------------- organs

def test_organ_groups_follow_totalsegmentator_numbering():
    from Task1.organs import group_organ_map, groups_present, merge_lesions_and_organs, organ_labels
    from autopet_common.organ_classes import TOTALSEGMENTATOR_TOTAL

    organ_map = np.array([[0, 1, 2, 3], [5, 21, 51, 90], [18, 20, 7, 0]])  # 7 = pancreas: no group
    groups = groups_present(np.unique(organ_map), TOTALSEGMENTATOR_TOTAL)
    assert groups == ["brain", "heart", "kidneys", "bladder", "liver", "spleen", "bowel"]
    grouped = group_organ_map(organ_map, TOTALSEGMENTATOR_TOTAL, groups)
    labels = organ_labels(groups)
    assert labels["tumor"] == 1 and labels["brain"] == 2
    expected = [[0, labels["spleen"], labels["kidneys"], labels["kidneys"]],
                [labels["liver"], labels["bladder"], labels["heart"], labels["brain"]],
                [labels["bowel"], labels["bowel"], 0, 0]]
    assert grouped.tolist() == expected and grouped.dtype == np.uint8
    lesion = np.zeros_like(grouped)
    lesion[1, 0] = 1  # a liver lesion: the lesion wins
    merged = merge_lesions_and_organs(lesion, grouped)
    assert merged[1, 0] == 1 and merged[1, 1] == labels["bladder"]


def test_phantom_organ_maps_and_conversion(tmp_path):
    from autopet_common.phantoms import write_task1_cohort
    from Task1.convert_dataset import convert_dataset
    from Task1.organs import ORGANS_DATASET_KEY

    cohort = write_task1_cohort(tmp_path / "cohort", n_cases=2, tracer="mixed", size="tiny", seed=3,
                                gc_layout=False, organs=True, n_lesions=3)
    table = json.loads((cohort / "organsTr" / "organ_classes.json").read_text())
    assert table["51"] == "heart" and table["201"] == "parotid_gland_right"
    target = convert_dataset(cohort, tmp_path / "raw", 611, organs=cohort / "organsTr", progress=False)
    meta = json.loads((target / "dataset.json").read_text())
    assert meta["labels"]["tumor"] == 1 and meta["labels"]["brain"] == 2
    assert ORGANS_DATASET_KEY in meta and meta[ORGANS_DATASET_KEY]["folder"] == "labelsTr_organs"
    grouped, _ = read_image(target / "labelsTr_organs" / "PHANTOM_FDG_0000.nii.gz")
    assert set(np.unique(grouped).tolist()) <= set(meta["labels"].values()) - {1}
    assert {meta["labels"]["brain"], meta["labels"]["liver"]} <= set(np.unique(grouped).tolist())

    # every case needs its organ map, on its grid; the message names the file
    (cohort / "organsTr" / "PHANTOM_PSMA_0001.nii.gz").unlink()
    with pytest.raises(InputError, match="PHANTOM_PSMA_0001.nii.gz not found"):
        convert_dataset(cohort, tmp_path / "raw2", 612, organs=cohort / "organsTr", progress=False)
    assert not (tmp_path / "raw2" / "Dataset612_autoPETClicks").exists()


def test_organ_pipeline_with_the_stock_commands(tmp_path):
    """Convert with organs -> nnUNetv2_plan_and_preprocess -preprocessor_name
    autoPETOrganPreprocessor -> nnUNetv2_train (organ variant) -> Task1Predictor writes lesions only."""
    import blosc2

    from Task1.predict import Task1Predictor
    from Task1.train_phantom_model import train_phantom_model

    model = train_phantom_model(tmp_path / "work", None, dataset_id=613, n_cases=5,
                                trainer="autoPETTrainerClicks_smoke_organs", configuration="3d_fullres",
                                fixed_grid=True, organs=True)
    preprocessed = tmp_path / "work" / "nnUNet_preprocessed" / "Dataset613_PhantomClicksOrgans"
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    assert plans["configurations"]["3d_fullres"]["preprocessor_name"] == "autoPETOrganPreprocessor"
    seg = blosc2.open(str(sorted((preprocessed / "nnUNetPlans_3d_fullres").glob("*_seg.b2nd"))[0]))[:]
    values = set(np.unique(seg).tolist())
    assert {0, 1, 2} <= values and max(values) >= 5, values  # lesion and organ classes in the stored target

    predictor = Task1Predictor(model, device="cpu", use_mirroring=False)
    assert predictor.label_manager.num_segmentation_heads >= 6  # background, lesion, organs
    ct, geometry = read_image(tmp_path / "work" / "source" / "imagesTr" / "phantom_000_0000.nii.gz", np.float32)
    pet, _ = read_image(tmp_path / "work" / "source" / "imagesTr" / "phantom_000_0001.nii.gz", np.float32)
    prepared = predictor.prepare(ct, pet, geometry)
    mask = predictor.predict_prepared(prepared, {"tumor": [], "background": []})
    probability = predictor.predict_probability(prepared, {"tumor": [], "background": []})
    assert set(np.unique(mask).tolist()) <= {0, 1} and mask.shape == geometry.shape
    assert probability.shape == geometry.shape and 0.0 <= probability.min() <= probability.max() <= 1.0


def test_organ_trainer_refuses_a_dataset_without_organs():
    from types import SimpleNamespace

    sys.path.insert(0, str(REPOSITORY / "Task1" / "trainers"))
    try:
        from autoPETClickTrainers import autoPETTrainerClicks_cpu_organs
    finally:
        sys.path.remove(str(REPOSITORY / "Task1" / "trainers"))
    fake = SimpleNamespace(configuration_manager=SimpleNamespace(preprocessor_name="DefaultPreprocessor"),
                           organ_preprocessor="autoPETOrganPreprocessor", __class__=autoPETTrainerClicks_cpu_organs)
    with pytest.raises(RuntimeError, match="-preprocessor_name autoPETOrganPreprocessor"):
        autoPETTrainerClicks_cpu_organs._check_organ_dataset(fake, {"labels": {}})


def test_lesion_patch_variant_centres_forced_patches_on_lesions():
    """``foreground_sampling_classes``: the dataset hands nnU-Net's data loader only the lesion
    class's locations when the case has a lesion (so every forced-foreground patch holds one), and
    all classes when it has none; nnU-Net's own get_bbox does the sampling."""
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader

    sys.path.insert(0, str(REPOSITORY / "Task1" / "trainers"))
    try:
        from autoPETClickTrainers import (_dataset_class_sampling, autoPETTrainerClicks_cpu_organs,
                                          autoPETTrainerClicks_cpu_organs_lesionpatches)
    finally:
        sys.path.remove(str(REPOSITORY / "Task1" / "trainers"))
    assert autoPETTrainerClicks_cpu_organs.foreground_sampling_classes is None  # nnU-Net's rule
    assert autoPETTrainerClicks_cpu_organs_lesionpatches.foreground_sampling_classes == (1,)

    lesion = np.array([[0, 5, 5, 5]])
    organs = {c: np.array([[0, 30 + c, 30, 30]]) for c in range(2, 9)}

    class Cases:
        def __init__(self, with_lesion):
            self.with_lesion = with_lesion

        def load_case(self, identifier):
            locations = {1: lesion if self.with_lesion else np.zeros((0, 4), int), **organs}
            return None, None, None, {"class_locations": locations, "shape": (64, 64, 64)}

    sampling = _dataset_class_sampling(Cases, (1,))
    assert _dataset_class_sampling(sampling, (1,)) is sampling  # wrapping twice changes nothing
    properties = sampling(True).load_case("a")[3]
    assert list(properties["class_locations"]) == [1]
    assert set(sampling(False).load_case("b")[3]["class_locations"]) == {1, *organs}  # no lesion: all kept
    assert set(Cases(True).load_case("c")[3]["class_locations"]) == {1, *organs}      # the base is untouched

    loader = nnUNetDataLoader.__new__(nnUNetDataLoader)  # only get_bbox's attributes are needed
    loader.patch_size, loader.need_to_pad, loader.has_ignore = (8, 8, 8), np.zeros(3, int), False
    np.random.seed(0)
    for _ in range(20):
        lo, hi = loader.get_bbox(np.array((64, 64, 64)), True, properties["class_locations"])
        assert all(l <= c < h for l, c, h in zip(lo, lesion[0, 1:], hi))  # every forced patch holds the lesion


def test_preprocessor_hook_install_check_uninstall(tmp_path, monkeypatch):
    import Task1.preprocessors as pre

    monkeypatch.setattr(pre, "hook_path", lambda: tmp_path / "autopet_preprocessors.py")
    assert pre.main(["--check", "--quiet"]) == 1
    assert pre.main(["--install", "--quiet"]) == 0 and pre.hook_installed()
    assert "from Task1.preprocessors import" in (tmp_path / "autopet_preprocessors.py").read_text()
    text = (tmp_path / "autopet_preprocessors.py").read_text()
    namespace: dict = {}
    exec(compile(text, "hook", "exec"), namespace)  # the hook re-exports the class ...
    assert namespace["autoPETOrganPreprocessor"] is pre.autoPETOrganPreprocessor
    monkeypatch.setitem(sys.modules, "Task1.preprocessors", None)
    exec(compile(text, "hook", "exec"), {})  # ... and never breaks nnU-Net's lookup when the toolkit is gone
    monkeypatch.delitem(sys.modules, "Task1.preprocessors")
    assert pre.main(["--uninstall", "--quiet"]) == 0 and not pre.hook_installed()
    assert pre.preprocessor_class("autoPETOrganPreprocessor") is pre.autoPETOrganPreprocessor
    assert pre.preprocessor_class("DefaultPreprocessor").__name__ == "DefaultPreprocessor"
    with pytest.raises(InputError, match="NoSuchPreprocessor"):
        pre.preprocessor_class("NoSuchPreprocessor")


# ---------------------------------------------------------------------------- augmentations

def test_misalignment_moves_one_channel_only():
    import torch

    from Task1.augmentations import MisalignChannelTransform, misalign

    volume = np.zeros((20, 20, 20), np.float32)
    volume[8:12, 8:12, 8:12] = 1.0
    shifted = misalign(volume, shift=(2.0, 0.0, 0.0), axis=(0, 0, 1), degrees=0.0)
    assert np.isclose(shifted[6:10, 8:12, 8:12].mean(), 1.0) and shifted[10:12, 8:12, 8:12].max() == 0.0
    image = torch.from_numpy(np.stack([volume, volume * 2]))
    seg = torch.zeros((1, 20, 20, 20))
    np.random.seed(0)
    out = MisalignChannelTransform(channel=0, max_shift=3, max_degrees=5, probability=1.0)(
        image=image.clone(), segmentation=seg.clone())
    assert not torch.equal(out["image"][0], image[0])          # CT moved
    assert torch.equal(out["image"][1], image[1])              # PET as it was
    assert torch.equal(out["segmentation"], seg)               # label as it was
    np.random.seed(0)
    again = MisalignChannelTransform(channel=0, max_shift=3, max_degrees=5, probability=1.0)(
        image=image.clone(), segmentation=seg.clone())
    assert torch.equal(again["image"], out["image"])           # seeded: repeatable


def test_random_click_share_and_lesion_class_only():
    import torch

    from clicks.simulate import random_patch_clicks
    from Task1.click_transforms import AppendClickChannelsTransform

    seg = np.zeros((24, 24, 24), np.int16)
    seg[5:10, 5:10, 5:10] = 1      # lesion
    seg[14:20, 14:20, 14:20] = 3   # an organ class: never a tumor click
    seg[:, :, 22:] = -1            # padding: never a click
    clicks = random_patch_clicks(seg == 1, 6, np.random.default_rng(1), valid=seg >= 0)
    assert len(clicks["tumor"]) == 6 and all(seg[tuple(p)] == 1 for p in clicks["tumor"])
    assert len(clicks["background"]) == 6 and all(seg[tuple(p)] in (0, 3) for p in clicks["background"])
    image = torch.from_numpy(np.random.default_rng(0).random((2, 24, 24, 24), dtype=np.float32))
    for fraction in (0.0, 1.0):
        np.random.seed(4)
        out = AppendClickChannelsTransform(fixed_step=5, random_fraction=fraction)(
            image=image.clone(), segmentation=torch.from_numpy(seg[None]))
        tumor_channel = out["image"][2].numpy()
        assert tumor_channel.max() > 0 and tumor_channel[seg == 3].max() == 0  # no tumor ball on the organ


# --------------------------------------------------------------------------------- tracer

@pytest.mark.parametrize("tracer", ["FDG", "PSMA"])
def test_tracer_classifier_on_unseen_whole_body_phantoms(tracer):
    from autopet_common.phantoms import PetVariation, make_petct_case
    from Task1.tracer import classify_tracer

    for n in range(3):
        rng = np.random.default_rng([41, n])
        spacing = (float(rng.uniform(3, 6)),) * 2 + (float(rng.uniform(3, 6)),)
        shape = (int(rng.integers(70, 110)),) * 2 + (int(rng.integers(90, 140)),)
        case = make_petct_case(tracer=tracer, seed=[41, n], shape=shape, spacing=spacing,
                               variation=PetVariation.random(rng))
        call = classify_tracer(case.pet * float(rng.uniform(0.5, 2.0)), spacing)  # calibration does not matter
        assert call.tracer == tracer, call


def test_tracer_classifier_says_unknown_without_a_head():
    from autopet_common.phantoms import make_petct_case
    from Task1.tracer import classify_tracer

    case = make_petct_case(tracer="FDG", seed=5, shape=(80, 80, 100), spacing=(5.0, 5.0, 6.0))
    torso = case.pet[:, :, :60]  # the field of view ends at the chest
    call = classify_tracer(torso, (5.0, 5.0, 6.0))
    assert call.tracer is None and "no head" in call.reason
    flipped = classify_tracer(case.pet[:, :, ::-1], (5.0, 5.0, 6.0), head_at_top=False)
    assert flipped.tracer == "FDG"


# ------------------------------------------------------------------------ post-processing

def test_postprocessing_operations():
    from Task1.postprocessing import add_candidates, close_gaps, remove_components, suv_floor

    spacing = (2.0, 2.0, 2.0)
    pet = np.ones((30, 30, 30), np.float32)
    mask = np.zeros(pet.shape, bool)
    mask[2:8, 2:8, 2:8] = True
    pet[2:8, 2:8, 2:8] = 8.0                 # a hot lesion
    mask[12:13, 12:13, 12:14] = True         # 2 voxels, SUVmax 1: noise
    mask[20:22, 20:22, 20:22] = True         # 8 voxels, cold, but clicked
    kept = remove_components(mask, pet, [[21, 21, 21]], spacing, min_voxels=10, min_suvmax=4.0)
    assert kept[4, 4, 4] and not kept[12, 12, 12] and kept[21, 21, 21]
    assert suv_floor(mask, pet, 4.0).sum() == 216 and suv_floor(mask, pet, None).sum() == mask.sum()

    two = np.zeros(pet.shape, bool)
    two[5:10, 5:10, 5:10] = True
    two[11:16, 5:10, 5:10] = True            # a 1-voxel (2 mm) gap
    merged = close_gaps(two, pet, spacing, distance_mm=6.0)
    import cc3d
    assert cc3d.connected_components(merged.astype(np.uint8)).max() == 1 and (merged >= two).all()
    assert cc3d.connected_components(close_gaps(two, pet, spacing, distance_mm=6.0, min_suv=5.0)
                                     .astype(np.uint8)).max() == 2

    probability = np.zeros(pet.shape, np.float32)
    probability[20:25, 2:7, 2:7] = 0.4       # below 0.5, hot: a candidate
    pet[20:25, 2:7, 2:7] = 9.0
    probability[2:7, 20:25, 2:7] = 0.4       # hot too, but a background click lies in it
    pet[2:7, 20:25, 2:7] = 9.0
    added = add_candidates(np.zeros(pet.shape, bool), probability, pet, [[4, 22, 4]], spacing,
                           min_probability=0.3, min_suvmax=6.0)
    assert added[22, 4, 4] and not added[4, 22, 4]



def test_grow_from_clicks_is_hysteresis_seeded_by_tumor_clicks():
    from Task1.postprocessing import grow_from_clicks

    spacing = (2.0, 2.0, 2.0)
    probability = np.zeros((30, 30, 30), np.float32)
    probability[2:12, 2:12, 2:12] = 0.35     # an unsure lesion around a tumor click
    probability[5:8, 5:8, 5:8] = 0.9         # its confident core
    probability[20:26, 20:26, 20:26] = 0.35  # unsure and unclicked: stays out
    mask = probability > 0.5
    grown = grow_from_clicks(mask, probability, [[6, 6, 6]], spacing, min_probability=0.3)
    assert grown[2:12, 2:12, 2:12].all() and not grown[20:26, 20:26, 20:26].any()
    assert (grown >= mask).all()
    # a click just outside the unsure region still holds it (the click reach of the click rules)
    near = grow_from_clicks(mask, probability, [[13, 6, 6]], spacing, min_probability=0.3)
    assert near[2:12, 2:12, 2:12].all()
    # no tumor click (step 0) or nothing above the threshold: unchanged
    assert np.array_equal(grow_from_clicks(mask, probability, [], spacing, min_probability=0.3), mask)
    assert np.array_equal(grow_from_clicks(mask, probability, [[6, 6, 6]], spacing, min_probability=0.95), mask)


def _blurred_ball(radius_mm: float, centre=(20, 20, 20), shape=(40, 40, 40), peak=10.0, blur_mm=2.0):
    """A uniform ball of uptake ``peak`` over background 1, blurred like a scanner (1 mm voxels)."""
    from scipy.ndimage import gaussian_filter

    grid = np.indices(shape).astype(np.float32)
    r = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre)))
    return r, gaussian_filter(np.where(r <= radius_mm, peak, 1.0).astype(np.float32), blur_mm)


def test_refine_edges_moves_an_edge_to_the_pet_contour_within_reach_only():
    from Task1.postprocessing import refine_edges

    def dice(a, b):
        return 2 * (a & b).sum() / (a.sum() + b.sum())

    r, pet = _blurred_ball(8.0)
    truth = r <= 8.0
    spacing = (1.0, 1.0, 1.0)
    for drawn in (r <= 6.5, r <= 9.5):  # a network's edge a voxel or two inside, or outside
        refined = refine_edges(drawn, pet, spacing, fraction=0.4)
        assert dice(refined, truth) > dice(drawn, truth) + 0.1
        assert not (refined ^ drawn)[r > 9.5 + 4.0].any() and not (refined ^ drawn)[r < 6.5 - 4.0].any()
    # reach limits the move: a 2 mm reach cannot bring a 3 mm edge to 8 mm
    assert not refine_edges(r <= 3.0, pet, spacing, fraction=0.4, reach_mm=2.0)[r > 5.0].any()
    # where the network says "not lesion" (probability under min_probability), nothing is added
    probability = np.where(r <= 7.0, 0.9, 0.01).astype(np.float32)
    kept = refine_edges(r <= 6.5, pet, spacing, fraction=0.4, probability=probability, min_probability=0.05)
    assert not kept[r > 7.0].any()
    # a component no hotter than its surroundings is left as it is; an empty mask stays empty
    flat = np.ones_like(pet)
    assert np.array_equal(refine_edges(r <= 6.5, flat, spacing, fraction=0.4), r <= 6.5)
    assert not refine_edges(np.zeros(pet.shape, bool), pet, spacing, fraction=0.4).any()


def test_refine_edges_judges_each_component_against_its_own_peak():
    from Task1.postprocessing import refine_edges

    r_hot, hot = _blurred_ball(6.0, centre=(12, 20, 20), shape=(60, 40, 40), peak=20.0)
    r_cold, cold = _blurred_ball(6.0, centre=(46, 20, 20), shape=(60, 40, 40), peak=4.0)
    pet = hot + cold - 1.0
    drawn = (r_hot <= 4.5) | (r_cold <= 4.5)
    refined = refine_edges(drawn, pet, (1.0, 1.0, 1.0), fraction=0.4)
    # both grow toward their own 6 mm edge: the cold lesion's contour is not the hot one's
    for r in (r_hot, r_cold):
        inside = refined[r <= 6.0].mean()
        assert inside > 0.9 and not refined[(r > 8.5) & (r < 12.0)].any()


def test_refine_edges_local_peak_keeps_the_cool_part_of_a_merged_component():
    from Task1.postprocessing import refine_edges

    # a hot and a cool lesion that touch: one component, one peak (20) for both
    r_hot, hot = _blurred_ball(6.0, centre=(14, 20, 20), shape=(40, 40, 40), peak=20.0)
    r_cool, cool = _blurred_ball(6.0, centre=(26, 20, 20), shape=(40, 40, 40), peak=4.0)
    pet = np.maximum(hot, cool)
    truth = (r_hot <= 6.0) | (r_cool <= 6.0)
    cool_only = (r_cool <= 6.0) & (r_hot > 9.0)
    spacing = (1.0, 1.0, 1.0)
    one_peak = refine_edges(truth, pet, spacing, fraction=0.4)
    local = refine_edges(truth, pet, spacing, fraction=0.4, peak_mm=3.0)
    # one peak: the cool lesion's outer layer is under the hot lesion's contour and goes (and what
    # is left of it no longer touches the component); a local peak measures it against its own
    # uptake and keeps it
    assert one_peak[cool_only].mean() < 0.2
    assert local[cool_only].mean() > 0.85
    # the hot lesion's edge is the same either way (its neighbourhood holds its own peak)
    hot_only = (r_hot <= 8.0) & (r_cool > 9.0)
    assert (one_peak[hot_only] == local[hot_only]).mean() > 0.97
    # a local peak no hotter than the surroundings leaves the voxel as it is
    flat = np.ones_like(pet)
    assert np.array_equal(refine_edges(truth, flat, spacing, fraction=0.4, peak_mm=3.0), truth)


def test_pet_regions_at_clicks_fill_a_lesion_the_ball_holds_and_leave_a_larger_hot_region():
    from Task1.postprocessing import add_pet_regions_at_clicks

    # a 10 mm lesion that the network drew as a 3 mm core around its click
    r, pet = _blurred_ball(10.0, shape=(60, 60, 60), centre=(30, 30, 30))
    truth = r <= 10.0
    spacing = (1.0, 1.0, 1.0)
    drawn = r <= 3.0
    filled = add_pet_regions_at_clicks(drawn, pet, [[30, 30, 30]], spacing, fraction=0.4, radius_mm=20.0)
    assert filled[truth].mean() > 0.9 and (filled & ~truth).sum() < 0.15 * truth.sum()
    assert filled[drawn].all()  # never removes a voxel
    # a click off the peak, on the lesion's cooler part, finds the same lesion
    off = add_pet_regions_at_clicks(drawn, pet, [[30, 30, 37]], spacing, fraction=0.4, radius_mm=20.0)
    assert off[truth].mean() > 0.9
    # a ball too small for the lesion: its region reaches the shell and is left alone
    assert np.array_equal(add_pet_regions_at_clicks(drawn, pet, [[30, 30, 30]], spacing, fraction=0.4,
                                                    radius_mm=8.0), drawn)
    # a click in a hot region larger than the ball (an organ's slab): nothing is added
    slab = np.where(np.abs(np.indices(pet.shape)[2] - 30) <= 12, 8.0, 1.0).astype(np.float32)
    assert np.array_equal(add_pet_regions_at_clicks(drawn, slab, [[30, 30, 30]], spacing, fraction=0.4,
                                                    radius_mm=10.0), drawn)
    # a cool lesion touching a hot one, clicked at its centre: the peak within 6 mm is the hot
    # lesion's edge, the click's own PET is under that contour, so nothing is added (from the
    # hot neighbour a region would be a false positive)
    r_hot, hot = _blurred_ball(10.0, shape=(80, 80, 80), centre=(40, 40, 30))
    _, cool = _blurred_ball(4.0, shape=(80, 80, 80), centre=(40, 40, 45), peak=2.5)
    pair = np.maximum(hot, cool)
    near = np.sqrt(sum((g - c) ** 2 for g, c in zip(np.indices(pair.shape), (40, 40, 45)))) <= 6.0
    assert pair[near].max() > 2 * pair[40, 40, 45]  # the hot neighbour is within the peak window
    empty = np.zeros(pair.shape, bool)
    assert not add_pet_regions_at_clicks(empty, pair, [[40, 40, 45]], spacing, fraction=0.4, radius_mm=30.0).any()
    # the hot lesion's own click, with the same ball, gets the hot lesion
    assert add_pet_regions_at_clicks(empty, pair, [[40, 40, 30]], spacing, fraction=0.4,
                                     radius_mm=30.0)[r_hot <= 9.0].all()
    # no tumor click (step 0), or a flat PET: unchanged
    assert np.array_equal(add_pet_regions_at_clicks(drawn, pet, [], spacing, fraction=0.4, radius_mm=20.0), drawn)
    flat = np.ones_like(pet)
    assert np.array_equal(add_pet_regions_at_clicks(drawn, flat, [[30, 30, 30]], spacing, fraction=0.4,
                                                    radius_mm=20.0), drawn)
    # a click at the image's edge is clipped to the image, not an error
    edge = add_pet_regions_at_clicks(np.zeros_like(drawn), pet, [[0, 0, 0]], spacing, fraction=0.4, radius_mm=20.0)
    assert not edge[truth].any()


# ------------------------------------------------------------------------------- recipe

def _recipe(folder: Path, content: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, target in (("phantom", SHIPPED_MODEL), ("organs", ORGAN_MODEL)):
        if not (folder / name).exists():
            (folder / name).symlink_to(target)
    (folder / "autopet_recipe.json").write_text(json.dumps(content))
    return folder


# two nnU-Net models routed by tracer (step 0) and by step (1-10: a weighted ensemble)
ROUTED = {"version": 1,
          "routes": [{"tracer": "FDG", "steps": [0, 0], "models": [{"folder": "phantom"}]},
                     {"tracer": "any", "steps": [0, 0], "models": [{"folder": "organs"}]},
                     {"tracer": "any", "steps": [1, 10],
                      "models": [{"folder": "phantom", "weight": 2}, {"folder": "organs"}]}],
          "postprocessing": [{"op": "click_rules"}, {"op": "suv_floor", "FDG": 1.5, "PSMA": 1.0},
                             {"op": "remove_components", "min_voxels": {"FDG": 3, "PSMA": 5}}]}


@pytest.mark.parametrize("change, message", [
    ({"version": 2}, "version"),
    ({"extra": 1}, "unknown key"),
    ({"routes": [{"tracer": "FDG", "models": [{"folder": "phantom"}]}]}, "no route for tracer PSMA"),
    ({"routes": [{"models": [{"folder": "missing"}]}]}, r"routes\[0\].models\[0\].folder"),
    ({"routes": [{"steps": [0, 11], "models": [{"folder": "phantom"}]}]}, r"routes\[0\].steps"),
    ({"postprocessing": [{"op": "explode"}]}, r"postprocessing\[0\]"),
    ({"postprocessing": [{"op": "suv_floor", "FDG": -1}]}, r"postprocessing\[0\].FDG"),
    ({"postprocessing": [{"op": "add_candidates", "min_suvmax": 4}]}, "min_probability: required"),
    ({"postprocessing": [{"op": "grow_from_clicks"}]}, r"postprocessing\[0\].min_probability: required"),
    ({"postprocessing": [{"op": "grow_from_clicks", "min_probability": 1.5}]}, r"postprocessing\[0\].min_probability"),
    ({"postprocessing": [{"op": "refine_edges"}]}, r"postprocessing\[0\].fraction: required"),
    ({"postprocessing": [{"op": "refine_edges", "fraction": 1.5}]}, r"postprocessing\[0\].fraction"),
    ({"postprocessing": [{"op": "refine_edges", "fraction": 0.3, "radius": 4}]}, "unknown key"),
    ({"postprocessing": [{"op": "refine_edges", "fraction": 0.3, "reach_mm": None}]}, r"postprocessing\[0\].reach_mm"),
    ({"postprocessing": [{"op": "refine_edges", "fraction": 0.3, "peak_mm": -2}]}, r"postprocessing\[0\].peak_mm"),
    ({"postprocessing": [{"op": "add_pet_regions_at_clicks", "fraction": 0.4}]},
     r"postprocessing\[0\].radius_mm: required"),
    ({"postprocessing": [{"op": "add_pet_regions_at_clicks", "fraction": 1.4, "radius_mm": 60}]},
     r"postprocessing\[0\].fraction"),
    ({"postprocessing": [{"op": "add_candidates", "min_probability": 0.3, "min_suvmax": 4, "min_volume_ml": None}]},
     r"postprocessing\[0\].min_volume_ml"),
    ({"postprocessing": [{"op": "click_rules", "background_cut": "voronoi"}]},
     r"postprocessing\[0\].background_cut: expected one of"),
    ({"postprocessing": [{"op": "click_rules", "protocol_rule": "yes"}]}, r"postprocessing\[0\].protocol_rule"),
    ({"postprocessing": [{"op": "click_rules", "spare_rim": 1}]}, r"postprocessing\[0\].spare_rim: expected true"),
    ({"postprocessing": [{"op": "click_rules", "background_cut": "nearest", "spare_rim": True}]},
     r"postprocessing\[0\].spare_rim: true only with the background_cut 'nearest_not_hotter'"),
    ({"test_time_augmentation": {"mirroring": "sometimes"}}, "mirroring"),
])
def test_recipe_errors_name_the_file_and_key(tmp_path, change, message):
    from Task1.recipe import RecipeError, load_recipe

    folder = _recipe(tmp_path / "r", {**ROUTED, **change})
    with pytest.raises(RecipeError, match=message) as caught:
        load_recipe(folder / "autopet_recipe.json")
    assert str(folder / "autopet_recipe.json") in str(caught.value)


def test_recipe_routes_by_tracer_and_step(tmp_path):
    from Task1.recipe import load_recipe
    from Task1.tracer import TracerCall

    recipe = load_recipe(_recipe(tmp_path / "r", ROUTED) / "autopet_recipe.json")
    fdg, psma = TracerCall("FDG", "test"), TracerCall("PSMA", "test")
    assert recipe.plan(fdg, 0)["models"] == [{"folder": "phantom", "folds": "all", "weight": 1.0}]
    assert recipe.plan(psma, 0)["models"] == [{"folder": "organs", "folds": "all", "weight": 1.0}]
    assert [m["folder"] for m in recipe.plan(psma, 7)["models"]] == ["phantom", "organs"]
    assert recipe.plan(None, 0)["tracer"]["used"] == "unknown"
    chain = recipe.plan(psma, 3)["postprocessing"]
    assert chain[1] == {"op": "suv_floor", "floor": 1.0} and chain[2]["min_voxels"] == 5
    assert recipe.plan(fdg, 3)["postprocessing"][2]["min_voxels"] == 3


def test_recipe_drives_inference_and_explain_matches_the_run(tmp_path, capsys, caplog):

    import inference

    folder = _recipe(tmp_path / "r", ROUTED)
    sample = REPOSITORY / "test" / "input"
    assert inference.main(["--input", str(sample), "--output", str(tmp_path / "x"), "--model", str(folder),
                           "--explain", "--quiet"]) == 0
    explained = capsys.readouterr().out
    plan_text = explained[explained.index("{"):]
    explained_plan = json.loads(plan_text)
    assert explained_plan["tracer"]["used"] == "FDG" and explained_plan["step"] == 10
    assert not (tmp_path / "x").exists()  # --explain writes nothing
    inference.run_inference(sample, tmp_path / "out", model=str(folder), report_path=tmp_path / "report.json")
    report = json.loads((tmp_path / "report.json").read_text())  # the plan that ran, as data
    assert report["method"] == "recipe" and report["plan"] == explained_plan
    masks = list((tmp_path / "out").rglob("*.mha"))
    assert len(masks) == 1
    mask, _ = read_image(masks[0])
    assert mask.any() and set(np.unique(mask).tolist()) <= {0, 1}


def test_recipe_drives_the_local_challenge(tmp_path):
    from autopet_common.phantoms import write_task1_cohort
    from local_challenge.runner import run_local_challenge
    from Task1.recipe import RecipeRunner

    cohort = write_task1_cohort(tmp_path / "cohort", n_cases=2, tracer="mixed", size="tiny", seed=8,
                                n_lesions=3)
    folder = _recipe(tmp_path / "r", ROUTED)
    result = run_local_challenge(cohort, tmp_path / "run", model=str(folder), n_steps=2, progress=False,
                                 overlays=False, in_process=True)
    assert len(result.runs) == 4 and all(r.exit_code == 0 and r.output_ok for r in result.runs)
    assert result.summary
    # what ran per case is the plan of each case's tracer: FDG -> phantom model, PSMA -> organ model
    runner = RecipeRunner(folder, device="cpu")
    for case, tracer in (("PHANTOM_FDG_0000", "FDG"), ("PHANTOM_PSMA_0001", "PSMA")):
        pet, geometry = read_image(cohort / "imagesTr" / f"{case}_0001.nii.gz", np.float32)
        ct, _ = read_image(cohort / "imagesTr" / f"{case}_0000.nii.gz", np.float32)
        _, report = runner.predict(ct, pet, geometry, {"tumor": [], "background": []})
        assert report["plan"]["tracer"]["used"] == tracer
        expected = "phantom" if tracer == "FDG" else "organs"
        assert [m["folder"] for m in report["plan"]["models"]] == [expected]


def test_recipe_model_folder_check_and_tarball(tmp_path):
    import tarfile

    from Task1.check_model import check_model_folder, write_model_tarball

    folder = _recipe(tmp_path / "r", ROUTED)
    report = check_model_folder(folder)
    assert report["recipe"].endswith("autopet_recipe.json") and "model phantom" in report and "model organs" in report
    assert report["size_mb"] > 1.0  # the linked model counts
    tar = write_model_tarball(folder, tmp_path / "model.tar.gz")
    with tarfile.open(tar) as archive:
        members = {m.name: m for m in archive.getmembers()}
    assert "autopet_recipe.json" in members and "phantom/fold_0/checkpoint_final.pth" in members
    assert "organs/fold_0/checkpoint_final.pth" in members
    assert not any(m.issym() for m in members.values())  # links stored as the files they point to
    bad = _recipe(tmp_path / "bad", {**ROUTED, "routes": [{"models": [{"folder": "nowhere"}]}]})
    with pytest.raises(InputError, match="nowhere"):
        check_model_folder(bad)


def test_mirror_axes_are_fitted_to_the_budget():
    from Task1.predict import mirror_axes_within

    cost = lambda passes: 10.0 * passes  # 10 s per pass
    assert mirror_axes_within((0, 1, 2), cost, 100.0) == (0, 1, 2)   # 8 passes = 80 s
    assert mirror_axes_within((0, 1, 2), cost, 50.0) == (0, 1)       # 4 passes = 40 s
    assert mirror_axes_within((0, 1, 2), cost, 25.0) == (0,)
    assert mirror_axes_within((0, 1, 2), cost, 15.0) == ()


def test_model_free_route_equals_the_baseline_with_its_click_rules(tmp_path, tiny_case):
    from Task1.model_free_baseline import segment_model_free
    from Task1.postprocessing import postprocess_task1
    from Task1.recipe import RecipeRunner

    folder = _recipe(tmp_path / "r", {"version": 1, "tracer": {"classify": False},
                                      "routes": [{"models": [{"folder": "model-free"}]}]})
    from clicks import simulate_clicks

    clicks = simulate_clicks(tiny_case.label, tiny_case.pet)
    step = {"tumor": clicks["tumor"][:3], "background": clicks["background"][:3]}
    mask, report = RecipeRunner(folder).predict(tiny_case.ct, tiny_case.pet, tiny_case.geometry, step)
    expected, _ = postprocess_task1(segment_model_free(tiny_case.pet, step, tiny_case.geometry.spacing),
                                    tiny_case.pet, step, tiny_case.geometry.spacing)
    assert np.array_equal(mask, expected) and report["plan"]["tracer"]["used"] == "unknown"


def test_recipe_says_when_post_processing_options_are_ignored(caplog):
    import logging

    from Task1.postprocessing import PostprocessOptions
    from Task1.recipe import warn_if_options_ignored

    with caplog.at_level(logging.WARNING, logger="Task1.recipe"):
        warn_if_options_ignored(PostprocessOptions())
        assert not caplog.records
        warn_if_options_ignored(PostprocessOptions(remove_below_suv=1.0))
    assert "ignored" in caplog.text and "remove_below_suv=1.0" in caplog.text


def test_organ_map_on_another_grid_is_refused(tmp_path):
    from autopet_common.image_io import Geometry, write_image
    from autopet_common.phantoms import write_task1_cohort
    from Task1.convert_dataset import convert_dataset

    cohort = write_task1_cohort(tmp_path / "cohort", n_cases=1, tracer="FDG", size="tiny", seed=2,
                                gc_layout=False, organs=True, n_lesions=2)
    path = cohort / "organsTr" / "PHANTOM_FDG_0000.nii.gz"
    organ_map, geometry = read_image(path)
    shifted = Geometry(geometry.shape, geometry.spacing, tuple(o + 7.0 for o in geometry.origin), geometry.direction)
    write_image(organ_map.astype(np.uint8), shifted, path)
    with pytest.raises(InputError, match="organ map of case PHANTOM_FDG_0000"):
        convert_dataset(cohort, tmp_path / "raw", 614, organs=cohort / "organsTr", progress=False)
    assert not (tmp_path / "raw" / "Dataset614_autoPETClicks").exists()


def test_tune_recipe_scores_the_grid_and_writes_a_recipe_that_runs(tmp_path, tiny_task1_cohort):
    """The tuning tool on a tiny validation cohort: every setting is scored with the recipe's own
    chain, best first; --write puts a recipe into the model folder whose masks equal the table's."""
    import shutil

    from autopet_common.image_io import read_image
    from clicks import simulate_clicks
    from evaluation_metrics import compute_metrics_arrays
    from Task1.recipe import load_recipe
    from Task1.session import RecipeMethod, open_method, predict_steps
    from Task1.tune_recipe import main, objective

    model = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, model)
    cohort = tmp_path / "validation"  # one case of the tiny cohort (11 forward passes)
    for sub, names in (("imagesTr", ["PHANTOM_FDG_0000_0000.nii.gz", "PHANTOM_FDG_0000_0001.nii.gz"]),
                       ("labelsTr", ["PHANTOM_FDG_0000.nii.gz"])):
        (cohort / sub).mkdir(parents=True)
        for name in names:
            (cohort / sub / name).symlink_to(tiny_task1_cohort / sub / name)
    code = main(["--model", str(model), "--cohort", str(cohort), "--work", str(tmp_path / "work"),
                 "--thresholds", "0.5", "--grow", "0.2", "--background_cut", "nearest", "nearest_not_hotter",
                 "--refine_edges", "0.3", "--edge_peak_mm", "8", "--pet_regions", "0.5", "--pet_region_radius_mm",
                 "30", "--spare_rim", "--device", "cpu", "--write"])
    assert code == 0
    table = json.loads((model / "tuning.json").read_text())
    # the peak window is tried only with PET edges: (0.3, one peak), (0.3, 8 mm), (no edges); the
    # PET regions' radius only with a fraction: (0.5, 30 mm), (none); spare_rim only with the cut
    # nearest_not_hotter
    assert sorted((str(r["grow_from_clicks"]), str(r["refine_edges"]), str(r["edge_peak_mm"]), str(r["pet_regions"]),
                   str(r["pet_region_radius_mm"]), r["background_cut"], r["spare_rim"]) for r in table["rows"]) == [
        (grow, refine, peak, *region, *cut) for grow in ("0.2", "None")
        for refine, peak in (("0.3", "8.0"), ("0.3", "None"), ("None", "None"))
        for region in (("0.5", "30.0"), ("None", "None"))
        for cut in (("nearest", False), ("nearest_not_hotter", False), ("nearest_not_hotter", True))]
    assert all(a["objective"] >= b["objective"] for a, b in zip(table["rows"], table["rows"][1:]))
    assert all(abs(r["objective"] - objective(r)) < 1e-12 for r in table["rows"])
    recipe = load_recipe(model / "autopet_recipe.json")
    assert recipe.threshold == 0.5 and recipe.routes[0].models[0].folder == "."
    assert recipe.postprocessing[-1] == ("click_rules", {"protocol_rule": True,
                                                          "background_cut": table["best"]["background_cut"],
                                                          "spare_rim": table["best"]["spare_rim"]})
    # the written recipe, run as a model folder, gives the best row's Dice on a case of the cohort
    case = table["cases"][0]
    ct, geometry = read_image(cohort / "imagesTr" / f"{case}_0000.nii.gz", np.float32)
    pet, _ = read_image(cohort / "imagesTr" / f"{case}_0001.nii.gz", np.float32)
    label, _ = read_image(cohort / "labelsTr" / f"{case}.nii.gz")
    label = (label > 0).astype(np.uint8)
    clicks = simulate_clicks(label, pet, dataset_name="FDG-PETCT", case=case)
    method = open_method(model, device="cpu")
    assert isinstance(method, RecipeMethod)
    mask10, _ = predict_steps(method, method.prepare(ct, pet, geometry), clicks, [10])[10]
    dice10 = compute_metrics_arrays(label, mask10, geometry.voxel_volume_ml)[0]
    assert dice10 == pytest.approx(table["best"]["per_case"][case]["dice"][10], abs=1e-12)
    assert json.loads((tmp_path / "work" / "tuning.json").read_text())["best"] == table["best"]
    with pytest.raises(SystemExit):
        main(["--model", str(model)])  # a cohort or --make_phantoms is required
    with pytest.raises(SystemExit):
        main(["--model", str(model), "--cohort", str(cohort), "--background_cut", "voronoi"])
    for flag, value in (("--refine_edges", "1.5"), ("--grow", "-0.1"), ("--thresholds", "2"), ("--edge_peak_mm", "-3"),
                        ("--pet_regions", "1.2"), ("--pet_region_radius_mm", "0")):
        with pytest.raises(SystemExit):  # refused by the parser, before any network pass
            main(["--model", str(model), "--cohort", str(cohort), flag, value])
    # the same case in two cohorts is refused before any network pass, naming both folders
    assert main(["--model", str(model), "--cohort", str(cohort), str(cohort), "--work", str(tmp_path / "w2")]) == 2
    assert not (tmp_path / "w2" / "tuning.json").exists()
    assert main(["--model", str(model), "--make_phantoms", "1", "--seed", "0", "--work", str(tmp_path / "w0")]) == 2
