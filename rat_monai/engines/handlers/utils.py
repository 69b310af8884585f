# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""What the image-panel and metrics handlers read from an engine: per-sample dicts, the input without its region
channel, and per-sample meta values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.data import decollate_batch

from rat_monai.networks.region_channel import split_regions

__all__ = ["input_and_regions", "meta_value", "samples_of"]


def samples_of(data: Any) -> list[dict]:
    """``engine.state.output`` / ``engine.state.batch`` as a list of per-sample dicts (decollated or not)."""
    if data is None:
        return []
    if isinstance(data, Mapping):
        return list(decollate_batch(dict(data), detach=True))
    if isinstance(data, Sequence):
        return [d for d in data if isinstance(d, Mapping)]
    return []


def input_and_regions(
    sample: Mapping, batch_sample: Mapping | None, image_key: str, pred_key: str, region_key: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(lq [C, *spatial], regions [1, *spatial] or None)`` of one sample.

    The engine's input is stacked (``PrepareBatchStackRegions``: the region map as the last channel,
    :func:`~rat_monai.networks.region_channel.split_regions`) when it has one channel more than the prediction; else
    the region map is ``region_key`` of the sample or of its batch entry, if any.
    """
    image = sample[image_key]
    pred = sample.get(pred_key)
    if pred is not None and image.shape[0] == pred.shape[0] + 1:
        lq, regions = split_regions(torch.as_tensor(image)[None], int(pred.shape[0]))
        return lq[0], regions[0]
    regions = None
    for src in (sample, batch_sample or {}):
        if region_key in src:
            regions = src[region_key]
            break
    return image, regions


def meta_value(batch_sample: Mapping | None, image_key: str, names: Sequence[str], default: Any = None) -> Any:
    """First of ``names`` found in the sample dict itself or in its image's MetaTensor meta."""
    if not batch_sample:
        return default
    meta = getattr(batch_sample.get(image_key), "meta", None) or {}
    for name in names:
        for src in (batch_sample, meta, batch_sample.get(f"{image_key}_meta_dict") or {}):
            if name in src and src[name] is not None:
                value = src[name]
                if isinstance(value, torch.Tensor):
                    value = value.item() if value.numel() == 1 else value.tolist()
                return value
    return default
