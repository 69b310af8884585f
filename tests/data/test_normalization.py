# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""normalize_units / denormalize_units: values, exact inverse, types preserved, clipping, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from rat_monai.data import denormalize_units, normalize_units
from rat_monai.data.normalization import NORMALIZATION_DEFAULTS, normalization_params

TEST_NDARRAYS = (np.array, torch.as_tensor, MetaTensor)

# (modality, params, input values, expected normalised values)
VALUE_CASES = [
    ("pet", {}, [0.0, 2.5, 10.0, 66.5], [0.0, 0.25, 1.0, 6.65]),  # SUV / 10
    ("PT", {"suv_scale": 4.0}, [0.0, 2.0, 8.0], [0.0, 0.5, 2.0]),
    ("ct", {}, [-1024.0, 0.0, 1024.0, 3072.0, -3024.0], [0.0, 0.25, 0.5, 1.0, -2000.0 / 4096.0]),
    ("CT", {"hu_min": -1000.0, "hu_max": 1000.0}, [-1000.0, 0.0, 1000.0], [0.0, 0.5, 1.0]),
    ("ct", {"clip": True}, [-3024.0, -1024.0, 1024.0, 4000.0], [0.0, 0.0, 0.5, 1.0]),
    ("pet", {"clip": True}, [-1.0, 5.0, 66.5], [0.0, 0.5, 1.0]),
]


@pytest.mark.parametrize("to_type", TEST_NDARRAYS)
@pytest.mark.parametrize("modality, params, x, expected", VALUE_CASES)
def test_values(to_type, modality, params, x, expected):
    out = normalize_units(to_type(np.asarray(x, np.float32)), modality, **params)
    assert type(out) is type(to_type(np.zeros(1, np.float32)))
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("to_type", TEST_NDARRAYS)
@pytest.mark.parametrize(
    "modality, params, low, high",
    [
        ("pet", {}, 0.0, 80.0),
        ("pet", {"suv_scale": 3.3}, 0.0, 80.0),
        ("ct", {}, -3024.0, 3071.0),
        ("ct", {"hu_min": -160.0, "hu_max": 240.0}, -3024.0, 3071.0),
    ],
)
def test_round_trip(dtype, to_type, modality, params, low, high):
    rng = np.random.default_rng(0)
    x = rng.uniform(low, high, size=(1, 7, 6, 5)).astype(dtype)
    x[0, 0, 0, :2] = [low, high]
    y = normalize_units(to_type(x), modality, **params)
    back = denormalize_units(y, modality, **params)
    assert type(back) is type(y) and back.dtype == y.dtype
    back = np.asarray(back)
    assert back.dtype == dtype
    # float rounding only: within a couple of ulps of max(|x|, |offset|)
    eps = np.finfo(dtype).eps
    bound = 2 * eps * max(abs(low), abs(high), abs(params.get("hu_min", -1024.0)))
    np.testing.assert_allclose(back, x, rtol=0, atol=bound)


def test_integer_hu_survive_exactly():
    """All int16 HU values come back exactly (float32 normalised values hold enough precision)."""
    hu = np.arange(-3024, 3072, dtype=np.int16)
    y = normalize_units(hu, "ct")
    assert y.dtype == np.float32
    np.testing.assert_array_equal(denormalize_units(y, "ct"), hu.astype(np.float32))


def test_metatensor_meta_preserved():
    x = MetaTensor(torch.rand(1, 4, 4, 2) * 20, affine=torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0])))
    x.meta["modality"] = "PT"
    y = normalize_units(x, "pet")
    assert isinstance(y, MetaTensor) and y.meta["modality"] == "PT"
    torch.testing.assert_close(y.affine, x.affine)
    torch.testing.assert_close(denormalize_units(y, "pet"), x.as_tensor(), check_dtype=True, rtol=0, atol=1e-5)


def test_defaults_documented():
    assert NORMALIZATION_DEFAULTS["PT"] == {"suv_scale": 10.0, "clip": False}
    assert NORMALIZATION_DEFAULTS["CT"] == {"hu_min": -1024.0, "hu_max": 3072.0, "clip": False}
    assert normalization_params("ct", hu_max=2000) == {"hu_min": -1024.0, "hu_max": 2000.0, "clip": False}


@pytest.mark.parametrize(
    "modality, params, match",
    [
        ("mr", {}, "defined for modality 'pet'"),
        ("pet", {"hu_min": 0.0}, r"unknown normalisation parameter\(s\) \['hu_min'\]"),
        ("ct", {"suv_scale": 2.0}, "valid ones are"),
        ("pet", {"suv_scale": 0.0}, "positive finite"),
        ("ct", {"hu_min": 100.0, "hu_max": 100.0}, "hu_min < hu_max"),
        ("ct", {"hu_max": float("nan")}, "hu_min < hu_max"),
    ],
)
def test_ill_arg(modality, params, match):
    with pytest.raises(ValueError, match=match):
        normalize_units(np.zeros(3, np.float32), modality, **params)
    with pytest.raises(ValueError, match=match):
        denormalize_units(np.zeros(3, np.float32), modality, **params)
