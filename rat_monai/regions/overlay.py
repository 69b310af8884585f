# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Pictures of region maps: a windowed slice beside the same slice with coloured regions and their outlines."""

from __future__ import annotations

import numpy as np
from skimage.segmentation import find_boundaries

from rat_monai.visualize import label_colors

__all__ = ["render_overlay"]


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
        uint8 ``[H, W, 3]`` (or ``[H, 2W, 3]`` side by side); region outlines are drawn in white. Each region has the
        colour :func:`rat_monai.visualize.label_colors` gives its label in every picture.
    """
    g = np.asarray(windowed, dtype=np.float32)
    lab = np.asarray(labels)
    if g.shape != lab.shape or g.ndim != 2:
        raise ValueError(f"slice {g.shape} and labels {lab.shape} must be the same 2D shape.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    grey = np.repeat((np.clip(g, 0, 1) * 255)[..., None], 3, axis=-1)
    over = (1 - alpha) * grey + alpha * label_colors(lab).astype(np.float32)
    over[find_boundaries(lab, mode="inner")] = 255.0
    out = np.rint(over).astype(np.uint8)
    if side_by_side:
        out = np.concatenate([np.rint(grey).astype(np.uint8), out], axis=1)
    return out
