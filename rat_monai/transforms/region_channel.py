# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""The region map as the last channel of the image, for pipelines that hand the network ONE tensor (the bundles'
MONAI Label path): transform wrappers of :func:`rat_monai.networks.region_channel.stack_regions`, the one definition
of that convention."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor, ensure_tuple_rep

from rat_monai.networks.region_channel import stack_regions

__all__ = ["StackRegions", "StackRegionsd", "StackRegionsD", "StackRegionsDict"]


class StackRegions(Transform):
    """Channel-first image ``[C, *spatial]`` and region map ``[1, *spatial]`` (or ``[*spatial]``) ->
    ``[C + 1, *spatial]``: the image channels, then the integer labels as float (see
    :func:`~rat_monai.networks.region_channel.stack_regions`, which this applies to one unbatched item).

    The output has the image's type, dtype and, for a ``MetaTensor``, its metadata (affine, file name), so writers
    and MONAI Label's ``Restored`` still see the source geometry.

    Raises:
        ValueError: the shapes do not match, or a label cannot be represented exactly as float32.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __call__(self, img: NdarrayOrTensor, regions: NdarrayOrTensor) -> NdarrayOrTensor:
        image = convert_to_tensor(img, track_meta=False)
        labels = convert_to_tensor(regions, track_meta=False)
        if labels.ndim == image.ndim - 1:
            labels = labels[None]
        stacked = stack_regions(image[None], labels[None])[0]
        return convert_to_dst_type(stacked, dst=img)[0]


class StackRegionsd(MapTransform):
    """Dictionary version of :class:`StackRegions`: ``d[key] = StackRegions()(d[key], d[region_key])``.

    Args:
        keys: key(s) of the channel-first image(s). Defaults to ``"image"``.
        region_key: key(s) of the region map(s), one per key (or one for all). Defaults to ``"regions"``.
        allow_missing_keys: don't raise when a key is missing. Defaults to False.
    """

    backend = StackRegions.backend

    def __init__(
        self,
        keys: KeysCollection = "image",
        region_key: str | Sequence[str] = "regions",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.region_keys = ensure_tuple_rep(region_key, len(self.keys))
        self.stacker = StackRegions()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, region_key in self.key_iterator(d, self.region_keys):
            if region_key not in d:
                raise KeyError(
                    f"StackRegionsd: no region map {region_key!r} for {key!r} (keys: {sorted(map(str, d))}); run "
                    "RegionPartitiond / RegionPartitionVolumed first."
                )
            d[key] = self.stacker(d[key], d[region_key])
        return d


StackRegionsD = StackRegionsDict = StackRegionsd
