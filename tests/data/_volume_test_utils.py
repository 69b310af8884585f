# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Helpers for the load_volume tests: small DICOM folders built from a few real slices (copied/modified with
pydicom into ``tmp_path``), and an independent SUV factor computed straight from the tags."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset


def real_files(folder: Path) -> list[Path]:
    """The ``.dcm`` files of a real series folder, file-name order."""
    return sorted(Path(folder).glob("*.dcm"))


def axial_sorted(files: Sequence[Path]) -> list[Path]:
    """Files sorted by ImagePositionPatient z (the shared series are axial): an independent ordering."""
    return sorted(files, key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))


def copy_slices(
    files: Sequence[Path],
    dst: Path,
    modify: Callable[[Dataset, int], None] | None = None,
    names: Sequence[str] | None = None,
) -> list[Path]:
    """Copy ``files`` into ``dst`` (optionally renamed), applying ``modify(ds, index)`` through pydicom."""
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for i, f in enumerate(files):
        target = dst / (names[i] if names is not None else Path(f).name)
        if modify is None:
            shutil.copyfile(f, target)
        else:
            ds = pydicom.dcmread(f)
            modify(ds, i)
            ds.save_as(target)
        out.append(target)
    return out


def rescaled(f: Path) -> np.ndarray:
    """Plain reference: pixel_array * RescaleSlope + RescaleIntercept of one file, float64 [rows, cols]."""
    ds = pydicom.dcmread(f)
    return ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1.0)) + float(
        ds.get("RescaleIntercept", 0.0)
    )


def reference_suv_factor(f: Path) -> float:
    """Body-weight SUV per Bq/ml written out by hand for the shared PET (START decay, time-only injection)."""
    ds = pydicom.dcmread(f, stop_before_pixels=True)
    rp = ds.RadiopharmaceuticalInformationSequence[0]
    start = datetime.strptime(ds.SeriesDate + ds.SeriesTime.split(".")[0], "%Y%m%d%H%M%S")
    inj = datetime.strptime(ds.SeriesDate + str(rp.RadiopharmaceuticalStartTime).split(".")[0], "%Y%m%d%H%M%S")
    dose = float(rp.RadionuclideTotalDose) * math.exp(
        -math.log(2) * (start - inj).total_seconds() / float(rp.RadionuclideHalfLife)
    )
    return float(ds.PatientWeight) * 1000.0 / dose
