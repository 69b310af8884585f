# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""SAM masks -> region partition (the paper's post-processing, Eq. 1).

SAM's automatic mask generation returns overlapping binary masks. RAT needs a partition: one label per pixel.
The published code sorts the masks by area, largest first (a stable sort), paints them in that order so that smaller
masks overwrite larger ones, and gives every unpainted pixel one extra background label. :func:`partition_from_masks`
does the same without a Python loop over masks, and relabels the result to ``0..L-1``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Union

import numpy as np

__all__ = ["partition_from_masks", "partition_from_masks_reference", "relabel_contiguous"]

MasksLike = Union[np.ndarray, Sequence[Mapping[str, Any]], Sequence[np.ndarray]]


def _mask_stack(masks: MasksLike, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Normalise the accepted inputs to a bool stack ``[M, H, W]`` and the areas ``[M]``."""
    h, w = (int(s) for s in shape)
    if isinstance(masks, np.ndarray) or (hasattr(masks, "shape") and hasattr(masks, "dtype")):
        arr = np.asarray(masks)
        if arr.ndim == 2 and arr.size == 0:
            arr = arr.reshape(0, h, w)
        if arr.ndim != 3:
            raise ValueError(
                f"masks must be a bool array [M, H, W] or a list of SAM mask dicts, got shape {arr.shape}."
            )
        stack = arr.astype(bool, copy=False)
        areas = stack.sum(axis=(1, 2), dtype=np.int64)
    else:
        segs, areas_l = [], []
        for i, m in enumerate(masks):
            if isinstance(m, Mapping):
                if "segmentation" not in m:
                    raise ValueError(f"mask record {i} has no 'segmentation' key (keys: {sorted(m)}).")
                seg = m["segmentation"]
                if isinstance(seg, Mapping):  # SAM's uncompressed RLE output mode
                    # imported here: segment_anything loads torchvision, +1.5 s on `import rat_monai.regions`
                    # (python -X importtime), which the offline partitioners never need
                    from segment_anything.utils.amg import rle_to_mask

                    seg = rle_to_mask(dict(seg))
                seg = np.asarray(seg, dtype=bool)
                area = int(m["area"]) if "area" in m else int(seg.sum())
            else:
                seg = np.asarray(m, dtype=bool)
                area = int(seg.sum())
            segs.append(seg)
            areas_l.append(area)
        stack = np.stack(segs) if segs else np.zeros((0, h, w), bool)
        areas = np.asarray(areas_l, dtype=np.int64)
    if stack.shape[1:] != (h, w):
        raise ValueError(f"masks have spatial shape {tuple(stack.shape[1:])} but shape={(h, w)} was given.")
    return stack, areas


def relabel_contiguous(labels: np.ndarray) -> np.ndarray:
    """Relabel an integer map to ``0..L-1`` keeping the order of the original label values; returns int32."""
    labels = np.asarray(labels)
    _, inv = np.unique(labels, return_inverse=True)
    return inv.reshape(labels.shape).astype(np.int32)


def partition_from_masks(masks: MasksLike, shape: tuple[int, int]) -> np.ndarray:
    """Turn overlapping binary masks into a partition (vectorised).

    Rule (the published code's): masks are ordered by area, largest first, with a STABLE sort, so masks of equal area
    keep their input order; they are painted in that order and later ones overwrite earlier ones. Hence a pixel goes to
    the smallest mask that covers it and, among covering masks of equal area, to the one that comes LAST in the input.
    Pixels covered by no mask form one background region. Masks that end up with no pixel (empty, or fully
    overwritten by smaller masks) get no label, so labels are contiguous: ``0..L-1`` in painting order (largest
    mask first), the background (if any pixel is uncovered) last.

    Args:
        masks: a list of SAM mask records (dicts with ``"segmentation"``: bool ``[H, W]`` or SAM's uncompressed RLE,
            and optionally ``"area"``, used for the ordering when present), a list of bool ``[H, W]`` arrays, or a bool
            array ``[M, H, W]``. An empty list gives a single background region (all zeros).
        shape: ``(H, W)`` of the slice.

    Returns:
        int32 ``[H, W]`` with labels ``0..L-1``.

    Raises:
        ValueError: when a mask's shape differs from ``shape`` or a record has no ``"segmentation"``.
    """
    stack, areas = _mask_stack(masks, shape)
    m = stack.shape[0]
    if m == 0:
        return np.zeros(tuple(int(s) for s in shape), np.int32)
    order = np.argsort(-areas, kind="stable")  # painting order
    painted = stack[order]
    # winner = LAST painted mask covering the pixel = first True when scanning the painting order backwards
    last = m - 1 - np.argmax(painted[::-1], axis=0)
    covered = painted.any(axis=0)
    winner = np.where(covered, last, m)  # m = background, sorts after every mask index
    return relabel_contiguous(winner)


def partition_from_masks_reference(masks: MasksLike, shape: tuple[int, int]) -> np.ndarray:
    """Plain loop version of :func:`partition_from_masks` (the published painting algorithm), for tests."""
    stack, areas = _mask_stack(masks, shape)
    records = sorted(zip(areas.tolist(), range(len(areas))), key=lambda r: r[0], reverse=True)
    canvas = np.full(tuple(int(s) for s in shape), -1, np.int64)
    for paint_index, (_, i) in enumerate(records):
        canvas[stack[i]] = paint_index
    canvas[canvas < 0] = len(records)
    out = np.zeros(canvas.shape, np.int32)
    for new, old in enumerate(sorted(set(canvas.ravel().tolist()))):
        out[canvas == old] = new
    return out
