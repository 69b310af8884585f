# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Bad inputs to load_volume: each gives a clear error naming the file/folder and what to do.

The bad folders are built in tmp_path from a few real slices copied/modified with pydicom.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from _volume_test_utils import copy_slices, real_files, rescaled

from rat_monai.data import SliceSpacingWarning, list_dicom_series, load_volume

# a few consecutive real slices: PET files 1-100..1-103 (3.27 mm apart), CT files 1-10..1-13 (5 mm apart)
PET_SLICE = slice(99, 103)
CT_SLICE = slice(9, 13)


def _pet(real_pet_dir: Path, dst: Path, modify=None, n: int | None = None) -> list[Path]:
    files = real_files(real_pet_dir)[PET_SLICE]
    return copy_slices(files[:n] if n else files, dst, modify=modify)


def _ct(real_ct_dir: Path, dst: Path, modify=None) -> list[Path]:
    return copy_slices(real_files(real_ct_dir)[CT_SLICE], dst, modify=modify)


def test_non_existent_path(tmp_path):
    missing = tmp_path / "no" / "such" / "series"
    with pytest.raises(FileNotFoundError, match="does not exist") as err:
        load_volume(missing)
    assert str(missing) in str(err.value) and "DICOM series folder" in str(err.value)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="is empty") as err:
        load_volume(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(err.value)


def test_folder_without_dicom(tmp_path):
    folder = tmp_path / "nodicom"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    (folder / "patient1").mkdir()
    with pytest.raises(FileNotFoundError, match="no DICOM image files") as err:
        load_volume(folder)
    msg = str(err.value)
    assert str(folder) in msg and "2 file(s) checked" in msg and "a.txt" in msg
    assert "patient1" in msg and "subfolder" in msg  # tells where the series may be


def test_two_series_without_choice(real_pet_dir, real_ct_dir, tmp_path):
    folder = tmp_path / "mixed"
    _pet(real_pet_dir, folder)
    _ct(real_ct_dir, folder)
    series = list_dicom_series(folder)
    assert [(s["modality"], s["num_slices"]) for s in series] == [("CT", 4), ("PT", 4)]
    with pytest.raises(ValueError, match="holds 2 series; choose one with series_uid=") as err:
        load_volume(folder)
    msg = str(err.value)
    for s in series:  # UID, modality, description and slice count of each
        assert s["uid"] in msg and f"modality={s['modality']}" in msg and repr(s["description"]) in msg
    assert "slices=4" in msg and str(folder) in msg
    # the listed UID (or the modality) picks one
    pet_uid = next(s["uid"] for s in series if s["modality"] == "PT")
    assert load_volume(folder, series_uid=pet_uid).meta["modality"] == "PT"
    ct = load_volume(folder, modality="ct")
    assert ct.meta["modality"] == "CT" and ct.shape == (1, 512, 512, 4)
    with pytest.raises(ValueError, match="has modality PT"):
        load_volume(folder, series_uid=pet_uid, modality="ct")


def test_same_modality_series_need_uid(real_ct_dir, tmp_path):
    folder = tmp_path / "two_ct"
    _ct(real_ct_dir, folder)

    def other_series(ds, i):
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1"
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.1.{i + 1}"
        ds.SeriesDescription = "second recon"

    copy_slices(real_files(real_ct_dir)[:2], folder, modify=other_series, names=["o1.dcm", "o2.dcm"])
    with pytest.raises(ValueError, match="holds 2 CT series") as err:
        load_volume(folder, modality="ct")
    assert "'second recon'" in str(err.value) and "slices=2" in str(err.value)
    assert load_volume(folder, series_uid="1.2.826.0.1.3680043.8.498.1").shape[-1] == 2


# (tag deleted, text expected in the error)
MISSING_SUV_TAG_CASES = [
    ("PatientWeight", "PatientWeight (0010,1030)"),
    ("RadiopharmaceuticalInformationSequence", "RadiopharmaceuticalInformationSequence"),
    ("SeriesTime", "SeriesTime (0008,0031)"),
]


@pytest.mark.parametrize("tag, expected", MISSING_SUV_TAG_CASES)
def test_pet_without_suv_tag(real_pet_dir, tmp_path, tag, expected):
    def drop(ds, i):
        delattr(ds, tag)

    files = _pet(real_pet_dir, tmp_path / "pet", modify=drop, n=3)
    with pytest.raises(ValueError, match="cannot compute body-weight SUV") as err:
        load_volume(files[0].parent)
    msg = str(err.value)
    assert expected in msg and "units='bqml'" in msg and "DICOM file" in msg and str(files[0].parent) in msg
    # staying in Bq/ml still works, without an SUV factor
    bq = load_volume(files[0].parent, units="bqml")
    assert bq.meta["units"] == "bqml" and bq.meta["suv_factor"] is None and float(bq.max()) > 1000


def test_pet_zero_weight(real_pet_dir, tmp_path):
    def zero(ds, i):
        ds.PatientWeight = "0"

    files = _pet(real_pet_dir, tmp_path / "pet", modify=zero, n=2)
    with pytest.raises(ValueError, match=r"PatientWeight .*got '0'|PatientWeight.*0"):
        load_volume(files[0].parent)


@pytest.mark.parametrize("keep_bytes", [10_000, 700])  # cut inside the pixel data / inside the header
def test_truncated_file(real_pet_dir, tmp_path, keep_bytes):
    files = _pet(real_pet_dir, tmp_path / "pet")
    victim = files[1]
    victim.write_bytes(victim.read_bytes()[:keep_bytes])
    with pytest.raises(ValueError, match="truncated") as err:
        load_volume(files[0].parent, units="bqml")
    assert str(victim) in str(err.value)
    assert "Re-export" in str(err.value) or "re-export" in str(err.value)


def test_truncated_file_in_list_dicom_series(real_pet_dir, tmp_path):
    files = _pet(real_pet_dir, tmp_path / "pet")
    files[0].write_bytes(files[0].read_bytes()[:700])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        list_dicom_series(files[0].parent)


def test_a_file_is_not_a_folder(real_ct_dir, tmp_path):
    files = _ct(real_ct_dir, tmp_path / "ct")
    with pytest.raises(ValueError, match="pass the folder that holds the series"):
        load_volume(files[0])
    with pytest.raises(NotADirectoryError):
        list_dicom_series(files[0])


def test_missing_slice(real_ct_dir, tmp_path):
    files = copy_slices(real_files(real_ct_dir)[9:15], tmp_path / "ct")
    middle = sorted(files, key=lambda f: f.name)[3]
    middle.unlink()
    with pytest.raises(ValueError, match="slices are missing") as err:
        load_volume(tmp_path / "ct")
    msg = str(err.value)
    assert "10.000 mm" in msg and "5.000 mm" in msg and "about 1 slice(s) missing" in msg and "allow_gaps=True" in msg
    with pytest.warns(SliceSpacingWarning, match="slices are missing"):
        vol = load_volume(tmp_path / "ct", allow_gaps=True)
    assert vol.shape[-1] == 5 and vol.meta["spacing"][2] == pytest.approx(6.25)
    # exact positions are kept: four steps, one of them the 10 mm gap
    np.testing.assert_allclose(sorted(np.diff(vol.meta["slice_positions"])), [5, 5, 5, 10], atol=1e-4)


def test_non_uniform_step_warns_with_figures(real_ct_dir, tmp_path):
    def shift(ds, i):
        if i == 2:
            ipp = [float(v) for v in ds.ImagePositionPatient]
            ds.ImagePositionPatient = [ipp[0], ipp[1], ipp[2] + 0.4]

    _ct(real_ct_dir, tmp_path / "ct", modify=shift)
    with pytest.warns(SliceSpacingWarning, match=r"non-uniform slice step 4\.600-5\.400 mm .*off by up to 0\.400 mm"):
        vol = load_volume(tmp_path / "ct")
    assert vol.meta["spacing"][2] == pytest.approx(5.0)


def test_gantry_tilt(real_ct_dir, tmp_path):
    """Tilted IOP with positions stepping along z (how scanners store gantry tilt): sheared grid -> clear error."""
    tilt = np.deg2rad(15.0)

    def tilted(ds, i):
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, float(np.cos(tilt)), float(np.sin(tilt))]
        ds.GantryDetectorTilt = "15"

    files = _ct(real_ct_dir, tmp_path / "ct", modify=tilted)
    with pytest.raises(ValueError, match=r"sheared \(gantry tilt 15.0 deg\)") as err:
        load_volume(tmp_path / "ct")
    assert any(str(f) in str(err.value) for f in files) and "allow_tilt=True" in str(err.value)
    # allow_tilt: no resampling, a sheared affine that puts every slice origin at its ImagePositionPatient
    with pytest.warns(SliceSpacingWarning, match="sheared stack"):
        vol = load_volume(tmp_path / "ct", allow_tilt=True)
    aff = vol.affine.numpy()
    for z, f in enumerate(vol.meta["dicom_files"]):
        ipp = np.asarray([float(v) for v in pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient])
        np.testing.assert_allclose((aff @ [0.0, 0.0, z, 1.0])[:3], ipp * [-1, -1, 1], atol=1e-4)
        np.testing.assert_array_equal(vol[0, :, :, z].numpy().T, rescaled(Path(f)))
    np.testing.assert_allclose(np.diff(vol.meta["slice_positions"]), 5.0 * np.cos(tilt), atol=1e-4)


