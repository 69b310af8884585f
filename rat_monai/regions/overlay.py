# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Pictures of region maps: a windowed slice beside the same slice with coloured regions and their outlines."""

from __future__ import annotations

import numpy as np

__all__ = ["label_colors", "render_overlay"]


def label_colors(n: int, seed: int = 0) -> np.ndarray:
    """``n`` distinct-ish RGB colours (uint8 ``[n, 3]``) from golden-ratio hue steps; deterministic."""
    from matplotlib.colors import hsv_to_rgb

    rng = np.random.default_rng(seed)
    hue = (np.arange(n) * 0.618033988749895 + rng.random()) % 1.0
    sat = 0.55 + 0.4 * ((np.arange(n) * 7) % 3) / 2
    hsv = np.stack([hue, sat, np.full(n, 0.95)], axis=-1)
    return np.rint(hsv_to_rgb(hsv) * 255).astype(np.uint8)


def render_overlay(
    windowed: np.ndarray, labels: np.ndarray, alpha: float = 0.45, side_by_side: bool = True
) -> np.ndarray:
    """RGB picture of a region map over its slice.

    Args:
        windowed: the slice mapped to ``[0, 1]`` ``[H, W]`` (e.g. by :class:`~rat_monai.regions.SliceWindow`).
        labels: integer region map ``[H, W]``.
        alpha: opacity of the region colours. Defaults to 0.45.
        side_by_side: put the plain slice on the left of the overlay. Defaults to True.

    Returns:
        uint8 ``[H, W, 3]`` (or ``[H, 2W, 3]`` side by side); region outlines are drawn in white.
    """
    from skimage.segmentation import find_boundaries

    g = np.asarray(windowed, dtype=np.float32)
    lab = np.asarray(labels)
    if g.shape != lab.shape or g.ndim != 2:
        raise ValueError(f"slice {g.shape} and labels {lab.shape} must be the same 2D shape.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    grey = np.repeat((np.clip(g, 0, 1) * 255)[..., None], 3, axis=-1)
    _, inv = np.unique(lab, return_inverse=True)
    inv = inv.reshape(lab.shape)
    colors = label_colors(int(inv.max()) + 1).astype(np.float32)
    over = (1 - alpha) * grey + alpha * colors[inv]
    over[find_boundaries(inv, mode="inner")] = 255.0
    out = np.rint(over).astype(np.uint8)
    if side_by_side:
        out = np.concatenate([np.rint(grey).astype(np.uint8), out], axis=1)
    return out
