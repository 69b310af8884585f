# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Offline partitioners (scikit-image) for machines without a SAM checkpoint.

They are named for what they are: ``"felzenszwalb"`` (graph-based segmentation, the offline default), ``"slic"``
(superpixels) and ``"intensity"`` (multi-Otsu intensity classes split into connected components). All of them window
the slice first (:class:`~rat_monai.regions.windowing.SliceWindow`) and, by default, never let a region straddle the
body outline: the partition is split along a foreground (body) mask, so air and body share no label.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_multiotsu
from skimage.segmentation import felzenszwalb, slic

from .base import RegionPartitioner
from .partition import relabel_contiguous
from .windowing import SliceWindow, foreground_mask

__all__ = [
    "OfflinePartitioner",
    "FelzenszwalbPartitioner",
    "SlicPartitioner",
    "IntensityPartitioner",
    "OFFLINE_PARTITIONERS",
    "merge_small_regions",
]


def merge_small_regions(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Give each connected region smaller than ``min_size`` pixels to its nearest large region (vectorised).

    Args:
        labels: integer ``[H, W]``; regions are connected components of equal label.
        min_size: minimum region size in pixels.

    Returns:
        int32 ``[H, W]``, contiguous labels. If no region is large enough the input is returned relabelled.
    """
    labels = np.asarray(labels)
    comp = np.zeros(labels.shape, np.int64)
    offset = 0
    for v in np.unique(labels):  # loop over label VALUES (few classes), components are found vectorised
        lab, n = ndi.label(labels == v)
        comp[lab > 0] = lab[lab > 0] + offset
        offset += n
    sizes = np.bincount(comp.ravel())
    small = sizes[comp] < min_size
    if small.all() or not small.any():
        return relabel_contiguous(comp)
    _, (iy, ix) = ndi.distance_transform_edt(small, return_indices=True)
    return relabel_contiguous(comp[iy, ix])


class OfflinePartitioner(RegionPartitioner):
    """Common windowing and body splitting for the scikit-image partitioners.

    Args:
        modality: ``"ct"``, ``"pet"`` or None; picks the window defaults. Defaults to None.
        window: fixed ``(lo, hi)`` window in real units. Defaults to None (the modality default).
        percentiles: per-slice percentile window. Defaults to None.
        split_foreground: split regions along the body outline. Defaults to True.
        foreground_threshold: level on the windowed ``[0, 1]`` slice or ``"otsu"``; None picks 0.25 for CT (-500 HU
            with the default window) and ``"otsu"`` otherwise. Defaults to None.
    """

    def __init__(
        self,
        modality: str | None = None,
        window: tuple[float, float] | None = None,
        percentiles: tuple[float, float] | None = None,
        split_foreground: bool = True,
        foreground_threshold: float | str | None = None,
    ) -> None:
        self.window = SliceWindow(modality=modality, window=window, percentiles=percentiles)
        self.split_foreground = bool(split_foreground)
        if foreground_threshold is None:
            foreground_threshold = 0.25 if self.window.modality == "ct" and window is None else "otsu"
        if not isinstance(foreground_threshold, str) and not 0.0 <= float(foreground_threshold) <= 1.0:
            raise ValueError(f"foreground_threshold must be in [0, 1] or 'otsu', got {foreground_threshold!r}.")
        self.foreground_threshold = foreground_threshold

    def _segment(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _own_settings(self) -> dict[str, Any]:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        return {
            **self._own_settings(),
            "window": self.window.settings(),
            "split_foreground": self.split_foreground,
            "foreground_threshold": self.foreground_threshold,
        }

    def partition_slice(self, img: np.ndarray) -> np.ndarray:
        x = self.window(img)
        labels = np.asarray(self._segment(x), dtype=np.int64)
        if self.split_foreground:
            fg = foreground_mask(x, self.foreground_threshold)
            labels = labels * 2 + fg
        return relabel_contiguous(labels)


class FelzenszwalbPartitioner(OfflinePartitioner):
    """Felzenszwalb-Huttenlocher graph segmentation (``skimage.segmentation.felzenszwalb``); the offline default.

    Args:
        scale: higher gives larger regions. Defaults to 200.
        sigma: Gaussian pre-smoothing. Defaults to 0.8.
        min_size: minimum region size in pixels. Defaults to 100.
        kwargs: windowing / body splitting, see :class:`OfflinePartitioner`.
    """

    method = "felzenszwalb"

    def __init__(self, scale: float = 200.0, sigma: float = 0.8, min_size: int = 100, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if scale <= 0 or sigma < 0 or min_size < 1:
            raise ValueError(f"need scale > 0, sigma >= 0, min_size >= 1; got {scale}, {sigma}, {min_size}.")
        self.scale, self.sigma, self.min_size = float(scale), float(sigma), int(min_size)

    def _own_settings(self) -> dict[str, Any]:
        return {"scale": self.scale, "sigma": self.sigma, "min_size": self.min_size}

    def _segment(self, x: np.ndarray) -> np.ndarray:
        return felzenszwalb(x, scale=self.scale, sigma=self.sigma, min_size=self.min_size, channel_axis=None)


class SlicPartitioner(OfflinePartitioner):
    """SLIC superpixels (``skimage.segmentation.slic``) on the windowed slice.

    Args:
        n_segments: approximate number of superpixels. Defaults to 100.
        compactness: trade-off intensity vs. space (for ``[0, 1]`` images ~0.01-1). Defaults to 0.1.
        sigma: Gaussian pre-smoothing. Defaults to 1.0.
        kwargs: windowing / body splitting, see :class:`OfflinePartitioner`.
    """

    method = "slic"

    def __init__(self, n_segments: int = 100, compactness: float = 0.1, sigma: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if n_segments < 1 or compactness <= 0:
            raise ValueError(f"need n_segments >= 1 and compactness > 0; got {n_segments}, {compactness}.")
        self.n_segments, self.compactness, self.sigma = int(n_segments), float(compactness), float(sigma)

    def _own_settings(self) -> dict[str, Any]:
        return {"n_segments": self.n_segments, "compactness": self.compactness, "sigma": self.sigma}

    def _segment(self, x: np.ndarray) -> np.ndarray:
        return slic(
            x, n_segments=self.n_segments, compactness=self.compactness, sigma=self.sigma,
            channel_axis=None, start_label=0, enforce_connectivity=True,
        )  # fmt: skip


class IntensityPartitioner(OfflinePartitioner):
    """Intensity classes (multi-Otsu thresholds) split into connected components; small pieces merged.

    Args:
        classes: number of intensity classes. Defaults to 4.
        min_size: components smaller than this many pixels join their nearest large one. Defaults to 64.
        kwargs: windowing / body splitting, see :class:`OfflinePartitioner`.
    """

    method = "intensity"

    def __init__(self, classes: int = 4, min_size: int = 64, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if classes < 2 or min_size < 1:
            raise ValueError(f"need classes >= 2 and min_size >= 1; got {classes}, {min_size}.")
        self.classes, self.min_size = int(classes), int(min_size)

    def _own_settings(self) -> dict[str, Any]:
        return {"classes": self.classes, "min_size": self.min_size}

    def _segment(self, x: np.ndarray) -> np.ndarray:
        if np.unique(x).size < self.classes:
            cls = relabel_contiguous(x)
        else:
            cls = np.digitize(x, threshold_multiotsu(x, classes=self.classes))
        return merge_small_regions(cls, self.min_size)

    def partition_slice(self, img: np.ndarray) -> np.ndarray:
        labels = super().partition_slice(img)
        # the body split can leave specks; merge them again
        return merge_small_regions(labels, self.min_size) if self.split_foreground else labels


OFFLINE_PARTITIONERS: dict[str, type[OfflinePartitioner]] = {
    "felzenszwalb": FelzenszwalbPartitioner,
    "slic": SlicPartitioner,
    "intensity": IntensityPartitioner,
}
