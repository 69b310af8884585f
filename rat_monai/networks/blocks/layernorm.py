# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Channel LayerNorm for channel-first feature maps (NAFNet / RAT ``LayerNorm2d``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LayerNorm2d"]


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dimension of a ``[B, C, H, W]`` tensor, at every pixel.

    Matches the ``LayerNorm2d`` of NAFNet and of the RAT authors' code (biased variance, ``eps`` inside the square
    root, per-channel affine ``weight``/``bias``), written with plain autograd instead of a custom ``Function``.

    Args:
        channels: number of channels C.
        eps: added to the variance. Defaults to 1e-6 (the published value).
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be a positive integer, got {channels}.")
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / torch.sqrt(var + self.eps)
        return self.weight.view(1, -1, 1, 1) * y + self.bias.view(1, -1, 1, 1)

    def forward_nhwc(self, x: torch.Tensor) -> torch.Tensor:
        """The same normalisation on a channels-last ``[..., C]`` tensor (one fused kernel)."""
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)
