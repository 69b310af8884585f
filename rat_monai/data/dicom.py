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
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from tqdm import tqdm

__all__ = [
    "SliceSpacingWarning",
    "DicomSeries",
    "list_dicom_series",
    "select_dicom_series",
    "read_dicom_series",
    "normalize_modality",
    "format_series_table",
]

# LPS (DICOM patient space) -> RAS (NIfTI / MONAI world space), as MONAI's readers do.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

# Relative tolerance on ImageOrientationPatient / PixelSpacing agreement between slices of one series.
_GEOMETRY_RTOL = 1e-4
# Slice steps deviating from the mean by more than max(_STEP_ATOL_MM, _STEP_RTOL * mean) trigger a warning.
_STEP_ATOL_MM = 0.01
_STEP_RTOL = 1e-3
# A step larger than _GAP_FACTOR * the smallest step means slices are missing (or the spacing changes).
_GAP_FACTOR = 1.5
# In-plane shift per slice (mm) above which the stack is sheared (gantry tilt).
_SHEAR_ATOL_MM = 0.01

# Values larger than this are read from the file only when accessed (pixel data of the chosen series only).
_DEFER_SIZE = "8 KB"

_MODALITY_ALIASES = {"pet": "PT", "pt": "PT", "ct": "CT", "mr": "MR", "mri": "MR"}


class SliceSpacingWarning(UserWarning):
    """Non-uniform slice step (e.g. overlapping PET bed positions) or missing slices tolerated by ``allow_gaps``."""


def normalize_modality(modality: str | None) -> str | None:
    """Map user spellings ("pet", "PT", "ct", ...) to the DICOM Modality code ("PT", "CT", ...); ``None`` stays."""
    if modality is None:
        return None
    if not isinstance(modality, str) or not modality.strip():
        raise ValueError(f"modality must be a string such as 'pet' or 'ct' (or None), got {modality!r}.")
    key = modality.strip().lower()
    return _MODALITY_ALIASES.get(key, modality.strip().upper())


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


def _is_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _read_header(path: Path) -> Dataset | None:
    """Dataset of ``path`` with large values (pixel data) deferred: parsed once, pixels read only when needed.

    ``None`` when the file is not DICOM; ValueError when it is broken DICOM.
    """
    try:
        ds = pydicom.dcmread(path, defer_size=_DEFER_SIZE)
    except InvalidDicomError:
        return _read_headerless(path)
    except Exception as e:  # noqa: BLE001 - pydicom raises many types for broken files
        if _is_dicom_preamble(path):
            raise _corrupt_error(path, f"{type(e).__name__}: {e}") from e
        return None
    # pydicom stops silently at EOF: an image object whose header lacks Rows/Columns was cut short.
    sop = ds.file_meta.get("MediaStorageSOPClassUID", None) if hasattr(ds, "file_meta") else None
    if sop is not None and "Image Storage" in getattr(sop, "name", "") and ("Rows" not in ds or "Columns" not in ds):
        raise _corrupt_error(path, f"a {sop.name} object whose header ends before Rows/Columns")
    return ds


def _read_headerless(path: Path) -> Dataset | None:
    """A DICOM data set stored without preamble/file meta (older exports): accepted only if it is clearly an image
    slice (Rows, Columns, SeriesInstanceUID, ImagePositionPatient); the transfer syntax is set from its encoding."""
    try:
        with warnings.catch_warnings():  # forced reads of non-DICOM files warn about the VR they "found"
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, defer_size=_DEFER_SIZE)
        if not all(k in ds for k in ("Rows", "Columns", "SeriesInstanceUID", "ImagePositionPatient")):
            return None
        implicit, little = ds.original_encoding
    except Exception:  # noqa: BLE001 - any parse failure means "not DICOM"
        return None
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        )
    return ds


def _corrupt_error(path: Path | str, why: str) -> ValueError:
    return ValueError(
        f"DICOM file {path} could not be read ({why}); the file is truncated or corrupt. Re-export it from the "
        "source, or remove it from the folder if the series is complete without it."
    )


def _scan_folder(folder: Path) -> tuple[list[tuple[Path, Dataset]], list[Path], list[Path]]:
    """(image instances with headers, ignored files, subfolders) of the files directly in ``folder``."""
    images: list[tuple[Path, Dataset]] = []
    ignored: list[Path] = []
    subdirs: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            subdirs.append(entry)
            continue
        if not entry.is_file():
            continue
        ds = _read_header(entry)
        # images only: DICOMDIR, RTSTRUCT, SR, presentation states etc. have no Rows/Columns and are ignored.
        if ds is None or "Rows" not in ds or "Columns" not in ds:
            ignored.append(entry)
            continue
        images.append((entry, ds))
    return images, ignored, subdirs


