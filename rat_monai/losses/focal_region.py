# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Focal region loss of the Region Attention Transformer (paper Eq. 5)."""

from __future__ import annotations

import math

import torch
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

__all__ = ["FocalRegionLoss", "region_mean_error"]

_NORMALIZE_OPTIONS = ("batch", "image")
_REDUCTION_OPTIONS = tuple(r.value for r in LossReduction)


def _segment_ids(regions: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Map a per-image label map ``[B, N]`` (any integers) to segment ids in ``[0, B * U)``.

    Labels are per image: ``b * U + rank(label)`` where ``U`` is the number of distinct labels in the whole batch,
    so the same label in two images gives two segments. Some segments may be empty (a label absent from an image).

    Returns:
        the segment id of every pixel ``[B, N]`` (int64) and ``U``.
    """
    batch = regions.shape[0]
    uniq, inverse = torch.unique(regions, return_inverse=True)
    num_labels = int(uniq.numel())
    offsets = torch.arange(batch, device=regions.device, dtype=torch.int64).unsqueeze(1) * num_labels
    return inverse.reshape(batch, -1).to(torch.int64) + offsets, num_labels


def region_mean_error(error: torch.Tensor, regions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-region mean of an error map, vectorised (no loop over images or regions).

    Args:
        error: non-negative error map ``[B, C, N]`` (spatial dims flattened).
        regions: integer labels ``[B, N]``; the same label in two images is two regions.

    Returns:
        ``(mean_error, segment_ids, num_labels)``: ``mean_error`` is ``[B, U]`` in float32 (mean over channels and
        pixels of each region, 0 for labels absent from an image), ``segment_ids`` ``[B, N]`` indexes
        ``mean_error.flatten()``.
    """
    batch, channels = error.shape[:2]
    seg, num_labels = _segment_ids(regions)
    flat_seg = seg.reshape(-1)
    total = torch.zeros(batch * num_labels, device=error.device, dtype=torch.float32)
    total.index_add_(0, flat_seg, error.detach().to(torch.float32).sum(1).reshape(-1))
    count = torch.bincount(flat_seg, minlength=batch * num_labels).to(torch.float32) * channels
    mean = total / count.clamp_min(1.0)
    return mean.reshape(batch, num_labels), seg, num_labels


class FocalRegionLoss(_Loss):
    """L1 loss re-weighted per region by the region's relative error (RAT paper Eq. 5, as the published code does).

    For region ``i`` with mean L1 error ``e_i`` (mean over the channels and pixels of the region), the weight is
    ``w_i = clamp(e_i**delta / max_j e_j**delta, 0, 1)`` (detached: no gradient flows through the weights) and the
    per-pixel loss is ``|input - target| * (1 + gamma * w_region(pixel))``. The maximum runs over all regions of all
    images in the batch (``normalize="batch"``, the published behaviour) or over the regions of each image
    (``normalize="image"``). When the error is zero everywhere the weights are 0 and the loss is the L1 value (0),
    never NaN. With ``gamma=0`` the loss equals :class:`torch.nn.L1Loss`.

    Region maps are integer label maps; labels may be any integers (non-contiguous, negative) and are per image.
    All per-region statistics are computed with segment reductions (``torch.unique``, ``index_add_``, ``bincount``),
    without Python loops over regions or images.

    Args:
        gamma: strength of the region weighting, ``>= 0``. Defaults to 1e-3 (paper).
        delta: exponent applied to the region errors, ``> 0``. Defaults to 1.0 (paper).
        normalize: ``"batch"`` or ``"image"``: where the maximum region error is taken. Defaults to ``"batch"``.
        reduction: {``"none"``, ``"mean"``, ``"sum"``}. ``"none"`` returns the per-pixel loss map ``[B, C, *spatial]``,
            ``"mean"`` its mean, ``"sum"`` its sum. Defaults to ``"mean"``.

    Raises:
        ValueError: for a negative or non-finite ``gamma``, a non-positive ``delta``, or an unknown ``normalize`` or
            ``reduction``.

    Examples::

        >>> loss = FocalRegionLoss()
        >>> pred, target = torch.rand(2, 1, 8, 8, requires_grad=True), torch.rand(2, 1, 8, 8)
        >>> regions = torch.randint(0, 4, (2, 8, 8))
        >>> loss(pred, target, regions).backward()
    """

    def __init__(
        self,
        gamma: float = 1e-3,
        delta: float = 1.0,
        normalize: str = "batch",
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        if str(reduction) not in _REDUCTION_OPTIONS and getattr(reduction, "value", None) not in _REDUCTION_OPTIONS:
            raise ValueError(f"Unsupported reduction: {reduction!r}, available options are {list(_REDUCTION_OPTIONS)}.")
        super().__init__(reduction=LossReduction(reduction).value)
        if not math.isfinite(gamma) or gamma < 0:
            raise ValueError(f"gamma must be a finite number >= 0, got {gamma}.")
        if not math.isfinite(delta) or delta <= 0:
            raise ValueError(f"delta must be a finite number > 0, got {delta}.")
        if normalize not in _NORMALIZE_OPTIONS:
            raise ValueError(f"Unsupported normalize: {normalize!r}, available options are {list(_NORMALIZE_OPTIONS)}.")
        self.gamma = float(gamma)
        self.delta = float(delta)
        self.normalize = normalize

    def region_weights(self, input: torch.Tensor, target: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """Per-pixel weights ``w_region(pixel)`` in [0, 1], detached, shape ``[B, *spatial]`` (float32).

        Args:
            input: prediction ``[B, C, *spatial]``.
            target: ground truth, same shape as ``input``.
            regions: integer label map ``[B, *spatial]`` or ``[B, 1, *spatial]``.
        """
        regions = self._check_inputs(input, target, regions)
        batch = input.shape[0]
        error = (input.detach() - target.detach()).abs().reshape(batch, input.shape[1], -1)
        mean, seg, _ = region_mean_error(error, regions.reshape(batch, -1))
        powered = mean.pow(self.delta)
        if self.normalize == "batch":
            peak = powered.amax().expand_as(powered)
        else:
            peak = powered.amax(dim=1, keepdim=True).expand_as(powered)
        # zero error everywhere (peak 0): weight 0, so the loss falls back to the plain L1 value instead of 0/0
        weights = torch.where(peak > 0, powered / peak.clamp_min(torch.finfo(torch.float32).tiny), 0.0)
        weights = weights.clamp(0.0, 1.0).reshape(-1)
        return weights[seg].reshape(regions.shape)

    def forward(self, input: torch.Tensor, target: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: prediction ``[B, C, *spatial]`` (``BCHW`` for 2D; any number of spatial dims works).
            target: ground truth, same shape as ``input``.
            regions: integer label map ``[B, *spatial]`` or ``[B, 1, *spatial]`` (full resolution).

        Returns:
            the reduced loss (a scalar) or, with ``reduction="none"``, the per-pixel map ``[B, C, *spatial]``.

        Raises:
            ValueError: when the shapes do not match or ``regions`` is not an integer tensor.
        """
        weights = self.region_weights(input, target, regions)
        scale = (1.0 + self.gamma * weights).unsqueeze(1).to(input.dtype)
        loss = (input - target).abs() * scale
        if self.reduction == LossReduction.MEAN.value:
            return loss.mean()
        if self.reduction == LossReduction.SUM.value:
            return loss.sum()
        if self.reduction == LossReduction.NONE.value:
            return loss
        raise ValueError(f"Unsupported reduction: {self.reduction}, available options are {list(_REDUCTION_OPTIONS)}.")

    @staticmethod
    def _check_inputs(input: torch.Tensor, target: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """Validate shapes and dtype; return ``regions`` as ``[B, *spatial]`` on the input's device."""
        if input.ndim < 3:
            raise ValueError(
                f"input must be [B, C, *spatial] with at least one spatial dim, got shape {tuple(input.shape)}."
            )
        if input.shape != target.shape:
            raise ValueError(
                f"input and target must have the same shape, got {tuple(input.shape)} and {tuple(target.shape)}."
            )
        if not isinstance(regions, torch.Tensor):
            raise ValueError(f"regions must be a torch.Tensor label map, got {type(regions).__name__}.")
        if regions.is_floating_point() or regions.is_complex():
            raise ValueError(
                f"regions must be an integer label map, got dtype {regions.dtype}; convert it with regions.long()."
            )
        batch, spatial = input.shape[0], tuple(input.shape[2:])
        if regions.ndim == input.ndim and regions.shape[1] == 1:
            regions = regions.squeeze(1)
        if tuple(regions.shape) != (batch, *spatial):
            raise ValueError(
                f"regions must have shape [B, *spatial] = {[batch, *spatial]} or [B, 1, *spatial], "
                f"got {tuple(regions.shape)} (input shape {tuple(input.shape)})."
            )
        return regions.to(device=input.device)
