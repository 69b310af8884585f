# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""The single-tensor region channel: how a region map rides with an image in ONE tensor.

A Model Zoo / MONAI Label network takes one input tensor, so :class:`~rat_monai.networks.nets.StackedRegionRAT`
reads ``[B, C + 1, *spatial]``: the ``C`` image channels, then the integer region labels as float values in the last
channel (exact below 2**24 in float32). :func:`stack_regions` builds that tensor (training batches, the restorer,
stacked targets for :class:`~rat_monai.losses.StackedRegionLoss`) and :func:`split_regions` takes it apart again
(the network, the loss, the image-panel handler). Both live here so that the convention has one definition.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

__all__ = ["MAX_EXACT_FLOAT_LABEL", "stack_regions", "split_regions"]

#: float32 represents every integer exactly up to 2**24: region labels beyond that would be corrupted by stacking.
MAX_EXACT_FLOAT_LABEL = 2**24


def _as_channel_first(regions: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Region map ``[B, *spatial]`` or ``[B, 1, *spatial]`` -> ``[B, 1, *spatial]`` matching ``like``'s spatial
    shape."""
    if regions.ndim == like.ndim - 1:
        regions = regions.unsqueeze(1)
    if regions.ndim != like.ndim or regions.shape[1] != 1 or regions.shape[2:] != like.shape[2:]:
        raise ValueError(
            f"regions must be [B, 1, *spatial] or [B, *spatial] matching the image {tuple(like.shape)}, "
            f"got {tuple(regions.shape)}: check that the region transform ran on the same key/slice as the image."
        )
    return regions


def stack_regions(image: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Concatenate an integer region map to ``image`` as its last channel (as float, exact below 2**24).

    Args:
        image: ``[B, C, *spatial]`` float tensor.
        regions: integer (or integer-valued float) region labels ``[B, *spatial]`` or ``[B, 1, *spatial]``.

    Returns:
        ``[B, C + 1, *spatial]`` in ``image``'s dtype and on its device.

    Raises:
        ValueError: when the shapes do not match or a label cannot be represented exactly as float32.

    Example::

        >>> stack_regions(torch.zeros(2, 1, 8, 8), torch.ones(2, 8, 8, dtype=torch.int64)).shape
        torch.Size([2, 2, 8, 8])
    """
    regions = _as_channel_first(regions, image)
    if regions.numel() > 0 and int(regions.abs().max()) >= MAX_EXACT_FLOAT_LABEL:
        raise ValueError(
            f"region labels must stay below {MAX_EXACT_FLOAT_LABEL} in magnitude to be stacked as float32 "
            f"(found {int(regions.abs().max())}); relabel the region map to consecutive integers first."
        )
    return torch.cat([image, regions.to(device=image.device, dtype=image.dtype)], dim=1)


@torch.jit.ignore
def _check_stacked(x: torch.Tensor, image_channels: int) -> None:
    if x.ndim < 3 or image_channels < 1 or x.shape[1] != image_channels + 1:
        raise ValueError(
            f"a stacked tensor must be [B, C + 1, *spatial] (C = {image_channels} image channels, then the region "
            f"label channel), got shape {tuple(x.shape)}: build it with stack_regions."
        )


def split_regions(x: torch.Tensor, image_channels: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`stack_regions`: ``[B, C + 1, *spatial]`` -> (``[B, C, *spatial]``, int64 regions
    ``[B, 1, *spatial]``), the labels rounded to the nearest integer. Scriptable (``StackedRegionRAT.forward``).

    Args:
        x: the stacked tensor.
        image_channels: ``C``; checked against ``x``. Defaults to None (all channels but the last).

    Raises:
        ValueError: when ``x`` is not ``[B, image_channels + 1, *spatial]`` (not checked while scripting).
    """
    channels = x.shape[1] - 1 if image_channels is None else image_channels
    if not torch.jit.is_scripting():
        _check_stacked(x, channels)
    return x[:, :channels], torch.round(x[:, channels : channels + 1]).to(torch.int64)
