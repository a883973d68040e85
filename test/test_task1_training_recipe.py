"""The phantom model's training recipe, without training: varied phantoms, the PET-in-SUV
conversion, the small 3d_cpu plans configuration, the weights-only export, the trainer knobs."""
import json
from pathlib import Path

import numpy as np
import pytest

from autopet_common.phantoms import PetVariation, make_petct_case


def test_default_variation_is_the_default_phantom_bit_for_bit():
    plain = make_petct_case("tiny", "PSMA", seed=11, n_lesions=4)
    explicit = make_petct_case("tiny", "PSMA", seed=11, n_lesions=4, variation=PetVariation())
    for name in ("ct", "pet", "label"):
        assert np.array_equal(getattr(plain, name), getattr(explicit, name))


def test_variation_changes_uptake_noise_and_adds_unlabelled_distractors():
    plain = make_petct_case("tiny", "FDG", seed=3, n_lesions=3)
    hot = PetVariation(organ_uptake_scale={"brain": 2.0}, suv_scale=1.0, distractors=5,
                       distractor_suv_range=(30.0, 31.0))
    varied = make_petct_case("tiny", "FDG", seed=3, n_lesions=3, variation=hot)
    assert np.array_equal(plain.label, varied.label)  # lesions are where they were
    assert varied.uptake["brain"] == pytest.approx(2 * plain.uptake["brain"])
    # distractors: very hot, and never labelled
    assert varied.pet[varied.label == 0].max() > plain.pet[plain.label == 0].max() + 5
    again = make_petct_case("tiny", "FDG", seed=3, n_lesions=3, variation=hot)
    assert np.array_equal(varied.pet, again.pet)  # deterministic
    scaled = make_petct_case("tiny", "FDG", seed=3, n_lesions=3, variation=PetVariation(suv_scale=0.5))
    assert np.allclose(scaled.pet, 0.5 * plain.pet)


def test_varied_training_phantoms_span_spacing_and_position():
    from Task1.train_phantom_model import varied_phantom

    cases = [varied_phantom(0, n, max_voxels=64) for n in range(6)]
    spacings = [c.geometry.spacing for c in cases]
    assert all(2.5 <= s <= 6.0 for sp in spacings for s in sp)
    assert len({sp[0] for sp in spacings}) == 6 and {c.tracer for c in cases} == {"FDG", "PSMA"}
    for case in cases:
        assert case.ct.shape == case.pet.shape == case.label.shape == case.geometry.shape
        assert case.ct.min() >= -1024 and np.isfinite(case.pet).all()
    first = varied_phantom(0, 2, max_voxels=64)
    assert np.array_equal(first.pet, cases[2].pet)  # deterministic in (seed, n)


def test_organ_decoys_are_hot_organ_sized_unlabelled_and_change_nothing_else():
    from scipy.ndimage import label as connected

    from autopet_common.phantoms.task1 import LESION_RADIUS_MAX_MM
    from Task1.train_phantom_model import organ_decoys_phantom, varied_phantom

    plain, decoyed = varied_phantom(0, 3, max_voxels=64), varied_phantom(0, 3, max_voxels=64, organ_decoys=True)
    assert np.array_equal(plain.label, decoyed.label)  # no lesion moved, no decoy labelled
    assert np.array_equal(plain.geometry.spacing, decoyed.geometry.spacing)
    # the decoys' own generator: the noise, and so every voxel far from them, is unchanged
    assert not np.array_equal(plain.pet, decoyed.pet)
    assert np.count_nonzero(plain.pet == decoyed.pet) > 0.5 * plain.pet.size
    assert np.array_equal(organ_decoys_phantom(0, 2).pet, varied_phantom(0, 2, organ_decoys=True).pet)

    # painted on a quiet background: a decoy is a hot blob larger than any lesion can be
    body = make_petct_case("small", "FDG", seed=5, n_lesions=0, variation=PetVariation(pet_fwhm_mm=1.0))
    hot = PetVariation(pet_fwhm_mm=1.0, organ_decoys=2, organ_decoy_suv_range=(40.0, 41.0))
    case = make_petct_case("small", "FDG", seed=5, n_lesions=0, variation=hot)
    assert not case.label.any()
    blobs, count = connected((case.pet > 30.0) & (body.pet < 30.0))
    assert count >= 1
    voxel_ml = float(np.prod(case.geometry.spacing)) / 1000.0
    largest_lesion_ml = 4.0 / 3.0 * np.pi * (LESION_RADIUS_MAX_MM * 1.25) ** 3 / 1000.0  # radii x0.75-1.25
    sizes = np.bincount(blobs.ravel())[1:] * voxel_ml
    assert sizes.max() > largest_lesion_ml


