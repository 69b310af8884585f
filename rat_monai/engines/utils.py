# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Glue between the 2D slice samples and MONAI's ``SupervisedTrainer`` / ``SupervisedEvaluator``.

RAT needs the region map next to the image. The bundles' ``network_def`` is the single-input
:class:`~rat_monai.networks.nets.StackedRegionRAT` (the Model Zoo and MONAI Label hand a network ONE tensor), so
:class:`PrepareBatchStackRegions` stacks ``regions`` as the last input channel
(:func:`~rat_monai.networks.region_channel.stack_regions`). MONAI's trainer calls ``loss_function(pred, target)``
with nothing else, so for training the region map also travels as the last channel of the target and
:class:`~rat_monai.losses.StackedRegionLoss` splits it off again before calling a region-aware loss such as
:class:`~rat_monai.losses.FocalRegionLoss`. The evaluator uses ``regions_in_target=False``: its target is the label
alone, which is what PSNR / SSIM must see.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from monai.engines.utils import PrepareBatch
from monai.utils import convert_to_tensor

from rat_monai.networks.region_channel import stack_regions

__all__ = ["PrepareBatchStackRegions"]


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
        single_region_input: stack a map of ONE region (all zeros) into the input instead of the real one, so that
            region attention attends over the whole image (the global-MSA ablation); a target with
            ``regions_in_target`` keeps the real map for the region-aware loss. Defaults to False.

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
        single_region_input: bool = False,
    ) -> None:
        self.image_key = image_key
        self.label_key = label_key
        self.region_key = region_key
        self.regions_in_target = regions_in_target
        self.use_regions = use_regions
        self.single_region_input = single_region_input

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
        inputs = stack_regions(image, torch.zeros_like(regions) if self.single_region_input else regions)
        if label is not None and self.regions_in_target:
            label = stack_regions(label, regions)
        return inputs, label
