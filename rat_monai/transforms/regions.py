# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""MONAI transforms that attach a region map (SAM or offline partitioner) to a slice or a volume.

Thin wrappers over :mod:`rat_monai.regions`: the heavy work, the settings and the disk cache live there. Apply them to
images in REAL units (CT in HU, PET in SUV), before intensity normalisation; the intensity window is a partitioner
setting (``modality=``, ``window=``, ``percentiles=``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, ensure_tuple

from rat_monai.regions.cache import RegionCache, cached_partition
from rat_monai.regions.factory import get_partitioner

__all__ = [
    "RegionPartition",
    "RegionPartitiond",
    "RegionPartitionD",
    "RegionPartitionDict",
    "RegionPartitionVolume",
    "RegionPartitionVolumed",
    "RegionPartitionVolumeD",
    "RegionPartitionVolumeDict",
]


def _to_numpy(img: Any) -> np.ndarray:
    if isinstance(img, torch.Tensor):
        t = img.detach().cpu()
        return (t.float() if t.dtype in (torch.float16, torch.bfloat16) else t).numpy()
    return np.asarray(img)


def _wrap(labels: np.ndarray, img: Any, method: str, settings: dict[str, Any], num_regions: Any) -> MetaTensor:
    meta = dict(img.meta) if isinstance(img, MetaTensor) else {}
    meta.update(
        {
            "region_method": method,
            "region_settings": json.dumps(settings, sort_keys=True, default=str),
            "num_regions": num_regions,
        }
    )
    affine = meta.pop("affine", None)
    return MetaTensor(torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int32)), affine=affine, meta=meta)


class _PartitionBase(Transform):
    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        method: str = "auto",
        sam_checkpoint: str | os.PathLike | None = None,
        modality: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        self.partitioner = get_partitioner(method=method, sam_checkpoint=sam_checkpoint, modality=modality, **kwargs)
        self.cache = RegionCache(cache_dir) if cache_dir is not None else None

    @property
    def method(self) -> str:
        return str(self.partitioner.method)


class RegionPartition(_PartitionBase):
    """Region map of one 2D slice.

    Args:
        method: ``"auto"``, ``"sam"``, ``"tissue"``, ``"felzenszwalb"``, ``"slic"`` or ``"intensity"`` (see
            :func:`rat_monai.regions.get_partitioner`). Defaults to ``"auto"``.
        sam_checkpoint: SAM checkpoint path (``method="sam"``/``"auto"``). Defaults to None.
        modality: ``"ct"``, ``"pet"`` or None: intensity window defaults. Defaults to None.
        cache_dir: folder of the on-disk region cache; None disables it. Defaults to None.
        kwargs: partitioner settings (``window``, ``points_per_side``, ``scale``, ...).

    Input ``[1, H, W]`` or ``[H, W]`` (numpy, tensor or MetaTensor) in real units. Output int32 MetaTensor
    ``[1, H, W]`` (labels ``0..L-1``) with the input's metadata plus ``region_method``, ``region_settings`` (a JSON
    string) and ``num_regions``.
    """

    def __call__(self, img: Any) -> MetaTensor:
        arr = _to_numpy(img)
        if arr.ndim == 3:
            if arr.shape[0] != 1:
                raise ValueError(f"RegionPartition expects one channel [1, H, W] or [H, W], got shape {arr.shape}.")
            arr = arr[0]
        elif arr.ndim != 2:
            raise ValueError(
                f"RegionPartition expects a 2D slice [1, H, W] or [H, W], got shape {arr.shape}; "
                "use RegionPartitionVolume for [C, H, W, D] volumes."
            )
        batch, _ = cached_partition(self.partitioner, arr[None], cache=self.cache)
        labels = batch[0]
        return _wrap(labels[None], img, self.method, self.partitioner.cache_key(), int(labels.max()) + 1)