def test_bone_free_phantoms_lose_their_bones_and_nothing_else():
    """PetVariation.bone_free: no voxel is bone-dense any more and the bone boxes leave the organ
    map; lesions, the other organs and the noise draws are the plain case's. bone_free_half draws
    its own coin per case, so both kinds are in the set."""
    from autopet_common.phantoms.anatomy import BONES
    from Task1.train_phantom_model import bone_free_half_phantom, varied_phantom

    plain, free = varied_phantom(0, 3, max_voxels=64), varied_phantom(0, 3, max_voxels=64, bone_free=True)
    assert plain.ct.max() > 400 and free.ct.max() < 200  # bone 450-900 HU; soft tissue and lesions below
    assert set(BONES) & set(plain.organ_boxes) and not set(BONES) & set(free.organ_boxes)
    assert set(plain.organ_boxes) - set(free.organ_boxes) == set(BONES) & set(plain.organ_boxes)
    assert np.array_equal(plain.label, free.label) and plain.uptake == free.uptake
    bone = np.zeros(plain.ct.shape, bool)
    for name in set(BONES) & set(plain.organ_boxes):
        box = plain.organ_boxes[name]
        bone[box.slices] |= box.mask
    assert np.array_equal(plain.ct[~bone & (plain.label == 0)], free.ct[~bone & (plain.label == 0)])
    kinds = {bone_free_half_phantom(0, n).ct.max() < 200 for n in range(6)}
    assert kinds == {True, False}


