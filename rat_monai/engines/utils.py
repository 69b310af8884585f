# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Glue between the 2D slice samples and MONAI's ``SupervisedTrainer`` / ``SupervisedEvaluator``.

RAT needs the region map next to the image. The bundles' ``network_def`` is the single-input
:class:`~rat_monai.networks.nets.StackedRegionRAT` (the Model Zoo and MONAI Label hand a network ONE tensor), so
:class:`PrepareBatchStackRegions` stacks ``regions`` as the last input channel. MONAI's trainer calls
``loss_function(pred, target)`` with nothing else, so for training the region map also travels as the last channel of
the target and :class:`StackedRegionLoss` splits it off again before calling a region-aware loss such as
:class:`~rat_monai.losses.FocalRegionLoss`. The evaluator uses ``regions_in_target=False``: its target is the label
alone, which is what PSNR / SSIM must see.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from monai.engines.utils import PrepareBatch
from monai.utils import convert_to_tensor

__all__ = ["PrepareBatchStackRegions", "StackedRegionLoss", "stack_regions", "split_stacked_target"]

# float32 represents every integer exactly up to 2**24: region labels beyond that would be corrupted by stacking.
_MAX_EXACT_FLOAT_LABEL = 2**24


def _as_channel_first(regions: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Region map ``[B, H, W]`` or ``[B, 1, H, W]`` -> ``[B, 1, H, W]`` matching ``like``'s spatial shape."""
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
        image: ``[B, C, H, W]`` float tensor.
        regions: integer (or integer-valued float) region labels ``[B, H, W]`` or ``[B, 1, H, W]``.

    Returns:
        ``[B, C + 1, H, W]`` in ``image``'s dtype.

    Raises:
        ValueError: when the shapes do not match or a label cannot be represented exactly as float32.
    """
    regions = _as_channel_first(regions, image)
    if regions.numel() > 0 and int(regions.abs().max()) >= _MAX_EXACT_FLOAT_LABEL:
        raise ValueError(
            f"region labels must stay below {_MAX_EXACT_FLOAT_LABEL} in magnitude to be stacked as float32 "
            f"(found {int(regions.abs().max())}); relabel the region map to consecutive integers first."
        )
    return torch.cat([image, regions.to(device=image.device, dtype=image.dtype)], dim=1)


def split_stacked_target(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`stack_regions` for a target: ``[B, C + 1, ...]`` -> (``[B, C, ...]``, int64 regions
    ``[B, 1, ...]``)."""
    if target.ndim < 3 or target.shape[1] < 2:
        raise ValueError(
            f"a stacked target must be [B, C + 1, *spatial] with the region map last, got {tuple(target.shape)}: "
            "use PrepareBatchStackRegions(regions_in_target=True) in the trainer."
        )
    return target[:, :-1], torch.round(target[:, -1:]).long()


class PrepareBatchStackRegions(PrepareBatch):
    """``prepare_batch`` for MONAI engines: image with the region map stacked as its last channel.

    Returns ``(inputs, targets)`` where ``inputs = cat(image, regions)`` (``[B, C + 1, H, W]``, what the single-input
    ``StackedRegionRAT`` takes) and ``targets`` is the label, or ``cat(label, regions)`` when ``regions_in_target``
    (training, where :class:`StackedRegionLoss` hands the regions to the loss). ``targets`` is None when the batch has
    no label (inference).

    Args:
        image_key: key of the low-quality image. Defaults to ``"image"``.
        label_key: key of the high-quality target. Defaults to ``"label"``.
        region_key: key of the integer region map. Defaults to ``"regions"``.
        regions_in_target: also stack the region map onto the target. Defaults to False.
        use_regions: stack the regions into the input at all; False gives the plain ``(image, label)`` pair, for
            networks without region input (e.g. RestoreRWKV). Defaults to True.

    Raises:
        KeyError: when the batch lacks the image or (with ``use_regions``) the region key, naming the keys found.
    """

    def __init__(
        self,
        image_key: str = "image",
        label_key: str = "label",
        region_key: str = "regions",
        regions_in_target: bool = False,
        use_regions: bool = True,
    ) -> None:
        self.image_key = image_key
        self.label_key = label_key
        self.region_key = region_key
        self.regions_in_target = regions_in_target
        self.use_regions = use_regions

    def _get(self, batchdata: Mapping, key: str, device: Any, non_blocking: bool, **kwargs: Any) -> torch.Tensor:
        if key not in batchdata:
            raise KeyError(
                f"batch has no key {key!r} (keys: {sorted(batchdata)}); check the dataset transforms "
                f"(the region map comes from RegionPartitiond(region_key={self.region_key!r}))."
            )
        value = convert_to_tensor(batchdata[key], track_meta=False)
        return value.to(device=device, non_blocking=non_blocking, **kwargs)

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        image = self._get(batchdata, self.image_key, device, non_blocking, **kwargs)
        label = (
            self._get(batchdata, self.label_key, device, non_blocking, **kwargs)
            if batchdata.get(self.label_key) is not None
            else None
        )
        if not self.use_regions:
            return image, label
        regions = self._get(batchdata, self.region_key, device, non_blocking)
        inputs = stack_regions(image, regions)
        if label is not None and self.regions_in_target:
            label = stack_regions(label, regions)
        return inputs, label


class StackedRegionLoss(torch.nn.Module):
    """Adapter: ``loss(pred, cat(label, regions))`` -> ``inner(pred, label, regions)``.

    MONAI's ``SupervisedTrainer`` calls ``loss_function(pred, target)``; with
    ``PrepareBatchStackRegions(regions_in_target=True)`` the target carries the region map as its last channel, which
    this module splits off (rounded back to int64) for a region-aware loss such as ``FocalRegionLoss``.

    Args:
        loss: the inner loss, called as ``loss(pred, label, regions)`` (or ``loss(pred, label)`` when
            ``pass_regions`` is False, e.g. a plain ``L1Loss``).
        pass_regions: hand the region map to the inner loss. Defaults to True.
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
        """
        label, regions = split_stacked_target(target)
        if label.shape != input.shape:
            raise ValueError(
                f"prediction {tuple(input.shape)} and label {tuple(label.shape)} (target without its region channel) "
                "differ in shape: was the target stacked with regions twice, or not at all?"
            )
        return self.loss(input, label, regions) if self.pass_regions else self.loss(input, label)
