# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""What every picture of rat-monai shares: the colour of a region label, the intensity windows, grey tiles, PNG.

One label-colour scheme serves the training/evaluation image panels
(:func:`~rat_monai.engines.handlers.image_panel.render_panel`), the restoration overview
(:func:`~rat_monai.inference.overview.save_overview`) and the region overlays of ``rat-monai regions``
(:func:`~rat_monai.regions.overlay.render_overlay`): a label keeps its colour in every picture, on every slice.

The intensity windows, in real units (HU for CT, SUV for PET), are a fixed ``(lo, hi)`` or, for PET whose scale
varies from scan to scan, percentiles ``(p_lo, p_hi)`` of the image itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = [
    "CT_SOFT_TISSUE_WINDOW",
    "CT_WIDE_WINDOW",
    "DEFAULT_PERCENTILES",
    "PET_PERCENTILES",
    "display_window",
    "grey_rgb",
    "label_colors",
    "save_png",
    "to_2d",
]

#: CT soft-tissue window (level 40, width 400 HU): the restoration overview PNG.
CT_SOFT_TISSUE_WINDOW: tuple[float, float] = (-160.0, 240.0)
#: CT from air to bone (HU): what the region partitioners see (``SliceWindow``) and the HU window of the CT metrics
#: (``rat-monai evaluate --ct-window``, :mod:`rat_monai.evaluation.metrics`).
CT_WIDE_WINDOW: tuple[float, float] = (-1000.0, 1000.0)
#: PET: the minimum to the 99.5th percentile of the slice (region partitioners); the overview shows 0 to the
#: 99.5th percentile and the image panels the minimum to the 99.5th percentile of the HQ slice (robust to hot voxels).
PET_PERCENTILES: tuple[float, float] = (0.0, 99.5)
#: an image of unknown modality: the 0.5th to the 99.5th percentile.
DEFAULT_PERCENTILES: tuple[float, float] = (0.5, 99.5)


def display_window(image: np.ndarray, modality: str) -> tuple[float, float, str]:
    """Grey window and matplotlib colour map of a figure of whole slices (restoration overview, simulated-data
    preview).

    CT: the soft-tissue window :data:`CT_SOFT_TISSUE_WINDOW` in grey. PET: 0 to the 99.5th percentile
    (:data:`PET_PERCENTILES`) of ``image`` in inverted grey (uptake dark, as PET is read); 1.0 when that percentile is
    0.

    Args:
        image: the real-unit slice or volume (HU / SUV) the window is taken from (PET only).
        modality: ``"pet"``; anything else is shown as CT.

    Returns:
        ``(lo, hi, cmap)``.
    """
    if modality == "pet":
        return 0.0, float(np.percentile(image, PET_PERCENTILES[1])) or 1.0, "gray_r"
    return CT_SOFT_TISSUE_WINDOW[0], CT_SOFT_TISSUE_WINDOW[1], "gray"


def to_2d(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """A single slice ``[H, W]`` or ``[1, ..., 1, H, W]`` (tensor or array) as a float32 ``[H, W]`` array.

    Raises:
        ValueError: when ``x`` is not a single 2D slice.
    """
    arr = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    while arr.ndim > 2 and arr.shape[0] == 1:  # drop leading channel / batch dims of size 1
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"a picture tile must be a single 2D slice ([H, W] or [1, H, W]), got shape {arr.shape}.")
    return arr


def label_colors(labels: np.ndarray | torch.Tensor) -> np.ndarray:
    """Distinct RGB colours of integer region labels, stable across calls and pictures.

    The colour of a label is a hash of its value (Knuth's multiplicative hash), kept away from black, so the same
    region keeps its colour in every panel, overview and overlay.

    Args:
        labels: integer (or integer-valued float) labels of any shape.

    Returns:
        uint8 ``[*labels.shape, 3]``.
    """
    arr = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    values = np.round(arr).astype(np.int64)
    h = (values * 2654435761) % (2**32)
    rgb = np.stack([(h >> 8) & 255, (h >> 16) & 255, (h >> 24) & 255], axis=-1).astype(np.float32)
    return (64 + rgb * (191 / 255)).astype(np.uint8)


def grey_rgb(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Window ``x [H, W]`` to ``[lo, hi]`` as a uint8 grey RGB image ``[H, W, 3]`` (``lo`` black, ``hi`` white)."""
    scaled = np.clip((x - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    return np.repeat((scaled * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=-1)


def save_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a uint8 ``[H, W, 3]`` image as PNG (creating the folder); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image)).save(path)
    return path
