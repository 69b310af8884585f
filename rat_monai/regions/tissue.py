# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Anatomical region maps without SAM: tissue classes on CT (HU), uptake classes on PET (SUV).

``get_partitioner("tissue", modality="ct" | "pet")`` (and ``"auto"`` without a SAM checkpoint) builds
:class:`CtTissuePartitioner` or :class:`PetUptakePartitioner`. Both work on the slice in real units, never on a
display window, and return a partition (one label per pixel, ``0..L-1``) in three layers: body outline, classes inside
the body, compact edge-following superpixels inside each class (:mod:`rat_monai.regions.anatomy`); the air outside
the body is cut into square tiles.

CT tissue classes (HU, after a light Gaussian smoothing that takes the quantum noise down to a few HU):

======================  =================  ==================================================================
class                   HU                 why
======================  =================  ==================================================================
air / lung              < -400             lung parenchyma is -900..-500, bowel gas and air < -900; -400 is the
                                           usual lung-segmentation threshold, below the partial-volume rim of fat
fat                     -400 .. -30        fat is -150..-30 (-190..-30 in body-composition work); the band
                                           -400..-150 is mostly partial volume at gas/fat borders and goes to fat
soft tissue             -30 .. 200         muscle, liver, spleen, kidney, bowel wall, vessels (40-100 HU; 100-200
                                           with iodinated contrast)
bone / dense contrast   > 200              trabecular bone 200-400, cortical bone > 500, contrast-filled vessels
                                           and kidney pelvis in late phases
======================  =================  ==================================================================

Inside each class the superpixel borders follow the gradient of that class's own window (lung -1000..-400,
fat -200..-30, soft tissue -30..200, bone 200..1200), so e.g. liver, spleen and muscle, all "soft tissue", are split
where their HU changes. The body outline is ``HU > -500`` with a binary opening that detaches the table and the
padding outside the field of view (-3024 HU), keeping every component at least a tenth of the largest one (arms).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from rat_monai.data.modality import short_modality

from .anatomy import air_tiles, body_outline, class_superpixels, merge_small_pieces
from .base import RegionPartitioner
from .partition import relabel_contiguous
from .windowing import SliceWindow

__all__ = ["CtTissuePartitioner", "PetUptakePartitioner", "CT_TISSUE_EDGES", "CT_CLASS_WINDOWS"]

CT_TISSUE_EDGES: tuple[float, float, float] = (-400.0, -30.0, 200.0)
# per-class windows of the edge images (lung, fat, soft tissue, bone), HU
CT_CLASS_WINDOWS: tuple[tuple[float, float], ...] = (
    (-1000.0, -400.0), (-200.0, -30.0), (-30.0, 200.0), (200.0, 1200.0),
)  # fmt: skip


def _sobel(x: np.ndarray) -> np.ndarray:
    return np.hypot(ndi.sobel(x, axis=0), ndi.sobel(x, axis=1)).astype(np.float32)


def _finish(body_labels: np.ndarray, body: np.ndarray, tile: int) -> np.ndarray:
    """Body superpixels (``>= 0`` inside ``body``) and air tiles outside, relabelled ``0..L-1`` (body first)."""
    tiles = air_tiles(body.shape, tile)
    full = np.where(body, body_labels, body_labels.max(initial=-1) + 1 + tiles)
    return relabel_contiguous(full)


class _AnatomicalBase(RegionPartitioner):
    """Shared checks and settings of the CT and PET partitioners."""

    def __init__(
        self, modality: str, cell: int, compactness: float, min_size: int, air_tile: int, sigma: float, attach: float
    ) -> None:
        if cell < 2 or air_tile < 1 or min_size < 1 or compactness < 0 or sigma < 0:
            raise ValueError(
                f"need cell >= 2, air_tile >= 1, min_size >= 1, compactness >= 0, sigma >= 0; got cell={cell}, "
                f"air_tile={air_tile}, min_size={min_size}, compactness={compactness}, sigma={sigma}."
            )
        self.cell, self.compactness, self.min_size = int(cell), float(compactness), int(min_size)
        self.air_tile, self.sigma = int(air_tile), float(sigma)
        self.attach = float(attach)
        # display window for overlays (``rat-monai regions``); not used to compute the map
        self.window = SliceWindow(modality=modality)

    def _common_settings(self) -> dict[str, Any]:
        return {"cell": self.cell, "compactness": self.compactness, "min_size": self.min_size,
                "air_tile": self.air_tile, "sigma": self.sigma, "attach": self.attach}  # fmt: skip

    def _smooth(self, img: np.ndarray) -> np.ndarray:
        x = np.asarray(img, dtype=np.float32)
        if not np.all(np.isfinite(x)):
            raise ValueError("the slice contains NaN or infinite values; fill or mask them before partitioning.")
        return ndi.gaussian_filter(x, self.sigma) if self.sigma > 0 else x