def _check_folder(folder: str | os.PathLike) -> Path:
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(
            f"DICOM folder {folder} does not exist; pass the folder that holds the series' .dcm files."
        )
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder; pass the folder that holds the series' .dcm files.")
    return folder


def _no_dicom_error(folder: Path, ignored: list[Path], subdirs: list[Path]) -> FileNotFoundError:
    if not ignored and not subdirs:
        return FileNotFoundError(f"DICOM folder {folder} is empty; pass the folder that holds the series' .dcm files.")
    shown = ", ".join(p.name for p in ignored[:5]) + (" ..." if len(ignored) > 5 else "")
    msg = f"no DICOM image files in {folder}: {len(ignored)} file(s) checked and none is a DICOM image"
    msg += f" ({shown})" if ignored else ""
    if subdirs:
        sub = ", ".join(p.name for p in subdirs[:5]) + (" ..." if len(subdirs) > 5 else "")
        msg += f"; subfolders are not searched ({sub}): pass the subfolder that holds the series"
    else:
        msg += "; pass the folder that holds the series' .dcm files"
    return FileNotFoundError(msg + ".")


def list_dicom_series(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """List the DICOM image series stored directly in ``folder`` (subfolders are not searched).

    Non-DICOM files and non-image DICOM objects (DICOMDIR, RTSTRUCT, SR, ...) are ignored.

    Args:
        folder: folder to scan.

    Returns:
        one dict per series, sorted by (modality, series number, uid), with keys ``"uid"`` (SeriesInstanceUID),
        ``"modality"``, ``"description"`` (SeriesDescription or ""), ``"series_number"`` (int or None),
        ``"study_instance_uid"``, ``"num_slices"`` and ``"files"`` (list[str], file-name order, not z order).
        Empty when the folder holds no DICOM image.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        NotADirectoryError: ``folder`` is a file.
        ValueError: a file with a DICOM preamble is truncated or corrupt (names the file).
    """
    folder = _check_folder(folder)
    images, _, _ = _scan_folder(folder)
    return [{k: v for k, v in s.items() if not k.startswith("_")} for s in _group_series(images)]


def _group_series(images: list[tuple[Path, Dataset]]) -> list[dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for path, ds in images:
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        g = groups.get(uid)
        if g is None:
            number = ds.get("SeriesNumber", None)
            try:
                number = int(number) if number not in (None, "") else None
            except (TypeError, ValueError):
                number = None
            g = groups[uid] = {
                "uid": uid or None,
                "modality": str(ds.get("Modality", "") or "") or None,
                "description": str(ds.get("SeriesDescription", "") or ""),
                "series_number": number,
                "study_instance_uid": str(ds.get("StudyInstanceUID", "") or "") or None,
                "num_slices": 0,
                "files": [],
                "_headers": [],
            }
        g["files"].append(str(path))
        g["_headers"].append(ds)
        g["num_slices"] += 1

    def order(g: dict[str, Any]) -> tuple[str, int, str]:
        return (g["modality"] or "", g["series_number"] if g["series_number"] is not None else -1, g["uid"] or "")

    return sorted(groups.values(), key=order)


def format_series_table(series: Sequence[dict[str, Any]]) -> str:
    """One line per series: UID, modality, description, slice count (for error messages)."""
    lines = []
    for s in series:
        lines.append(
            f"  - {s['uid']}  modality={s['modality']}  description={s['description']!r}  "
            f"series_number={s['series_number']}  slices={s['num_slices']}"
        )
    return "\n".join(lines)


def select_dicom_series(
    folder: str | os.PathLike, series_uid: str | None = None, modality: str | None = None
) -> dict[str, Any]:
    """Pick one series of ``folder``: by ``series_uid``, else the only one (of ``modality`` if given).

    Args:
        folder: folder holding the DICOM files.
        series_uid: SeriesInstanceUID to load. Defaults to None (the folder must hold exactly one series, or exactly
            one of ``modality``).
        modality: "pet"/"PT", "ct"/"CT", ... used to narrow the choice and checked against the chosen series.
            Defaults to None.

    Returns:
        the series dict (as in :func:`list_dicom_series`, plus the private ``"_headers"`` list).

    Raises:
        FileNotFoundError: the folder does not exist, is empty, or holds no DICOM image.
        ValueError: several series and no (matching) choice -- the message lists UID, modality, description and
            slice count of each; or ``series_uid`` is not in the folder; or the modality does not match.
    """
    folder = _check_folder(folder)
    images, ignored, subdirs = _scan_folder(folder)
    if not images:
        raise _no_dicom_error(folder, ignored, subdirs)
    series = _group_series(images)
    want_mod = normalize_modality(modality)
    if series_uid is not None:
        chosen = [s for s in series if s["uid"] == str(series_uid)]
        if not chosen:
            raise ValueError(
                f"series_uid={series_uid!r} is not in DICOM folder {folder}; the series found are:\n"
                f"{format_series_table(series)}\nPass one of these UIDs as series_uid=."
            )
        s = chosen[0]
        if want_mod is not None and s["modality"] != want_mod:
            raise ValueError(
                f"series {series_uid} in {folder} has modality {s['modality']}, but modality={modality!r} was "
                "requested; fix the series_uid or the modality argument."
            )
        return s
    candidates = series if want_mod is None else [s for s in series if s["modality"] == want_mod]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ValueError(
            f"DICOM folder {folder} holds no {want_mod} series (modality={modality!r}); the series found are:\n"
            f"{format_series_table(series)}\nPass the matching modality, or series_uid= one of these UIDs."
        )
    what = "series" if want_mod is None else f"{want_mod} series"
    raise ValueError(
        f"DICOM folder {folder} holds {len(candidates)} {what}; choose one with series_uid=:\n"
        f"{format_series_table(candidates)}"
    )


def _floats(ds: Dataset, keyword: str, n: int, path: str) -> np.ndarray:
    value = ds.get(keyword, None)
    if value is None or len(value) != n:
        raise ValueError(
            f"DICOM file {path} has no valid {keyword} (got {value!r}); the slice cannot be placed in space. "
            "Only series with ImagePositionPatient, ImageOrientationPatient and PixelSpacing on every slice are "
            "supported."
        )
    return np.asarray([float(v) for v in value], dtype=np.float64)


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


def _geometry(headers: list[Dataset], files: list[str]) -> dict[str, Any]:
    """Sort by position along the normal and derive steps; validates orientation, size and tilt."""
    ref_iop = _floats(headers[0], "ImageOrientationPatient", 6, files[0])
    ref_ps = _floats(headers[0], "PixelSpacing", 2, files[0])
    ref_size = (int(headers[0].Rows), int(headers[0].Columns))
    ipps = []
    for ds, f in zip(headers, files):
        iop = _floats(ds, "ImageOrientationPatient", 6, f)
        if not np.allclose(iop, ref_iop, atol=_GEOMETRY_RTOL):
            raise ValueError(
                f"DICOM file {f} has ImageOrientationPatient {iop.tolist()} but {files[0]} has {ref_iop.tolist()}; "
                "slices of different orientations cannot be stacked (is this a localizer or a reformatted series?)."
            )
        ps = _floats(ds, "PixelSpacing", 2, f)
        if not np.allclose(ps, ref_ps, rtol=_GEOMETRY_RTOL):
            raise ValueError(
                f"DICOM file {f} has PixelSpacing {ps.tolist()} but {files[0]} has {ref_ps.tolist()}; slices of "
                "different pixel sizes cannot be stacked."
            )
        size = (int(ds.Rows), int(ds.Columns))
        if size != ref_size:
            raise ValueError(
                f"DICOM file {f} is {size[0]}x{size[1]} (rows x columns) but {files[0]} is "
                f"{ref_size[0]}x{ref_size[1]}; slices of different sizes cannot be stacked."
            )
        ipps.append(_floats(ds, "ImagePositionPatient", 3, f))
    row_dir, col_dir = ref_iop[:3], ref_iop[3:]
    normal = np.cross(row_dir, col_dir)
    norm = np.linalg.norm(normal)
    if norm < 1e-6:
        raise ValueError(f"DICOM file {files[0]} has a degenerate ImageOrientationPatient {ref_iop.tolist()}.")
    normal = normal / norm
    ipp = np.stack(ipps)
    pos = ipp @ normal
    order = np.argsort(pos, kind="stable")
    pos, ipp = pos[order], ipp[order]
    return {
        "order": order,
        "positions": pos,
        "ipp": ipp,
        "row_dir": row_dir,
        "col_dir": col_dir,
        "normal": normal,
        "pixel_spacing": ref_ps,
        "rows": ref_size[0],
        "cols": ref_size[1],
    }


def _check_steps(
    geo: dict[str, Any], files: list[str], where: str, allow_gaps: bool, allow_tilt: bool = False
) -> float:
    """Validate the slice steps and return the step used in the affine (mean step, documented in load_volume).

    Sets ``geo["sheared"] = True`` when the stack is sheared (gantry tilt) and ``allow_tilt`` lets it through.
    """
    geo["sheared"] = False
    pos, ipp = geo["positions"], geo["ipp"]
    n = len(pos)
    if n == 1:
        return float("nan")
    steps = np.diff(pos)
    dup = np.nonzero(steps < _STEP_ATOL_MM)[0]
    if dup.size:
        i = int(dup[0])
        raise ValueError(
            f"{where}: {dup.size + 1 if dup.size == 1 else dup.size} slices share a position along the normal, e.g. "
            f"{files[i]} and {files[i + 1]} at {pos[i]:.3f} mm; the series holds several frames, phases or "
            "acquisitions at the same location. Split it (one volume per time point/acquisition) before loading."
        )
    # gantry tilt: consecutive origins must move along the normal only (otherwise the grid is sheared).
    deltas = np.diff(ipp, axis=0)
    in_plane = deltas - np.outer(deltas @ geo["normal"], geo["normal"])
    shear = np.linalg.norm(in_plane, axis=1)
    if shear.max() > _SHEAR_ATOL_MM + 1e-3 * float(np.abs(steps).max()):
        k = int(np.argmax(shear))
        tilt = geo.get("gantry_tilt")
        if allow_tilt:
            geo["sheared"] = True
            zcol = (ipp[-1] - ipp[0]) / (n - 1)
            off = np.linalg.norm(ipp - (ipp[0] + np.outer(np.arange(n), zcol)), axis=1).max()
            warnings.warn(
                f"{where}: sheared stack (gantry tilt{f' {tilt} deg' if tilt is not None else ''}, up to "
                f"{shear[k]:.3f} mm in-plane shift per slice) kept without resampling because allow_tilt=True: the "
                f"affine's z column follows the mean ImagePositionPatient step, so it is not orthogonal to the slices "
                f"(slice origins off by up to {off:.3f} mm).",
                SliceSpacingWarning,
                stacklevel=4,
            )
        else:
            raise ValueError(
                f"{where}: the slices are sheared (gantry tilt{f' {tilt} deg' if tilt is not None else ''}): "
                f"ImagePositionPatient moves {shear[k]:.3f} mm within the slice plane between {files[k]} and "
                f"{files[k + 1]}, so the stack is not a rectilinear grid. Pass allow_tilt=True (rat-monai "
                "infer/regions: --allow tilt) to keep the slices as they are with a sheared affine (fine for "
                "slice-wise work), or resample the series to an untilted grid first (e.g. with a DICOM tool that "
                "corrects tilt)."
            )
    median = float(np.median(steps))
    smallest = float(steps.min())
    mean = float((pos[-1] - pos[0]) / (n - 1))
    gaps = np.nonzero(steps > _GAP_FACTOR * smallest)[0]
    if gaps.size:
        k = int(gaps[0])
        missing = max(int(round(steps[k] / smallest)) - 1, 1)
        msg = (
            f"{where}: slices are missing (or the slice spacing changes): {gaps.size} step(s) larger than "
            f"{_GAP_FACTOR} x the smallest step {smallest:.3f} mm, e.g. {steps[k]:.3f} mm between {files[k]} "
            f"({pos[k]:.3f} mm) and {files[k + 1]} ({pos[k + 1]:.3f} mm), about {missing} slice(s) missing there"
        )
        if not allow_gaps:
            raise ValueError(
                msg + ". A regular grid cannot represent this series; add the missing files, or pass "
                "allow_gaps=True (rat-monai infer/regions: --allow gaps) to load it with the mean step (positions "
                "then off by up to "
                f"{np.abs(pos - (pos[0] + mean * np.arange(n))).max():.2f} mm)."
            )
        warnings.warn(
            msg + f"; loaded with the mean step {mean:.4f} mm because allow_gaps=True (exact positions in "
            "meta['slice_positions']).",
            SliceSpacingWarning,
            stacklevel=4,
        )
        return mean
    dev = np.abs(steps - mean)
    if dev.max() > max(_STEP_ATOL_MM, _STEP_RTOL * abs(mean)):
        off = np.abs(pos - (pos[0] + mean * np.arange(n))).max()
        warnings.warn(
            f"{where}: non-uniform slice step {steps.min():.3f}-{steps.max():.3f} mm (mean {mean:.4f} mm over "
            f"{n - 1} steps, median {median:.3f} mm); the affine uses the mean step, so slice centres are off by up "
            f"to {off:.3f} mm; exact positions are in meta['slice_positions'].",
            SliceSpacingWarning,
            stacklevel=4,
        )
    return mean


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
    geo = _geometry(headers, files)
    tilt = headers[0].get("GantryDetectorTilt", None)
    geo["gantry_tilt"] = float(tilt) if tilt not in (None, "") else None
    files = [files[i] for i in geo["order"]]
    headers = [headers[i] for i in geo["order"]]
    step = _check_steps(geo, files, where, allow_gaps, allow_tilt)
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
