# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""rat_monai.regions"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import RegionPartitioner, settings_digest
from .cache import RegionCache, cached_partition, region_cache_key
from .anatomy import air_tiles, body_outline, class_superpixels, merge_small_pieces
from .factory import DEFAULT_OFFLINE_METHOD, FALLBACK_METHOD, PARTITION_METHODS, SAM_CHECKPOINT_ENV, get_partitioner
from .offline import (
    OFFLINE_PARTITIONERS,
    FelzenszwalbPartitioner,
    IntensityPartitioner,
    OfflinePartitioner,
    SlicPartitioner,
    merge_small_regions,
)
from .partition import partition_from_masks, partition_from_masks_reference, relabel_contiguous
from .tissue import CT_TISSUE_EDGES, CtTissuePartitioner, PetUptakePartitioner
from .windowing import SliceWindow, foreground_mask

__all__ = [
    "CT_TISSUE_EDGES",
    "CtTissuePartitioner",
    "DEFAULT_OFFLINE_METHOD",
    "FALLBACK_METHOD",
    "PetUptakePartitioner",
    "air_tiles",
    "body_outline",
    "class_superpixels",
    "merge_small_pieces",
    "FelzenszwalbPartitioner",
    "IntensityPartitioner",
    "OFFLINE_PARTITIONERS",
    "OfflinePartitioner",
    "PARTITION_METHODS",
    "RegionCache",
    "RegionPartitioner",
    "SAM_CHECKPOINT_ENV",
    "SliceWindow",
    "SlicPartitioner",
    "cached_partition",
    "foreground_mask",
    "get_partitioner",
    "merge_small_regions",
    "partition_from_masks",
    "partition_from_masks_reference",
    "region_cache_key",
    "relabel_contiguous",
    "settings_digest",
]

from .metrics import (  # noqa: E402
    adjusted_rand_index,
    class_purity,
    hu_classes,
    largest_fraction,
    latent_labels,
    region_attention_cost,
)

__all__ += ["adjusted_rand_index", "class_purity", "hu_classes", "largest_fraction", "latent_labels",
            "region_attention_cost", "SamRegionGenerator", "load_sam"]  # fmt: skip

# SAM loads on first use: segment_anything brings torchvision, +1.5 s on `import rat_monai.regions` (measured with
# python -X importtime) that the offline partitioners and the region cache never need
_SAM_NAMES = ("SamRegionGenerator", "load_sam")

if TYPE_CHECKING:
    from .sam import SamRegionGenerator, load_sam


def __getattr__(name: str) -> Any:
    if name not in _SAM_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import sam  # see above: loaded on first use

    value = getattr(sam, name)
    globals()[name] = value
    return value
