# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Physical units of PET and CT series: body-weight SUV from the DICOM tags, Hounsfield units for CT.

Body-weight SUV (g/ml) = activity concentration (Bq/ml) * weight (g) / decay-corrected injected dose (Bq).
With ``DecayCorrection = START`` (the usual case) the images are decay corrected to the series start, so the dose is
decayed from injection to ``SeriesDate``/``SeriesTime``: ``dose * 2 ** (-(t_series - t_injection) / half_life)``.
The per-slice ``DecayFactor``/``FrameReferenceTime``/``AcquisitionTime`` are NOT used: they differ per bed position
while the pixel values are already corrected to the series start. With ``DecayCorrection = ADMIN`` the images are
corrected to the injection time and the dose is used as is.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from .modality import normalize_modality

__all__ = [
    "ASSUMED_UNITS",
    "UNIT_CHOICES",
    "bqml_to_suv",
    "check_units_plausible",
    "parse_dicom_datetime",
    "read_declared_units",
    "resolve_units",
    "suv_body_weight_factor",
    "suv_to_bqml",
    "units_descrip",
    "units_sidecar_path",
    "write_units_sidecar",
]

#: values accepted by ``load_volume(units=...)``.
UNIT_CHOICES = ("auto", "suv", "bqml", "hu", "stored")


def _clean(value: Any) -> str:
    return str(value).strip() if value not in (None, "") else ""


def parse_dicom_datetime(date: Any = None, time: Any = None, dt: Any = None) -> datetime | None:
    """Parse DICOM DA + TM (or a DT) into a naive ``datetime``; ``None`` when absent.

    Accepts ``"20000907"`` / ``"103500.00"`` / ``"1035"`` / the ACR-NEMA ``"10:35:00"`` forms; a DT's UTC offset
    is ignored (DICOM times of one study share the same clock).

    Raises:
        ValueError: the value is present but malformed.
    """
    dt_s = _clean(dt)
    if dt_s:
        dt_s = re.split(r"[+-]", dt_s, maxsplit=1)[0] if len(dt_s) > 8 else dt_s
        date_s, time_s = dt_s[:8], dt_s[8:]
    else:
        date_s, time_s = _clean(date).replace(".", "").replace("-", ""), _clean(time)
    if not date_s or (not time_s and not dt_s):
        return None
    time_s = time_s.replace(":", "")
    m = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?", time_s) if time_s else None
    if not re.fullmatch(r"\d{8}", date_s) or (time_s and m is None):
        raise ValueError(f"malformed DICOM date/time: date={date!r} time={time!r} datetime={dt!r}")
    base = datetime.strptime(date_s, "%Y%m%d")
    if m is None:
        return base
    h, mi, s, frac = m.groups()
    micro = int((frac or "0").ljust(6, "0")[:6])
    return base + timedelta(hours=int(h), minutes=int(mi or 0), seconds=int(s or 0), microseconds=micro)


def _missing(tag: str, path: str | None, where: str) -> ValueError:
    src = f"DICOM file {path}" if path else "the DICOM series"
    return ValueError(
        f"cannot compute body-weight SUV: {src} has no valid {tag}{where}. Set the tag, or load with units='bqml' "
        "to stay in Bq/ml."
    )


def _positive_float(ds: Any, keyword: str) -> float:
    """``float(ds.<keyword>)``, or 0.0 when the tag is missing, empty or not a number (callers reject ``<= 0``)."""
    try:
        return float(ds.get(keyword, None) or 0.0)
    except (TypeError, ValueError):
        return 0.0