class RegionPartitionVolume(_PartitionBase):
    """Region maps of every slice (last axis) of a volume ``[1, H, W, D]`` (or ``[H, W, D]``), batched and cached.

    Args:
        method, sam_checkpoint, modality, cache_dir, kwargs: as for :class:`RegionPartition`.
        batch_size: slices per partitioner call (SAM encodes a batch at once). Defaults to 8.
        progress: show a tqdm progress bar. Defaults to True.

    Output int32 MetaTensor ``[1, H, W, D]``; each slice has its own labels ``0..L_d-1``; ``num_regions`` in the
    metadata is the list of ``L_d``.
    """

    def __init__(
        self,
        method: str = "auto",
        sam_checkpoint: str | os.PathLike | None = None,
        modality: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        batch_size: int = 8,
        progress: bool = True,
        **kwargs: Any,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        super().__init__(method=method, sam_checkpoint=sam_checkpoint, modality=modality, cache_dir=cache_dir, **kwargs)
        self.batch_size = int(batch_size)
        self.progress = bool(progress)

    def __call__(self, img: Any) -> MetaTensor:
        arr = _to_numpy(img)
        if arr.ndim == 4:
            if arr.shape[0] != 1:
                raise ValueError(f"RegionPartitionVolume expects one channel [1, H, W, D], got shape {arr.shape}.")
            arr = arr[0]
        elif arr.ndim != 3:
            raise ValueError(
                f"RegionPartitionVolume expects a volume [1, H, W, D] or [H, W, D], got shape {arr.shape}."
            )
        slices = np.moveaxis(arr, -1, 0)
        labels, _ = cached_partition(
            self.partitioner, slices, cache=self.cache, batch_size=self.batch_size, progress=self.progress
        )
        num = [int(s.max()) + 1 for s in labels]
        return _wrap(np.moveaxis(labels, 0, -1)[None], img, self.method, self.partitioner.cache_key(), num)


class _PartitionDictBase(MapTransform):
    backend = _PartitionBase.backend

    def __init__(self, keys: KeysCollection, region_key: str | Sequence[str], allow_missing_keys: bool) -> None:
        super().__init__(keys, allow_missing_keys)
        self.region_keys = ensure_tuple(region_key)
        if len(self.region_keys) != len(self.keys):
            raise ValueError(
                f"region_key must name one output per key: got {len(self.keys)} keys {self.keys} "
                f"and {len(self.region_keys)} region keys {self.region_keys}."
            )
        self.inner: RegionPartition | RegionPartitionVolume

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, region_key in self.key_iterator(d, self.region_keys):
            d[region_key] = self.inner(d[key])
        return d


class RegionPartitiond(_PartitionDictBase):
    """Dictionary version of :class:`RegionPartition`: ``d[region_key] = RegionPartition(...)(d[key])``.

    Args:
        keys: key(s) of the slice(s) in real units. Defaults to ``"image"``.
        region_key: key(s) of the output map(s), one per key. Defaults to ``"regions"``.
        method, sam_checkpoint, modality, cache_dir, kwargs: as for :class:`RegionPartition`.
        allow_missing_keys: don't raise when a key is missing. Defaults to False.
        region_kwargs: partitioner settings as one dict (a bundle config's ``region_kwargs`` id); ``kwargs`` win
            over it. Defaults to None.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        region_key: str | Sequence[str] = "regions",
        method: str = "auto",
        sam_checkpoint: str | os.PathLike | None = None,
        modality: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        allow_missing_keys: bool = False,
        region_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, region_key, allow_missing_keys)
        self.inner = RegionPartition(
            method=method, sam_checkpoint=sam_checkpoint, modality=modality, cache_dir=cache_dir,
            **{**(region_kwargs or {}), **kwargs},
        )  # fmt: skip


class RegionPartitionVolumed(_PartitionDictBase):
    """Dictionary version of :class:`RegionPartitionVolume`.

    Args:
        keys: key(s) of the volume(s) ``[1, H, W, D]``. Defaults to ``"image"``.
        region_key: key(s) of the output map(s). Defaults to ``"regions"``.
        method, sam_checkpoint, modality, cache_dir, batch_size, progress, kwargs: as for
            :class:`RegionPartitionVolume`.
        allow_missing_keys, region_kwargs: as for :class:`RegionPartitiond`.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        region_key: str | Sequence[str] = "regions",
        method: str = "auto",
        sam_checkpoint: str | os.PathLike | None = None,
        modality: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        batch_size: int = 8,
        progress: bool = True,
        allow_missing_keys: bool = False,
        region_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, region_key, allow_missing_keys)
        self.inner = RegionPartitionVolume(
            method=method, sam_checkpoint=sam_checkpoint, modality=modality, cache_dir=cache_dir,
            batch_size=batch_size, progress=progress, **{**(region_kwargs or {}), **kwargs},
        )  # fmt: skip


RegionPartitionD = RegionPartitionDict = RegionPartitiond
RegionPartitionVolumeD = RegionPartitionVolumeDict = RegionPartitionVolumed
