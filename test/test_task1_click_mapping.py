"""Clicks on the input grid land in the right voxel of nnU-Net's network grid.

Property test: for random anisotropic spacings, target spacings, axis transposes, crops (zero
borders that nnU-Net's crop-to-non-zero removes) and direction matrices, a click on a lesion's
centre in the input grid maps (Task1.predict.input_to_network_index) into that lesion as nnU-Net's
own preprocessing resamples it. The arrays the predictor hands to nnU-Net are checked against what
nnU-Net's reader returns for the same image written to disk with that direction.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from autopet_common.image_io import Geometry, write_image
from Task1.predict import input_to_network_index, to_nnunet_input


def _plans(transpose_forward, target_spacing_transposed, patch_size=(32, 32, 32)):
    """A minimal nnU-Net v2 plans dict (3d_fullres, CT + PET) for DefaultPreprocessor."""
    transpose_backward = [int(np.argsort(transpose_forward)[i]) for i in range(3)]
    arch = {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {"n_stages": 2, "features_per_stage": [4, 8], "conv_op": "torch.nn.modules.conv.Conv3d",
                            "kernel_sizes": [[3, 3, 3], [3, 3, 3]], "strides": [[1, 1, 1], [2, 2, 2]],
                            "n_conv_per_stage": [1, 1], "n_conv_per_stage_decoder": [1], "conv_bias": True,
                            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
                            "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
                            "nonlin_kwargs": {"inplace": True}},
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}
    return {
        "dataset_name": "Dataset999_Mapping", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": list(target_spacing_transposed),
        "original_median_shape_after_transp": [32, 32, 32], "image_reader_writer": "SimpleITKIO",
        "transpose_forward": list(transpose_forward), "transpose_backward": transpose_backward,
        "configurations": {"3d_fullres": {
            "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2, "patch_size": list(patch_size), "median_image_size_in_voxels": [32, 32, 32],
            "spacing": list(target_spacing_transposed),
            "normalization_schemes": ["CTNormalization", "ZScoreNormalization"], "use_mask_for_norm": [False, False],
            "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
            "architecture": arch, "batch_dice": False}},
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": {"max": 1000.0, "mean": 0.0, "median": 0.0, "min": -1000.0, "percentile_00_5": -1000.0,
                  "percentile_99_5": 1000.0, "std": 300.0},
            "1": {"max": 20.0, "mean": 2.0, "median": 1.0, "min": 0.0, "percentile_00_5": 0.0,
                  "percentile_99_5": 15.0, "std": 2.0}},
    }


DATASET_JSON = {"channel_names": {"0": "CT", "1": "PET"}, "labels": {"background": 0, "tumor": 1},
                "numTraining": 1, "file_ending": ".nii.gz"}


def _random_direction(rng) -> tuple[float, ...]:
    """A signed axis permutation, optionally rotated a little (oblique)."""
    perm = rng.permutation(3)
    matrix = np.zeros((3, 3))
    matrix[np.arange(3), perm] = rng.choice([-1.0, 1.0], size=3)
    if rng.random() < 0.5:
        angle = rng.uniform(-0.3, 0.3)
        rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
        matrix = rot @ matrix
    return tuple(matrix.ravel())


def _case(rng):
    spacing = rng.uniform(0.8, 5.0, size=3)
    shape = tuple(int(s) for s in rng.integers(18, 34, size=3))
    ct = np.zeros(shape, np.float32)
    pet = np.zeros(shape, np.float32)
    # the body: a random box; outside it everything is 0, so nnU-Net crops it away
    lo = [int(rng.integers(0, 5)) for _ in range(3)]
    hi = [s - int(rng.integers(0, 5)) for s in shape]
    body = tuple(slice(a, b) for a, b in zip(lo, hi))
    ct[body] = rng.normal(40, 20, size=ct[body].shape)
    pet[body] = rng.uniform(0.5, 1.5, size=pet[body].shape)
    # a lesion: an ellipsoid of radius 3.2 voxels of the coarser of input and target grid, in mm
    label = np.zeros(shape, np.uint8)
    return spacing, shape, ct, pet, label, lo, hi


@pytest.mark.parametrize("seed", range(12))
def test_lesion_centre_click_lands_in_lesion_in_network_grid(seed):
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    rng = np.random.default_rng(1000 + seed)
    spacing, shape, ct, pet, label, lo, hi = _case(rng)
    transpose_forward = list(itertools.permutations(range(3)))[seed % 6]
    target_spacing = rng.uniform(0.8, 5.0, size=3)  # (i, j, k) axes of the input
    # nnU-Net's plans hold the target spacing in transposed (z, y, x)[transpose_forward] order
    target_transposed = [float(target_spacing[::-1][a]) for a in transpose_forward]
    radius_mm = 3.2 * max(spacing.max(), target_spacing.max())
    centre = np.array([rng.integers(a + 1, b - 1) for a, b in zip(lo, hi)])
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    inside = (((grid - centre) * spacing) ** 2).sum(-1) <= radius_mm ** 2
    body = np.zeros(shape, bool)
    body[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    label[inside & body] = 1
    pet[label > 0] = 8.0

    geometry = Geometry(shape, tuple(spacing), (10.0, -5.0, 3.0), _random_direction(rng))
    plans_manager = PlansManager(_plans(transpose_forward, target_transposed))
    configuration = plans_manager.get_configuration("3d_fullres")
    data, properties = to_nnunet_input([ct, pet], geometry)
    seg = label.transpose(2, 1, 0)[None].astype(np.int8)
    data_pp, seg_pp, properties = DefaultPreprocessor(verbose=False).run_case_npy(
        data, seg, properties, plans_manager, configuration, DATASET_JSON)
    assert seg_pp.shape[1:] == data_pp.shape[1:]
    mapped, dropped = input_to_network_index([centre.tolist()], properties, plans_manager.transpose_forward,
                                             data_pp.shape[1:])
    assert dropped == []
    assert seg_pp[0][tuple(mapped[0])] == 1, (spacing, target_spacing, transpose_forward, centre, mapped)


def test_points_outside_image_or_crop_are_dropped():
    properties = {"bbox_used_for_cropping": [[2, 12], [0, 20], [0, 30]], "shape_before_cropping": (12, 20, 30),
                  "shape_after_cropping_and_before_resampling": (10, 20, 30)}
    # [i, j, k] -> [k, j, i]: k = 0 lies before the crop's start 2; k = 12 and i = -1 are outside
    mapped, dropped = input_to_network_index([[5, 5, 0], [5, 5, 11], [5, 5, 12], [-1, 0, 5], [29, 19, 9]],
                                             properties, [0, 1, 2], (20, 20, 30))
    assert dropped == [0, 2, 3]
    # resampling 10 -> 20 along axis 0: (11 - 2 + 0.5) * 2 - 0.5 = 18.5 -> 19; (9 - 2 + 0.5) * 2 - 0.5 = 14.5 -> 15
    assert mapped == [[19, 5, 5], [15, 19, 29]]
    # with transpose_forward [2, 1, 0] the array axes are (i, j, k) again (properties are transposed too)
    transposed = {"bbox_used_for_cropping": [[0, 30], [0, 20], [2, 12]], "shape_before_cropping": (30, 20, 12),
                  "shape_after_cropping_and_before_resampling": (30, 20, 10)}
    mapped_t, _ = input_to_network_index([[29, 19, 9]], transposed, [2, 1, 0], (30, 20, 20))
    assert mapped_t == [[29, 19, 15]]


def test_predictor_input_matches_nnunet_reader(tmp_path):
    """to_nnunet_input gives exactly the arrays and spacing nnU-Net's reader gets from the files,
    whatever the direction matrix (neither SimpleITKIO nor NibabelIO reorients)."""
    from nnunetv2.imageio.nibabel_reader_writer import NibabelIO
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    rng = np.random.default_rng(7)
    shape = (9, 7, 5)
    ct = rng.normal(size=shape).astype(np.float32)
    pet = rng.uniform(size=shape).astype(np.float32)
    for trial in range(3):
        geometry = Geometry(shape, tuple(rng.uniform(0.5, 4, size=3)), (1.0, 2.0, 3.0),
                            _random_direction(np.random.default_rng(trial)))
        files = [str(tmp_path / f"c{trial}_{n}.nii.gz") for n in range(2)]
        write_image(ct, geometry, files[0])
        write_image(pet, geometry, files[1])
        data, properties = to_nnunet_input([ct, pet], geometry)
        for reader in (SimpleITKIO(), NibabelIO()):
            read, read_properties = reader.read_images(files)
            np.testing.assert_allclose(read, data, rtol=0, atol=1e-6)
            np.testing.assert_allclose(read_properties["spacing"], properties["spacing"], rtol=1e-5)
