# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Region Attention Transformer (RAT; Yang et al., MICCAI 2024) and its single-input wrapper for MONAI bundles."""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rat_monai.networks.blocks.nafblock import NAFBlock
from rat_monai.networks.blocks.nhwc import conv1x1_nhwc, nchw_to_nhwc, nhwc_to_nchw, pixel_shuffle_nhwc
from rat_monai.networks.blocks.rat_block import RATBlock
from rat_monai.networks.blocks.region_attention import DEFAULT_SCORE_BUDGET, REGION_ATTENTION_IMPLS
from rat_monai.networks.region_channel import split_regions

__all__ = ["RAT", "StackedRegionRAT", "RAT_LAYOUTS"]

#: Valid values of ``layout``: the channels-last fast path and the plain channel-first reference.
RAT_LAYOUTS = ("nhwc", "nchw")


class RAT(nn.Module):
    """Region Attention Transformer for 2D medical image restoration.

    A NAFNet-style U-Net: 3x3 conv to ``width`` channels; encoder levels of NAFBlocks each followed by a 2x2 stride-2
    conv doubling the channels; a middle of ``middle_blocks`` :class:`~rat_monai.networks.blocks.RATBlock` s (each
    ``layers_per_block`` layers of [R-MSA + MLP, W-MSA + MLP] with zero-initialised layer scales, a closing 3x3 conv
    and a block residual) plus a residual around the whole middle; decoder levels of 1x1 conv + pixel-shuffle(2),
    summed encoder skip and NAFBlocks; 3x3 output conv and a global residual (``output = input + residual``, applied
    when ``in_channels == out_channels``). The default configuration is the published model (15,945,025 parameters);
    weights saved by the authors' code load through
    :func:`~rat_monai.networks.nets.convert_official_rat_state_dict`.

    Region attention uses the region map downsampled to the latent (factor ``2 ** len(enc_blocks)``) by nearest
    neighbour: the top-left pixel of each cell, as ``F.interpolate(..., scale_factor=1/4, mode="nearest")`` does in
    the published code (so thin regions may vanish at the latent).

    Any H x W is accepted: inputs are zero-padded at the bottom/right to a multiple of
    ``2 ** len(enc_blocks) * window_size`` (16 for the default) and the output is cropped back. The padded pixels of
    the region map get a label distinct from every real label (the smallest label minus one), so real tokens never
    attend to padding in R-MSA. (The published code requires multiples of 16 and fails otherwise; for such sizes the
    outputs are identical.)

    Args:
        in_channels: image channels (1 for PET/CT, 3 for RGB). Defaults to 1.
        out_channels: output channels. Defaults to 1.
        width: channels after the input projection; doubled at every encoder level. Defaults to 64.
        enc_blocks: NAFBlocks per encoder level. Defaults to (2, 2).
        dec_blocks: NAFBlocks per decoder level (same number of levels as ``enc_blocks``). Defaults to (2, 2).
        middle_blocks: RAT blocks in the middle. Defaults to 4.
        layers_per_block: RAT layers per block. Defaults to 3 (4 x 3 = the published 12 layers).
        num_heads: heads of R-MSA and W-MSA. Defaults to 8.
        window_size: W-MSA window side at the latent. Defaults to 4.
        mlp_ratio: MLP hidden channels / channels. Defaults to 2.0.
        attn_scale: attention logit scale. Defaults to None, meaning the published ``num_heads ** -0.5`` (the
            authors' code uses it, the paper calls the normaliser "the head number"); not ``head_dim ** -0.5``.
        region_attention: ``"packed"`` (exact, memory-light, default) or ``"dense"`` (boolean-mask reference), see
            :func:`~rat_monai.networks.blocks.region_attention`.
        score_budget: packed region attention: maximum elements of one score block. Defaults to 2**25.
        layout: ``"nhwc"`` (default) computes on channels-last activations: 1x1 convolutions as matrix products,
            fused LayerNorm, no transposes around the attentions (several times faster on CPU); ``"nchw"`` is the
            plain channel-first reference. Same parameters and the same function (equal to float32 rounding);
            state dicts are interchangeable.
        gradient_checkpointing: in training with autograd, recompute the activations of every NAFBlock and RAT
            layer in backward instead of storing them (``torch.utils.checkpoint``, ``use_reentrant=False``): much
            less memory for some extra compute; same gradients. ``layout="nhwc"`` only; ignored while scripting.
            Defaults to False.
        amp: run the forward under ``torch.autocast`` with bfloat16 on the input's device (CPU or CUDA) and return
            the input's dtype: about half the time on CPUs with AVX512-BF16/AMX, close to but not equal to the
            float32 output. Ignored while scripting. Defaults to False (float32).
        use_region_attention: False removes R-MSA from every RAT layer (W-MSA only: the paper's ablation); the
            R-MSA parameters stay unused so state dicts keep their keys. Defaults to True.
        zero_init_residual: start the output convolution at zero, so that with the global residual the untrained
            network is the identity and training only learns the correction. It changes the initialisation only
            (same parameters, same state dict). It helps where the noise is small against the normalised range
            (CT: ~15 HU in 4096 HU), since a randomly initialised output adds more error than the input holds.
            Needs ``in_channels == out_channels``. Defaults to False (the authors' initialisation).

    Raises:
        ValueError: for invalid arguments (and, in ``forward``, inputs of the wrong shape or dtype).

    Examples::

        >>> net = RAT()  # published configuration
        >>> x = torch.randn(2, 1, 100, 90)
        >>> regions = torch.randint(0, 30, (2, 100, 90))
        >>> net(x, regions).shape
        torch.Size([2, 1, 100, 90])
        >>> net(x).shape  # regions=None: one region, i.e. global attention (the paper's MSA ablation)
        torch.Size([2, 1, 100, 90])
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        width: int = 64,
        enc_blocks: Sequence[int] = (2, 2),
        dec_blocks: Sequence[int] = (2, 2),
        middle_blocks: int = 4,
        layers_per_block: int = 3,
        num_heads: int = 8,
        window_size: int = 4,
        mlp_ratio: float = 2.0,
        attn_scale: float | None = None,
        region_attention: str = "packed",
        score_budget: int = DEFAULT_SCORE_BUDGET,
        layout: str = "nhwc",
        gradient_checkpointing: bool = False,
        amp: bool = False,
        use_region_attention: bool = True,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1 or width < 1:
            raise ValueError(
                f"in_channels, out_channels and width must be positive, got {in_channels}, {out_channels}, {width}."
            )
        enc_blocks, dec_blocks = tuple(enc_blocks), tuple(dec_blocks)
        if len(enc_blocks) != len(dec_blocks):
            raise ValueError(
                f"enc_blocks and dec_blocks need the same number of levels, got {enc_blocks} and {dec_blocks}."
            )
        if any(n < 0 for n in enc_blocks + dec_blocks):
            raise ValueError(f"block counts must be >= 0, got enc_blocks={enc_blocks}, dec_blocks={dec_blocks}.")
        if middle_blocks < 1 or layers_per_block < 1:
            raise ValueError(
                f"middle_blocks and layers_per_block must be positive, got {middle_blocks}, {layers_per_block}."
            )
        latent_channels = width * 2 ** len(enc_blocks)
        if num_heads < 1 or latent_channels % num_heads:
            raise ValueError(
                f"latent channels width * 2**len(enc_blocks) = {latent_channels} should be divisible by "
                f"num_heads ({num_heads})."
            )
        if window_size < 1:
            raise ValueError(f"window_size must be a positive integer, got {window_size}.")
        if region_attention not in REGION_ATTENTION_IMPLS:
            raise ValueError(f"region_attention must be one of {REGION_ATTENTION_IMPLS}, got {region_attention!r}.")
        if layout not in RAT_LAYOUTS:
            raise ValueError(f"layout must be one of {RAT_LAYOUTS}, got {layout!r}.")
        if zero_init_residual and in_channels != out_channels:
            raise ValueError(
                f"zero_init_residual=True needs the global residual (in_channels == out_channels), got "
                f"{in_channels} and {out_channels}."
            )
        if gradient_checkpointing and layout != "nhwc":
            raise ValueError("gradient_checkpointing=True needs layout='nhwc' (the reference path stores activations).")
        self.layout = layout
        self.gradient_checkpointing = bool(gradient_checkpointing)
        self.amp = bool(amp)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.down_factor = 2 ** len(enc_blocks)
        self.pad_multiple = self.down_factor * window_size
        self.global_residual = in_channels == out_channels

        self.conv_in = nn.Conv2d(in_channels, width, 3, padding=1)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        chan = width
        for n in enc_blocks:
            self.encoders.append(nn.Sequential(*[NAFBlock(chan) for _ in range(n)]))
            self.downs.append(nn.Conv2d(chan, chan * 2, 2, stride=2))
            chan *= 2
        self.middle = nn.ModuleList(
            [
                RATBlock(
                    chan,
                    layers_per_block,
                    num_heads=num_heads,
                    window_size=window_size,
                    mlp_ratio=mlp_ratio,
                    attn_scale=attn_scale,
                    region_attention=region_attention,
                    score_budget=score_budget,
                    gradient_checkpointing=gradient_checkpointing,
                    use_region_attention=use_region_attention,
                )
                for _ in range(middle_blocks)
            ]
        )
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for n in dec_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(chan, chan * 2, 1, bias=False), nn.PixelShuffle(2)))
            chan //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(chan) for _ in range(n)]))
        self.conv_out = nn.Conv2d(width, out_channels, 3, padding=1)
        if zero_init_residual:
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)

    @torch.jit.unused
    def _check_input(self, x: torch.Tensor, regions: torch.Tensor | None) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be [B, {self.in_channels}, H, W], got shape {tuple(x.shape)}.")
        if regions is None:
            return
        if regions.is_floating_point() or regions.is_complex() or regions.dtype == torch.bool:
            raise ValueError(
                f"regions must hold integer labels, got dtype {regions.dtype}; round and cast it (e.g. .long())."
            )
        shape = tuple(regions.shape)
        expected = (x.shape[0], x.shape[2], x.shape[3])
        if shape != expected and shape != (x.shape[0], 1, x.shape[2], x.shape[3]):
            raise ValueError(f"regions must be [B, H, W] = {expected} or [B, 1, H, W] to match x, got {shape}.")

    def forward(self, x: torch.Tensor, regions: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            x: low-quality image ``[B, in_channels, H, W]``, any H and W.
            regions: integer region labels ``[B, H, W]`` or ``[B, 1, H, W]`` (any integers; same label = same
                region). None means one region covering the image (plain global attention).

        Returns:
            the restored image ``[B, out_channels, H, W]``.
        """
        if not torch.jit.is_scripting() and not torch.jit.is_tracing():
            self._check_input(x, regions)
            if self.amp:
                return self._forward_amp(x, regions)
        return self._forward(x, regions)

    @torch.jit.unused
    def _forward_amp(self, x: torch.Tensor, regions: Optional[torch.Tensor]) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self._forward(x, regions).to(x.dtype)

    def _forward(self, x: torch.Tensor, regions: Optional[torch.Tensor]) -> torch.Tensor:
        b, _, h, w = x.shape
        if regions is None:
            labels = torch.zeros((b, h, w), dtype=torch.int64, device=x.device)
        else:
            labels = regions.reshape(b, h, w).to(torch.int64)
        pad_h = (self.pad_multiple - h % self.pad_multiple) % self.pad_multiple
        pad_w = (self.pad_multiple - w % self.pad_multiple) % self.pad_multiple
        inp = x
        if pad_h > 0 or pad_w > 0:
            inp = F.pad(x, (0, pad_w, 0, pad_h))
            padded = torch.full((b, h + pad_h, w + pad_w), 0, dtype=torch.int64, device=x.device)
            padded.fill_(labels.min() - 1)
            padded[:, :h, :w] = labels
            labels = padded
        latent_labels = labels[:, :: self.down_factor, :: self.down_factor]
        if self.layout == "nhwc":
            out = self._forward_nhwc(inp, latent_labels)
        else:
            out = self._forward_nchw(inp, latent_labels)
        return out[:, :, :h, :w]

    def _forward_nhwc(self, inp: torch.Tensor, latent_labels: torch.Tensor) -> torch.Tensor:
        """Fast path: channels-last activations from the input conv to the output conv."""
        checkpointing = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        feat = nchw_to_nhwc(self.conv_in(inp))
        skips: List[torch.Tensor] = []
        for encoder, down in zip(self.encoders, self.downs):
            for blk in encoder:
                if checkpointing and not torch.jit.is_scripting():
                    feat = blk.forward_nhwc_checkpointed(feat)
                else:
                    feat = blk.forward_nhwc(feat)
            skips.append(feat)
            feat = nchw_to_nhwc(down(nhwc_to_nchw(feat)))
        mid = feat
        for block in self.middle:
            mid = block.forward_nhwc(mid, latent_labels)
        feat = feat + mid
        level = len(skips) - 1
        for up, decoder in zip(self.ups, self.decoders):
            feat = pixel_shuffle_nhwc(conv1x1_nhwc(feat, up[0].weight, up[0].bias), 2) + skips[level]
            for blk in decoder:
                if checkpointing and not torch.jit.is_scripting():
                    feat = blk.forward_nhwc_checkpointed(feat)
                else:
                    feat = blk.forward_nhwc(feat)
            level -= 1
        out = self.conv_out(nhwc_to_nchw(feat)).contiguous()
        if self.global_residual:
            out = out + inp
        return out

    def _forward_nchw(self, inp: torch.Tensor, latent_labels: torch.Tensor) -> torch.Tensor:
        """Plain reference: channel-first activations, every layer's ``forward``."""
        feat = self.conv_in(inp)
        skips: List[torch.Tensor] = []
        for encoder, down in zip(self.encoders, self.downs):
            feat = encoder(feat)
            skips.append(feat)
            feat = down(feat)
        mid = feat
        for block in self.middle:
            mid = block(mid, latent_labels)
        feat = feat + mid
        level = len(skips) - 1
        for up, decoder in zip(self.ups, self.decoders):
            feat = decoder(up(feat) + skips[level])
            level -= 1
        out = self.conv_out(feat)
        if self.global_residual:
            out = out + inp
        return out


