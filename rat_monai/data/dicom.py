# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Reading one DICOM image series from a folder into a float volume with its geometry.

Why not MONAI's ``PydicomReader``/``ITKReader``: MONAI 1.6's ``PydicomReader`` sorts slices by ``InstanceNumber``
(wrong for the shared PET and CT, whose InstanceNumber decreases with z) and neither reader lets us pick a series
with a useful error, warn with figures on irregular slice steps, or reject gantry tilt. This module therefore reads
the headers with pydicom itself and builds the affine exactly as MONAI's readers do (LPS -> RAS by
``diag(-1, -1, 1, 1)``), so the result is interchangeable with MONAI's conventions.

Layout of the returned volume: ``vol[x, y, z]`` is pixel ``(column x, row y)`` of the z-th slice after sorting by
position along the slice normal (ascending), i.e. ``vol[:, :, z].T == slice_z.pixel_array`` after the modality LUT
(per-slice RescaleSlope/RescaleIntercept).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut
from tqdm import tqdm

from .dicom_geometry import LPS_TO_RAS, check_slice_steps, slice_geometry
from .dicom_scan import select_dicom_series

__all__ = ["DicomSeries", "read_dicom_series"]


@dataclass
class DicomSeries:
    """A DICOM image series read from one folder (see :func:`read_dicom_series`).

    Attributes:
        volume: float32 array [X, Y, Z] in the stored units after the modality LUT (CT: HU, PET: usually Bq/ml).
        affine: 4x4 float64 RAS affine (voxel index -> world mm).
        datasets: header of every slice (no pixel data) in z order.
        files: source file of every slice in z order.
        positions: slice positions (mm) along the slice normal in z order.
        spacing: (x, y, z) voxel size in mm; z is the mean step.
        info: ``series_instance_uid``, ``study_instance_uid``, ``modality`` and ``description`` of the series.
    """

    volume: np.ndarray
    affine: np.ndarray
    datasets: list[Dataset]
    files: list[str]
    positions: list[float]
    spacing: tuple[float, float, float]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def first(self) -> Dataset:
        """Header of the first slice in z order (series-level tags: units, SUV tags, UIDs)."""
        return self.datasets[0]


def _read_pixels(path: str, ds: Dataset) -> np.ndarray:
    """Rescaled pixel array [rows, cols] (float64) of one slice with a useful error when decoding fails.

    ``ds`` is the slice's dataset with deferred pixel data; the pixel data is dropped again after decoding so that
    the headers kept in :class:`DicomSeries` stay small.
    """
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ValueError(
            f"DICOM file {path} has no pixel data (it is truncated, or is not an image); re-export it or remove it."
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise ValueError(
            f"DICOM file {path} is a multi-frame (enhanced) image with {frames} frames; load_volume reads "
            "single-frame series only. Convert it to single-frame slices (e.g. dcmtk/gdcm) or to NIfTI first."
        )
    try:
        arr = ds.pixel_array
    except Exception as e:  # noqa: BLE001 - decoders raise RuntimeError/ValueError/...
        ts = ds.file_meta.get("TransferSyntaxUID", "unknown") if hasattr(ds, "file_meta") else "unknown"
        ts_name = getattr(ts, "name", str(ts))
        raise ValueError(
            f"cannot decode the pixel data of DICOM file {path} (transfer syntax {ts_name}): {type(e).__name__}: "
            f"{e}. The file may be truncated (re-export it) or compressed with a syntax whose decoder is not "
            "installed (JPEG/JPEG-LS/JPEG 2000 need pylibjpeg with pylibjpeg-libjpeg and pylibjpeg-openjpeg)."
        ) from e
    finally:
        if "PixelData" in ds:
            del ds.PixelData
    if arr.ndim != 2:
        raise ValueError(
            f"DICOM file {path} holds a {arr.shape} pixel array; only single-channel (grayscale) slices are supported."
        )
    return np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)


