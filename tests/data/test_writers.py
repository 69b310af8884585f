# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from parameterized import parameterized
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from rat_monai.data.writers import quantize_slice, uid_from, write_dicom_series, write_nifti

# (name, values): float slices of different ranges; the reconstruction error must stay below half a step
QUANTIZE_CASES = [
    ("ct_like", np.random.default_rng(0).uniform(-3024.0, 1377.0, (32, 40))),
    ("pet_bqml", np.random.default_rng(1).gamma(0.5, 4000.0, (16, 16))),
    ("tiny_range", 1e-3 + 1e-9 * np.random.default_rng(2).random((8, 8))),
    ("huge", np.random.default_rng(3).uniform(-1e9, 3e9, (8, 8))),
    ("negative", -np.random.default_rng(4).uniform(5.0, 6.0, (8, 8))),
    ("with_zero_background", np.pad(np.random.default_rng(5).uniform(1.0, 500.0, (6, 6)), 3)),
]


def _rescaled(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _sorted_sources(folder: Path) -> list[str]:
    """Source files in position order along the slice normal (as load_volume orders them)."""
    files = sorted(str(p) for p in folder.glob("*.dcm"))
    heads = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    normal = np.cross(*np.asarray(heads[0].ImageOrientationPatient, float).reshape(2, 3))
    pos = [float(np.dot(normal, np.asarray(h.ImagePositionPatient, float))) for h in heads]
    return [files[i] for i in np.argsort(pos)]


def _volume_from(files: list[str]) -> np.ndarray:
    return np.stack([_rescaled(pydicom.dcmread(f)).T for f in files], axis=-1)


class TestQuantizeSlice(unittest.TestCase):
    @parameterized.expand(QUANTIZE_CASES)
    def test_round_trip_within_half_step(self, _, values):
        stored, slope, intercept = quantize_slice(values)
        self.assertEqual(stored.dtype, np.int16)
        self.assertEqual(stored.shape, values.shape)
        back = stored.astype(np.float64) * slope + intercept
        span = values.max() - values.min()
        self.assertLessEqual(np.abs(back - values).max(), 0.5 * slope * (1 + 1e-9) + 1e-12 * np.abs(values).max())
        self.assertLess(np.abs(back - values).max(), 1e-4 * span)
        # the int16 range is used (not a few levels of it)
        self.assertGreater(int(stored.max()) - int(stored.min()), 60000)
        # slope and intercept are exactly what a DICOM reader parses from the DS strings
        self.assertEqual(float(pydicom.valuerep.format_number_as_ds(slope)), slope)
        self.assertEqual(float(pydicom.valuerep.format_number_as_ds(intercept)), intercept)

    def test_zero_stays_zero(self):
        values = np.pad(np.random.default_rng(6).uniform(10.0, 2e5, (5, 5)), 2)
        stored, slope, intercept = quantize_slice(values)
        back = stored.astype(np.float64) * slope + intercept
        self.assertLess(np.abs(back[values == 0]).max(), 1e-6 * slope)

    @parameterized.expand([("zeros", 0.0), ("constant", -1024.0), ("big", 273900.5)])
    def test_constant_slice(self, _, value):
        stored, slope, intercept = quantize_slice(np.full((4, 5), value))
        np.testing.assert_array_equal(stored, 0)
        self.assertEqual(slope, 1.0)
        self.assertEqual(intercept, value)

    def test_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "NaN"):
            quantize_slice(np.array([[0.0, np.nan]]))
        with self.assertRaisesRegex(ValueError, "NaN/infinite"):
            quantize_slice(np.array([[0.0, np.inf]]))
        with self.assertRaisesRegex(ValueError, "empty"):
            quantize_slice(np.zeros((0, 3)))


@pytest.fixture
def ct_sources(real_ct_dir) -> list[str]:
    return _sorted_sources(real_ct_dir)[10:16]  # 6 contiguous slices of 512x512


def _restored_like(files: list[str], seed: int = 0) -> np.ndarray:
    """A float 'restored' volume: the source values scaled, shifted and with sub-integer noise."""
    vol = _volume_from(files)
    noise = np.random.default_rng(seed).normal(0.0, 3.0, vol.shape)
    return (0.9 * vol + 7.25 + noise).astype(np.float32)