class StackedRegionRAT(nn.Module):
    """Single-input :class:`RAT` for MONAI bundles, Model Zoo and MONAI Label: the region map rides as the last
    channel.

    ``forward(x)`` takes ``[B, in_channels + 1, H, W]``; channels ``[:in_channels]`` are the image, the last channel
    holds the region labels as float values, rounded to the nearest integer (exact for labels up to 2**24 in
    float32): the convention of :mod:`rat_monai.networks.region_channel` (build the input with ``stack_regions``;
    ``forward`` takes it apart with ``split_regions``). Scriptable with ``torch.jit.script`` (MONAI ``ckpt_export``).
    The wrapped network is ``self.net``, so state dict keys carry the prefix ``net.``.

    Args:
        in_channels: image channels (without the region channel). Defaults to 1.
        out_channels: output channels. Defaults to 1.
        kwargs: any other :class:`RAT` argument (``width``, ``region_attention``, ``gradient_checkpointing``,
            ``amp``, ...).

    Examples::

        >>> from rat_monai.networks.region_channel import stack_regions
        >>> net = StackedRegionRAT(width=16)
        >>> image, regions = torch.randn(1, 1, 64, 64), torch.randint(0, 9, (1, 1, 64, 64))
        >>> net(stack_regions(image, regions)).shape
        torch.Size([1, 1, 64, 64])
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, **kwargs) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.net = RAT(in_channels=in_channels, out_channels=out_channels, **kwargs)

    @torch.jit.unused
    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels + 1:
            raise ValueError(
                f"x must be [B, in_channels + 1 = {self.in_channels + 1}, H, W] (image channels, then the region "
                f"label channel), got shape {tuple(x.shape)}."
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``[B, in_channels + 1, H, W]``: the image channels followed by one channel of region labels.

        Returns:
            the restored image ``[B, out_channels, H, W]``.
        """
        if not torch.jit.is_scripting() and not torch.jit.is_tracing():
            self._check_input(x)
        image, regions = split_regions(x, self.in_channels)
        return self.net(image, regions)