def test_duplicate_positions(real_ct_dir, tmp_path):
    files = _ct(real_ct_dir, tmp_path / "ct")
    copy_slices(files[:1], tmp_path / "ct", names=["copy_of_first.dcm"])
    with pytest.raises(ValueError, match="share a position"):
        load_volume(tmp_path / "ct")


@pytest.mark.parametrize(
    "tag, value, match",
    [
        ("ImageOrientationPatient", [0.0, 1.0, 0.0, 0.0, 0.0, -1.0], "different orientations"),  # a sagittal slice
        ("PixelSpacing", [0.5, 0.5], "different pixel sizes"),
        ("ImagePositionPatient", None, "no valid ImagePositionPatient"),
    ],
)
def test_inconsistent_slice(real_ct_dir, tmp_path, tag, value, match):
    def change(ds, i):
        if i == 1:
            if value is None:
                delattr(ds, tag)
            else:
                setattr(ds, tag, value)

    files = _ct(real_ct_dir, tmp_path / "ct", modify=change)
    with pytest.raises(ValueError, match=match) as err:
        load_volume(tmp_path / "ct")
    assert str(files[1]) in str(err.value)


def test_undecodable_pixel_data(real_ct_dir, tmp_path):
    """Compressed transfer syntax with garbage in the stream: names the file and the syntax."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    def broken(ds, i):
        if i == 0:
            ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
            ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 64])
            ds["PixelData"].VR = "OB"

    files = _ct(real_ct_dir, tmp_path / "ct", modify=broken)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="cannot decode the pixel data") as err:
            load_volume(tmp_path / "ct")
    assert str(files[0]) in str(err.value) and "JPEG 2000" in str(err.value)
