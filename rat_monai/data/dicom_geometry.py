# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Geometry of a DICOM slice stack: orientation, pixel size and size agreement, order along the slice normal, and
the slice steps (irregular steps, missing slices, duplicate positions, gantry tilt).

The affine built from it (in :func:`rat_monai.data.dicom.read_dicom_series`) follows MONAI's readers: DICOM LPS
converted to RAS by :data:`LPS_TO_RAS`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

__all__ = ["LPS_TO_RAS", "SliceSpacingWarning", "check_slice_steps", "slice_geometry"]

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


class SliceSpacingWarning(UserWarning):
    """Non-uniform slice step (e.g. overlapping PET bed positions) or missing slices tolerated by ``allow_gaps``."""


def _floats(ds: Dataset, keyword: str, n: int, path: str) -> np.ndarray:
    value = ds.get(keyword, None)
    if value is None or len(value) != n:
        raise ValueError(
            f"DICOM file {path} has no valid {keyword} (got {value!r}); the slice cannot be placed in space. "
            "Only series with ImagePositionPatient, ImageOrientationPatient and PixelSpacing on every slice are "
            "supported."
        )
    return np.asarray([float(v) for v in value], dtype=np.float64)


def slice_geometry(headers: list[Dataset], files: list[str]) -> dict[str, Any]:
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


def check_slice_steps(
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
