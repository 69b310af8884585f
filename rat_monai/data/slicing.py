# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""2D axial slice dataset over paired 3D volumes (low quality ``image``, high quality ``label``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import CacheDataset, MetaTensor

__all__ = ["DEFAULT_AIR_THRESHOLD", "PairedSliceDataset", "slice_volume_pair", "keep_slices"]

# a slice is kept when more than ``min_fraction`` of its label pixels exceed this (units of the loaded volume)
DEFAULT_AIR_THRESHOLD: dict[str, float] = {"pet": 0.1, "ct": -500.0}
# meta entries that are per-volume lists (not meaningful for one slice, and they break batch collation)
_DROP_META = ("dicom_files", "slice_positions")


def _source(d: dict, key: str, original: Any) -> str:
    if isinstance(original, (str, os.PathLike)):
        return str(original)
    val = d.get(key)
    meta = getattr(val, "meta", None) or {}
    return str(meta.get("filename_or_obj", f"<{key} of item>"))


def keep_slices(label: torch.Tensor | np.ndarray, air_threshold: float, min_fraction: float = 0.01) -> np.ndarray:
    """Indices ``z`` of the slices of ``label`` ``[C, X, Y, Z]`` where more than ``min_fraction`` of the pixels
    exceed ``air_threshold`` (air-only slices are the others)."""
    lab = torch.as_tensor(label)
    if lab.ndim != 4:
        raise ValueError(f"label must be [C, X, Y, Z], got shape {tuple(lab.shape)}.")
    frac = (lab > air_threshold).float().mean(dim=(0, 1, 2))
    return torch.nonzero(frac > min_fraction).flatten().cpu().numpy()


def slice_volume_pair(
    image: torch.Tensor,
    label: torch.Tensor,
    air_threshold: float,
    min_fraction: float = 0.01,
    source_image: str = "",
    source_label: str = "",
    extra: dict | None = None,
) -> list[dict]:
    """Split a checked volume pair ``[C, X, Y, Z]`` into 2D slice dicts (air-only slices dropped).

    Each dict holds ``"image"``/``"label"`` MetaTensors ``[C, X, Y]`` (copies, so the volume can be freed) whose
    4x4 affine is the volume's with the origin moved to that slice (world positions stay right), and the keys
    ``"slice_index"``, ``"source_image"``, ``"source_label"`` (also in each MetaTensor's meta, with
    ``"slice_position"`` and ``"dicom_file"`` when the volume came from DICOM), plus ``extra``'s entries. When the
    loader left ``meta["units"]`` unknown (NIfTI) and ``extra`` has a "units" string (datalist entry), it is used.
    """
    extra = dict(extra or {})
    out = []
    metas = {}
    for key, vol in (("image", image), ("label", label)):
        meta = dict(getattr(vol, "meta", {}) or {})
        metas[key] = meta
    aff = torch.as_tensor(getattr(image, "affine", torch.eye(4)), dtype=torch.float64)
    img_t = image.as_tensor() if isinstance(image, MetaTensor) else torch.as_tensor(image)
    lab_t = label.as_tensor() if isinstance(label, MetaTensor) else torch.as_tensor(label)
    for z in keep_slices(lab_t, air_threshold, min_fraction).tolist():
        s_aff = aff.clone()
        s_aff[:3, 3] += aff[:3, 2] * z
        item = dict(extra)
        for key, t in (("image", img_t), ("label", lab_t)):
            src = metas[key]
            meta = {k: v for k, v in src.items() if k not in _DROP_META and k != "affine" and v is not None}
            files = src.get("dicom_files") or []
            if len(files) == t.shape[-1]:
                meta["dicom_file"] = str(files[z])
            pos = src.get("slice_positions") or []
            if len(pos) == t.shape[-1]:
                meta["slice_position"] = float(pos[z])
            if meta.get("units") is None and isinstance(extra.get("units"), str):
                meta["units"] = extra["units"]  # e.g. the simulator's datalist says its NIfTI PET is in SUV
            meta.update(slice_index=z, source_image=source_image, source_label=source_label,
                        spatial_shape=np.asarray(t.shape[1:3]))
            item[key] = MetaTensor(t[..., z].clone(), affine=s_aff.clone(), meta=meta)
        item.update(slice_index=z, source_image=source_image, source_label=source_label)
        out.append(item)
    return out


