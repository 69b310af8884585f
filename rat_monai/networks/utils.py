# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Network utilities shared by tests and benchmarks."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["randomise_weights"]


def randomise_weights(net: nn.Module, seed: int = 0) -> nn.Module:
    """Seeded fan-in scaled random weights everywhere, including the zero-initialised layer scales and NAFBlock
    ``beta``/``gamma``, so that every branch of an untrained network is active (as in trained weights).

    ``[1, C, 1, 1]`` layer scales, biases and norm affines get ``N(0, 0.2**2)``; other weights
    ``N(0, (0.5 / sqrt(fan_in))**2)``, which keeps activations O(1). The values depend only on ``seed`` and the
    parameter order, so two networks of the same configuration get the same weights.

    Args:
        net: the network, changed in place.
        seed: seed of the ``torch.Generator``. Defaults to 0.

    Returns:
        ``net``.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if p.ndim == 4 and p.shape[0] == 1:  # layer scales / beta / gamma [1, C, 1, 1]
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            elif p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5 * p[0].numel() ** -0.5)
            else:  # biases, norm affines
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return net
