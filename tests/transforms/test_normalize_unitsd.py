# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""NormalizeUnits / NormalizeUnitsd: forward values, parameters in meta, exact inverse (also through Invertd)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd
from parameterized import parameterized

from rat_monai.data import denormalize_units, normalize_units
from rat_monai.data.normalization import clipped_mask
from rat_monai.transforms import NormalizeUnits, NormalizeUnitsD, NormalizeUnitsd, NormalizeUnitsDict, RestoreClippedd
from rat_monai.transforms.intensity import NORMALIZATION_META_KEY

TEST_NDARRAYS = (np.array, torch.as_tensor, MetaTensor)


def _volume(modality: str, seed: int = 0) -> MetaTensor:
    rng = np.random.default_rng(seed)
    if modality == "CT":
        arr = rng.integers(-3024, 3072, size=(1, 8, 7, 3)).astype(np.float32)
    else:
        arr = (rng.gamma(1.0, 1.5, size=(1, 8, 7, 3)) * 3).astype(np.float32)
    affine = torch.diag(torch.tensor([-2.0, -2.0, 3.0, 1.0], dtype=torch.float64))
    vol = MetaTensor(torch.from_numpy(arr), affine=affine)
    vol.meta["modality"] = modality
    return vol


# (modality argument, params, meta modality of the input)
CASES = [
    ("pet", {}, "PT"),
    ("ct", {}, "CT"),
    ("ct", {"hu_min": -200.0, "hu_max": 300.0}, "CT"),
    ("auto", {"suv_scale": 5.0, "hu_min": -500.0}, "PT"),  # auto: each parameter goes to its modality
    ("auto", {"suv_scale": 5.0, "hu_min": -500.0}, "CT"),
]


def test_aliases():
    assert NormalizeUnitsD is NormalizeUnitsd and NormalizeUnitsDict is NormalizeUnitsd


@pytest.mark.parametrize("modality, params, meta_mod", CASES)
def test_forward_and_inverse(modality, params, meta_mod):
    x = _volume(meta_mod)
    t = NormalizeUnits(modality, **params)
    y = t(x.clone())
    used = {k: v for k, v in params.items() if (k == "suv_scale") == (meta_mod == "PT")}
    torch.testing.assert_close(y.as_tensor(), normalize_units(x.as_tensor(), meta_mod, **used))
    rec = y.meta[NORMALIZATION_META_KEY]
    assert rec["modality"] == meta_mod and all(rec[k] == v for k, v in used.items())
    assert len(y.applied_operations) == 1
    # the record is enough to invert a new tensor (what inference does with a prediction)
    torch.testing.assert_close(denormalize_units(y.as_tensor(), **rec), x.as_tensor(), rtol=0, atol=1e-3)
    back = t.inverse(y)
    assert isinstance(back, MetaTensor) and len(back.applied_operations) == 0
    assert NORMALIZATION_META_KEY not in back.meta
    torch.testing.assert_close(back.as_tensor(), x.as_tensor(), rtol=0, atol=1e-3)
    if meta_mod == "CT" and not params:  # default range 4096 (power of two): integer HU come back exactly
        torch.testing.assert_close(back.as_tensor(), x.as_tensor(), rtol=0, atol=0)


@parameterized.expand([(p,) for p in TEST_NDARRAYS])
def test_plain_arrays(to_type):
    x = np.linspace(-3024, 3071, 24, dtype=np.float32).reshape(1, 2, 3, 4)
    t = NormalizeUnits("ct")
    y = t(to_type(x))
    np.testing.assert_allclose(np.asarray(y), (x + 1024) / 4096, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(t.inverse(y)), x, rtol=0, atol=0)


def test_dict_pipeline_and_invertd():
    """image (PT) and label (PT) normalised; a prediction is brought back to SUV by Invertd."""
    data = {"image": _volume("PT", 0), "label": _volume("PT", 1)}
    pre = Compose([NormalizeUnitsd(("image", "label"), modality="auto", suv_scale=8.0)])
    out = pre({k: v.clone() for k, v in data.items()})
    torch.testing.assert_close(out["image"].as_tensor(), data["image"].as_tensor() / 8.0)
    out["pred"] = out["image"].clone()  # stands in for a network output carrying the image's trace
    inv = Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=False)
    restored = inv(out)["pred"]
    torch.testing.assert_close(restored.as_tensor(), data["image"].as_tensor(), rtol=0, atol=1e-5)
    back = pre.inverse(out)
    for k in ("image", "label"):
        torch.testing.assert_close(back[k].as_tensor(), data[k].as_tensor(), rtol=0, atol=1e-5)


