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

import math
import re
import warnings
from datetime import datetime, timedelta
from typing import Any

from pydicom.dataset import Dataset

__all__ = ["UNIT_CHOICES", "parse_dicom_datetime", "suv_body_weight_factor", "resolve_units"]

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
