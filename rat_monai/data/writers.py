# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Writing a volume as NIfTI, or as a DICOM series derived from a source series (one file per source slice).

Both the restorer (:mod:`rat_monai.inference`: the restored scan) and the simulator from real scans
(:mod:`rat_monai.simulation.from_scans`: the simulated low-dose scan) write through these two functions.

The DICOM writer derives every output slice from its source slice: the source header is copied (patient, study,
frame of reference, geometry and modality tags such as PET ``Units``/decay/radiopharmaceutical), then the identity of
the new instance is set (new SeriesInstanceUID shared by the series, new SOPInstanceUID per file, ImageType
``DERIVED\\SECONDARY``, DerivationDescription, SeriesDescription, new SeriesNumber, a SourceImageSequence pointing
at the source slice) and the pixel data is replaced: by default the float values re-quantised to int16 with a
per-slice RescaleSlope/RescaleIntercept chosen from that slice's range (see :func:`quantize_slice`), or, for values
the source's own encoding holds (integer HU), stored with the source's rescale and pixel representation. Output files
are always uncompressed Explicit VR Little Endian, whatever the source's transfer syntax. Series written with
``uid_entropy`` are reproducible: UIDs derived from it (:func:`uid_from`) and no creation time stamp.

Volume convention (as ``rat_monai.data.load_volume``): a volume ``[X, Y, Z]`` (or channel-first ``[1, X, Y, Z]``)
whose ``volume[:, :, z].T`` is the ``[rows, columns]`` pixel array of the z-th source file.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds
from tqdm import tqdm

from rat_monai.data.units import units_descrip, write_units_sidecar

__all__ = ["quantize_slice", "uid_from", "write_dicom_series", "write_nifti", "DEFAULT_SERIES_SUFFIX"]

DEFAULT_SERIES_SUFFIX = " RAT restored"

# tags whose value refers to the OLD stored pixel values (or the old encoding) and would be wrong after re-quantising
_STALE_PIXEL_TAGS = (
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "SmallestPixelValueInSeries",
    "LargestPixelValueInSeries",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "RedPaletteColorLookupTableDescriptor",
    "ModalityLUTSequence",
    "FloatPixelData",
    "DoubleFloatPixelData",
    "ExtendedOffsetTable",
    "ExtendedOffsetTableLengths",
)
# of those, the ones still stale when the source's encoding is kept: statistics of the old values, and a padding
# RANGE (new values may fall into it; a single PixelPaddingValue keeps its meaning)
_STALE_VALUE_TAGS = (
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "SmallestPixelValueInSeries",
    "LargestPixelValueInSeries",
    "PixelPaddingRangeLimit",
)
_INT16_MIN, _INT16_MAX = -32768, 32767
_LO_MAX = 64  # maximum length of a LO (long string) value such as SeriesDescription


def uid_from(*entropy: object) -> str:
    """A valid DICOM UID derived deterministically from ``entropy`` (pydicom ``generate_uid`` with entropy sources)."""
    return str(generate_uid(entropy_srcs=[str(e) for e in entropy]))


def _ds_value(x: float) -> float:
    """``x`` rounded to what a DICOM DS string (16 characters at most) can hold, as the float a reader will parse."""
    return float(format_number_as_ds(float(x)))


def _finite(values: np.ndarray, caller: str) -> np.ndarray:
    """``values`` as float64; raises ValueError when empty or holding NaN/infinite values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError(f"{caller}: the slice is empty.")
    if not np.all(np.isfinite(v)):
        raise ValueError(
            f"{caller}: the slice holds {int(np.sum(~np.isfinite(v)))} NaN/infinite values; "
            "DICOM integer pixel data cannot store them (check the network output)."
        )
    return v


def _stored_as_source(values: np.ndarray, src: Dataset) -> np.ndarray:
    """``values`` in the source's encoding: its RescaleSlope/Intercept and pixel representation (rounded, clipped)."""
    v = _finite(values, "write_dicom_series")
    slope = float(src.get("RescaleSlope", 1) or 1)
    intercept = float(src.get("RescaleIntercept", 0) or 0)
    signed = int(src.get("PixelRepresentation", 0)) == 1
    lo, hi = (_INT16_MIN, _INT16_MAX) if signed else (0, 65535)
    return np.clip(np.round((v - intercept) / slope), lo, hi).astype(np.int16 if signed else np.uint16)


