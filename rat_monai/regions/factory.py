# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""``get_partitioner``: pick SAM or an offline partitioner by name."""

from __future__ import annotations

import logging
import os
from typing import Any

from .base import RegionPartitioner
from .offline import OFFLINE_PARTITIONERS

__all__ = ["get_partitioner", "PARTITION_METHODS", "DEFAULT_OFFLINE_METHOD", "SAM_CHECKPOINT_ENV"]

logger = logging.getLogger(__name__)

DEFAULT_OFFLINE_METHOD = "felzenszwalb"
SAM_CHECKPOINT_ENV = "RAT_MONAI_SAM_CHECKPOINT"
PARTITION_METHODS = ("auto", "sam", *OFFLINE_PARTITIONERS)


def get_partitioner(
    method: str = "auto", sam_checkpoint: str | os.PathLike | None = None, modality: str | None = None, **kwargs: Any
) -> RegionPartitioner:
    """Build a region partitioner.

    Args:
        method: ``"sam"``, ``"felzenszwalb"``, ``"slic"``, ``"intensity"`` or ``"auto"``: SAM when a checkpoint is
            configured (``sam_checkpoint`` or the ``RAT_MONAI_SAM_CHECKPOINT`` environment variable), otherwise the
            offline default ``"felzenszwalb"`` with a logged warning. Defaults to ``"auto"``.
        sam_checkpoint: path of a SAM checkpoint (``.pth``). Defaults to None.
        modality: ``"ct"``, ``"pet"`` or None; picks the intensity window defaults. Defaults to None.
        kwargs: passed to the partitioner (e.g. ``window``, ``points_per_side``, ``scale``).

    Returns:
        an object with ``__call__(slices [B, H, W]) -> int32 [B, H, W]``, ``settings()`` and ``cache_key()``.

    Raises:
        ValueError: unknown ``method``, or ``method="sam"`` without a checkpoint or model.
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
            logger.warning(
                "region method 'auto': no SAM checkpoint configured (pass sam_checkpoint= or set %s), "
                "using the offline '%s' partitioner instead of SAM.",
                SAM_CHECKPOINT_ENV,
                DEFAULT_OFFLINE_METHOD,
            )
            name = DEFAULT_OFFLINE_METHOD
    if name == "sam":
        if sam_checkpoint is None and kwargs.get("model") is None:
            raise ValueError(
                f"method='sam' needs a SAM checkpoint: pass sam_checkpoint=PATH (or set {SAM_CHECKPOINT_ENV}), "
                "or use an offline method such as 'felzenszwalb'."
            )
        from .sam import SamRegionGenerator

        return SamRegionGenerator(checkpoint=sam_checkpoint, modality=modality, **kwargs)
    if sam_checkpoint is not None:
        logger.info("region method %r ignores sam_checkpoint=%s", name, sam_checkpoint)
    return OFFLINE_PARTITIONERS[name](modality=modality, **kwargs)
