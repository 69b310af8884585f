# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Body-weight SUV factor from DICOM tags and DICOM date/time parsing."""

from __future__ import annotations

import copy
import math
from datetime import datetime

import numpy as np
import pydicom
import pytest
from _volume_test_utils import real_files, reference_suv_factor
from pydicom.dataset import Dataset

from rat_monai.data.units import (
    bqml_to_suv,
    parse_dicom_datetime,
    resolve_units,
    suv_body_weight_factor,
    suv_to_bqml,
)

# (date, time, datetime) -> expected
DATETIME_CASES = [
    ("20000907", "103500.00", None, datetime(2000, 9, 7, 10, 35, 0)),
    ("20000907", "103500.123", None, datetime(2000, 9, 7, 10, 35, 0, 123000)),
    ("20000907", "1035", None, datetime(2000, 9, 7, 10, 35)),  # TM may omit seconds
    ("20000907", "10:35:07", None, datetime(2000, 9, 7, 10, 35, 7)),  # ACR-NEMA form
    (None, None, "20000907103500.5+0100", datetime(2000, 9, 7, 10, 35, 0, 500000)),  # offset ignored
    ("", "", None, None),
]


@pytest.mark.parametrize("date, time, dt, expected", DATETIME_CASES)
def test_parse_dicom_datetime(date, time, dt, expected):
    assert parse_dicom_datetime(date, time, dt) == expected


@pytest.mark.parametrize("date, time", [("2000-9-7x", "103500"), ("20000907", "10h35")])
def test_parse_dicom_datetime_malformed(date, time):
    with pytest.raises(ValueError, match="malformed DICOM date/time"):
        parse_dicom_datetime(date, time)


def _synthetic_pet(**over) -> Dataset:
    """A PET header with round numbers: 70 kg, 400 MBq injected at 10:00, series at 11:00, F-18 half-life."""
    ds = Dataset()
    ds.Units = "BQML"
    ds.DecayCorrection = "START"
    ds.PatientWeight = "70"
    ds.SeriesDate = "20240101"
    ds.SeriesTime = "110000"
    rp = Dataset()
    rp.RadionuclideTotalDose = "4.0E8"
    rp.RadionuclideHalfLife = "6586.2"
    rp.RadiopharmaceuticalStartTime = "100000"
    ds.RadiopharmaceuticalInformationSequence = [rp]
    for k, v in over.items():
        target = rp if k.startswith("Radio") and k != "RadiopharmaceuticalInformationSequence" else ds
        if v is None:
            delattr(target, k)
        else:
            setattr(target, k, v)
    return ds


def _expected(weight_kg=70.0, dose=4.0e8, uptake_s=3600.0, half_life=6586.2):
    return weight_kg * 1000.0 / (dose * math.exp(-math.log(2.0) * uptake_s / half_life))


# (tag overrides, expected factor)
FACTOR_CASES = [
    ({}, _expected()),
    ({"DecayCorrection": "ADMIN"}, 70_000 / 4.0e8),  # corrected to injection: no decay of the dose
    ({"RadiopharmaceuticalStartDateTime": "20240101093000"}, _expected(uptake_s=5400)),  # DT wins over time
    ({"SeriesTime": "003000", "RadiopharmaceuticalStartTime": "233000"}, _expected()),  # across midnight
    ({"PatientWeight": "80.5"}, _expected(weight_kg=80.5)),
]


@pytest.mark.parametrize("over, expected", FACTOR_CASES)
def test_suv_factor(over, expected):
    assert suv_body_weight_factor(_synthetic_pet(**over)) == pytest.approx(expected, rel=1e-12)


def test_suv_factor_no_decay_correction_tag_assumes_start():
    with pytest.warns(UserWarning, match="assuming START"):
        assert suv_body_weight_factor(_synthetic_pet(DecayCorrection=None)) == pytest.approx(_expected())


# (tag overrides, text expected in the error)
MISSING_CASES = [
    ({"PatientWeight": None}, "PatientWeight (0010,1030)"),
    ({"PatientWeight": ""}, "PatientWeight (0010,1030)"),
    ({"RadionuclideTotalDose": None}, "RadionuclideTotalDose (0018,1074)"),
    ({"RadionuclideHalfLife": None}, "RadionuclideHalfLife (0018,1075)"),
    ({"RadiopharmaceuticalStartTime": None}, "RadiopharmaceuticalStartTime (0018,1072)"),
    ({"SeriesTime": None}, "SeriesTime (0008,0031)"),
    ({"RadiopharmaceuticalInformationSequence": None}, "RadiopharmaceuticalInformationSequence (0054,0016)"),
    ({"Units": "CNTS"}, "Units (0054,1001) CNTS"),
    ({"DecayCorrection": "NONE"}, "DecayCorrection NONE"),
    ({"RadiopharmaceuticalStartDateTime": "20240101120000"}, "after the series start"),
]


@pytest.mark.parametrize("over, expected", MISSING_CASES)
def test_suv_factor_missing_tag(over, expected):
    with pytest.raises(ValueError, match="cannot compute body-weight SUV") as err:
        suv_body_weight_factor(_synthetic_pet(**over), path="/x/slice.dcm")
    assert expected in str(err.value) and "/x/slice.dcm" in str(err.value)


def test_suv_factor_real_pet(real_pet_dir):
    """The shared PET: decay from 10:35:00 to SeriesTime 11:20:11 (not per-slice times): 2.429e-4 (README)."""
    f = real_files(real_pet_dir)[0]
    ds = pydicom.dcmread(f, stop_before_pixels=True)
    factor = suv_body_weight_factor(ds)
    assert factor == pytest.approx(reference_suv_factor(f), rel=1e-12)
    assert factor == pytest.approx(2.429e-4, rel=1e-3)
    # the per-slice AcquisitionTime of later beds must not change the factor
    other = copy.deepcopy(ds)
    other.AcquisitionTime = "114000"
    assert suv_body_weight_factor(other) == factor


@pytest.mark.parametrize(
    "units, modality, ok",
    [("auto", "PT", True), ("SUV", "PT", True), ("bqml", "CT", False), ("hu", "PT", False), ("x", None, False)],
)
def test_resolve_units(units, modality, ok):
    if ok:
        assert resolve_units(units, modality) == units.lower()
    else:
        with pytest.raises(ValueError):
            resolve_units(units, modality)


def test_suv_bqml_round_trip():
    bqml = np.array([[0.0, 1234.5], [5.0e4, 2.0e5]], dtype=np.float32)
    factor = 7.3e-5  # SUV per Bq/ml
    suv = bqml_to_suv(bqml, factor)
    assert suv.dtype == np.float32
    np.testing.assert_allclose(suv, bqml.astype(np.float64) * factor, rtol=1e-7)
    back = suv_to_bqml(suv, factor)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, bqml, rtol=1e-6)
