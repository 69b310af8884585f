# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Non-shifted window multi-head self-attention (W-MSA) on channel-first maps, as in RAT."""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["window_partition", "window_unpartition", "WindowSelfAttention"]


def window_partition(x: torch.Tensor, window_size: int) -> Tuple[torch.Tensor, int, int]:
    """Split ``[B, H, W, C]`` into non-overlapping windows ``[B * nW, window_size**2, C]``.

    H and W are zero-padded at the bottom/right to multiples of ``window_size``; returns the windows and the padded
    ``(Hp, Wp)`` for :func:`window_unpartition` (as segment-anything's ``window_partition`` does).
    """
    b, h, w, c = x.shape
    pad_h = (window_size - h % window_size) % window_size
    pad_w = (window_size - w % window_size) % window_size
    if pad_h > 0 or pad_w > 0:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window_size, window_size, wp // window_size, window_size, c)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, c)
    return windows, hp, wp


def window_unpartition(windows: torch.Tensor, window_size: int, hp: int, wp: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``[B * nW, window_size**2, C]`` -> ``[B, h, w, C]`` (padding cropped)."""
    c = windows.shape[-1]
    b = windows.shape[0] // ((hp // window_size) * (wp // window_size))
    x = windows.view(b, hp // window_size, wp // window_size, window_size, window_size, c)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
    return x[:, :h, :w].contiguous()


class WindowSelfAttention(nn.Module):
    """W-MSA on ``[B, C, H, W]``: self-attention inside non-overlapping ``window_size x window_size`` windows.

    Matches the RAT authors' ``wa`` module: ``qkv`` is a Linear C -> 3C on tokens whose output is viewed as
    (q/k/v, head, head channel); ``proj`` is a Linear C -> C; no relative position bias, no shift. The logit scale
    defaults to the published ``num_heads ** -0.5``. Maps whose size is not a multiple of ``window_size`` are zero
    padded at the bottom/right and cropped back (the published code requires multiples).

    Args:
        channels: number of channels C (divisible by ``num_heads``).
        num_heads: number of heads. Defaults to 8.
        window_size: window side. Defaults to 4.
        attn_scale: logit scale. Defaults to None, meaning ``num_heads ** -0.5``.
    """

    def __init__(
        self, channels: int, num_heads: int = 8, window_size: int = 4, attn_scale: float | None = None
    ) -> None:
        super().__init__()
        if num_heads < 1 or channels % num_heads:
            raise ValueError(f"channels ({channels}) should be divisible by num_heads ({num_heads}).")
        if window_size < 1:
            raise ValueError(f"window_size must be a positive integer, got {window_size}.")
        self.num_heads = num_heads
        self.window_size = window_size
        self.scale = float(num_heads**-0.5 if attn_scale is None else attn_scale)
        self.qkv = nn.Linear(channels, channels * 3)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reference on ``[B, C, H, W]`` (``F.scaled_dot_product_attention`` per window)."""
        return self._attend(x.permute(0, 2, 3, 1), True).permute(0, 3, 1, 2)

    def forward_nhwc(self, x: torch.Tensor) -> torch.Tensor:
        """W-MSA on channels-last ``x [B, H, W, C]`` -> ``[B, H, W, C]``. The ``window_size**2``-token windows run
        as two batched matrix products and a softmax: for such tiny problems that is ~3x faster on CPU than the
        fused attention kernel's per-window overhead (same function to float32 rounding)."""
        return self._attend(x, False)

    def _attend(self, x: torch.Tensor, fused: bool) -> torch.Tensor:
        b, h, w, c = x.shape
        windows, hp, wp = window_partition(x, self.window_size)
        bw, t, _ = windows.shape
        qkv = self.qkv(windows).reshape(bw, t, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if fused:
            o = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            o = torch.matmul(torch.softmax(torch.matmul(q * self.scale, k.transpose(-2, -1)), dim=-1), v)
        o = self.proj(o.transpose(1, 2).reshape(bw, t, c))
        return window_unpartition(o, self.window_size, hp, wp, h, w)
