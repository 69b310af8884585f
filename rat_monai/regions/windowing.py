# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Intensity windowing of slices in real units (CT in HU, PET in SUV) for the region partitioners.

Region maps are computed before any training normalisation, on the slice in real units. Every partitioner first maps
the slice to ``[0, 1]`` with a :class:`SliceWindow`: a fixed window ``(lo, hi)`` in the slice's units (the CT default,
``(-1000, 1000)`` HU) or percentiles of the slice itself (the PET default, ``(0, 99.5)``); the defaults are the
windows of :mod:`rat_monai.visualize`. SAM then gets the window as
8-bit RGB (:meth:`SliceWindow.to_rgb8`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from rat_monai.data.modality import short_modality
from rat_monai.visualize import CT_WIDE_WINDOW, DEFAULT_PERCENTILES, PET_PERCENTILES

__all__ = ["SliceWindow", "foreground_mask"]


class SliceWindow:
    """Map a slice in real units to ``[0, 1]``.

    Args:
        modality: ``"ct"``, ``"pet"`` (``"pt"`` is accepted) or None; picks the defaults. CT: fixed window
            ``(-1000, 1000)`` HU. PET: percentiles ``(0, 99.5)`` of each slice. None: percentiles ``(0.5, 99.5)``.
            Defaults to None.
        window: fixed ``(lo, hi)`` in the slice's units; overrides the modality default. Defaults to None.
        percentiles: ``(p_lo, p_hi)`` in ``[0, 100]`` computed per slice; used when no fixed window applies.
            Defaults to None.

    Raises:
        ValueError: when both ``window`` and ``percentiles`` are given, or either is not an increasing pair.
    """

    def __init__(
        self,
        modality: str | None = None,
        window: tuple[float, float] | None = None,
        percentiles: tuple[float, float] | None = None,
    ) -> None:
        self.modality = None if modality is None else short_modality(modality)
        if window is not None and percentiles is not None:
            raise ValueError("give either window=(lo, hi) or percentiles=(p_lo, p_hi), not both.")
        if window is not None:
            lo, hi = (float(v) for v in window)
            if not hi > lo:
                raise ValueError(f"window must be (lo, hi) with hi > lo, got {tuple(window)}.")
            self.window: tuple[float, float] | None = (lo, hi)
            self.percentiles: tuple[float, float] | None = None
        elif percentiles is not None:
            plo, phi = (float(v) for v in percentiles)
            if not 0.0 <= plo < phi <= 100.0:
                raise ValueError(f"percentiles must satisfy 0 <= p_lo < p_hi <= 100, got {tuple(percentiles)}.")
            self.window, self.percentiles = None, (plo, phi)
        elif self.modality == "ct":
            self.window, self.percentiles = CT_WIDE_WINDOW, None
        elif self.modality == "pet":
            self.window, self.percentiles = None, PET_PERCENTILES
        else:
            self.window, self.percentiles = None, DEFAULT_PERCENTILES

    def settings(self) -> dict[str, Any]:
        """JSON-able description (part of every partitioner's cache key)."""
        return {
            "modality": self.modality,
            "window": list(self.window) if self.window else None,
            "percentiles": list(self.percentiles) if self.percentiles else None,
        }

    def bounds(self, img: np.ndarray) -> tuple[float, float]:
        """The ``(lo, hi)`` used for ``img`` (a single slice)."""
        if self.window is not None:
            return self.window
        assert self.percentiles is not None
        lo, hi = np.percentile(np.asarray(img, dtype=np.float64), self.percentiles)
        return float(lo), float(hi)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        """Window one slice ``[H, W]`` to float32 ``[0, 1]`` (a constant slice maps to zeros)."""
        img = np.asarray(img, dtype=np.float32)
        if not np.all(np.isfinite(img)):
            raise ValueError("the slice contains NaN or infinite values; fill or mask them before partitioning.")
        lo, hi = self.bounds(img)
        if hi <= lo:
            return np.zeros(img.shape, np.float32)
        return np.clip((img - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0).astype(np.float32)

    def to_rgb8(self, img: np.ndarray) -> np.ndarray:
        """Window one slice to SAM's input: uint8 ``[H, W, 3]`` (grey replicated to RGB)."""
        g = np.rint(self(img) * 255.0).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=-1)


def foreground_mask(windowed: np.ndarray, threshold: float | str = "otsu", min_size: int = 64) -> np.ndarray:
    """Body (foreground) mask of a windowed slice: threshold, drop specks, fill holes.

    Lungs, bowel gas and other air inside the body are holes of the body and so count as foreground.

    Args:
        windowed: slice in ``[0, 1]`` ``[H, W]`` (output of :class:`SliceWindow`).
        threshold: a level in ``[0, 1]`` or ``"otsu"``. Defaults to ``"otsu"``.
        min_size: connected foreground pieces smaller than this many pixels are dropped. Defaults to 64.

    Returns:
        bool ``[H, W]``.
    """
    x = np.asarray(windowed, dtype=np.float32)
    if isinstance(threshold, str):
        if threshold != "otsu":
            raise ValueError(f"threshold must be a number in [0, 1] or 'otsu', got {threshold!r}.")
        level = float(threshold_otsu(x)) if float(x.max()) > float(x.min()) else 1.0
    else:
        level = float(threshold)
    fg = x > level
    if min_size > 1 and fg.any():
        lab, n = ndi.label(fg)
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        keep = sizes >= min_size
        keep[0] = False
        fg = keep[lab]
    return ndi.binary_fill_holes(fg)
