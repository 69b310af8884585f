# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Compressed transfer syntaxes decode to the same volume as the uncompressed real slices.

Real slices are re-encoded in tmp_path: JPEG 2000 (lossless) and RLE with pydicom's own encoders (openjpeg),
JPEG-LS with pydicom + pyjpegls when installed, and JPEG Lossless (process 14, SV1) with GDCM through SimpleITK
(pydicom has no JPEG Lossless encoder), its codestream moved into the real slice's dataset. Decoding goes through
pydicom's plugins; for the JPEG family the test also checks that pylibjpeg alone decodes each file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from _volume_test_utils import copy_slices, real_files
from pydicom.dataset import Dataset
from pydicom.pixels import get_encoder
from pydicom.uid import UID, JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless, RLELossless

from rat_monai.data import load_volume

HAVE_JPEGLS_ENCODER = get_encoder(JPEGLSLossless).is_available  # pydicom's JPEG-LS encoder needs pyjpegls
NEEDS_PYJPEGLS = pytest.mark.skipif(
    not HAVE_JPEGLS_ENCODER, reason="JPEG-LS test data needs an encoder: pip install pyjpegls (decoding is pylibjpeg)"
)

PET_SLICE = slice(120, 123)  # three real PET slices (different RescaleSlope each)
CT_SLICE = slice(20, 23)  # three real CT slices (signed int16, -3024 outside the field of view)


def _gdcm_jpeg_lossless(ds: Dataset, workdir: Path) -> None:
    """Re-encode ``ds`` as JPEG Lossless SV1 with GDCM (SimpleITK) and transplant the codestream into ``ds``."""
    ref = ds.pixel_array
    img = sitk.GetImageFromArray(ref[None].astype(np.int16 if ds.PixelRepresentation else np.uint16))
    out = workdir / f"gdcm_{ds.SOPInstanceUID}.dcm"
    writer = sitk.ImageFileWriter()
    writer.SetImageIO("GDCMImageIO")
    writer.SetFileName(str(out))
    writer.SetUseCompression(True)
    writer.SetCompressor("JPEG")
    writer.Execute(img)
    gdcm = pydicom.dcmread(out)
    assert gdcm.file_meta.TransferSyntaxUID == JPEGLosslessSV1, gdcm.file_meta.TransferSyntaxUID
    ds.compress(RLELossless)  # lets pydicom set up the encapsulated encoding; the frame is replaced below
    ds.PixelData = gdcm.PixelData
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1


def _encoder(syntax: UID, workdir: Path):
    def encode(ds: Dataset, i: int) -> None:
        ref = ds.pixel_array.copy()
        if syntax == JPEGLosslessSV1:
            _gdcm_jpeg_lossless(ds, workdir)
        elif syntax == JPEGLSNearLossless:
            ds.compress(syntax, jls_error=2)
        else:
            ds.compress(syntax)
        assert ds.file_meta.TransferSyntaxUID == syntax
        ref_ok = np.abs(ds.pixel_array.astype(np.int64) - ref).max() <= (2 if syntax == JPEGLSNearLossless else 0)
        assert ref_ok, f"test data: {syntax.name} round trip of the slice failed"

    return encode


# (series, transfer syntax, max |difference| in stored pixel values)
SYNTAX_CASES = [
    pytest.param(which, syntax, 0, id=f"{which}-{name}", marks=marks)
    for which in ("pet", "ct")
    for syntax, name, marks in (
        (JPEG2000Lossless, "jpeg2000-lossless", ()),
        (JPEGLosslessSV1, "jpeg-lossless-sv1", ()),
        (JPEGLSLossless, "jpeg-ls-lossless", NEEDS_PYJPEGLS),
        (RLELossless, "rle-lossless", ()),
    )
]
# near-lossless (NEAR=2) only on CT: on the PET slices (stored values up to 32767) the encoder's reconstruction of a
# pixel at 32767 overflows int16 and wraps to -32767 in pyjpegls and libjpeg alike -- a property of lossy JPEG-LS at
# full signed range, not of the loader.
SYNTAX_CASES.append(pytest.param("ct", JPEGLSNearLossless, 2, id="ct-jpeg-ls-near-lossless", marks=NEEDS_PYJPEGLS))