def test_ct_series_round_trip(ct_sources, tmp_path):
    vol = _restored_like(ct_sources)
    out = tmp_path / "dicom"
    written = write_dicom_series(vol, ct_sources, out, series_number=77, derivation_description="rat test")
    assert len(written) == len(ct_sources) == vol.shape[-1]

    back = _volume_from(written)
    assert np.abs(back - vol).max() < 1e-3 * (vol.max() - vol.min())  # far below the required 0.1 %

    src_heads = [pydicom.dcmread(f, stop_before_pixels=True) for f in ct_sources]
    new = [pydicom.dcmread(f) for f in written]
    series_uids = {ds.SeriesInstanceUID for ds in new}
    assert len(series_uids) == 1 and src_heads[0].SeriesInstanceUID not in series_uids
    assert len({ds.SOPInstanceUID for ds in new}) == len(new)
    for src, ds in zip(src_heads, new):
        assert ds.StudyInstanceUID == src.StudyInstanceUID
        assert ds.FrameOfReferenceUID == src.FrameOfReferenceUID
        assert ds.SOPInstanceUID != src.SOPInstanceUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness"):
            assert list(np.atleast_1d(ds[tag].value)) == list(np.atleast_1d(src[tag].value)), tag
        assert ds.InstanceNumber == src.InstanceNumber
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert ds.DerivationDescription == "rat test"
        assert ds.SeriesDescription == src.SeriesDescription + " RAT restored"
        assert ds.SeriesNumber == 77
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
        assert "PixelPaddingValue" not in ds  # -2000 meant 'padding' only in the source's stored values
        assert (ds.BitsAllocated, ds.PixelRepresentation, ds.Rows, ds.Columns) == (16, 1, src.Rows, src.Columns)

    # SimpleITK reads the series with the source's geometry
    reader = sitk.ImageSeriesReader()
    img = sitk.ReadImage(reader.GetGDCMSeriesFileNames(str(out)), sitk.sitkFloat64)
    ref = sitk.ReadImage(ct_sources, sitk.sitkFloat64)
    assert img.GetSize() == ref.GetSize()
    np.testing.assert_allclose(img.GetSpacing(), ref.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(img.GetOrigin(), ref.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(img.GetDirection(), ref.GetDirection(), atol=1e-9)
    arr = np.transpose(sitk.GetArrayFromImage(img), (2, 1, 0))  # ITK [z, y, x] -> [x, y, z]
    assert np.abs(arr - vol).max() < 1e-3 * (vol.max() - vol.min())


def test_compressed_source_written_uncompressed(ct_sources, tmp_path):
    src_dir = tmp_path / "rle"
    src_dir.mkdir()
    files = []
    for i, f in enumerate(ct_sources[:2]):
        ds = pydicom.dcmread(f)
        ds.compress(RLELossless)
        files.append(str(src_dir / f"{i}.dcm"))
        ds.save_as(files[-1])
    assert pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID == RLELossless
    vol = _restored_like(ct_sources[:2])
    written = write_dicom_series(vol, files, tmp_path / "out")
    ds = pydicom.dcmread(written[1])
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.abs(_rescaled(ds).T - vol[..., 1]).max() < 1e-3 * np.ptp(vol)


def test_pet_tags_kept(real_pet_dir, tmp_path):
    sources = _sorted_sources(real_pet_dir)[100:103]
    vol = _volume_from(sources).astype(np.float32) * 0.8
    written = write_dicom_series(vol, sources, tmp_path / "pet")
    for src_path, path in zip(sources, written):
        src, ds = pydicom.dcmread(src_path, stop_before_pixels=True), pydicom.dcmread(path)
        for kw in ("Units", "DecayCorrection", "DecayFactor", "PatientWeight", "SeriesTime", "CorrectedImage"):
            assert ds[kw].value == src[kw].value, kw
        rp, rp_src = ds.RadiopharmaceuticalInformationSequence[0], src.RadiopharmaceuticalInformationSequence[0]
        assert rp.RadionuclideTotalDose == rp_src.RadionuclideTotalDose
        assert rp.RadiopharmaceuticalStartTime == rp_src.RadiopharmaceuticalStartTime
        assert "LargestImagePixelValue" not in ds
    back = _volume_from(written)
    assert np.abs(back - vol).max() < 1e-4 * np.ptp(vol)


def test_reproducible_series_in_source_encoding(ct_sources, tmp_path):
    """``uid_entropy``: the same bytes twice (UIDs from the entropy, no creation time); ``keep_source_rescale``:
    integer HU stored exactly, with each source slice's own rescale and pixel representation."""
    vol = np.round(_volume_from(ct_sources[:2]) + 5.0).astype(np.float32)
    kw = dict(series_description="sim", image_comments="c", uid_entropy=("t", 1), keep_source_rescale=True)
    a = write_dicom_series(vol, ct_sources[:2], tmp_path / "a", **kw)
    b = write_dicom_series(vol, ct_sources[:2], tmp_path / "b", **kw)
    assert [Path(f).read_bytes() for f in a] == [Path(f).read_bytes() for f in b]
    np.testing.assert_array_equal(_volume_from(a), vol)
    for src_path, path in zip(ct_sources, a):
        src, ds = pydicom.dcmread(src_path, stop_before_pixels=True), pydicom.dcmread(path, stop_before_pixels=True)
        for kw_ in ("RescaleSlope", "RescaleIntercept", "PixelRepresentation"):
            assert ds[kw_].value == src[kw_].value, kw_
        assert ds.SeriesDescription == "sim" and ds.ImageComments == "c" and "InstanceCreationTime" not in ds
        assert ds.SeriesInstanceUID == uid_from("t", 1)


def test_pet_dose_factor(real_pet_dir, tmp_path):
    sources = _sorted_sources(real_pet_dir)[100:102]
    written = write_dicom_series(_volume_from(sources) / 12.0, sources, tmp_path / "low", dose_factor=1 / 12)
    src, ds = pydicom.dcmread(sources[0], stop_before_pixels=True), pydicom.dcmread(written[0])
    dose = float(ds.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose)
    assert dose == pytest.approx(float(src.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose) / 12,
                                 rel=1e-5)


def test_write_dicom_ill_arg(ct_sources, tmp_path):
    vol = _restored_like(ct_sources)
    with pytest.raises(ValueError, match="6 source files for a volume of 5 slices"):
        write_dicom_series(vol[..., :5], ct_sources, tmp_path / "a")
    with pytest.raises(ValueError, match="rows, cols"):
        write_dicom_series(vol[:256], ct_sources, tmp_path / "b")
    with pytest.raises(ValueError, match=r"\[1, X, Y, Z\]"):
        write_dicom_series(np.stack([vol, vol]), ct_sources, tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="source DICOM slice not found"):
        write_dicom_series(vol[..., :1], [str(tmp_path / "missing.dcm")], tmp_path / "d")
    (tmp_path / "junk.dcm").write_bytes(b"not dicom at all")
    with pytest.raises(ValueError, match="cannot read the source DICOM slice"):
        write_dicom_series(vol[..., :1], [str(tmp_path / "junk.dcm")], tmp_path / "e")
    bad = vol[..., :1].copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_dicom_series(bad, ct_sources[:1], tmp_path / "f")


@pytest.mark.parametrize("oblique", [False, True])
def test_write_nifti_affine(oblique, tmp_path):
    affine = np.eye(4)
    if oblique:
        rot = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
        affine[:3, :3] = rot @ np.diag([0.8, 0.8, 5.0])
        affine[:3, 3] = [-198.2, 204.0, -175.0]
    vol = np.random.default_rng(1).normal(size=(1, 6, 5, 4)).astype(np.float32)
    path = write_nifti(vol, affine, tmp_path / "x.nii.gz")
    img = nib.load(path)
    np.testing.assert_allclose(img.affine, affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(img.dataobj), vol[0])
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    with pytest.raises(ValueError, match="4x4"):
        write_nifti(vol, np.eye(3), tmp_path / "y.nii.gz")
