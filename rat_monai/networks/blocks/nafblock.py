# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""NAFNet block (Chen et al., "Simple Baselines for Image Restoration", ECCV 2022), as used by RAT's encoder and
decoder."""

from __future__ import annotations

import torch
from torch import nn

from torch.utils.checkpoint import checkpoint

from .layernorm import LayerNorm2d
from .nhwc import conv1x1_nhwc, nchw_to_nhwc, nhwc_to_nchw

__all__ = ["SimpleGate", "NAFBlock"]


class SimpleGate(nn.Module):
    """Split the channels in two halves and multiply them: ``x1 * x2``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        return x1 * x2


class NAFBlock(nn.Module):
    """The NAFNet block on ``[B, C, H, W]``.

    ``y = x + beta * conv3(SCA(SG(dwconv3x3(conv1(LN(x))))))`` then ``y + gamma * conv5(SG(conv4(LN(y))))``, where SG
    is :class:`SimpleGate` and SCA the simplified channel attention (global average pool, 1x1 conv, multiply).
    ``beta`` and ``gamma`` are per-channel and zero-initialised, so the block starts as the identity.

    ``forward`` is the plain NCHW reference; :meth:`forward_nhwc` computes the same function on a channels-last
    ``[B, H, W, C]`` tensor with the same parameters (1x1 convolutions as matrix products, fused LayerNorm, the
    ``beta``/``gamma`` residuals as one ``addcmul`` each).

    Args:
        channels: number of channels C.
        dw_expand: expansion of the depthwise branch (conv1 maps C to ``dw_expand * C``). Defaults to 2.
        ffn_expand: expansion of the feed-forward branch. Defaults to 2.
    """

    def __init__(self, channels: int, dw_expand: int = 2, ffn_expand: int = 2) -> None:
        super().__init__()
        if channels < 1 or dw_expand < 1 or ffn_expand < 1:
            raise ValueError(
                f"channels, dw_expand and ffn_expand must be positive, got {channels}, {dw_expand}, {ffn_expand}."
            )
        if (dw_expand * channels) % 2 or (ffn_expand * channels) % 2:
            raise ValueError("dw_expand * channels and ffn_expand * channels must be even (SimpleGate halves them).")
        dw = dw_expand * channels
        ffn = ffn_expand * channels
        self.norm1 = LayerNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.gate = SimpleGate()
        self.sca_pool = nn.AdaptiveAvgPool2d(1)
        self.sca_conv = nn.Conv2d(dw // 2, dw // 2, 1)
        self.conv3 = nn.Conv2d(dw // 2, channels, 1)
        self.norm2 = LayerNorm2d(channels)
        self.conv4 = nn.Conv2d(channels, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, channels, 1)
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gate(self.conv2(self.conv1(self.norm1(x))))
        y = self.conv3(y * self.sca_conv(self.sca_pool(y)))
        x = x + y * self.beta
        y = self.conv5(self.gate(self.conv4(self.norm2(x))))
        return x + y * self.gamma

    def forward_nhwc(self, x: torch.Tensor) -> torch.Tensor:
        """The block on channels-last ``x [B, H, W, C]`` (same function and parameters as ``forward``)."""
        y = conv1x1_nhwc(self.norm1.forward_nhwc(x), self.conv1.weight, self.conv1.bias)
        y = nchw_to_nhwc(self.conv2(nhwc_to_nchw(y)))
        half = self.conv3.in_channels
        y = y[..., :half] * y[..., half:]
        attn = conv1x1_nhwc(y.mean((1, 2), keepdim=True), self.sca_conv.weight, self.sca_conv.bias)
        y = conv1x1_nhwc(y * attn, self.conv3.weight, self.conv3.bias)
        x = torch.addcmul(x, y, self.beta.view(-1))
        y = conv1x1_nhwc(self.norm2.forward_nhwc(x), self.conv4.weight, self.conv4.bias)
        half = self.conv5.in_channels
        y = conv1x1_nhwc(y[..., :half] * y[..., half:], self.conv5.weight, self.conv5.bias)
        return torch.addcmul(x, y, self.gamma.view(-1))

    @torch.jit.unused
    def forward_nhwc_checkpointed(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward_nhwc` under activation checkpointing (recomputed in backward; not scriptable)."""
        return checkpoint(self.forward_nhwc, x, use_reentrant=False)
