# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""load_volume on the real PET/CT (issue 3 acceptance), against plain references (pydicom per slice, SimpleITK),
and on NIfTI."""

from __future__ import annotations

import functools
import random
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from _volume_test_utils import axial_sorted, copy_slices, real_files, reference_suv_factor, rescaled
from monai.data import MetaTensor

from rat_monai.data import SliceSpacingWarning, list_dicom_series, load_volume

META_KEYS = (
    "modality",
    "units",
    "suv_factor",
    "filename_or_obj",
    "series_instance_uid",
    "study_instance_uid",
    "dicom_files",
    "slice_positions",
    "affine",
    "spacing",
)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, units: str = "auto") -> tuple[MetaTensor, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vol = load_volume(path, units=units)
    return vol, list(caught)


def _spacing_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, SliceSpacingWarning)]


def _sitk_affine_ras(img: sitk.Image) -> np.ndarray:
    """Reference: SimpleITK's LPS geometry (GDCM sorts by position) converted to RAS."""
    aff = np.eye(4)
    aff[:3, :3] = np.asarray(img.GetDirection()).reshape(3, 3) * np.asarray(img.GetSpacing())
    aff[:3, 3] = img.GetOrigin()
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ aff


def _sitk_read(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    reader.SetOutputPixelType(sitk.sitkFloat64)
    return reader.Execute()


def test_real_pet_acceptance(real_pet_dir):
    vol, caught = _load_cached(str(real_pet_dir))
    assert isinstance(vol, MetaTensor)
    assert vol.shape == (1, 128, 128, 267) and vol.dtype == torch.float32
    assert vol.meta["modality"] == "PT" and vol.meta["units"] == "suv"
    arr = vol.numpy()
    assert abs(float(arr.max()) - 66.5) <= 0.5
    assert abs(float(np.percentile(arr, 99.9)) - 4.76) <= 0.05
    files = real_files(real_pet_dir)
    assert vol.meta["suv_factor"] == pytest.approx(reference_suv_factor(files[0]), rel=1e-9)
    assert vol.meta["suv_factor"] == pytest.approx(2.429e-4, rel=1e-3)  # README figure
    # position order: strictly increasing along the normal (+z here), InstanceNumber decreasing, files independent
    pos = np.asarray(vol.meta["slice_positions"])
    assert len(pos) == 267 and np.all(np.diff(pos) > 0)
    assert vol.meta["dicom_files"] == [str(f) for f in axial_sorted(files)]
    inst = [int(pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber) for f in vol.meta["dicom_files"][:3]]
    assert inst[0] > inst[1] > inst[2]
    # overlapping beds: warn with the figures, don't fail
    msgs = _spacing_warnings(caught)
    assert len(msgs) == 1 and "3.190-3.290 mm" in msgs[0]
    assert vol.meta["spacing"] == pytest.approx((4.6875, 4.6875, 3.27), abs=1e-4)


@pytest.mark.parametrize("z", [0, 1, 133, 266])  # first, second, middle, last slice in z order
def test_real_pet_slice_is_its_pixel_array(real_pet_dir, z):
    """vol[0, :, :, z].T == that slice's pixel array * its own RescaleSlope (per slice) * SUV factor."""
    vol, _ = _load_cached(str(real_pet_dir))
    f = Path(vol.meta["dicom_files"][z])
    expected = rescaled(f) * reference_suv_factor(f)
    np.testing.assert_allclose(vol[0, :, :, z].numpy().T, expected, rtol=1e-6, atol=1e-6)
    ipp = np.asarray([float(v) for v in pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient])
    # the voxel (0, 0, z) sits at this slice's position (RAS = LPS with x, y negated), within the non-uniform step
    world = vol.affine.numpy() @ np.array([0.0, 0.0, z, 1.0])
    np.testing.assert_allclose(world[:3], ipp * [-1, -1, 1], atol=0.05)
    assert vol.meta["slice_positions"][z] == pytest.approx(ipp[2])


def test_real_pet_bqml_and_stored(real_pet_dir):
    suv, _ = _load_cached(str(real_pet_dir))
    bq, _ = _load_cached(str(real_pet_dir), "bqml")
    assert bq.meta["units"] == "bqml" and bq.meta["suv_factor"] == pytest.approx(suv.meta["suv_factor"])
    assert 273_000 <= float(bq.max()) <= 274_000 and float(bq.min()) >= 0  # README: 0-273,900 Bq/ml
    np.testing.assert_allclose(bq.numpy() * suv.meta["suv_factor"], suv.numpy(), rtol=1e-5, atol=1e-6)


def test_real_ct_acceptance(real_ct_dir):
    vol, caught = _load_cached(str(real_ct_dir))
    assert vol.shape == (1, 512, 512, 41) and vol.dtype == torch.float32
    assert vol.meta["modality"] == "CT" and vol.meta["units"] == "hu" and vol.meta["suv_factor"] is None
    assert float(vol.min()) == -3024.0 and float(vol.max()) == 1377.0
    assert _spacing_warnings(caught) == []  # contiguous 5 mm slices: no warning
    assert vol.meta["spacing"] == pytest.approx((0.796875, 0.796875, 5.0))
    assert vol.meta["dicom_files"] == [str(f) for f in axial_sorted(real_files(real_ct_dir))]
    f = Path(vol.meta["dicom_files"][7])
    np.testing.assert_array_equal(vol[0, :, :, 7].numpy().T, rescaled(f))


@pytest.mark.parametrize("which", ["ct", "pet"])
def test_matches_simpleitk_reference(real_pet_dir, real_ct_dir, which):
    """Plain reference: SimpleITK/GDCM series reader (its own sort and per-slice rescale) gives the same voxels and
    geometry."""
    folder = real_ct_dir if which == "ct" else real_pet_dir
    vol, _ = _load_cached(str(folder), "hu" if which == "ct" else "bqml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = _sitk_read(folder)
    ref = sitk.GetArrayFromImage(img).transpose(2, 1, 0)  # [z, y, x] -> [x, y, z]
    np.testing.assert_allclose(vol[0].numpy(), ref, rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(vol.affine.numpy(), _sitk_affine_ras(img), atol=1e-4)
    np.testing.assert_allclose(vol.meta["original_affine"], vol.affine.numpy())


def test_file_names_and_instance_numbers_do_not_matter(real_pet_dir, tmp_path):
    """Shuffled file names and scrambled InstanceNumber give the same volume (sorting is by position only)."""
    files = real_files(real_pet_dir)[100:106]
    ref = load_volume(copy_slices(files, tmp_path / "ref")[0].parent)
    names = [f"x{i:02d}.dcm" for i in range(len(files))]
    random.Random(0).shuffle(names)

    def scramble(ds, i):
        ds.InstanceNumber = (i * 7) % 5 + 1

    out = load_volume(copy_slices(files, tmp_path / "shuffled", modify=scramble, names=names)[0].parent)
    np.testing.assert_array_equal(out.numpy(), ref.numpy())
    np.testing.assert_allclose(out.affine.numpy(), ref.affine.numpy())
    assert out.meta["slice_positions"] == ref.meta["slice_positions"]


def test_non_image_files_are_ignored(real_ct_dir, tmp_path):
    folder = tmp_path / "ct"
    copy_slices(real_files(real_ct_dir)[:3], folder)
    (folder / "README.txt").write_text("not DICOM")
    (folder / "notes.dcm").write_bytes(b"\x00" * 300)  # .dcm name, no DICOM content
    (folder / "sub").mkdir()
    # a non-image DICOM object (no Rows/Columns), e.g. a structured report, in the same folder
    sr = pydicom.dcmread(real_files(real_ct_dir)[0], stop_before_pixels=True)
    for kw in ("Rows", "Columns", "PixelSpacing", "ImagePositionPatient"):
        delattr(sr, kw)
    sr.file_meta.MediaStorageSOPClassUID = sr.SOPClassUID = pydicom.uid.UID("1.2.840.10008.5.1.4.1.1.88.11")
    sr.Modality = "SR"
    sr.save_as(folder / "report.dcm")
    vol = load_volume(folder)
    assert vol.shape == (1, 512, 512, 3)
    assert len(list_dicom_series(folder)) == 1


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti(real_ct_dir, tmp_path, suffix):
    ct, _ = _load_cached(str(real_ct_dir))
    data = ct[0, 200:232, 180:220, 10:14].numpy()
    affine = ct.affine.numpy().copy()
    affine[:3, 3] = affine[:3, :3] @ [200, 180, 10] + affine[:3, 3]
    path = tmp_path / f"crop{suffix}"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    vol = load_volume(path)
    assert vol.shape == (1, 32, 40, 4) and vol.dtype == torch.float32
    np.testing.assert_array_equal(vol[0].numpy(), data)
    np.testing.assert_allclose(vol.affine.numpy(), affine, atol=1e-4)
    assert vol.meta["units"] is None and vol.meta["modality"] is None and vol.meta["dicom_files"] == []
    assert vol.meta["spacing"] == pytest.approx((0.796875, 0.796875, 5.0), abs=1e-5)
    # the world position of slice k equals the DICOM slice position (same normal, LPS vs RAS cancels in the dot)
    assert vol.meta["slice_positions"] == pytest.approx(ct.meta["slice_positions"][10:14], abs=1e-3)
    declared = load_volume(path, units="hu", check_units=False)  # a crop inside the body: no air (see test_safety)
    assert declared.meta["units"] == "hu" and declared.meta["modality"] == "CT"
    assert load_volume(path, modality="pet", check_units=False).meta["modality"] == "PT"


@pytest.mark.parametrize("kind", ["dicom", "nifti"])
def test_meta_keys(real_ct_dir, tmp_path, kind):
    if kind == "dicom":
        path = copy_slices(real_files(real_ct_dir)[:2], tmp_path / "ct")[0].parent
    else:
        path = tmp_path / "v.nii.gz"
        nib.save(nib.Nifti1Image(np.zeros((3, 4, 5), np.float32), np.eye(4)), str(path))
    vol = load_volume(path)
    for key in META_KEYS:
        assert key in vol.meta, key
    assert vol.meta["filename_or_obj"] == str(path)
    assert isinstance(vol.meta["spacing"], tuple) and len(vol.meta["spacing"]) == 3
    assert len(vol.meta["slice_positions"]) == vol.shape[-1]
    if kind == "dicom":
        assert vol.meta["series_instance_uid"] and vol.meta["study_instance_uid"]
        assert len(vol.meta["dicom_files"]) == 2


def test_oblique_stack_sorted_along_normal(real_ct_dir, tmp_path):
    """An oblique (rotated, not sheared) stack: positions are measured along the slice normal, not along z."""
    ang = np.deg2rad(20.0)
    row, col = np.array([1.0, 0.0, 0.0]), np.array([0.0, np.cos(ang), np.sin(ang)])
    normal = np.cross(row, col)
    files = real_files(real_ct_dir)[:4]
    order = [2, 0, 3, 1]  # file i gets slot order[i] along the normal

    def rotate(ds, i):
        ds.ImageOrientationPatient = [*row.tolist(), *col.tolist()]
        ds.ImagePositionPatient = (np.array([10.0, 20.0, 30.0]) + 2.5 * order[i] * normal).round(6).tolist()

    copied = copy_slices(files, tmp_path / "obl", modify=rotate)
    vol = load_volume(tmp_path / "obl")
    np.testing.assert_allclose(np.diff(vol.meta["slice_positions"]), 2.5, atol=1e-4)
    assert vol.meta["dicom_files"] == [str(copied[order.index(k)]) for k in range(4)]
    np.testing.assert_allclose(vol.affine.numpy()[:3, 2], np.array([-1, -1, 1]) * normal * 2.5, atol=1e-5)
    np.testing.assert_array_equal(vol[0, :, :, 0].numpy().T, rescaled(copied[order.index(0)]))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"units": "kelvin"}, ValueError, "units must be one of"),  # unknown unit
        ({"units": "suv"}, ValueError, "PET only"),  # SUV of a CT
        ({"units": "bqml"}, ValueError, "PET only"),
        ({"modality": "pet"}, ValueError, "no PT series"),  # folder holds CT only
        ({"series_uid": "1.2.3"}, ValueError, "is not in DICOM folder"),
    ],
)
def test_ill_arg(real_ct_dir, tmp_path, kwargs, exc, match):
    folder = copy_slices(real_files(real_ct_dir)[:2], tmp_path / "ct")[0].parent
    with pytest.raises(exc, match=match):
        load_volume(folder, **kwargs)


