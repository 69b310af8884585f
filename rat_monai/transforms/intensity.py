# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Invertible SUV / HU normalisation transforms (wrappers of :mod:`rat_monai.data.normalization`)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform, Transform
from monai.utils import TraceKeys, TransformBackends, ensure_tuple_rep

from rat_monai.data.modality import normalize_modality
from rat_monai.data.normalization import NORMALIZATION_DEFAULTS, clipped_mask, denormalize_units, normalize_units

__all__ = [
    "NORMALIZATION_META_KEY",
    "NormalizeUnits",
    "NormalizeUnitsd",
    "NormalizeUnitsD",
    "NormalizeUnitsDict",
    "RestoreClippedd",
    "RestoreClippedD",
    "RestoreClippedDict",
]

#: meta key holding ``{"modality": ..., **params}`` of the normalisation applied to a MetaTensor.
NORMALIZATION_META_KEY = "normalization"


class NormalizeUnits(InvertibleTransform, Transform):
    """Normalise SUV (PET) or HU (CT) to the network range; ``inverse`` restores real units exactly.

    PET: ``y = SUV / suv_scale`` (default 10); CT: ``y = (HU - hu_min) / (hu_max - hu_min)`` (defaults -1024,
    3072); no clipping by default so the inverse is exact (see :mod:`rat_monai.data.normalization`). On a
    ``MetaTensor`` the full parameters are pushed to ``applied_operations`` (for ``inverse``/``Invertd``) and stored
    in ``meta["normalization"]`` so that inference can call
    ``denormalize_units(pred, **meta["normalization"])`` on new tensors.

    Args:
        modality: "pet"/"PT", "ct"/"CT", or "auto" to read ``meta["modality"]`` of a MetaTensor (as set by
            ``load_volume``). Defaults to "pet".
        params: PET ``suv_scale`` (10.0), ``clip`` (False); CT ``hu_min`` (-1024.0), ``hu_max`` (3072.0),
            ``clip`` (False). With ``modality="auto"`` each parameter goes to the modality that defines it.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, modality: str = "pet", **params: Any) -> None:
        is_auto = isinstance(modality, str) and modality.lower() == "auto"
        self.modality = "auto" if is_auto else normalize_modality(modality)
        if self.modality != "auto" and self.modality not in NORMALIZATION_DEFAULTS:
            raise ValueError(f"modality must be 'pet', 'ct' or 'auto', got {modality!r}.")
        mods = list(NORMALIZATION_DEFAULTS) if self.modality == "auto" else [self.modality]
        valid = set().union(*(NORMALIZATION_DEFAULTS[m] for m in mods))
        unknown = sorted(set(params) - valid)
        if unknown:
            raise ValueError(
                f"unknown normalisation parameter(s) {unknown} for modality {modality!r}; valid ones are "
                f"{sorted(valid)}."
            )
        self.params = dict(params)

    def _resolve(self, img: NdarrayOrTensor) -> tuple[str, dict[str, Any]]:
        mod = self.modality
        if mod == "auto":
            meta_mod = img.meta.get("modality") if isinstance(img, MetaTensor) else None
            mod = normalize_modality(meta_mod) if meta_mod else None
            if mod not in NORMALIZATION_DEFAULTS:
                raise ValueError(
                    f"NormalizeUnits(modality='auto') needs a MetaTensor with meta['modality'] 'PT' or 'CT', got "
                    f"{meta_mod!r}; pass modality='pet' or 'ct' explicitly."
                )
        params = {k: v for k, v in self.params.items() if k in NORMALIZATION_DEFAULTS[mod]}  # type: ignore[index]
        return mod, {**NORMALIZATION_DEFAULTS[mod], **params}  # type: ignore[index]

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        mod, params = self._resolve(img)
        out = normalize_units(img, mod, **params)
        if isinstance(out, MetaTensor):
            info = {"modality": mod, **params}
            out.meta[NORMALIZATION_META_KEY] = dict(info)
            self.push_transform(out, extra_info=info)
        return out

    def inverse(self, data: NdarrayOrTensor) -> NdarrayOrTensor:
        """Real units back; on a MetaTensor uses (and pops) the recorded parameters."""
        if isinstance(data, MetaTensor):
            xform = self.pop_transform(data)
            info = dict(xform[TraceKeys.EXTRA_INFO])
            data.meta.pop(NORMALIZATION_META_KEY, None)
        else:
            if self.modality == "auto":
                raise ValueError(
                    "NormalizeUnits(modality='auto').inverse needs the MetaTensor it produced (the modality is "
                    "recorded there); pass a MetaTensor or use a fixed modality."
                )
            mod = self.modality
            info = {"modality": mod, **NORMALIZATION_DEFAULTS[mod], **self.params}  # type: ignore[index]
        mod = info.pop("modality")
        return denormalize_units(data, mod, **info)


class NormalizeUnitsd(MapTransform, InvertibleTransform):
    """Dictionary version of :class:`NormalizeUnits`.

    Args:
        keys: keys to normalise (e.g. ``("image", "label")``).
        modality: one modality for all keys or one per key ("pet", "ct", "auto"). Defaults to "pet".
        allow_missing_keys: don't raise when a key is absent. Defaults to False.
        normalization: the parameters of :class:`NormalizeUnits` as one dict (what a bundle config passes: its
            ``normalization`` id). Defaults to None.
        params: as in :class:`NormalizeUnits`, shared by all keys; they win over ``normalization``.
    """

    backend = NormalizeUnits.backend

    def __init__(
        self,
        keys: KeysCollection,
        modality: str | Sequence[str] = "pet",
        allow_missing_keys: bool = False,
        normalization: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        mods = ensure_tuple_rep(modality, len(self.keys))
        params = {**(normalization or {}), **params}
        self.normalizers = {key: NormalizeUnits(m, **params) for key, m in zip(self.keys, mods)}

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalizers[key](d[key])
        return d

    def inverse(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalizers[key].inverse(d[key])
        return d


NormalizeUnitsD = NormalizeUnitsDict = NormalizeUnitsd


class RestoreClippedd(MapTransform):
    """Give back, in the restored ``keys``, the source voxels that ``clip=True`` normalisation clamped.

    The network never saw those values (e.g. -3024 HU CT padding outside the field of view), so the restoration
    keeps them as they were: ``out[mask] = source[mask]`` with ``mask = clipped_mask(source, modality, **params)``
    (:func:`rat_monai.data.normalization.clipped_mask`; nothing changes without ``clip``). Use it after the inverse
    normalisation, with ``source_key`` a copy of the input taken before normalising (``CopyItemsd``).

    Args:
        keys: restored tensors, in real units, shaped like the source.
        source_key: the un-normalised input.
        modality: "pet"/"PT" or "ct"/"CT".
        allow_missing_keys: don't raise when a key is absent. Defaults to False.
        normalization: the normalisation parameters as one dict (a bundle config's ``normalization`` id). Defaults
            to None.
        params: the normalisation parameters (``clip``, ``hu_min``, ...); they win over ``normalization``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        source_key: str,
        modality: str,
        allow_missing_keys: bool = False,
        normalization: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.source_key, self.modality = source_key, modality
        self.params = {**(normalization or {}), **params}

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        source = d[self.source_key]
        mask = clipped_mask(source, self.modality, **self.params)
        if mask is None:
            return d
        for key in self.key_iterator(d):
            if tuple(d[key].shape) != tuple(source.shape):
                raise ValueError(
                    f"RestoreClippedd: {key!r} {tuple(d[key].shape)} and {self.source_key!r} {tuple(source.shape)} "
                    "must have the same shape."
                )
            out = d[key].clone() if isinstance(d[key], torch.Tensor) else d[key].copy()
            src = source
            if isinstance(out, torch.Tensor):
                src = torch.as_tensor(source, device=out.device, dtype=out.dtype)
            out[mask] = src[mask]
            d[key] = out
        return d


RestoreClippedD = RestoreClippedDict = RestoreClippedd
