# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Restore-RWKV: a linear-cost U-shaped restorer built from RWKV blocks (Yang et al., IEEE JBHI 2026)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from rat_monai.networks.blocks.rwkv import RWKVBlock

__all__ = ["RestoreRWKV"]


def _downsample(dim: int) -> nn.Module:
    """3x3 conv ``c -> c/2`` (no bias) + PixelUnshuffle(2): ``[B, c, H, W] -> [B, 2c, H/2, W/2]``."""
    return nn.Sequential(nn.Conv2d(dim, dim // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))


def _upsample(dim: int) -> nn.Module:
    """3x3 conv ``c -> 2c`` (no bias) + PixelShuffle(2): ``[B, c, H, W] -> [B, c/2, 2H, 2W]``."""
    return nn.Sequential(nn.Conv2d(dim, dim * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))


class RestoreRWKV(nn.Module):
    """Restore-RWKV (Yang et al., "Efficient and Effective Medical Image Restoration with RWKV", arXiv 2407.11087).

    A Restormer-like U-shape whose blocks are :class:`~rat_monai.networks.blocks.rwkv.RWKVBlock` (Omni-Shift +
    bidirectional Re-WKV attention with linear cost in the number of pixels):

    - 3x3 conv embedding (no bias) to ``dim``;
    - encoder levels 1-3 and the latent level 4 with ``num_blocks`` blocks at ``dim * (1, 2, 4, 8)``;
      downsample = 3x3 conv ``c -> c/2`` + PixelUnshuffle(2);
    - decoder levels 3 and 2: upsample (3x3 conv ``c -> 2c`` + PixelShuffle(2)), concatenate the skip, 1x1 conv
      back to the level's width, blocks; level 1 concatenates without reduction (``2 * dim``), then its blocks and
      ``num_refinement_blocks`` refinement blocks at ``2 * dim``;
    - 3x3 conv output (no bias) plus the input (global residual, when ``in_channels == out_channels``).

    The network does not use region maps: ``forward(x, regions=None)`` accepts and ignores them, so it is a drop-in
    replacement for :class:`~rat_monai.networks.nets.RAT` in region-aware pipelines.

    Any ``H, W`` works: the input is padded on the bottom/right to a multiple of 8 (three 2x downsamplings) with
    reflection (replication when the image is smaller than the padding) and the output is cropped back.

    Omni-Shift re-parameterisation: in ``eval()`` mode every Omni-Shift automatically runs as one fused 5x5 depthwise
    convolution (rebuilt from the current weights at every call, so it never goes stale); ``train()`` mode runs the
    four branches. Both give the same output. Pass ``fuse_in_eval=False`` to keep the branches in eval mode.

    Args:
        in_channels: input channels. Defaults to 1.
        out_channels: output channels. Defaults to 1.
        dim: width of level 1 (must be even; levels are ``dim * (1, 2, 4, 8)``). Defaults to 48.
        num_blocks: RWKV blocks per level (levels 1-4; decoder levels reuse the counts of 1-3). Defaults to
            (4, 6, 6, 8).
        num_refinement_blocks: blocks after decoder level 1. Defaults to 4.
        recurrence: Bi-WKV passes per spatial mix (alternating row- and column-major scans). Defaults to 2.
        hidden_rate: channel-mix hidden width factor. Defaults to 4.
        fuse_in_eval: fuse Omni-Shift in eval mode. Defaults to True.

    Raises:
        ValueError: for a non-positive channel count, an odd or non-positive ``dim``, ``num_blocks`` not of length 4
            or with negative entries, a negative ``num_refinement_blocks`` or ``recurrence < 1``.

    Examples::

        >>> net = RestoreRWKV(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1)
        >>> net(torch.rand(1, 1, 37, 50)).shape
        torch.Size([1, 1, 37, 50])
    """

    pad_multiple = 8

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        recurrence: int = 2,
        hidden_rate: int = 4,
        fuse_in_eval: bool = True,
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels and out_channels must be >= 1, got {in_channels} and {out_channels}.")
        if dim < 2 or dim % 2:
            raise ValueError(f"dim must be a positive even number (downsampling halves it first), got {dim}.")
        num_blocks = tuple(int(n) for n in num_blocks)
        if len(num_blocks) != 4 or min(num_blocks) < 0:
            raise ValueError(f"num_blocks must be 4 non-negative block counts (levels 1-4), got {num_blocks}.")
        if num_refinement_blocks < 0:
            raise ValueError(f"num_refinement_blocks must be >= 0, got {num_refinement_blocks}.")
        if recurrence < 1:
            raise ValueError(f"recurrence must be >= 1 (number of Bi-WKV passes), got {recurrence}.")
        self.in_channels = in_channels
        self.out_channels = out_channels

        def level(width: int, count: int) -> nn.Sequential:
            return nn.Sequential(
                *[RWKVBlock(width, recurrence, hidden_rate, fuse_in_eval=fuse_in_eval) for _ in range(count)]
            )

        self.patch_embed = nn.Conv2d(in_channels, dim, 3, padding=1, bias=False)
        self.encoder_level1 = level(dim, num_blocks[0])
        self.down1_2 = _downsample(dim)
        self.encoder_level2 = level(dim * 2, num_blocks[1])
        self.down2_3 = _downsample(dim * 2)
        self.encoder_level3 = level(dim * 4, num_blocks[2])
        self.down3_4 = _downsample(dim * 4)
        self.latent = level(dim * 8, num_blocks[3])

        self.up4_3 = _upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, 1, bias=False)
        self.decoder_level3 = level(dim * 4, num_blocks[2])
        self.up3_2 = _upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=False)
        self.decoder_level2 = level(dim * 2, num_blocks[1])
        self.up2_1 = _upsample(dim * 2)
        self.decoder_level1 = level(dim * 2, num_blocks[0])
        self.refinement = level(dim * 2, num_refinement_blocks)
        self.output = nn.Conv2d(dim * 2, out_channels, 3, padding=1, bias=False)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h = (-height) % self.pad_multiple
        pad_w = (-width) % self.pad_multiple
        if pad_h == 0 and pad_w == 0:
            return x
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)

    def forward(self, x: torch.Tensor, regions: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            x: low-quality image ``[B, in_channels, H, W]``, any ``H, W >= 1``.
            regions: ignored (accepted for interface compatibility with region-aware networks).

        Returns:
            restored image ``[B, out_channels, H, W]``.

        Raises:
            ValueError: when ``x`` is not ``[B, in_channels, H, W]``.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"RestoreRWKV expects input [B, {self.in_channels}, H, W], got shape {tuple(x.shape)}."
            )
        height, width = x.shape[-2:]
        inp = self._pad(x)

        enc1 = self.encoder_level1(self.patch_embed(inp))
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        latent = self.latent(self.down3_4(enc3))

        dec3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)))
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)))
        dec1 = self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1))
        out = self.output(self.refinement(dec1))
        if self.in_channels == self.out_channels:
            out = out + inp
        return out[..., :height, :width]
