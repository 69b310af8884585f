# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""The RAT transformer layer (R-MSA + MLP, W-MSA + MLP) and the RAT middle block."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .layernorm import LayerNorm2d
from .nhwc import conv1x1_nhwc, nchw_to_nhwc, nhwc_to_nchw
from .region_attention import DEFAULT_SCORE_BUDGET, RegionSelfAttention
from .window_attention import WindowSelfAttention

__all__ = ["ConvMlp", "RATLayer", "RATBlock"]


class ConvMlp(nn.Module):
    """1x1 conv C -> hidden, GELU, 1x1 conv hidden -> C on ``[B, C, H, W]``.

    Args:
        channels: input/output channels.
        hidden_channels: hidden channels.
    """

    def __init__(self, channels: int, hidden_channels: int) -> None:
        super().__init__()
        if channels < 1 or hidden_channels < 1:
            raise ValueError(f"channels and hidden_channels must be positive, got {channels}, {hidden_channels}.")
        self.fc1 = nn.Conv2d(channels, hidden_channels, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))

    def forward_nhwc(self, x: torch.Tensor) -> torch.Tensor:
        """The same on channels-last ``[..., C]`` (two matrix products)."""
        y = self.act(conv1x1_nhwc(x, self.fc1.weight, self.fc1.bias))
        return conv1x1_nhwc(y, self.fc2.weight, self.fc2.bias)


class RATLayer(nn.Module):
    """One RAT layer on ``[B, C, H, W]`` with a region map ``[B, H, W]``:

    ``x = x + ls_r * RMSA(LN(x), regions); x = x + MLP(LN(x)); x = x + ls_w * WMSA(LN(x)); x = x + MLP(LN(x))``.

    The layer scales ``ls_r``/``ls_w`` are per-channel ``[1, C, 1, 1]`` and zero-initialised (each attention branch
    starts as the identity), as in the published code.

    Args:
        channels: number of channels C.
        num_heads: heads of both attentions. Defaults to 8.
        window_size: W-MSA window side. Defaults to 4.
        mlp_ratio: MLP hidden channels = ``int(channels * mlp_ratio)``. Defaults to 2.0.
        attn_scale: logit scale of both attentions. Defaults to None, meaning ``num_heads ** -0.5``.
        region_attention: ``"packed"`` or ``"dense"``. Defaults to "packed".
        score_budget: packed region attention score-block budget. Defaults to ``DEFAULT_SCORE_BUDGET``.
        use_region_attention: False drops the R-MSA branch (``x + ls_r * RMSA(...)``) from the computation: the
            "W-MSA only" ablation of the paper. Its parameters stay in the module (unused, no gradients), so state
            dicts keep the same keys as the full layer. Defaults to True.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int = 8,
        window_size: int = 4,
        mlp_ratio: float = 2.0,
        attn_scale: float | None = None,
        region_attention: str = "packed",
        score_budget: int = DEFAULT_SCORE_BUDGET,
        use_region_attention: bool = True,
    ) -> None:
        super().__init__()
        self.use_region_attention = bool(use_region_attention)
        hidden = int(channels * mlp_ratio)
        if hidden < 1:
            raise ValueError(f"mlp_ratio must give at least one hidden channel, got mlp_ratio={mlp_ratio}.")
        self.norm_region = LayerNorm2d(channels)
        self.region_attn = RegionSelfAttention(channels, num_heads, attn_scale, region_attention, score_budget)
        self.scale_region = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.norm_region_mlp = LayerNorm2d(channels)
        self.mlp_region = ConvMlp(channels, hidden)
        self.norm_window = LayerNorm2d(channels)
        self.window_attn = WindowSelfAttention(channels, num_heads, window_size, attn_scale)
        self.scale_window = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.norm_window_mlp = LayerNorm2d(channels)
        self.mlp_window = ConvMlp(channels, hidden)

    def forward(self, x: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        if self.use_region_attention:
            x = x + self.scale_region * self.region_attn(self.norm_region(x), regions)
        x = x + self.mlp_region(self.norm_region_mlp(x))
        x = x + self.scale_window * self.window_attn(self.norm_window(x))
        return x + self.mlp_window(self.norm_window_mlp(x))

    def forward_nhwc(self, x: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """The layer on channels-last ``x [B, H, W, C]`` (same function and parameters as ``forward``)."""
        if self.use_region_attention:
            y = self.region_attn.forward_nhwc(self.norm_region.forward_nhwc(x), regions)
            x = torch.addcmul(x, y, self.scale_region.view(-1))
        x = x + self.mlp_region.forward_nhwc(self.norm_region_mlp.forward_nhwc(x))
        y = self.window_attn.forward_nhwc(self.norm_window.forward_nhwc(x))
        x = torch.addcmul(x, y, self.scale_window.view(-1))
        return x + self.mlp_window.forward_nhwc(self.norm_window_mlp.forward_nhwc(x))

    @torch.jit.unused
    def forward_nhwc_checkpointed(self, x: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """:meth:`forward_nhwc` under activation checkpointing (recomputed in backward; not scriptable)."""
        return checkpoint(self.forward_nhwc, x, regions, use_reentrant=False)


class RATBlock(nn.Module):
    """``num_layers`` :class:`RATLayer` s, a closing 3x3 conv and a block residual: ``x + conv(layers(x))``.

    Args:
        channels: number of channels C.
        num_layers: RAT layers in the block. Defaults to 3.
        gradient_checkpointing: in training with autograd, :meth:`forward_nhwc` recomputes each layer's
            activations in backward instead of storing them. Defaults to False.
        kwargs: passed to :class:`RATLayer`.
    """

    def __init__(self, channels: int, num_layers: int = 3, gradient_checkpointing: bool = False, **kwargs) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be a positive integer, got {num_layers}.")
        self.gradient_checkpointing = bool(gradient_checkpointing)
        self.layers = nn.ModuleList([RATLayer(channels, **kwargs) for _ in range(num_layers)])
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        y = x
        for layer in self.layers:
            y = layer(y, regions)
        return x + self.conv(y)

    def forward_nhwc(self, x: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """The block on channels-last ``x [B, H, W, C]`` (same function and parameters as ``forward``)."""
        use_checkpoint = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        y = x
        for layer in self.layers:
            if use_checkpoint and not torch.jit.is_scripting():
                y = layer.forward_nhwc_checkpointed(y, regions)
            else:
                y = layer.forward_nhwc(y, regions)
        return x + nchw_to_nhwc(self.conv(nhwc_to_nchw(y)))