class PairedSliceDataset(CacheDataset):
    """2D axial slices of paired volumes, each volume loaded once; a MONAI ``CacheDataset`` over the slice dicts.

    In ``__init__`` every item of ``data`` (``{"image": low-quality path, "label": high-quality path, ...}``) goes
    through ``volume_transform`` ONCE (default: ``LoadVolumed(keys=("image", "label"), modality=modality)``: real
    units, SUV / HU, not normalised). Both volumes must have the same shape and affine (else a ``ValueError`` naming
    both files). Slices are kept when MORE THAN ``min_fraction`` (default 1 %) of the LABEL's pixels exceed
    ``air_threshold`` (default 0.1 SUV for PET, -500 HU for CT; in the units the volume transform produces): air-only
    slices above/below the body are dropped. Each kept slice becomes ``{"image": MetaTensor [C, X, Y], "label": [C,
    X, Y], "slice_index", "source_image", "source_label", <other entries that every item has>}`` (see
    :func:`slice_volume_pair`).

    Then ``CacheDataset`` takes over with ``transform``: its deterministic prefix (e.g. a region-map transform
    placed first, then normalisation) runs once per slice and is cached (``cache_rate`` of the slices), the random
    tail (crops, rot90, flips) runs at every access. ``cache_rate=0`` gives the plain uncached way (the whole
    ``transform`` per access; the slices themselves are always held in memory, about the size of the volumes).

    Args:
        data: list of dicts with "image" and "label" (paths, or anything ``volume_transform`` accepts).
        transform: per-slice transform(s). Defaults to None (slices as they are).
        volume_transform: callable loading an item dict into ``[C, X, Y, Z]`` tensors. Defaults to
            ``LoadVolumed(keys=("image", "label"), modality=modality)``.
        modality: "pet" or "ct" (default threshold and loader). Defaults to "pet".
        air_threshold: see above. Defaults to ``DEFAULT_AIR_THRESHOLD[modality]``.
        min_fraction: see above. Defaults to 0.01.
        cache_rate: fraction of slices whose deterministic transforms are cached. Defaults to 1.0.
        num_workers: CacheDataset workers for caching. Defaults to 0 (CacheDataset's own default is ``1``;
            ``0`` means ``1`` worker there).
        progress: progress bars while loading volumes and caching. Defaults to True.
        cache_kwargs: other ``CacheDataset`` arguments (``copy_cache``, ``as_contiguous``, ...).

    Examples::

        ds = PairedSliceDataset(load_datalist("sim/datalist.json"), transform=paired_train_transforms(patch_size=64))
        batch = next(iter(DataLoader(ds, batch_size=4)))
    """

    def __init__(
        self,
        data: Sequence[dict],
        transform: Sequence[Callable] | Callable | None = None,
        volume_transform: Callable | None = None,
        modality: str = "pet",
        air_threshold: float | None = None,
        min_fraction: float = 0.01,
        cache_rate: float = 1.0,
        num_workers: int | None = 0,
        progress: bool = True,
        **cache_kwargs: Any,
    ) -> None:
        from tqdm.auto import tqdm

        modality = str(modality).lower()
        if air_threshold is None:
            if modality not in DEFAULT_AIR_THRESHOLD:
                raise ValueError(
                    f"no default air_threshold for modality {modality!r}: pass air_threshold= or use one of "
                    f"{sorted(DEFAULT_AIR_THRESHOLD)}."
                )
            air_threshold = DEFAULT_AIR_THRESHOLD[modality]
        if not 0 <= min_fraction < 1:
            raise ValueError(f"min_fraction must be in [0, 1), got {min_fraction}.")
        if volume_transform is None:
            from rat_monai.transforms import LoadVolumed

            volume_transform = LoadVolumed(keys=("image", "label"), modality=modality)
        self.modality = modality
        self.air_threshold = float(air_threshold)
        self.min_fraction = float(min_fraction)
        self.volume_info: list[dict] = []
        slices: list[dict] = []
        data = list(data)
        # only entries that every item has travel with the slices: a datalist merged from differently described
        # folders (e.g. phantoms as NIfTI only, real-derived pairs with their DICOM folders too) still batches
        shared_keys = set.intersection(*(set(item) for item in data if isinstance(item, dict))) if data else set()
        for i, item in enumerate(tqdm(data, desc="load volumes", disable=not progress, unit="pair")):
            if not isinstance(item, dict) or "image" not in item or "label" not in item:
                raise ValueError(f"data item {i} must be a dict with 'image' and 'label' keys, got {item!r:.200}.")
            d = volume_transform(dict(item))
            src_i, src_l = _source(d, "image", item["image"]), _source(d, "label", item["label"])
            img, lab = d["image"], d["label"]
            for key, vol, src in (("image", img, src_i), ("label", lab, src_l)):
                if not isinstance(vol, torch.Tensor) or vol.ndim != 4:
                    raise ValueError(
                        f"{key} {src} must load as a channel-first volume [C, X, Y, Z], got "
                        f"{type(vol).__name__} {tuple(getattr(vol, 'shape', ()))}; check volume_transform."
                    )
            self.check_geometry(img, lab, src_i, src_l)
            extra = {
                k: v
                for k, v in item.items()
                if k in shared_keys and k not in ("image", "label") and isinstance(v, (str, int, float))
            }
            pair_slices = slice_volume_pair(img, lab, self.air_threshold, self.min_fraction, src_i, src_l, extra)
            self.volume_info.append(
                {"source_image": src_i, "source_label": src_l, "slices": int(img.shape[-1]), "kept": len(pair_slices)}
            )
            slices.extend(pair_slices)
            del d, img, lab
        super().__init__(
            data=slices, transform=transform, cache_rate=cache_rate, num_workers=num_workers, progress=progress,
            **cache_kwargs,
        )

    @staticmethod
    def check_geometry(image: torch.Tensor, label: torch.Tensor, source_image: str, source_label: str,
                       atol: float = 1e-3) -> None:
        """Raise a ``ValueError`` naming both files unless ``image`` and ``label`` share shape and affine."""
        if tuple(image.shape[1:]) != tuple(label.shape[1:]):
            raise ValueError(
                f"paired volumes differ in shape: image {source_image} is {tuple(image.shape[1:])}, label "
                f"{source_label} is {tuple(label.shape[1:])}; resample one onto the other (e.g. MONAI "
                "ResampleToMatchd) before slicing."
            )
        a_i = torch.as_tensor(getattr(image, "affine", torch.eye(4)), dtype=torch.float64)
        a_l = torch.as_tensor(getattr(label, "affine", torch.eye(4)), dtype=torch.float64)
        if not torch.allclose(a_i, a_l, atol=atol):
            raise ValueError(
                f"paired volumes differ in geometry (affine): image {source_image} has\n{a_i.numpy()}\nlabel "
                f"{source_label} has\n{a_l.numpy()}\n(max difference {float((a_i - a_l).abs().max()):.4g} mm); "
                "resample one onto the other (e.g. MONAI ResampleToMatchd) before slicing."
            )

    @property
    def slices_dropped(self) -> int:
        """Number of air-only slices dropped over all volumes."""
        return sum(v["slices"] - v["kept"] for v in self.volume_info)