def suv_body_weight_factor(ds: Dataset, path: str | None = None, series_start: datetime | None = None) -> float:
    """Body-weight SUV per Bq/ml (g/ml per Bq/ml) from one PET slice header of the series.

    Args:
        ds: header of a slice (the tags used are per series: PatientWeight, Units, DecayCorrection, the
            RadiopharmaceuticalInformationSequence, SeriesDate/SeriesTime).
        path: file name for error messages. Defaults to None.
        series_start: override of the decay reference time (SeriesDate + SeriesTime). Defaults to None.

    Returns:
        the factor f such that SUV = f * (Bq/ml).

    Raises:
        ValueError: naming the missing or invalid tag (Units not BQML, no PatientWeight, no dose, no half-life,
            no injection time, no SeriesTime, DecayCorrection NONE, injection after the series start).
    """
    units = _clean(ds.get("Units", "")).upper()
    if units != "BQML":
        raise ValueError(
            f"cannot compute body-weight SUV: {'DICOM file ' + path if path else 'the series'} has Units (0054,1001) "
            f"{units or 'missing'}, SUV needs BQML. Load with units='stored' to keep the stored values."
        )
    weight_kg = _positive_float(ds, "PatientWeight")
    if not weight_kg > 0:
        raise _missing("PatientWeight (0010,1030) (patient weight in kg)", path, f" (got {ds.get('PatientWeight')!r})")
    seq = ds.get("RadiopharmaceuticalInformationSequence", None)
    if not seq:
        raise _missing("RadiopharmaceuticalInformationSequence (0054,0016)", path, "")
    rp = seq[0]
    dose = _positive_float(rp, "RadionuclideTotalDose")
    if not dose > 0:
        raise _missing("RadionuclideTotalDose (0018,1074) (injected dose in Bq)", path, "")

    decay = _clean(ds.get("DecayCorrection", "")).upper()
    if not decay:
        warnings.warn(
            f"{'DICOM file ' + path if path else 'PET series'} has no DecayCorrection (0054,1102); assuming START "
            "(decay corrected to the series start).",
            UserWarning,
            stacklevel=3,
        )
        decay = "START"
    if decay == "ADMIN":
        return weight_kg * 1000.0 / dose
    if decay != "START":
        raise ValueError(
            f"cannot compute body-weight SUV: {'DICOM file ' + path if path else 'the series'} has DecayCorrection "
            f"{decay}; only START and ADMIN are supported. Load with units='bqml' to stay in Bq/ml."
        )
    half_life = _positive_float(rp, "RadionuclideHalfLife")
    if not half_life > 0:
        raise _missing("RadionuclideHalfLife (0018,1075) (seconds)", path, "")

    if series_start is None:
        series_start = parse_dicom_datetime(ds.get("SeriesDate", None), ds.get("SeriesTime", None))
    if series_start is None:
        raise _missing("SeriesDate (0008,0021) / SeriesTime (0008,0031) (the decay reference time)", path, "")
    injection = parse_dicom_datetime(dt=rp.get("RadiopharmaceuticalStartDateTime", None))
    if injection is None:
        start_time = rp.get("RadiopharmaceuticalStartTime", None)
        if not _clean(start_time):
            raise _missing(
                "RadiopharmaceuticalStartDateTime (0018,1078) or RadiopharmaceuticalStartTime (0018,1072)", path, ""
            )
        injection = parse_dicom_datetime(series_start.strftime("%Y%m%d"), start_time)
        if injection is not None and injection > series_start:
            # only a time of day is stored: an injection "after" the scan start was the day before (midnight)
            injection -= timedelta(days=1)
    assert injection is not None
    uptake_s = (series_start - injection).total_seconds()
    if uptake_s < 0:
        raise ValueError(
            f"cannot compute body-weight SUV: {'DICOM file ' + path if path else 'the series'} has the injection "
            f"({injection}) after the series start ({series_start}); check RadiopharmaceuticalStartDateTime and "
            "SeriesDate/SeriesTime, or load with units='bqml'."
        )
    decayed_dose = dose * math.pow(2.0, -uptake_s / half_life)
    return weight_kg * 1000.0 / decayed_dose


def bqml_to_suv(values: Any, suv_factor: float) -> np.ndarray:
    """Activity concentration (Bq/ml) -> body-weight SUV: ``values * suv_factor`` (computed in float64).

    Args:
        values: array-like (or CPU tensor) in Bq/ml.
        suv_factor: SUV per Bq/ml, from :func:`suv_body_weight_factor` (``meta["suv_factor"]`` of ``load_volume``).

    Returns:
        float32 array in SUV.
    """
    return (np.asarray(values, dtype=np.float64) * float(suv_factor)).astype(np.float32)


def suv_to_bqml(values: Any, suv_factor: float) -> np.ndarray:
    """Body-weight SUV -> activity concentration (Bq/ml), the inverse of :func:`bqml_to_suv` (computed in float64).

    Args:
        values: array-like (or CPU tensor) in SUV.
        suv_factor: SUV per Bq/ml.

    Returns:
        float32 array in Bq/ml.
    """
    return (np.asarray(values, dtype=np.float64) / float(suv_factor)).astype(np.float32)


def resolve_units(requested: str, modality: str | None) -> str:
    """Validate ``requested`` against :data:`UNIT_CHOICES` and the modality; returns the lower-case choice."""
    if not isinstance(requested, str) or requested.lower() not in UNIT_CHOICES:
        raise ValueError(f"units must be one of {UNIT_CHOICES}, got {requested!r}.")
    req = requested.lower()
    if req in ("suv", "bqml") and modality not in ("PT", None):
        raise ValueError(f"units={req!r} applies to PET only, but the modality is {modality}; use 'auto' or 'hu'.")
    if req == "hu" and modality not in ("CT", None):
        raise ValueError(f"units='hu' applies to CT only, but the modality is {modality}; use 'auto'.")
    return req


# ---------------------------------------------------------------- units of NIfTI files (sidecar + header descrip)
#: the units a modality's values are taken to be in when nothing says otherwise (NormalizeUnits, the bundles)
ASSUMED_UNITS = {"PT": "suv", "CT": "hu"}
_DESCRIP_RE = re.compile(r"^\s*(PT|CT|MR|NM|PET)\s+(SUV|BQML|HU)\b", re.IGNORECASE)
#: the override a user passes when a plausibility check is wrong for their file
UNITS_OVERRIDE = "check_units=False (rat-monai infer/regions: --allow units)"


