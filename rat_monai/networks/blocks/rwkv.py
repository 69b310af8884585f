# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Restore-RWKV building blocks: Omni-Shift, the Re-WKV spatial mix, the channel mix and the RWKV block.

After Yang et al., "Efficient and Effective Medical Image Restoration with RWKV" (IEEE JBHI 2026, arXiv 2407.11087).
The attention is :func:`rat_monai.networks.blocks.bi_wkv.bi_wkv` (pure PyTorch, O(T)), so these blocks run on any
device, CPU included.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .bi_wkv import bi_wkv

__all__ = ["OmniShift", "SpatialMix", "ChannelMix", "RWKVBlock"]


class OmniShift(nn.Module):
    """Omni-Shift token shift: ``alpha0 * x + alpha1 * dw1x1(x) + alpha2 * dw3x3(x) + alpha3 * dw5x5(x)``.

    The three depthwise convolutions have no bias. In training mode the four branches run separately; in eval mode
    (when ``fuse_in_eval`` is True) they are re-parameterised into ONE 5x5 depthwise convolution whose kernel
    :meth:`fused_weight` sums the identity and the zero-padded 1x1 and 3x3 kernels, weighted by the alphas. The fused
    kernel is rebuilt from the current parameters at every eval-mode call (a ``[C, 1, 5, 5]`` sum, negligible next to
    the convolution), so it can never go stale after ``load_state_dict`` or an optimiser step and adds no keys to the
    state dict. Both paths give the same output (tested to 1e-5).

    Args:
        dim: number of channels.
        fuse_in_eval: use the fused 5x5 convolution in eval mode. Defaults to True.

    Examples::

        >>> shift = OmniShift(8).eval()
        >>> shift(torch.rand(1, 8, 16, 16)).shape
        torch.Size([1, 8, 16, 16])
    """

    def __init__(self, dim: int, fuse_in_eval: bool = True) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be a positive number of channels, got {dim}.")
        self.dim = dim
        self.fuse_in_eval = fuse_in_eval
        self.conv1x1 = nn.Conv2d(dim, dim, 1, groups=dim, bias=False)
        self.conv3x3 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False)
        self.conv5x5 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim, bias=False)
        # the authors initialise the branch weights with a standard normal draw
        self.alpha = nn.Parameter(torch.randn(4))

    def forward_unfused(self, x: torch.Tensor) -> torch.Tensor:
        """The training-time four-branch path."""
        a = self.alpha
        return a[0] * x + a[1] * self.conv1x1(x) + a[2] * self.conv3x3(x) + a[3] * self.conv5x5(x)

    def fused_weight(self) -> torch.Tensor:
        """The single 5x5 depthwise kernel ``[C, 1, 5, 5]`` equivalent to the four branches."""
        a = self.alpha
        identity = F.pad(torch.ones_like(self.conv1x1.weight), (2, 2, 2, 2))
        return (
            a[0] * identity
            + a[1] * F.pad(self.conv1x1.weight, (2, 2, 2, 2))
            + a[2] * F.pad(self.conv3x3.weight, (1, 1, 1, 1))
            + a[3] * self.conv5x5.weight
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``[B, C, H, W]``.
        """
        if self.training or not self.fuse_in_eval:
            return self.forward_unfused(x)
        return F.conv2d(x, self.fused_weight(), padding=2, groups=self.dim)


def _tokens_to_map(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], height, width)


def _map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


def _row_to_column_major(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[B, (h w), C] -> [B, (w h), C]``."""
    return x.reshape(x.shape[0], height, width, x.shape[-1]).transpose(1, 2).reshape(x.shape)


def _column_to_row_major(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[B, (w h), C] -> [B, (h w), C]``."""
    return x.reshape(x.shape[0], width, height, x.shape[-1]).transpose(1, 2).reshape(x.shape)


class SpatialMix(nn.Module):
    """Re-WKV spatial mixing: Omni-Shift, linear ``k, v, r``, ``recurrence`` Bi-WKV passes, ``Linear(sigmoid(r) wkv)``.

    Pass ``j`` scans the tokens in row-major order (``h w``) when ``j`` is even and in column-major order (``w h``)
    when ``j`` is odd; each pass has its own per-channel decay ``w_j`` and bonus ``u_j`` (parameters
    ``[recurrence, C]``, passed to Bi-WKV divided by ``T = H * W``) and takes the previous pass's output as its ``v``.
    Decay and bonus are initialised as Vision-RWKV's "fancy" mode at its first layer: ``w_c = -5 + 8 (c / (C - 1))^0.7``
    and ``u_c = log(0.3) + 0.5 * ((c + 1) mod 3 - 1)``.

    Args:
        dim: channels ``C``.
        recurrence: number of Bi-WKV passes. Defaults to 2.
        fuse_in_eval: passed to :class:`OmniShift`. Defaults to True.
    """

    def __init__(self, dim: int, recurrence: int = 2, fuse_in_eval: bool = True) -> None:
        super().__init__()
        if recurrence < 1:
            raise ValueError(f"recurrence must be >= 1 (number of Bi-WKV passes), got {recurrence}.")
        self.dim = dim
        self.recurrence = recurrence
        self.omni_shift = OmniShift(dim, fuse_in_eval=fuse_in_eval)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.receptance = nn.Linear(dim, dim, bias=False)
        self.output = nn.Linear(dim, dim, bias=False)
        channel = torch.arange(dim, dtype=torch.float32)
        decay = -5.0 + 8.0 * (channel / max(dim - 1, 1)) ** 0.7
        zigzag = ((channel + 1) % 3 - 1) * 0.5
        first = torch.full((dim,), float(torch.log(torch.tensor(0.3)))) + zigzag
        self.spatial_decay = nn.Parameter(decay.repeat(recurrence, 1))
        self.spatial_first = nn.Parameter(first.repeat(recurrence, 1))

    def forward(self, x: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
        """
        Args:
            x: tokens ``[B, H * W, C]`` in row-major order.
            resolution: ``(H, W)``.
        """
        height, width = resolution
        length = x.shape[1]
        x = _map_to_tokens(self.omni_shift(_tokens_to_map(x, height, width)))
        k, v, r = self.key(x), self.value(x), self.receptance(x)
        for j in range(self.recurrence):
            w, u = self.spatial_decay[j] / length, self.spatial_first[j] / length
            if j % 2 == 0:
                v = bi_wkv(w, u, k, v)
            else:
                kc, vc = _row_to_column_major(k, height, width), _row_to_column_major(v, height, width)
                v = _column_to_row_major(bi_wkv(w, u, kc, vc), height, width)
        return self.output(torch.sigmoid(r) * v)


class ChannelMix(nn.Module):
    """RWKV channel mixing: Omni-Shift, then ``sigmoid(Linear_r(x)) * Linear_v(relu(Linear_k(x))^2)`` (no biases).

    Args:
        dim: channels ``C``.
        hidden_rate: hidden width ``hidden_rate * C`` of the key projection. Defaults to 4.
        fuse_in_eval: passed to :class:`OmniShift`. Defaults to True.
    """

    def __init__(self, dim: int, hidden_rate: int = 4, fuse_in_eval: bool = True) -> None:
        super().__init__()
        if hidden_rate < 1:
            raise ValueError(f"hidden_rate must be >= 1, got {hidden_rate}.")
        self.omni_shift = OmniShift(dim, fuse_in_eval=fuse_in_eval)
        self.key = nn.Linear(dim, hidden_rate * dim, bias=False)
        self.value = nn.Linear(hidden_rate * dim, dim, bias=False)
        self.receptance = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
        """
        Args:
            x: tokens ``[B, H * W, C]`` in row-major order.
            resolution: ``(H, W)``.
        """
        x = _map_to_tokens(self.omni_shift(_tokens_to_map(x, *resolution)))
        k = torch.square(torch.relu(self.key(x)))
        return torch.sigmoid(self.receptance(x)) * self.value(k)


class RWKVBlock(nn.Module):
    """Restore-RWKV block on ``[B, C, H, W]``: ``x += gamma1 * SpatialMix(LN(x))``; ``x += gamma2 * ChannelMix(LN(x))``.

    LayerNorms act on tokens ``[B, H * W, C]``; ``gamma1``, ``gamma2`` are per-channel scales initialised to 1.

    Args:
        dim: channels ``C``.
        recurrence: Bi-WKV passes in the spatial mix. Defaults to 2.
        hidden_rate: channel-mix hidden width factor. Defaults to 4.
        fuse_in_eval: fuse Omni-Shift into one 5x5 depthwise conv in eval mode. Defaults to True.

    Examples::

        >>> block = RWKVBlock(8)
        >>> block(torch.rand(2, 8, 5, 7)).shape
        torch.Size([2, 8, 5, 7])
    """

    def __init__(self, dim: int, recurrence: int = 2, hidden_rate: int = 4, fuse_in_eval: bool = True) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.ln2 = nn.LayerNorm(dim)
        self.att = SpatialMix(dim, recurrence=recurrence, fuse_in_eval=fuse_in_eval)
        self.ffn = ChannelMix(dim, hidden_rate=hidden_rate, fuse_in_eval=fuse_in_eval)
        self.gamma1 = nn.Parameter(torch.ones(dim))
        self.gamma2 = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``[B, C, H, W]``.
        """
        height, width = x.shape[-2:]
        resolution = (int(height), int(width))
        x = _map_to_tokens(x)
        x = x + self.gamma1 * self.att(self.ln1(x), resolution)
        x = x + self.gamma2 * self.ffn(self.ln2(x), resolution)
        return _tokens_to_map(x, *resolution)
