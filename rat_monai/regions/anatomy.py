# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Building blocks of the anatomical partitioners: body outline, air tiles, superpixels inside a class map.

The anatomical partitioners (:mod:`rat_monai.regions.tissue`) build a region map in three layers:

1. the body outline (outside it: air, the scanner table, the out-of-field padding);
2. inside the body, a class map (CT: lung / fat / soft tissue / bone by HU range; PET: background / hot by SUV);
3. inside every class, compact superpixels (:func:`class_superpixels`) whose borders follow the edges of the image,
   so two organs of the same class are split along their boundary, and a large organ is split into compact pieces.

Outside the body, :func:`air_tiles` cuts the air into square tiles on a fixed grid, so it never forms one giant
region (region attention costs the sum of squared region sizes; air carries nothing to restore).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

__all__ = ["body_outline", "air_tiles", "class_superpixels", "merge_small_pieces"]


def body_outline(
    mask: np.ndarray, opening: int = 0, keep_fraction: float = 0.1, min_size: int = 64, fill_holes: bool = True
) -> np.ndarray:
    """The body in a thresholded slice: opening (detaches the table), large components, holes filled.

    Args:
        mask: bool ``[H, W]``, e.g. ``hu > -500``.
        opening: radius in pixels of a binary opening (square structuring element ``2r+1``) applied before the
            component selection; thin structures (table, cables, blanket folds) narrower than ``2r+1`` fall off.
            Defaults to 0 (none).
        keep_fraction: keep every connected component at least this fraction of the largest one (arms beside the
            trunk, both legs). Defaults to 0.1.
        min_size: and at least this many pixels. Defaults to 64.
        fill_holes: fill enclosed holes (lungs, bowel gas are body). Defaults to True.

    Returns:
        bool ``[H, W]``.
    """
    fg = np.asarray(mask, dtype=bool)
    if opening > 0:
        fg = ndi.binary_opening(fg, structure=np.ones((3, 3), bool), iterations=int(opening))
    lab, n = ndi.label(fg)
    if n == 0:
        return np.zeros(fg.shape, bool)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    sizes[0] = 0
    keep = sizes >= max(int(min_size), keep_fraction * sizes.max())
    keep[0] = False
    body = keep[lab]
    if opening > 0:  # give back the border the opening shaved off the kept components (not the table)
        body = ndi.binary_dilation(body, structure=np.ones((3, 3), bool), iterations=1) & np.asarray(mask, bool)
        body |= keep[lab]
    return ndi.binary_fill_holes(body) if fill_holes else body


def merge_small_pieces(classes: np.ndarray, min_size: int) -> np.ndarray:
    """Connected pieces of a class map smaller than ``min_size`` take the class of the nearest larger piece.

    Pixels ``< 0`` (outside the body) are left alone and never lend their class. Returns int64 ``[H, W]``.
    """
    classes = np.asarray(classes, dtype=np.int64)
    inside = classes >= 0
    small = np.zeros(classes.shape, bool)
    for k in np.unique(classes[inside]):  # loop over the few class values; components are found vectorised
        lab, n = ndi.label(classes == k)
        small |= (np.bincount(lab.ravel(), minlength=n + 1) < min_size)[lab] & (lab > 0)
    if not small.any() or not (inside & ~small).any():
        return classes.copy()
    _, (iy, ix) = ndi.distance_transform_edt(small | ~inside, return_indices=True)
    out = classes.copy()
    out[small] = classes[iy[small], ix[small]]
    return out


def air_tiles(shape: tuple[int, int], tile: int) -> np.ndarray:
    """Tile index of every pixel on a ``tile x tile`` grid anchored at the top-left corner: int64 ``[H, W]``.

    With ``tile`` a multiple of ``4 * window`` the tiles align with the W-MSA windows at the RAT latent.
    """
    h, w = (int(s) for s in shape)
    if tile < 1:
        raise ValueError(f"tile must be >= 1 pixel, got {tile}.")
    ny = -(-w // tile)
    yy, xx = np.meshgrid(np.arange(h) // tile, np.arange(w) // tile, indexing="ij")
    return (yy * ny + xx).astype(np.int64)


def class_superpixels(
    classes: np.ndarray, edges: list[np.ndarray] | np.ndarray, cell: int, compactness: float, attach: float = 0.0
) -> np.ndarray:
    """Compact superpixels inside each class of a class map (one compact-watershed per class).

    Seeds sit on a ``cell x cell`` grid; inside each class the seeds of that class flood the class's pixels over the
    ``edges`` image (gradient magnitude, high on boundaries) with a compactness term (Neubert & Protzel 2014), so
    superpixels are roughly ``cell`` wide and their borders snap to edges. No superpixel crosses a class boundary. A
    connected piece of a class that holds no seed (thin or small structures) joins the nearest seeded superpixel of the
    same class when it lies within ``attach`` pixels of it (a region label need not be connected: region attention only
    asks which tokens share a label), otherwise it becomes one superpixel of its own.

    Args:
        classes: int ``[H, W]``; pixels ``< 0`` are excluded (label -1 in the output).
        edges: edge strength ``[H, W]``, or one ``[H, W]`` per class value (a list indexed by class).
        cell: seed spacing in pixels.
        compactness: weight of the distance to the seed (0: pure watershed on ``edges``).
        attach: distance in pixels within which a seedless piece joins a seeded superpixel of its class. Defaults to 0.

    Returns:
        int64 ``[H, W]``: ``-1`` outside, otherwise superpixel labels (not contiguous).
    """
    classes = np.asarray(classes)
    h, w = classes.shape
    out = np.full((h, w), -1, np.int64)
    if cell < 1:
        raise ValueError(f"cell must be >= 1 pixel, got {cell}.")
    grid = np.zeros((h, w), bool)
    off = cell // 2
    grid[off::cell, off::cell] = True
    nxt = 0
    for k in np.unique(classes[classes >= 0]):
        mask = classes == k
        # only the bounding box of the class: watershed cost then scales with the class, not the slice
        ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        box = (slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))
        m = mask[box]
        seeds = grid[box] & m
        markers = np.zeros(m.shape, np.int64)
        ns = int(seeds.sum())
        markers[seeds] = np.arange(1, ns + 1)
        e = np.asarray(edges[int(k)] if isinstance(edges, (list, tuple)) else edges)[box]
        lab = watershed(e, markers, mask=m, compactness=compactness) if ns else np.zeros(m.shape, np.int64)
        loose = m & (lab == 0)  # pieces of the class that hold no seed
        if ns and loose.any() and attach > 0:
            # within ``attach`` pixels of a seeded superpixel of the SAME class: join it (labels need not be connected)
            dist, (iy, ix) = ndi.distance_transform_edt(lab == 0, return_indices=True)
            near = loose & (dist <= attach)
            lab[near] = lab[iy[near], ix[near]]
            loose &= ~near
        rest, nr = ndi.label(loose)
        lab = np.where(rest > 0, rest + ns, lab)
        sub = out[box]
        sub[m] = lab[m] - 1 + nxt
        nxt += ns + nr
    return out