def read_dicom_series(
    folder: str | os.PathLike,
    series_uid: str | None = None,
    modality: str | None = None,
    allow_gaps: bool = False,
    allow_tilt: bool = False,
    progress: bool = False,
) -> DicomSeries:
    """Read one DICOM image series of ``folder`` in the stored units (modality LUT applied per slice).

    Args:
        folder: folder holding the series' files (subfolders are not searched; non-DICOM and non-image files are
            ignored).
        series_uid: SeriesInstanceUID to read when the folder holds several series. Defaults to None.
        modality: expected modality ("pet", "ct", ...), also used to pick the series. Defaults to None.
        allow_gaps: when slices are missing (a step larger than 1.5 x the smallest), warn and use the mean step
            instead of raising. Defaults to False.
        allow_tilt: keep a sheared stack (gantry tilt) as is, with an affine whose z column is the mean
            ImagePositionPatient step (not orthogonal to the slices), with a warning, instead of raising.
            Defaults to False.
        progress: show a tqdm bar while reading pixel data. Defaults to False.

    Returns:
        a :class:`DicomSeries`. The affine is ``diag(-1,-1,1,1) @ A_lps`` where ``A_lps`` has columns
        ``row_cosine * PixelSpacing[1]``, ``column_cosine * PixelSpacing[0]``, ``normal * mean_step`` and the first
        sorted slice's ImagePositionPatient; ``mean_step = (last - first position) / (n - 1)`` so the first and
        last slices are exact; with non-uniform steps a :class:`SliceSpacingWarning` gives the figures. A single
        slice uses SpacingBetweenSlices, else SliceThickness, else 1 mm.

    Raises:
        FileNotFoundError / NotADirectoryError / ValueError: see :func:`select_dicom_series`; ValueError also for
            truncated or undecodable files, inconsistent slice geometry, duplicate positions, missing slices
            (unless ``allow_gaps``), multi-frame files and gantry tilt (unless ``allow_tilt``). Each message names
            the file(s).
    """
    folder = Path(folder)
    chosen = select_dicom_series(folder, series_uid=series_uid, modality=modality)
    headers: list[Dataset] = chosen["_headers"]
    files: list[str] = chosen["files"]
    where = f"DICOM series {chosen['uid']} ({chosen['modality']}, {chosen['num_slices']} slices) in {folder}"
    geo = slice_geometry(headers, files)
    tilt = headers[0].get("GantryDetectorTilt", None)
    geo["gantry_tilt"] = float(tilt) if tilt not in (None, "") else None
    files = [files[i] for i in geo["order"]]
    headers = [headers[i] for i in geo["order"]]
    step = check_slice_steps(geo, files, where, allow_gaps, allow_tilt)
    if not np.isfinite(step):  # single slice
        first = headers[0]
        step = float(first.get("SpacingBetweenSlices", None) or first.get("SliceThickness", None) or 1.0)

    rows, cols = geo["rows"], geo["cols"]
    vol = np.empty((cols, rows, len(files)), dtype=np.float32)
    it = tqdm(files, desc="reading DICOM", unit="slice", disable=not progress)
    for z, (f, ds) in enumerate(zip(it, headers)):
        arr = _read_pixels(f, ds)
        if arr.shape != (rows, cols):
            raise ValueError(
                f"DICOM file {f} decodes to {arr.shape} pixels but its header says {rows}x{cols}; the file is corrupt."
            )
        vol[:, :, z] = arr.T

    ps = geo["pixel_spacing"]  # [row spacing (between rows, along y), column spacing (along x)]
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = geo["row_dir"] * ps[1]
    affine_lps[:3, 1] = geo["col_dir"] * ps[0]
    if geo["sheared"]:
        affine_lps[:3, 2] = (geo["ipp"][-1] - geo["ipp"][0]) / (len(files) - 1)
    else:
        affine_lps[:3, 2] = geo["normal"] * step
    affine_lps[:3, 3] = geo["ipp"][0]
    affine = LPS_TO_RAS @ affine_lps
    return DicomSeries(
        volume=vol,
        affine=affine,
        datasets=headers,
        files=files,
        positions=[float(p) for p in geo["positions"]],
        spacing=(float(ps[1]), float(ps[0]), float(step)),
        info={
            "series_instance_uid": chosen["uid"],
            "study_instance_uid": chosen["study_instance_uid"],
            "modality": chosen["modality"],
            "description": chosen["description"],
        },
    )