def test_dict_per_key_modality_and_missing():
    d = {"pet": _volume("PT"), "ct": _volume("CT")}
    t = NormalizeUnitsd(("pet", "ct", "absent"), modality=("pet", "ct", "pet"), allow_missing_keys=True)
    out = t({k: v.clone() for k, v in d.items()})
    assert out["pet"].meta[NORMALIZATION_META_KEY]["modality"] == "PT"
    assert out["ct"].meta[NORMALIZATION_META_KEY]["modality"] == "CT"
    back = t.inverse(out)
    for k in d:
        torch.testing.assert_close(back[k].as_tensor(), d[k].as_tensor(), rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    "modality, params, match",
    [
        ("mr", {}, "modality must be 'pet', 'ct' or 'auto'"),
        ("pet", {"hu_min": 0}, r"unknown normalisation parameter\(s\) \['hu_min'\]"),
        ("auto", {"scale": 2}, r"\['scale'\]"),
    ],
)
def test_ill_arg(modality, params, match):
    with pytest.raises(ValueError, match=match):
        NormalizeUnits(modality, **params)


def test_auto_needs_modality_in_meta():
    with pytest.raises(ValueError, match="meta\\['modality'\\]"):
        NormalizeUnits("auto")(torch.zeros(1, 2, 2, 2))
    with pytest.raises(ValueError, match="needs the MetaTensor it produced"):
        NormalizeUnits("auto").inverse(torch.zeros(1, 2, 2, 2))


def test_restore_clippedd_gives_back_clamped_voxels():
    """CT with clip: the -3024 HU padding and 3500 HU metal come back from the source; the rest stays restored."""
    source = torch.tensor([[[-3024.0, -1024.0, 0.0, 3500.0]]])
    restored = torch.tensor([[[-1020.0, -1010.0, 5.0, 3070.0]]])
    params = {"hu_min": -1024.0, "hu_max": 3072.0, "clip": True}
    out = RestoreClippedd("pred", "src", "ct", **params)({"pred": restored, "src": source})["pred"]
    torch.testing.assert_close(out, torch.tensor([[[-3024.0, -1010.0, 5.0, 3500.0]]]))
    assert restored[0, 0, 0] == -1020.0, "the input tensor must not be modified"
    np.testing.assert_array_equal(clipped_mask(source.numpy(), "ct", **params), [[[True, False, False, True]]])
    # without clip nothing was clamped, so nothing is replaced
    assert clipped_mask(source, "ct") is None
    same = RestoreClippedd("pred", "src", "ct")({"pred": restored, "src": source})["pred"]
    torch.testing.assert_close(same, restored)
    # the parameters as one dict (a bundle's `normalization` id), keyword arguments winning
    as_dict = RestoreClippedd("pred", "src", "ct", normalization={**params, "clip": False}, clip=True)
    assert as_dict.params == params
    torch.testing.assert_close(as_dict({"pred": restored, "src": source})["pred"], out)


def test_normalization_dict_equals_keywords():
    """``normalization=`` (what the bundles' _target_ components pass) builds the same normalisers as keywords."""
    x = torch.linspace(-1100.0, 3200.0, 12).reshape(1, 3, 4)
    params = {"hu_min": -1024.0, "hu_max": 3072.0, "clip": True}
    by_dict = NormalizeUnitsd("image", modality="ct", normalization=params)
    by_kw = NormalizeUnitsd("image", modality="ct", **params)
    assert by_dict.normalizers["image"].params == by_kw.normalizers["image"].params == params
    torch.testing.assert_close(by_dict({"image": x})["image"], by_kw({"image": x})["image"])
    override = NormalizeUnitsd("image", modality="ct", normalization=params, hu_max=1000.0)
    assert override.normalizers["image"].params["hu_max"] == 1000.0