def _stored_range(files: list[Path]) -> float:
    """Largest RescaleSlope of the files: one stored unit is at most this much in real units."""
    return max(float(pydicom.dcmread(f, stop_before_pixels=True).get("RescaleSlope", 1.0)) for f in files)


@pytest.mark.parametrize("which, syntax, tol", SYNTAX_CASES)
def test_compressed_series_equals_uncompressed(real_pet_dir, real_ct_dir, tmp_path, which, syntax, tol):
    files = real_files(real_pet_dir)[PET_SLICE] if which == "pet" else real_files(real_ct_dir)[CT_SLICE]
    ref = load_volume(copy_slices(files, tmp_path / "plain")[0].parent, units="stored")
    comp = copy_slices(files, tmp_path / "comp", modify=_encoder(syntax, tmp_path))
    for f in comp:
        assert pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
        if syntax != RLELossless:  # the JPEG family must decode with the pylibjpeg plugins alone
            pydicom.pixels.pixel_array(str(f), decoding_plugin="pylibjpeg")
    vol = load_volume(tmp_path / "comp", units="stored")
    assert vol.shape == ref.shape and vol.meta["slice_positions"] == ref.meta["slice_positions"]
    np.testing.assert_allclose(vol.numpy(), ref.numpy(), rtol=0, atol=tol * _stored_range(files) + 1e-3)
    if tol == 0:
        np.testing.assert_array_equal(vol.numpy(), ref.numpy())


def test_mixed_syntaxes_in_one_series(real_pet_dir, tmp_path):
    """One PET series whose slices use different transfer syntaxes still loads, in SUV, as the original."""
    files = real_files(real_pet_dir)[PET_SLICE]
    syntaxes = [JPEG2000Lossless, JPEGLosslessSV1, RLELossless]

    def encode(ds, i):
        _encoder(syntaxes[i], tmp_path)(ds, i)

    ref = load_volume(copy_slices(files, tmp_path / "plain")[0].parent)
    vol = load_volume(copy_slices(files, tmp_path / "mixed", modify=encode)[0].parent)
    assert vol.meta["units"] == "suv"
    np.testing.assert_array_equal(vol.numpy(), ref.numpy())


# JPEG-LS without an encoder: a 1000-byte lossless JPEG-LS codestream committed in tests/data/fixtures, made by
# pydicom + pyjpegls from this deterministic signed pattern; decoding it needs only pylibjpeg(-libjpeg).
JPEGLS_FIXTURE = Path(__file__).parent / "fixtures" / "jpegls_lossless_int16_64x64.jls"


def _jpegls_pattern() -> np.ndarray:
    return ((np.add.outer(np.arange(64) * 37, np.arange(64) * 11) % 4000) - 2000).astype(np.int16)


def test_jpegls_fixture_decodes_with_pylibjpeg(real_ct_dir, tmp_path):
    from pydicom.encaps import encapsulate

    frame = JPEGLS_FIXTURE.read_bytes()

    def to_jpegls(ds, i):
        ds.Rows = ds.Columns = 64
        ds.PixelData = encapsulate([frame])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGLSLossless

    files = copy_slices(real_files(real_ct_dir)[:2], tmp_path / "jls", modify=to_jpegls)
    for f in files:
        decoded = pydicom.pixels.pixel_array(str(f), decoding_plugin="pylibjpeg")
        np.testing.assert_array_equal(decoded, _jpegls_pattern())
    vol = load_volume(tmp_path / "jls")
    assert vol.shape == (1, 64, 64, 2) and vol.meta["units"] == "hu"
    expected = _jpegls_pattern().astype(np.float32) - 1024.0  # RescaleSlope 1, RescaleIntercept -1024
    for z in range(2):
        np.testing.assert_array_equal(vol[0, :, :, z].numpy().T, expected)