def units_sidecar_path(nifti_path: str | os.PathLike) -> Path:
    """``scan.nii.gz`` -> ``scan.json``: the JSON sidecar beside a NIfTI file (the simulator's convention)."""
    p = Path(nifti_path)
    name = p.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return p.with_name(name + ".json")


def units_descrip(modality: str, units: str, text: str = "") -> str:
    """NIfTI header ``descrip`` (<= 79 characters) that states the units: ``"PT BQML rat-monai restored"``."""
    return f"{modality} {units.upper()} {text}".strip()[:79]


def write_units_sidecar(nifti_path: str | os.PathLike, modality: str, units: str, **extra: Any) -> Path:
    """Write the JSON sidecar of a NIfTI file: ``{"modality": "PT", "units": "bqml", ...extra}``."""
    path = units_sidecar_path(nifti_path)
    content = {"modality": modality, "units": units, **{k: v for k, v in extra.items() if v is not None}}
    path.write_text(json.dumps(content, indent=2, default=str) + "\n")
    return path


def read_declared_units(nifti_path: str | os.PathLike, descrip: Any = None) -> dict[str, Any] | None:
    """What a NIfTI file says about itself: ``{"modality", "units", "suv_factor", "source"}`` or None.

    The JSON sidecar (:func:`units_sidecar_path`) wins over the header ``descrip`` (``"PT SUV ..."``); a sidecar
    that is not valid JSON or holds no ``"units"`` counts as absent.
    """
    side = units_sidecar_path(nifti_path)
    if side.is_file():
        try:
            content = json.loads(side.read_text())
        except (OSError, ValueError):
            content = None
        if isinstance(content, dict) and str(content.get("units") or "").lower() in ("suv", "bqml", "hu"):
            factor = content.get("suv_factor")
            return {
                "modality": normalize_modality(str(content.get("modality") or "") or None),
                "units": str(content["units"]).lower(),
                "suv_factor": float(factor) if isinstance(factor, (int, float)) and factor > 0 else None,
                "source": str(side),
            }
    text = descrip.decode("latin-1", "replace") if isinstance(descrip, bytes) else str(descrip or "")
    m = _DESCRIP_RE.match(text)
    if m:
        return {
            "modality": normalize_modality(m.group(1)),
            "units": m.group(2).lower(),
            "suv_factor": None,
            "source": "NIfTI header descrip",
        }
    return None


def check_units_plausible(values: Any, modality: str | None, units: str | None, source: str) -> None:
    """Refuse values that contradict their units (a NIfTI's declared or assumed units).

    Checks (each error names its check and the override):

    - ``hu-has-air``: CT in HU has air at about -1000 HU; no value below -500 means the values are not HU;
    - ``hu-not-8bit``: all values within 0..255 is an 8-bit display image, not HU;
    - ``suv-body-median``: PET in SUV has a body median of about 0.1-5; a median above 100 (over voxels above 1 % of
      the 99.9th percentile) means activity concentration (Bq/ml), not SUV.

    Raises:
        ValueError: naming the check, the figures, the file and ``check_units=False``.
    """
    arr = np.asarray(values, dtype=np.float32)
    if arr.size == 0 or units not in ("hu", "suv"):
        return
    lo, hi = float(arr.min()), float(arr.max())
    what = f"{source} is taken as {modality or '?'} in {units.upper()}"
    if units == "hu" and lo >= 0.0 and hi <= 255.0:
        raise ValueError(
            f"{what}, but all its values lie within 0..255 ({lo:g}..{hi:g}): an 8-bit display image, not Hounsfield "
            f"units (check 'hu-not-8bit'). Export the CT in HU, or pass {UNITS_OVERRIDE} if it really is HU."
        )
    if units == "hu" and lo > -500.0:
        raise ValueError(
            f"{what}, but no value is below -500 (minimum {lo:g}); a CT in HU has air at about -1000 HU (check "
            f"'hu-has-air'). Give the CT in HU, or pass {UNITS_OVERRIDE} if it really is HU without air."
        )
    if units == "suv":
        top = float(np.percentile(arr, 99.9))
        body = arr[arr > 0.01 * top] if top > 0 else arr[:0]
        median = float(np.median(body)) if body.size else 0.0
        if median > 100.0:
            raise ValueError(
                f"{what}, but its body median is {median:.4g} (SUV is about 0.1-5): the values look like Bq/ml (check "
                f"'suv-body-median'). Convert to SUV, give a sidecar {units_sidecar_path(source).name} with "
                f'"units": "bqml" and "suv_factor", or pass {UNITS_OVERRIDE} if it really is SUV.'
            )