class CtTissuePartitioner(_AnatomicalBase):
    """CT region map from tissue classes (HU ranges, see the module notes), superpixels per class, air tiles.

    Args:
        modality: accepted for the factory; must be ``"ct"`` or None. Defaults to ``"ct"``.
        tissue_edges: HU borders between air/lung, fat, soft tissue and bone. Defaults to ``(-400, -30, 200)``.
        body_threshold: HU level of the body outline. Defaults to -500.
        body_opening: opening radius (pixels) that detaches the table from the body. Defaults to 3.
        cell: superpixel seed spacing in pixels (48 px is ~4 cm at 0.8 mm). Defaults to 48.
        compactness: compact-watershed weight (higher: rounder superpixels, less edge following). Defaults to 0.002.
        min_size: class pieces smaller than this many pixels take the class of their nearest neighbour. Defaults to 16.
        air_tile: side in pixels of the air tiles outside the body (128 px = 32 latent tokens, 8 RAT windows).
            Defaults to 128.
        sigma: Gaussian smoothing (pixels) before classing. Defaults to 0.7.
        attach: a piece of a class with no superpixel seed joins the nearest seeded superpixel of the same class
            within this many pixels (ribs, thin fat planes); farther pieces are regions of their own. Defaults to
            None (``cell``).
    """

    method = "tissue"

    def __init__(
        self,
        modality: str | None = "ct",
        tissue_edges: tuple[float, float, float] = CT_TISSUE_EDGES,
        body_threshold: float = -500.0,
        body_opening: int = 3,
        cell: int = 48,
        compactness: float = 0.002,
        min_size: int = 16,
        air_tile: int = 128,
        sigma: float = 0.7,
        attach: float | None = None,
    ) -> None:
        if modality is not None and short_modality(modality, strict=False) != "ct":
            raise ValueError(f"CtTissuePartitioner works on CT in HU, got modality={modality!r}.")
        super().__init__("ct", cell, compactness, min_size, air_tile, sigma, cell if attach is None else attach)
        edges = tuple(float(e) for e in tissue_edges)
        if len(edges) != 3 or not edges[0] < edges[1] < edges[2]:
            raise ValueError(f"tissue_edges must be 3 increasing HU levels (lung|fat|soft|bone), got {tissue_edges}.")
        if body_opening < 0:
            raise ValueError(f"body_opening must be >= 0, got {body_opening}.")
        self.tissue_edges, self.body_threshold, self.body_opening = edges, float(body_threshold), int(body_opening)

    def settings(self) -> dict[str, Any]:
        return {"tissue_edges": list(self.tissue_edges), "body_threshold": self.body_threshold,
                "body_opening": self.body_opening, **self._common_settings()}  # fmt: skip

    def body(self, img: np.ndarray) -> np.ndarray:
        """Body outline of one slice in HU (bool ``[H, W]``)."""
        return body_outline(self._smooth(img) > self.body_threshold, opening=self.body_opening)

    def classes(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tissue class map (0 lung, 1 fat, 2 soft, 3 bone; -1 outside the body) and the body mask."""
        s = self._smooth(img)
        body = body_outline(s > self.body_threshold, opening=self.body_opening)
        raw = np.where(body, np.digitize(s, self.tissue_edges), -1).astype(np.int64)
        cls = merge_small_pieces(raw, self.min_size)
        return cls, body

    def partition_slice(self, img: np.ndarray) -> np.ndarray:
        s = self._smooth(img)
        cls, body = self.classes(img)
        edges = [_sobel(np.clip((s - lo) / (hi - lo), 0.0, 1.0)) for lo, hi in CT_CLASS_WINDOWS]
        sp = class_superpixels(cls, edges, self.cell, self.compactness, self.attach)
        return _finish(sp, body, self.air_tile)


class PetUptakePartitioner(_AnatomicalBase):
    """PET region map on SUV: body outline, hot structures as their own regions, compact superpixels, air tiles.

    The body is ``SUV > body_suv`` (after smoothing; holes smaller than ``min_size`` filled), not a percentile of the
    slice, so a slice that is mostly air keeps its air out of the body. Hot structures are body pixels above
    ``max(hot_min_suv, hot_factor * median body SUV)`` (bladder, brain, heart, kidneys, lesions): hot pixels never
    share a region with the rest of the body. A hot structure is one region, or several compact ones when it spans
    several seed cells (a brain); a small lesion is a region of its own (``attach=0``: never merged with another hot
    structure). The rest of the body is split into compact superpixels following the SUV edges.

    Args:
        modality: accepted for the factory; must be ``"pet"`` or None. Defaults to ``"pet"``.
        body_suv: SUV level of the body outline. Defaults to 0.1.
        hot_factor: hot level as a multiple of the median body SUV. Defaults to 3.0.
        hot_min_suv: lowest hot level (SUV). Defaults to 2.0.
        hot_min_size: smallest hot piece kept as its own region (pixels). Defaults to 3.
        cell: superpixel seed spacing (pixels; 16 px is 7.5 cm at 4.7 mm). Defaults to 16.
        compactness: compact-watershed weight. Defaults to 0.01.
        min_size: body pieces smaller than this join their neighbour. Defaults to 8.
        air_tile: side in pixels of the air tiles (32 px = 8 latent tokens, 2 RAT windows). Defaults to 32.
        sigma: Gaussian smoothing (pixels). Defaults to 0.7.
        attach: as for :class:`CtTissuePartitioner`. Defaults to 0 (every seedless hot piece is its own region).
    """

    method = "tissue"

    def __init__(
        self,
        modality: str | None = "pet",
        body_suv: float = 0.1,
        hot_factor: float = 3.0,
        hot_min_suv: float = 2.0,
        hot_min_size: int = 3,
        cell: int = 16,
        compactness: float = 0.01,
        min_size: int = 8,
        air_tile: int = 32,
        sigma: float = 0.7,
        attach: float = 0.0,
    ) -> None:
        if modality is not None and short_modality(modality, strict=False) != "pet":
            raise ValueError(f"PetUptakePartitioner works on PET in SUV, got modality={modality!r}.")
        super().__init__("pet", cell, compactness, min_size, air_tile, sigma, attach)
        if body_suv <= 0 or hot_factor <= 0 or hot_min_suv <= 0 or hot_min_size < 1:
            raise ValueError(
                f"need body_suv, hot_factor, hot_min_suv > 0 and hot_min_size >= 1; got {body_suv}, {hot_factor}, "
                f"{hot_min_suv}, {hot_min_size}."
            )
        self.body_suv, self.hot_factor, self.hot_min_suv = float(body_suv), float(hot_factor), float(hot_min_suv)
        self.hot_min_size = int(hot_min_size)

    def settings(self) -> dict[str, Any]:
        return {"body_suv": self.body_suv, "hot_factor": self.hot_factor, "hot_min_suv": self.hot_min_suv,
                "hot_min_size": self.hot_min_size, **self._common_settings()}  # fmt: skip

    def hot_level(self, suv: np.ndarray, body: np.ndarray) -> float:
        """SUV level above which body pixels are "hot" on this slice."""
        med = float(np.median(suv[body])) if body.any() else 0.0
        return max(self.hot_min_suv, self.hot_factor * med)

    def classes(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class map (0 body, 1 hot; -1 outside) and the body mask."""
        s = self._smooth(img)
        uptake = s > self.body_suv
        body = body_outline(uptake, min_size=self.min_size)
        # holes without uptake (the air between an arm and the trunk, bowel gas) stay air unless they are specks;
        # FDG lungs are above body_suv, so they are body
        holes, n = ndi.label(body & ~uptake)
        if n:
            body &= ~((np.bincount(holes.ravel(), minlength=n + 1) >= self.min_size)[holes] & (holes > 0))
        cls = np.full(s.shape, -1, np.int64)
        cls[body] = 0
        hot = body & (s > self.hot_level(s, body))
        lab, n = ndi.label(hot)
        if n:
            sizes = np.bincount(lab.ravel(), minlength=n + 1)
            hot = (sizes >= self.hot_min_size)[lab] & hot
        cls[hot] = 1
        return cls, body

    def partition_slice(self, img: np.ndarray) -> np.ndarray:
        s = self._smooth(img)
        cls, body = self.classes(img)
        hi = float(np.percentile(s[body], 99.5)) if body.any() else 1.0
        edges = _sobel(np.clip(s / max(hi, 1e-6), 0.0, 1.0))
        sp = class_superpixels(cls, edges, self.cell, self.compactness, self.attach)
        return _finish(sp, body, self.air_tile)
