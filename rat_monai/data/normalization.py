# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Linear normalisation of PET (SUV) and CT (HU) to the network's range, with its exact inverse.

Defaults (chosen so that the bulk of the data lands in about [0, 1] and nothing is lost):
    - PET: ``y = x / suv_scale`` with ``suv_scale = 10``: soft tissue (SUV ~0.5-3) -> 0.05-0.3, lesions (SUV 5-20)
      -> 0.5-2, the bladder (SUVmax 66.5 in the shared series) -> 6.65; no clipping, so hot spots survive.
    - CT: ``y = (x - hu_min) / (hu_max - hu_min)`` with ``hu_min = -1024``, ``hu_max = 3072``: air -> 0, water ->
      0.25, dense bone ~0.5-0.75; no clipping, so -3024 HU outside the field of view maps to -0.49 and comes back.
``clip=True`` clips the output to [0, 1] (PET: SUV above ``suv_scale`` saturates); the inverse is then exact only
for values that were inside the range (:func:`clipped_mask` finds the others, so that a restorer can give them back
unchanged: e.g. the CT bundle's -3024 HU padding outside the field of view).
Without clipping ``denormalize_units(normalize_units(x)) == x`` up to float
rounding: the affine map is evaluated in float64 for float16/32 inputs and rounded once, so the round-trip error is
about one ulp of ``max(|x|, |hu_min|)``. With the CT defaults the range 4096 is a power of two, so the map is exact
in float32 and every integer HU value in [-3024, 3072) comes back bit-exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np
import torch

from .modality import normalize_modality

__all__ = ["NORMALIZATION_DEFAULTS", "normalization_params", "normalize_units", "denormalize_units", "clipped_mask"]

NdarrayOrTensorT = TypeVar("NdarrayOrTensorT", np.ndarray, torch.Tensor)

#: default parameters per modality (DICOM modality code).
NORMALIZATION_DEFAULTS: dict[str, dict[str, Any]] = {
    "PT": {"suv_scale": 10.0, "clip": False},
    "CT": {"hu_min": -1024.0, "hu_max": 3072.0, "clip": False},
}


def normalization_params(modality: str, **params: Any) -> dict[str, Any]:
    """Full parameter dict for ``modality`` ("pet"/"PT" or "ct"/"CT"): defaults updated by ``params``, validated.

    Raises:
        ValueError: unknown modality, unknown parameter (lists the valid ones) or an invalid value.
    """
    mod = normalize_modality(modality)
    if mod not in NORMALIZATION_DEFAULTS:
        raise ValueError(
            f"normalisation is defined for modality 'pet' (PT) and 'ct' (CT), got {modality!r}; for other data "
            "use monai.transforms.ScaleIntensityRange."
        )
    defaults = NORMALIZATION_DEFAULTS[mod]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown normalisation parameter(s) {unknown} for modality {mod}; valid ones are {sorted(defaults)}."
        )
    out = {**defaults, **params}
    out["clip"] = bool(out["clip"])
    if mod == "PT":
        out["suv_scale"] = float(out["suv_scale"])
        if not (np.isfinite(out["suv_scale"]) and out["suv_scale"] > 0):
            raise ValueError(f"suv_scale must be a positive finite number, got {params.get('suv_scale')!r}.")
    else:
        out["hu_min"], out["hu_max"] = float(out["hu_min"]), float(out["hu_max"])
        if not (np.isfinite(out["hu_min"]) and np.isfinite(out["hu_max"]) and out["hu_max"] > out["hu_min"]):
            raise ValueError(f"need finite hu_min < hu_max, got hu_min={out['hu_min']}, hu_max={out['hu_max']}.")
    return out


def _offset_scale(mod: str, p: Mapping[str, Any]) -> tuple[float, float]:
    """(offset, scale) with ``y = (x - offset) / scale``."""
    if mod == "PT":
        return 0.0, float(p["suv_scale"])
    return float(p["hu_min"]), float(p["hu_max"]) - float(p["hu_min"])


def _as_float(x: NdarrayOrTensorT) -> NdarrayOrTensorT:
    if isinstance(x, torch.Tensor):
        return x if x.is_floating_point() else x.to(torch.float32)
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float32)


def _affine_map(x: NdarrayOrTensorT, mul: float, add: float) -> NdarrayOrTensorT:
    """``x * mul + add`` computed in float64 for float16/32 inputs, returned in the input's float dtype."""
    x = _as_float(x)
    if isinstance(x, torch.Tensor):
        wide = x.dtype in (torch.float16, torch.bfloat16, torch.float32)
        y = x.to(torch.float64) * mul + add if wide else x * mul + add
        return y.to(x.dtype)
    wide = x.dtype in (np.float16, np.float32)
    y = x.astype(np.float64) * mul + add if wide else x * mul + add
    return y.astype(x.dtype, copy=False)


def normalize_units(x: NdarrayOrTensorT, modality: str = "pet", **params: Any) -> NdarrayOrTensorT:
    """Map SUV (PET) or HU (CT) to the network range (see the module docstring for the defaults).

    Args:
        x: numpy array or torch tensor (``MetaTensor`` stays a ``MetaTensor`` with its meta); integer input becomes
            float32.
        modality: "pet"/"PT" or "ct"/"CT". Defaults to "pet".
        params: PET ``suv_scale`` (10.0), ``clip`` (False); CT ``hu_min`` (-1024.0), ``hu_max`` (3072.0),
            ``clip`` (False).

    Returns:
        same type, shape and float dtype as ``x``.
    """
    p = normalization_params(modality, **params)
    offset, scale = _offset_scale(normalize_modality(modality), p)  # type: ignore[arg-type]
    y = _affine_map(x, 1.0 / scale, -offset / scale) if offset else _affine_map(x, 1.0 / scale, 0.0)
    if p["clip"]:
        y = y.clamp(0.0, 1.0) if isinstance(y, torch.Tensor) else np.clip(y, 0.0, 1.0)
    return y


def denormalize_units(y: NdarrayOrTensorT, modality: str = "pet", **params: Any) -> NdarrayOrTensorT:
    """Exact inverse of :func:`normalize_units` with the same ``modality`` and ``params`` (``clip`` is ignored).

    Args:
        y: normalised numpy array or torch tensor (``MetaTensor`` preserved).
        modality: "pet"/"PT" or "ct"/"CT". Defaults to "pet".
        params: the parameters used by :func:`normalize_units`.

    Returns:
        SUV (PET) or HU (CT), same type and float dtype as ``y``.
    """
    p = normalization_params(modality, **params)
    offset, scale = _offset_scale(normalize_modality(modality), p)  # type: ignore[arg-type]
    return _affine_map(y, scale, offset)


def clipped_mask(x: NdarrayOrTensorT, modality: str = "pet", **params: Any) -> NdarrayOrTensorT | None:
    """Where ``normalize_units(x, modality, **params)`` clips (values outside the range), or None without ``clip``.

    The network never sees those values, so a restoration should keep them as they were (the inverse cannot bring
    them back). Same type as ``x`` (bool).
    """
    p = normalization_params(modality, **params)
    if not p["clip"]:
        return None
    y = normalize_units(x, modality, **{**p, "clip": False})
    return (y < 0.0) | (y > 1.0)