def quantize_slice(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Re-quantise a float slice to int16 with a slope/intercept chosen from the slice's own range.

    The slope spreads ``[min, max]`` over 65534 int16 steps, so the round-trip error ``|slope * stored + intercept -
    value|`` is at most half a step, ``(max - min) / 131068`` (below 0.001 % of the slice range). The intercept is
    snapped to a multiple of the slope so that 0 (e.g. PET background) stays (almost exactly) 0. Slope and intercept
    are rounded to DICOM DS precision BEFORE quantising, so the values a reader reconstructs are the ones checked here.
    A constant slice is stored as zeros with slope 1 and the constant as intercept.

    Args:
        values: 2D float array (any shape works), finite.

    Returns:
        ``(stored, slope, intercept)`` with ``stored`` int16 of the same shape and
        ``stored * slope + intercept ~= values``.

    Raises:
        ValueError: if ``values`` is empty or holds NaN or infinite values.
    """
    v = _finite(values, "quantize_slice")
    lo, hi = float(v.min()), float(v.max())
    span = hi - lo
    if span <= max(abs(lo), abs(hi), 1.0) * 1e-12:  # constant slice
        intercept = _ds_value(lo)
        return np.zeros(v.shape, dtype=np.int16), 1.0, intercept
    slope = _ds_value(span / 65534.0)
    if slope <= 0:  # span below DS resolution: fall back to the smallest representable step
        slope = float(format_number_as_ds(span / 65534.0 + np.finfo(np.float64).tiny))
    centre = lo + 32767.0 * slope  # maps lo -> -32767, hi -> ~ +32767
    intercept = _ds_value(slope * np.round(centre / slope))
    stored = np.clip(np.rint((v - intercept) / slope), _INT16_MIN, _INT16_MAX).astype(np.int16)
    return stored, slope, intercept


def _as_xyz(volume: np.ndarray) -> np.ndarray:
    vol = np.asarray(volume.detach().cpu() if hasattr(volume, "detach") else volume)
    if vol.ndim == 4:
        if vol.shape[0] != 1:
            raise ValueError(f"expected a single-channel volume [1, X, Y, Z], got shape {tuple(vol.shape)}.")
        vol = vol[0]
    if vol.ndim != 3:
        raise ValueError(f"expected a volume [X, Y, Z] or [1, X, Y, Z], got shape {tuple(vol.shape)}.")
    return vol


def _read_source(path: str | os.PathLike) -> Dataset:
    try:
        return pydicom.dcmread(os.fspath(path), stop_before_pixels=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"source DICOM slice not found: {path} (was the input series moved?)") from None
    except (InvalidDicomError, OSError, ValueError, EOFError) as e:
        raise ValueError(f"cannot read the source DICOM slice {path}: {e}") from e


def _derived_image_type(src: Dataset) -> list[str]:
    old = list(src.get("ImageType", []) or [])
    if isinstance(old, str):
        old = [old]
    return ["DERIVED", "SECONDARY"] + [str(v) for v in old[2:]]


def _derive_slice(
    src: Dataset,
    stored: np.ndarray,
    rescale: tuple[float, float] | None,
    *,
    sop_uid: str,
    series_uid: str,
    series_number: int,
    series_description: str,
    derivation_description: str,
    image_comments: str | None,
    dose_factor: float,
    reproducible: bool,
) -> Dataset:
    """``src`` turned into the derived instance holding ``stored`` (``rescale`` = (slope, intercept); None: the
    source's encoding is kept). A ``reproducible`` instance gets no creation time stamp."""
    ds = src  # already a private copy read from disk
    old_sop_class = ds.get("SOPClassUID", None)
    old_sop_instance = ds.get("SOPInstanceUID", None)

    # identity of the derived instance
    ds.SOPInstanceUID = sop_uid
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description[:_LO_MAX]
    ds.ImageType = _derived_image_type(src)
    ds.DerivationDescription = derivation_description[:1024]
    if image_comments is not None:
        ds.ImageComments = image_comments[:10240]
    for keyword in ("InstanceCreationDate", "InstanceCreationTime"):
        if keyword in ds:
            delattr(ds, keyword)
    if not reproducible:
        now = datetime.datetime.now()
        ds.InstanceCreationDate = now.strftime("%Y%m%d")
        ds.InstanceCreationTime = now.strftime("%H%M%S")
    if old_sop_class is not None and old_sop_instance is not None:
        ref = Dataset()
        ref.ReferencedSOPClassUID = old_sop_class
        ref.ReferencedSOPInstanceUID = old_sop_instance
        ds.SourceImageSequence = DicomSequence([ref])
    if dose_factor != 1.0:  # PET at a fraction of the dose: the SUV scale stays that of the stored Bq/ml
        for item in ds.get("RadiopharmaceuticalInformationSequence", []):
            if "RadionuclideTotalDose" in item:
                item.RadionuclideTotalDose = f"{float(item.RadionuclideTotalDose) * dose_factor:.6g}"

    # pixel module: native 16 bit, the source's geometry and photometric interpretation kept
    for keyword in _STALE_PIXEL_TAGS if rescale is not None else _STALE_VALUE_TAGS:
        if keyword in ds:
            delattr(ds, keyword)
    ds.SamplesPerPixel = 1
    if ds.get("PhotometricInterpretation", "") not in ("MONOCHROME1", "MONOCHROME2"):
        ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(stored.shape[0]), int(stored.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    if rescale is not None:
        ds.PixelRepresentation = 1
        ds.RescaleSlope = format_number_as_ds(rescale[0])
        ds.RescaleIntercept = format_number_as_ds(rescale[1])
    for keyword in ("NumberOfFrames", "PlanarConfiguration"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.PixelData = np.ascontiguousarray(stored, dtype=stored.dtype.newbyteorder("<")).tobytes()
    ds["PixelData"].VR = "OW"

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = old_sop_class if old_sop_class is not None else ds.get("SOPClassUID")
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds


def write_dicom_series(
    volume: np.ndarray,
    source_files: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    series_description: str | None = None,
    series_description_suffix: str = DEFAULT_SERIES_SUFFIX,
    derivation_description: str = "Restored by rat-monai",
    image_comments: str | None = None,
    series_number: int | None = None,
    series_instance_uid: str | None = None,
    uid_entropy: Sequence[object] | None = None,
    dose_factor: float = 1.0,
    keep_source_rescale: bool = False,
    progress: bool = False,
) -> list[str]:
    """Write ``volume`` as a derived DICOM series, one file per source slice, into ``output_dir``.

    Args:
        volume: float array ``[X, Y, Z]`` or ``[1, X, Y, Z]`` in the units the source series stores (HU for CT, the
            source ``Units`` e.g. Bq/ml for PET); ``volume[:, :, z].T`` is written from ``source_files[z]``.
        source_files: the source slice files in the volume's z order (``meta["dicom_files"]`` of ``load_volume``).
        output_dir: folder for the new files (created if missing). Files are named ``slice_0000.dcm`` ... in z order.
        series_description: the SeriesDescription. Defaults to the source's + ``series_description_suffix``.
        series_description_suffix: appended to the source SeriesDescription when ``series_description`` is None.
            Defaults to ``" RAT restored"``.
        derivation_description: the DerivationDescription tag. Defaults to ``"Restored by rat-monai"``.
        image_comments: the ImageComments tag. Defaults to None (the source's kept).
        series_number: SeriesNumber of the new series. Defaults to the source SeriesNumber + 1000.
        series_instance_uid: the new SeriesInstanceUID. Defaults to ``uid_from(*uid_entropy)`` with ``uid_entropy``,
            else a fresh ``pydicom.uid.generate_uid()``.
        uid_entropy: makes the series reproducible: SOPInstanceUIDs ``uid_from(*uid_entropy, "sop", z)`` and no
            InstanceCreationDate/Time. Defaults to None (fresh UIDs, creation time now).
        dose_factor: RadionuclideTotalDose is multiplied by it (a PET series at ``1 / d`` of the dose keeps its SUV
            scale with ``1 / d``). Defaults to 1 (unchanged).
        keep_source_rescale: store the values with each source slice's RescaleSlope/Intercept and pixel
            representation (rounded to its steps and clipped to its range: for values that encoding holds, such as
            integer HU of a CT) instead of re-quantising them per slice. Defaults to False.
        progress: show a tqdm progress bar. Defaults to False.

    Returns:
        the written file paths, in z order.

    Raises:
        ValueError: if the number of source files is not the number of slices, a slice's shape differs from its
            source's Rows x Columns, a source file is unreadable, or the volume holds NaN/infinite values.
        FileNotFoundError: if a source file is missing.
    """
    vol = _as_xyz(volume)
    files = [os.fspath(f) for f in source_files]
    if len(files) != vol.shape[2]:
        raise ValueError(
            f"write_dicom_series: {len(files)} source files for a volume of {vol.shape[2]} slices "
            f"(shape {tuple(vol.shape)}); pass meta['dicom_files'] of the loaded volume."
        )
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    entropy = None if uid_entropy is None else tuple(uid_entropy)
    series_uid = series_instance_uid or (generate_uid() if entropy is None else uid_from(*entropy))
    written: list[str] = []
    for z, src_path in enumerate(tqdm(files, desc="write DICOM", unit="slice", disable=not progress)):
        src = _read_source(src_path)
        rows, cols = int(src.get("Rows", 0)), int(src.get("Columns", 0))
        plane = vol[:, :, z].T
        if plane.shape != (rows, cols):
            raise ValueError(
                f"write_dicom_series: slice {z} has shape {plane.shape} (rows, cols) but its source {src_path} is "
                f"{rows} x {cols}."
            )
        if keep_source_rescale:
            stored, rescale = _stored_as_source(plane, src), None
        else:
            stored, *rescale = quantize_slice(plane)
        number = series_number if series_number is not None else int(src.get("SeriesNumber", 0) or 0) + 1000
        description = series_description
        if description is None:
            description = str(src.get("SeriesDescription", "") or "") + series_description_suffix
        ds = _derive_slice(
            src,
            stored,
            None if rescale is None else tuple(rescale),
            sop_uid=generate_uid() if entropy is None else uid_from(*entropy, "sop", z),
            series_uid=series_uid,
            series_number=number,
            series_description=description,
            derivation_description=derivation_description,
            image_comments=image_comments,
            dose_factor=dose_factor,
            reproducible=entropy is not None,
        )
        path = out / f"slice_{z:04d}.dcm"
        ds.save_as(path, implicit_vr=False, little_endian=True, enforce_file_format=True)
        written.append(str(path))
    return written


def write_nifti(
    volume: np.ndarray,
    affine: np.ndarray,
    path: str | os.PathLike,
    modality: str | None = None,
    units: str | None = None,
    description: str = "rat-monai",
    sidecar: Mapping[str, Any] | None = None,
    **entries: Any,
) -> str:
    """Write ``volume`` as a float32 NIfTI-1 file with the given RAS ``affine`` (nibabel/MONAI convention).

    Both the sform and the qform are set to ``affine`` (code 1, scanner), so nibabel, MONAI and ITK read the same
    geometry back. With ``units`` the units are written machine-readably twice: in the header ``descrip``
    (``"PT BQML rat-monai"``) and in a JSON sidecar ``<name>.json`` beside the file (``{"modality", "units",
    ...sidecar, ...entries}``, entries that are None left out), which ``rat_monai.data.load_volume`` reads back.
    Without ``units`` neither is written.

    Args:
        volume: float array ``[X, Y, Z]`` or ``[1, X, Y, Z]``.
        affine: 4x4 voxel-to-RAS-world matrix (``MetaTensor.affine`` of the input volume).
        path: output file (``.nii`` or ``.nii.gz``).
        modality: DICOM modality of the values (``"PT"``, ``"CT"``). Defaults to None.
        units: ``"suv"``, ``"bqml"`` or ``"hu"``. Defaults to None (no declaration written).
        description: rest of the header ``descrip``. Defaults to ``"rat-monai"``.
        sidecar: more sidecar entries as a mapping (any keys, e.g. the simulator's ``"description"``). Defaults to
            None.
        entries: more sidecar entries as keywords, e.g. ``suv_factor`` (SUV per Bq/ml) for PET in Bq/ml.

    Returns:
        the written path.
    """
    vol = _as_xyz(volume).astype(np.float32, copy=False)
    aff = np.asarray(affine.detach().cpu() if hasattr(affine, "detach") else affine, dtype=np.float64)
    if aff.shape != (4, 4):
        raise ValueError(f"write_nifti: the affine must be 4x4, got shape {aff.shape}.")
    img = nib.Nifti1Image(vol, aff)
    img.set_sform(aff, code=1)
    img.set_qform(aff, code=1)
    img.header.set_xyzt_units("mm", "sec")
    if units:
        img.header["descrip"] = units_descrip(str(modality or "?"), units, description).encode()
    nib.save(img, os.fspath(path))
    if units:
        write_units_sidecar(path, str(modality or ""), units, **{**(sidecar or {}), **entries})
    return os.fspath(path)
