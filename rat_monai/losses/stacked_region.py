# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Adapter that lets MONAI's ``SupervisedTrainer`` hand the region map to a region-aware loss."""

from __future__ import annotations

from collections.abc import Callable

import torch

from rat_monai.networks.region_channel import split_regions

__all__ = ["StackedRegionLoss"]


class StackedRegionLoss(torch.nn.Module):
    """Adapter: ``loss(pred, cat(label, regions))`` -> ``inner(pred, label, regions)``.

    MONAI's ``SupervisedTrainer`` calls ``loss_function(pred, target)``; with
    ``PrepareBatchStackRegions(regions_in_target=True)`` the target carries the region map as its last channel
    (:func:`~rat_monai.networks.region_channel.stack_regions`), which this module splits off again (rounded back to
    int64, :func:`~rat_monai.networks.region_channel.split_regions`) for a region-aware loss such as
    :class:`~rat_monai.losses.FocalRegionLoss`.

    Args:
        loss: the inner loss, called as ``loss(pred, label, regions)`` (or ``loss(pred, label)`` when
            ``pass_regions`` is False, e.g. a plain ``L1Loss``).
        pass_regions: hand the region map to the inner loss. Defaults to True.

    Raises:
        ValueError: ``loss`` is not callable; in ``forward``, a target without a region channel or a label whose
            shape differs from the prediction.
    """

    def __init__(self, loss: Callable[..., torch.Tensor], pass_regions: bool = True) -> None:
        super().__init__()
        if not callable(loss):
            raise ValueError(f"loss must be callable, got {type(loss).__name__}.")
        self.loss = loss
        self.pass_regions = pass_regions

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: prediction ``[B, C, H, W]``.
            target: ``[B, C + 1, H, W]``: the label channels, then the region map.

        Returns:
            the inner loss.
        """
        if target.ndim < 3 or target.shape[1] < 2:
            raise ValueError(
                f"a stacked target must be [B, C + 1, *spatial] with the region map last, got {tuple(target.shape)}: "
                "use PrepareBatchStackRegions(regions_in_target=True) in the trainer."
            )
        label, regions = split_regions(target)
        if label.shape != input.shape:
            raise ValueError(
                f"prediction {tuple(input.shape)} and label {tuple(label.shape)} (target without its region channel) "
                "differ in shape: was the target stacked with regions twice, or not at all?"
            )
        return self.loss(input, label, regions) if self.pass_regions else self.loss(input, label)
