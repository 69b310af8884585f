# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Channels-last (``[B, H, W, C]``) application of channel-first layers, for the fast path of RAT's blocks.

The parameters stay those of the ``nn.Conv2d`` modules (same names, shapes and values, so state dicts do not
change); only the memory layout of the activations differs. A 1x1 convolution on ``[B, H, W, C]`` is a matrix
product over the last dimension (``F.linear`` with the ``[C_out, C_in, 1, 1]`` weight viewed as ``[C_out, C_in]``),
which runs at the BLAS rate instead of the NCHW convolution's much lower rate on CPU. Spatial convolutions run on
the NCHW view of the channels-last tensor (``permute(0, 3, 1, 2)``, no copy), which oneDNN executes in its
channels-last format and returns channels-last, so permuting back is free.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["conv1x1_nhwc", "pixel_shuffle_nhwc", "nchw_to_nhwc", "nhwc_to_nchw"]


def conv1x1_nhwc(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """A 1x1, stride-1, ungrouped convolution (``weight [C_out, C_in, 1, 1]``) on channels-last ``x [..., C_in]``
    -> ``[..., C_out]``, as one matrix product. Spatial convolutions: ``nchw_to_nhwc(conv(nhwc_to_nchw(x)))``."""
    return F.linear(x, weight.flatten(1), bias)


def pixel_shuffle_nhwc(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``nn.PixelShuffle(factor)`` on channels-last ``x [B, H, W, C * factor**2]`` -> ``[B, H*f, W*f, C]``:
    output channel ``c`` at sub-pixel ``(i, j)`` is input channel ``c * f**2 + i * f + j`` (PyTorch's order)."""
    b, h, w, c = x.shape
    c_out = c // (factor * factor)
    x = x.reshape(b, h, w, c_out, factor, factor).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, h * factor, w * factor, c_out)


def nchw_to_nhwc(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` -> contiguous ``[B, H, W, C]`` (no copy when ``x`` is channels-last, e.g. the output of a
    convolution applied to :func:`nhwc_to_nchw` of a contiguous tensor)."""
    return x.permute(0, 2, 3, 1).contiguous()


def nhwc_to_nchw(x: torch.Tensor) -> torch.Tensor:
    """``[B, H, W, C]`` -> ``[B, C, H, W]`` (a channels-last strided view, no copy)."""
    return x.permute(0, 3, 1, 2)