def test_suv_conversion_names_pet_nonorm_and_the_trainer_finds_it(tmp_path):
    from Task1.convert_dataset import convert_dataset
    from Task1.train_phantom_model import write_phantom_source
    from Task1.trainers.autoPETClickTrainers import autoPETTrainerClicks

    source = write_phantom_source(tmp_path / "src", n_cases=1)
    target = convert_dataset(source, tmp_path / "raw", 14, progress=False, pet_normalization="suv")
    meta = json.loads((target / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT", "1": "noNorm"}
    assert meta["autopet_conversion"] == {"variant": "images", "channels": ["CT", "PET"], "pet_normalization": "suv"}
    assert autoPETTrainerClicks._find_pet_channel(meta) == 1
    swapped = {**meta, "autopet_conversion": {"channels": ["PET", "CT"]}}
    assert autoPETTrainerClicks._find_pet_channel(swapped) == 0
    from autopet_common.errors import InputError

    with pytest.raises(InputError, match="PET normalization"):
        convert_dataset(source, tmp_path / "raw", 15, progress=False, pet_normalization="minmax")


def test_cpu_configuration_is_a_small_network_nnunet_builds(tmp_path):
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from autopet_common.nnunet_recipe import add_cpu_configuration

    plans = {"plans_name": "nnUNetPlans", "dataset_name": "Dataset001_X", "transpose_forward": [0, 1, 2],
             "transpose_backward": [0, 1, 2], "original_median_spacing_after_transp": [4, 4, 4],
             "original_median_shape_after_transp": [64, 64, 64], "image_reader_writer": "SimpleITKIO",
             "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
             "foreground_intensity_properties_per_channel": {},
             "configurations": {"3d_fullres": {
                 "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
                 "batch_size": 2, "patch_size": [128, 128, 128], "median_image_size_in_voxels": [64, 64, 64],
                 "spacing": [2.0, 2.0, 2.0], "normalization_schemes": ["CTNormalization", "NoNormalization"],
                 "use_mask_for_norm": [False, False], "resampling_fn_data": "resample_data_or_seg_to_shape",
                 "resampling_fn_seg": "resample_data_or_seg_to_shape", "resampling_fn_data_kwargs": {},
                 "resampling_fn_seg_kwargs": {}, "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                 "resampling_fn_probabilities_kwargs": {}, "batch_dice": False,
                 "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                                  "arch_kwargs": {"n_stages": 6, "features_per_stage": [32, 64, 128, 256, 320, 320],
                                                  "conv_op": "torch.nn.modules.conv.Conv3d",
                                                  "kernel_sizes": [[3, 3, 3]] * 6, "strides": [[1, 1, 1]] + [[2, 2, 2]] * 5,
                                                  "n_conv_per_stage": [2] * 6, "n_conv_per_stage_decoder": [2] * 5,
                                                  "conv_bias": True, "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                                                  "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
                                                  "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
                                                  "nonlin_kwargs": {"inplace": True}},
                                  "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}}}}
    path = tmp_path / "nnUNetPlans.json"
    path.write_text(json.dumps(plans))
    add_cpu_configuration(path)
    manager = PlansManager(str(path))
    config = manager.get_configuration("3d_cpu")
    assert config.spacing == [4.0, 4.0, 4.0] and config.patch_size == [48, 48, 48] and config.batch_size == 2
    assert config.data_identifier == "nnUNetPlans_3d_cpu"  # its own preprocessed data
    assert config.normalization_schemes == ["CTNormalization", "NoNormalization"]  # inherited
    network = get_network_from_plans(config.network_arch_class_name, config.network_arch_init_kwargs,
                                     config.network_arch_init_kwargs_req_import, 4, 2, deep_supervision=False)
    parameters = sum(p.numel() for p in network.parameters())
    assert 1.0e6 < parameters < 2.5e6  # a checkpoint of at most 10 MB in float32


def test_cpu_trainer_variants_change_only_their_knobs():
    from Task1.trainers.autoPETClickTrainers import (autoPETTrainerClicks, autoPETTrainerClicks_cpu,
                                                      autoPETTrainerClicks_cpu_noclicks)

    assert autoPETTrainerClicks_cpu.training_seed == 0 and not autoPETTrainerClicks_cpu.inference_mirroring
    assert autoPETTrainerClicks_cpu.epochs * autoPETTrainerClicks_cpu.iterations_per_epoch == 5000
    assert autoPETTrainerClicks_cpu.optimizer_name == "adamw" and autoPETTrainerClicks.optimizer_name == "sgd"
    assert autoPETTrainerClicks_cpu_noclicks.max_interaction_step == 0
    assert autoPETTrainerClicks_cpu_noclicks.epochs == autoPETTrainerClicks_cpu.epochs
    assert autoPETTrainerClicks.training_seed is None and autoPETTrainerClicks.inference_mirroring


def test_network_spacing_reaches_the_cpu_configuration(tmp_path, monkeypatch, capsys):
    """--network_spacing sets the 3d_cpu configuration's grid (the rest of the recipe as before);
    a non-positive value is refused before anything runs."""
    import autopet_common.nnunet_recipe as recipe
    import Task1.train_phantom_model as train

    calls = {}

    def fake_run_logged(command, env, log_file):
        calls.setdefault("commands", []).append(command)
        if Path(command[0]).name == "nnUNetv2_plan_and_preprocess":  # what --no_pp leaves: the plans
            folder = Path(env["nnUNet_preprocessed"]) / "Dataset790_PhantomClicks"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "nnUNetPlans.json").write_text(json.dumps(
                {"plans_name": "nnUNetPlans", "configurations": {"3d_fullres": {"architecture": {"arch_kwargs": {}}}}}))

    monkeypatch.setattr(recipe, "run_logged", fake_run_logged)
    monkeypatch.setattr(train, "run_logged", lambda command, env, log_file: None)  # the conversion
    monkeypatch.setattr(train, "write_training_phantoms", lambda out, *a, **k: Path(out))
    monkeypatch.setattr(train, "finish_recipe", lambda model, out, **k: calls.setdefault("record", k["record"]))
    assert train.main(["--cases", "5", "--work_dir", str(tmp_path), "--dataset_id", "790",
                       "--network_spacing", "3"]) == 0
    plans = json.loads((tmp_path / "nnUNet_preprocessed" / "Dataset790_PhantomClicks" / "nnUNetPlans.json").read_text())
    assert plans["configurations"]["3d_cpu"]["spacing"] == [3.0, 3.0, 3.0]
    assert plans["configurations"]["3d_cpu"]["patch_size"] == [48, 48, 48]
    assert calls["record"]["network_spacing"] == 3.0
    assert [Path(c[0]).name for c in calls["commands"]] == ["nnUNetv2_plan_and_preprocess", "nnUNetv2_preprocess",
                                                              "nnUNetv2_train"]
    with pytest.raises(SystemExit) as refused:
        train.main(["--cases", "5", "--work_dir", str(tmp_path), "--network_spacing", "0"])
    assert refused.value.code == 2 and "--network_spacing" in capsys.readouterr().err


def test_pretrained_weights_reach_nnunet_train_and_the_record(tmp_path, monkeypatch, capsys):
    """--pretrained_weights: a model folder resolves to its one checkpoint, which nnUNetv2_train
    gets as -pretrained_weights and training_recipe.json records with its sha256; a folder
    without one, or with two, is refused before any phantom is written."""
    import autopet_common.nnunet_recipe as recipe
    import Task1.train_phantom_model as train
    from autopet_common.image_io import sha256_of
    from Task1.trainers.autoPETClickTrainers import (autoPETTrainerClicks_cpu_organs_finetune,
                                                      autoPETTrainerClicks_cpu_organs_lesionpatches)

    model = tmp_path / "model"
    (model / "fold_0").mkdir(parents=True)
    (model / "fold_0" / "checkpoint_final.pth").write_bytes(b"weights")
    calls = {}

    def fake_run_logged(command, env, log_file):
        calls.setdefault("commands", []).append(command)
        if Path(command[0]).name == "nnUNetv2_plan_and_preprocess":
            folder = Path(env["nnUNet_preprocessed"]) / "Dataset791_PhantomClicks"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "nnUNetPlans.json").write_text(json.dumps(
                {"plans_name": "nnUNetPlans", "configurations": {"3d_fullres": {"architecture": {"arch_kwargs": {}}}}}))

    written = []
    monkeypatch.setattr(recipe, "run_logged", fake_run_logged)
    monkeypatch.setattr(train, "run_logged", lambda command, env, log_file: None)
    monkeypatch.setattr(train, "write_training_phantoms", lambda out, *a, **k: written.append(out) or Path(out))
    monkeypatch.setattr(train, "finish_recipe", lambda model, out, **k: calls.setdefault("record", k["record"]))
    assert train.main(["--cases", "5", "--work_dir", str(tmp_path / "work"), "--dataset_id", "791",
                       "--pretrained_weights", str(model)]) == 0
    checkpoint = (model / "fold_0" / "checkpoint_final.pth").resolve()
    train_command = calls["commands"][-1]
    assert Path(train_command[0]).name == "nnUNetv2_train"
    assert train_command[train_command.index("-pretrained_weights") + 1] == str(checkpoint)
    assert calls["record"]["pretrained_weights"] == str(checkpoint)
    assert calls["record"]["pretrained_sha256"] == sha256_of(checkpoint)

    (model / "fold_1").mkdir()
    (model / "fold_1" / "checkpoint_final.pth").write_bytes(b"other")
    for bad, reason in ((model, "2 fold_*/checkpoint_final.pth"), (tmp_path / "missing", "no such file")):
        written.clear()
        with pytest.raises(SystemExit) as refused:
            train.main(["--cases", "5", "--work_dir", str(tmp_path / "work"), "--pretrained_weights", str(bad)])
        err = capsys.readouterr().err
        assert refused.value.code == 2 and str(bad) in err and reason in err and not written

    # the fine-tuning schedule: the default model's trainer with fewer epochs from a lower rate
    base = autoPETTrainerClicks_cpu_organs_lesionpatches
    assert autoPETTrainerClicks_cpu_organs_finetune.epochs < base.epochs
    assert autoPETTrainerClicks_cpu_organs_finetune.learning_rate < base.learning_rate
    assert autoPETTrainerClicks_cpu_organs_finetune.foreground_sampling_classes == base.foreground_sampling_classes


def test_small_lesions_set_is_the_varied_set_with_lesions_down_to_3_mm():
    from autopet_common.errors import InputError
    from Task1.train_phantom_model import PHANTOM_SETS, varied_phantom

    make = PHANTOM_SETS["small_lesions"]
    below_own_spacing = 0
    for n in range(6):
        case, varied = make(0, n), varied_phantom(0, n)
        # the same draws: grid, tracer and organs are the varied case's; only the lesions differ
        assert case.geometry == varied.geometry and case.tracer == varied.tracer
        assert np.array_equal(case.organ_map(), varied.organ_map())
        radii = [lesion["radius_mm"] for lesion in case.lesions]
        assert all(3.0 <= r <= 25.0 for r in radii)
        # the varied set's smallest radius is the grid's largest spacing (at least 3 mm)
        assert all(x["radius_mm"] >= max(*varied.geometry.spacing, 3.0) for x in varied.lesions)
        below_own_spacing += any(r < max(case.geometry.spacing) for r in radii)
    # lesions smaller than their own grid's spacing, which the varied set never makes
    assert below_own_spacing >= 2
    assert np.array_equal(make(0, 4).label, make(0, 4).label)  # deterministic
    plain = make_petct_case("tiny", "FDG", seed=5, n_lesions=6)
    default = make_petct_case("tiny", "FDG", seed=5, n_lesions=6, variation=PetVariation(lesion_radius_min_mm=None))
    assert np.array_equal(plain.label, default.label)
    small = make_petct_case("tiny", "FDG", seed=5, n_lesions=6, variation=PetVariation(lesion_radius_min_mm=3.0))
    assert min(x["radius_mm"] for x in small.lesions) < min(x["radius_mm"] for x in plain.lesions)
    with pytest.raises(InputError, match="lesion_radius_min_mm"):
        make_petct_case("tiny", "FDG", seed=5, n_lesions=6, variation=PetVariation(lesion_radius_min_mm=0.0))
