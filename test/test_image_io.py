"""Tests of the shared image I/O (autopet_common.image_io): geometry, array order, atomicity,
clear errors for bad files."""
import gzip
import math

import numpy as np
import pytest
import SimpleITK as sitk

from autopet_common import image_io
from autopet_common.errors import GridMismatchError, ImageReadError, NonFiniteError
from autopet_common.image_io import (Geometry, check_same_grid, find_single_image, read_geometry,
                                     read_image, require_finite, write_image, write_mask)


def _oblique_direction():
    """A rotation of 30 degrees about z then 20 degrees about x (row-major 3x3)."""
    a, b = math.radians(30), math.radians(20)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    return tuple((rz @ rx).ravel())


GEOMETRY = Geometry((7, 5, 4), spacing=(0.7, 1.3, 2.5), origin=(10.5, -20.25, 33.0),
                    direction=_oblique_direction())


def _no_leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".") or ".tmp" in p.name]


@pytest.mark.parametrize("suffix", [".mha", ".nii.gz"])
@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint8])
def test_round_trip_keeps_values_and_geometry(tmp_path, suffix, dtype):
    rng = np.random.default_rng(0)
    array = (rng.uniform(0, 100, size=GEOMETRY.shape)).astype(dtype)
    path = write_image(array, GEOMETRY, tmp_path / f"image{suffix}")
    back, geometry = read_image(path)
    assert back.dtype == dtype and back.shape == GEOMETRY.shape
    assert np.array_equal(back, array)
    assert geometry.shape == GEOMETRY.shape
    assert np.allclose(geometry.spacing, GEOMETRY.spacing, atol=1e-5)
    assert np.allclose(geometry.origin, GEOMETRY.origin, atol=1e-4)
    # NIfTI stores the direction as a float32 quaternion: a few 1e-6 of rounding.
    assert np.allclose(geometry.direction, GEOMETRY.direction, atol=1e-5)
    assert read_geometry(path).shape == GEOMETRY.shape
    assert not _no_leftovers(tmp_path)


@pytest.mark.parametrize("suffix", [".mha", ".nii.gz"])
def test_array_index_is_itk_index(tmp_path, suffix):
    array = np.zeros((6, 5, 4), dtype=np.int16)
    array[4, 1, 2] = 7
    path = write_image(array, Geometry(array.shape, (1, 2, 3)), tmp_path / f"order{suffix}")
    image = sitk.ReadImage(str(path))
    assert image.GetSize() == (6, 5, 4)
    assert image.GetPixel((4, 1, 2)) == 7
    assert image.GetPixel((2, 1, 4 - 1)) == 0
    back, _ = read_image(path)
    assert back[4, 1, 2] == 7 and int(back.sum()) == 7
    # The physical position of index [i, j, k] agrees with ITK's.
    geometry = Geometry.from_sitk(image)
    assert np.allclose(geometry.index_to_physical([4, 1, 2]),
                       image.TransformContinuousIndexToPhysicalPoint((4.0, 1.0, 2.0)))


def test_index_physical_round_trip_with_oblique_direction():
    points = np.array([[0, 0, 0], [1.5, 2.25, 3.0], [6, 4, 3]], dtype=float)
    assert np.allclose(GEOMETRY.physical_to_index(GEOMETRY.index_to_physical(points)), points)


def test_write_mask_is_binary_uint8(tmp_path):
    mask = np.array([0, 2, 0, 5, -1, 0, 0, 1], dtype=np.int32).reshape(2, 2, 2)
    back, _ = read_image(write_mask(mask, Geometry(mask.shape), tmp_path / "m.nii.gz"))
    assert back.dtype == np.uint8 and back.tolist() == (mask > 0).astype(np.uint8).tolist()