# (stored Units tag, units argument, expected meta units or error text, values relative to the stored Bq/ml)
PET_UNITS_CASES = [
    ("BQML", "stored", "bqml", "stored"),
    ("GML", "auto", "suv", "stored"),  # already body-weight SUV: kept, no factor
    ("GML", "bqml", "needs PET Units (0054,1001) BQML", None),
    ("CNTS", "auto", "Units (0054,1001) CNTS, SUV needs BQML", None),
    ("CNTS", "stored", "cnts", "stored"),
]


@pytest.mark.parametrize("tag, units, expected, values", PET_UNITS_CASES)
def test_pet_units_tag(real_pet_dir, tmp_path, tag, units, expected, values):
    def set_units(ds, i):
        ds.Units = tag

    files = copy_slices(real_files(real_pet_dir)[50:52], tmp_path / "pet", modify=set_units)
    if values is None:
        with pytest.raises(ValueError, match=expected.replace("(", r"\(").replace(")", r"\)")) as err:
            load_volume(tmp_path / "pet", units=units)
        assert str(files[0]) in str(err.value) or str(files[1]) in str(err.value)
        return
    vol = load_volume(tmp_path / "pet", units=units)
    assert vol.meta["units"] == expected
    for z, f in enumerate(vol.meta["dicom_files"]):
        np.testing.assert_allclose(vol[0, :, :, z].numpy().T, rescaled(Path(f)), rtol=1e-6)


@pytest.mark.parametrize("implicit_vr", [True, False])
def test_files_without_preamble(real_ct_dir, tmp_path, implicit_vr):
    """Data sets written without preamble/file meta (older exports) are read; the transfer syntax is inferred."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    files = real_files(real_ct_dir)[:3]
    folder = tmp_path / "raw"
    folder.mkdir()
    for f in files:
        buf = DicomBytesIO()
        buf.is_little_endian, buf.is_implicit_VR = True, implicit_vr
        write_dataset(buf, pydicom.dcmread(f))
        (folder / f.name).write_bytes(buf.getvalue())
    (folder / "notes.txt").write_text("0123456789" * 20)  # must still be ignored, even when read with force=True
    ref = load_volume(copy_slices(files, tmp_path / "ref")[0].parent)
    vol = load_volume(folder)
    np.testing.assert_array_equal(vol.numpy(), ref.numpy())
    np.testing.assert_allclose(vol.affine.numpy(), ref.affine.numpy())
