# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""``get_partitioner``: pick SAM or an offline partitioner by name."""

from __future__ import annotations

import logging
import os
from typing import Any

from rat_monai.data.modality import short_modality

from .base import RegionPartitioner
from .offline import OFFLINE_PARTITIONERS
from .grid import GridPartitioner  # noqa: F401  (registers "grid" in OFFLINE_PARTITIONERS)
from .tissue import CtTissuePartitioner, PetUptakePartitioner

__all__ = ["get_partitioner", "PARTITION_METHODS", "DEFAULT_OFFLINE_METHOD", "FALLBACK_METHOD", "SAM_CHECKPOINT_ENV"]

logger = logging.getLogger(__name__)

# the offline default for CT and PET; slices of unknown modality (no units to class) fall back to FALLBACK_METHOD
DEFAULT_OFFLINE_METHOD = "tissue"
FALLBACK_METHOD = "felzenszwalb"
SAM_CHECKPOINT_ENV = "RAT_MONAI_SAM_CHECKPOINT"
PARTITION_METHODS = ("auto", "sam", "tissue", *OFFLINE_PARTITIONERS)
_TISSUE = {"ct": CtTissuePartitioner, "pet": PetUptakePartitioner}


def get_partitioner(
    method: str = "auto", sam_checkpoint: str | os.PathLike | None = None, modality: str | None = None, **kwargs: Any
) -> RegionPartitioner:
    """Build a region partitioner.

    Args:
        method: ``"sam"``, ``"tissue"``, ``"felzenszwalb"``, ``"slic"``, ``"intensity"`` or ``"auto"``: SAM when a
            checkpoint is configured (``sam_checkpoint`` or the ``RAT_MONAI_SAM_CHECKPOINT`` environment variable),
            otherwise the offline default with a logged warning: ``"tissue"`` for CT and PET
            (:class:`~rat_monai.regions.tissue.CtTissuePartitioner`,
            :class:`~rat_monai.regions.tissue.PetUptakePartitioner`: anatomical maps on HU / SUV), ``"felzenszwalb"``
            when the modality is unknown. Defaults to ``"auto"``.
        sam_checkpoint: path of a SAM checkpoint (``.pth``). Defaults to None.
        modality: ``"ct"``, ``"pet"`` or None; picks the ``"tissue"`` partitioner and the window defaults of the
            others. Defaults to None.
        kwargs: passed to the partitioner (e.g. ``window``, ``points_per_side``, ``scale``).

    Returns:
        an object with ``__call__(slices [B, H, W]) -> int32 [B, H, W]``, ``settings()`` and ``cache_key()``.

    Raises:
        ValueError: unknown ``method``, ``method="sam"`` without a checkpoint or model, or ``method="tissue"``
            without ``modality="ct"``/``"pet"``.
    """
    name = str(method).lower()
    if name not in PARTITION_METHODS:
        raise ValueError(f"unknown region method {method!r}; choose one of {', '.join(PARTITION_METHODS)}.")
    if sam_checkpoint is None and name in ("auto", "sam") and os.environ.get(SAM_CHECKPOINT_ENV):
        sam_checkpoint = os.environ[SAM_CHECKPOINT_ENV]
    if name == "auto":
        if sam_checkpoint is not None or kwargs.get("model") is not None:
            name = "sam"
        else:
            known = short_modality(modality, strict=False) is not None
            name = DEFAULT_OFFLINE_METHOD if known else FALLBACK_METHOD
            logger.warning(
                "region method 'auto': no SAM checkpoint configured (pass sam_checkpoint= or set %s), "
                "using the offline '%s' partitioner instead of SAM%s.",
                SAM_CHECKPOINT_ENV,
                name,
                "" if known else " (modality unknown: pass modality='ct' or 'pet' for the anatomical 'tissue' maps)",
            )
    if name == "sam":
        if sam_checkpoint is None and kwargs.get("model") is None:
            raise ValueError(
                f"method='sam' needs a SAM checkpoint: pass sam_checkpoint=PATH (or set {SAM_CHECKPOINT_ENV}), "
                "or use an offline method such as 'tissue' (CT/PET) or 'felzenszwalb'."
            )
        # imported here: segment_anything and torchvision add 1.5 s to `import rat_monai.regions` (measured with
        # python -X importtime), and only SAM needs them
        from .sam import SamRegionGenerator

        return SamRegionGenerator(checkpoint=sam_checkpoint, modality=modality, **kwargs)
    if sam_checkpoint is not None:
        logger.info("region method %r ignores sam_checkpoint=%s", name, sam_checkpoint)
    if name == "tissue":
        key = short_modality(modality, strict=False)
        if key is None:
            raise ValueError(
                f"method='tissue' classes HU (CT) or SUV (PET) and needs modality='ct' or 'pet', got {modality!r}; "
                "for other images use 'felzenszwalb', 'slic' or 'intensity'."
            )
        bad = sorted(k for k in ("window", "percentiles", "split_foreground", "foreground_threshold") if k in kwargs)
        if bad:
            raise ValueError(
                f"method='tissue' works on the slice's HU / SUV values, not a display window: remove {bad} "
                "(they apply to 'felzenszwalb', 'slic', 'intensity' and 'sam')."
            )
        return _TISSUE[key](modality=key, **kwargs)
    return OFFLINE_PARTITIONERS[name](modality=modality, **kwargs)