def test_failed_write_leaves_neither_output_nor_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "out.mha"

    def broken_write(image, path, useCompression=True):
        with open(path, "wb") as handle:
            handle.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", broken_write)
    with pytest.raises(RuntimeError, match="disk full"):
        write_image(np.zeros((3, 3, 3), np.float32), Geometry((3, 3, 3)), target)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = write_image(np.ones((3, 3, 3), np.uint8), Geometry((3, 3, 3)), tmp_path / "keep.nii.gz")
    before = target.read_bytes()
    monkeypatch.setattr(sitk, "WriteImage", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        write_image(np.zeros((3, 3, 3), np.uint8), Geometry((3, 3, 3)), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.nii.gz"]


def test_shape_mismatch_between_array_and_geometry_writes_nothing(tmp_path):
    with pytest.raises(GridMismatchError):
        write_image(np.zeros((3, 3, 3)), Geometry((3, 3, 4)), tmp_path / "x.mha")
    assert list(tmp_path.iterdir()) == []


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ImageReadError, match="not found.*nothere.mha"):
        read_image(tmp_path / "nothere.mha", what="CT")


@pytest.mark.parametrize("suffix", [".mha", ".nii.gz"])
def test_truncated_file_is_named(tmp_path, suffix):
    rng = np.random.default_rng(1)
    path = write_image(rng.normal(size=(20, 20, 20)).astype(np.float32), Geometry((20, 20, 20)),
                       tmp_path / f"cut{suffix}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=f"cut{suffix.replace('.', '[.]')}"):
        read_image(path, what="PET image")


def test_garbage_file_is_named(tmp_path):
    path = tmp_path / "garbage.nii.gz"
    path.write_bytes(gzip.compress(b"this is not a nifti file" * 20))
    with pytest.raises(ImageReadError, match="garbage.nii.gz"):
        read_image(path)
    path2 = tmp_path / "garbage.mha"
    path2.write_text("ObjectType = Image\nNDims = 3\nnonsense\n")
    with pytest.raises(ImageReadError, match="garbage.mha"):
        read_image(path2)


def test_grid_mismatch_names_both_inputs():
    a = Geometry((4, 4, 4), (1, 1, 1))
    b = Geometry((4, 4, 4), (1, 1, 2))
    check_same_grid(a, Geometry((4, 4, 4), (1, 1, 1.0000001)), "CT", "PET")
    with pytest.raises(GridMismatchError) as info:
        check_same_grid(a, b, "ct/a.mha", "pet/b.mha")
    message = str(info.value)
    assert "ct/a.mha" in message and "pet/b.mha" in message and "spacing" in message


def test_nan_is_reported_with_the_file_name(tmp_path):
    array = np.zeros((3, 3, 3), np.float32)
    array[1, 1, 1] = np.nan
    path = write_image(array, Geometry((3, 3, 3)), tmp_path / "nan.nii.gz")
    with pytest.raises(NonFiniteError, match="nan.nii.gz.*1 NaN"):
        read_image(path, check_finite=True, what="PET")
    # SimpleITK alone reads NaN/inf in NIfTI as 0; the check must still see them.
    import nibabel
    array[0, 0, 0] = np.inf
    nibabel.save(nibabel.Nifti1Image(array, np.eye(4)), str(tmp_path / "nib.nii.gz"))
    with pytest.raises(NonFiniteError, match="nib.nii.gz.*2 NaN"):
        read_image(tmp_path / "nib.nii.gz", check_finite=True)
    mha = write_image(array, Geometry((3, 3, 3)), tmp_path / "nan.mha")
    with pytest.raises(NonFiniteError, match="nan.mha.*2 NaN"):
        read_image(mha, check_finite=True)
    clean = write_image(np.ones((3, 3, 3), np.float32), Geometry((3, 3, 3)), tmp_path / "ok.nii.gz")
    assert read_image(clean, check_finite=True)[0].sum() == 27
    with pytest.raises(NonFiniteError, match="my array"):
        require_finite(np.array([1.0, np.inf]), "my array")
    require_finite(np.array([1, 2]), "integers are always finite")


def test_find_single_image(tmp_path):
    with pytest.raises(ImageReadError, match="folder not found"):
        find_single_image(tmp_path / "ct", "CT")
    (tmp_path / "ct").mkdir()
    with pytest.raises(ImageReadError, match="no image"):
        find_single_image(tmp_path / "ct", "CT")
    write_image(np.zeros((2, 2, 2), np.int16), Geometry((2, 2, 2)), tmp_path / "ct" / "a.mha")
    (tmp_path / "ct" / ".hidden.mha").write_text("x")
    assert find_single_image(tmp_path / "ct", "CT").name == "a.mha"
    write_image(np.zeros((2, 2, 2), np.int16), Geometry((2, 2, 2)), tmp_path / "ct" / "b.mha")
    with pytest.raises(ImageReadError, match="exactly one.*a.mha, b.mha"):
        find_single_image(tmp_path / "ct", "CT")


def test_atomic_write_json_converts_numpy(tmp_path):
    import json
    path = image_io.atomic_write_json(tmp_path / "x.json", {"a": np.int64(3), "b": np.arange(2)})
    assert json.loads(path.read_text()) == {"a": 3, "b": [0, 1]}
    assert not _no_leftovers(tmp_path)
