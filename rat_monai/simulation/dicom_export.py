# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Writing simulated volumes as new DICOM series whose headers are made up here (PET with SUV tags, CT with HU
rescale), and the RAS affine of the same volumes for NIfTI.

A series derived from a real source series (same patient, study and geometry) is written by
:func:`rat_monai.data.writers.write_dicom_series` instead; NIfTI files by :func:`rat_monai.data.writers.write_nifti`.

Array convention (the one :func:`rat_monai.data.load_volume` reads back): a volume is ``[X, Y, Z]`` with
``vol[:, :, k].T == pixel_array`` of the k-th slice (X = column, Y = row), slices ascending along +z (LPS, superior),
axial orientation ``ImageOrientationPatient = [1, 0, 0, 0, 1, 0]``. The matching RAS affine written to NIfTI is
``diag(-dx, -dy, dz)`` with origin ``(-ox, -oy, oz)`` for the LPS origin ``(ox, oy, oz)`` of the first slice.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

from rat_monai.data.writers import uid_from

__all__ = ["ras_affine", "write_synthetic_series"]

PET_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.128"
CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"


def ras_affine(spacing: Sequence[float], origin_lps: Sequence[float]) -> np.ndarray:
    """RAS affine of an axial ``[X, Y, Z]`` volume with voxel ``spacing`` and first-voxel LPS ``origin_lps``."""
    aff = np.diag([-float(spacing[0]), -float(spacing[1]), float(spacing[2]), 1.0])
    aff[:3, 3] = [-float(origin_lps[0]), -float(origin_lps[1]), float(origin_lps[2])]
    return aff


def _fmt_time(t: _dt.datetime) -> str:
    return t.strftime("%H%M%S.%f")[:13]


def write_synthetic_series(
    volume: np.ndarray,
    out_dir: str | os.PathLike,
    *,
    modality: str,
    spacing: Sequence[float],
    origin_lps: Sequence[float],
    study_uid: str,
    series_uid: str,
    frame_uid: str,
    uid_entropy: Sequence[object],
    series_number: int = 1,
    series_description: str = "",
    patient_id: str = "SIM",
    patient_weight_kg: float | None = None,
    injected_dose_bq: float | None = None,
    half_life_s: float = 6586.2,
    injection_time: _dt.datetime | None = None,
    series_time: _dt.datetime | None = None,
) -> list[Path]:
    """Write ``volume`` ``[X, Y, Z]`` as a new DICOM series (one file per slice, header made up here) into ``out_dir``.

    Args:
        volume: PET in Bq/ml or CT in HU, ``[X, Y, Z]`` (see the module docstring for the layout).
        out_dir: destination folder (created).
        modality: "PT" or "CT".
        spacing: ``(dx, dy, dz)`` in mm.
        origin_lps: LPS position of voxel ``[0, 0, 0]``.
        study_uid: StudyInstanceUID (shared by the pair).
        series_uid: SeriesInstanceUID.
        frame_uid: FrameOfReferenceUID (shared by the pair).
        uid_entropy: entropy for the per-slice SOPInstanceUIDs (deterministic output).
        series_number: SeriesNumber. Defaults to 1.
        series_description: SeriesDescription. Defaults to "".
        patient_id: PatientID / PatientName. Defaults to "SIM".
        patient_weight_kg: PatientWeight (PET, needed for SUV). Defaults to None.
        injected_dose_bq: RadionuclideTotalDose (PET). Defaults to None.
        half_life_s: RadionuclideHalfLife (PET). Defaults to 6586.2 (F-18).
        injection_time: RadiopharmaceuticalStartTime/StartDateTime (PET). Defaults to None.
        series_time: SeriesDate/SeriesTime/AcquisitionTime (scan start; PET decay correction START refers to it).
            Defaults to 2020-01-01 10:00.

    Returns:
        the written file paths in slice order.

    Pixel data: PET int16 with a per-slice RescaleSlope (``max / 32767``, intercept 0); CT int16 with
    RescaleIntercept -1024 and slope 1 (HU clipped to [-1024, 31743]).
    """
    modality = modality.upper()
    if modality not in ("PT", "CT"):
        raise ValueError(f"modality must be 'PT' or 'CT', got {modality!r}.")
    vol = np.asarray(volume, dtype=np.float64)
    if vol.ndim != 3:
        raise ValueError(f"volume must be [X, Y, Z], got shape {vol.shape}.")
    if modality == "PT" and (patient_weight_kg is None or injected_dose_bq is None or injection_time is None):
        raise ValueError("a PET series needs patient_weight_kg, injected_dose_bq and injection_time for SUV tags.")
    series_time = series_time or _dt.datetime(2020, 1, 1, 10, 0, 0)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    nx, ny, nz = vol.shape
    sop_class = PET_SOP_CLASS if modality == "PT" else CT_SOP_CLASS
    files = []
    for k in range(nz):
        sl = vol[:, :, k].T  # [rows=Y, cols=X]
        if modality == "PT":
            vmax = float(max(sl.max(), 0.0))
            slope = vmax / 32767.0 if vmax > 0 else 1.0
            pix = np.clip(np.round(np.maximum(sl, 0.0) / slope), 0, 32767).astype(np.int16)
            intercept = 0.0
        else:
            slope, intercept = 1.0, -1024.0
            pix = np.clip(np.round(sl - intercept), 0, 32767).astype(np.int16)
        sop_uid = uid_from(*uid_entropy, "sop", k)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
        ds.Modality = modality
        ds.PatientName = patient_id
        ds.PatientID = patient_id
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.StudyID = "1"
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.SeriesDescription = series_description
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = series_time.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = _fmt_time(series_time)
        ds.Manufacturer = "rat-monai simulator"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        pos = [float(origin_lps[0]), float(origin_lps[1]), float(origin_lps[2]) + k * float(spacing[2])]
        ds.ImagePositionPatient = [f"{p:.4f}" for p in pos]
        ds.SliceLocation = f"{pos[2]:.4f}"
        ds.PixelSpacing = [f"{float(spacing[1]):.6g}", f"{float(spacing[0]):.6g}"]  # row spacing (dy), column (dx)
        ds.SliceThickness = f"{float(spacing[2]):.6g}"
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = f"{intercept:.6g}"
        ds.RescaleSlope = f"{slope:.10g}"
        if modality == "PT":
            ds.Units = "BQML"
            ds.DecayCorrection = "START"
            ds.CorrectedImage = ["ATTN", "DECY", "NORM"]
            ds.PatientWeight = f"{float(patient_weight_kg):.4g}"
            ds.RescaleType = "BQML"
            rp = Dataset()
            rp.Radiopharmaceutical = "Fluorodeoxyglucose"
            rp.RadionuclideTotalDose = f"{float(injected_dose_bq):.6g}"
            rp.RadionuclideHalfLife = f"{float(half_life_s):.6g}"
            rp.RadiopharmaceuticalStartTime = _fmt_time(injection_time)
            rp.RadiopharmaceuticalStartDateTime = injection_time.strftime("%Y%m%d") + _fmt_time(injection_time)
            ds.RadiopharmaceuticalInformationSequence = DSequence([rp])
        else:
            ds.RescaleType = "HU"
            ds.KVP = "120"
        ds.PixelData = pix.tobytes()
        path = out / f"slice_{k:04d}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        files.append(path)
    return files
