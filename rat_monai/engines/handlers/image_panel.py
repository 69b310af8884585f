# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Image panels for training and evaluation: LQ | restored | HQ | region map, one row per example."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["region_colors", "render_panel", "save_png"]

_SEP = 2  # pixels of dark grey between tiles


def _to_2d(x: np.ndarray | torch.Tensor) -> np.ndarray:
    arr = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    while arr.ndim > 2 and arr.shape[0] == 1:  # drop leading channel / batch dims of size 1
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"a panel tile must be a single 2D slice ([H, W] or [1, H, W]), got shape {arr.shape}.")
    return arr


def region_colors(regions: np.ndarray | torch.Tensor) -> np.ndarray:
    """Map integer region labels to distinct RGB colours (uint8 ``[H, W, 3]``), stable across calls.

    The colour of a label is a hash of its value, so the same region keeps its colour in every panel.
    """
    labels = np.round(_to_2d(regions)).astype(np.int64)
    h = (labels * 2654435761) % (2**32)  # Knuth's multiplicative hash
    rgb = np.stack([(h >> 8) & 255, (h >> 16) & 255, (h >> 24) & 255], axis=-1).astype(np.float32)
    return (64 + rgb * (191 / 255)).astype(np.uint8)  # keep colours away from black


def _grey(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scaled = np.clip((x - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    return np.repeat((scaled * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=-1)


def render_panel(
    rows: Sequence[Sequence[np.ndarray | torch.Tensor]], window: tuple[float, float] | None = None
) -> np.ndarray:
    """Render rows of ``(lq, restored, hq[, regions])`` slices into one RGB image.

    The three intensity images of a row share one grey window (by default from the HQ slice: its minimum to its 99.5th
    percentile), so differences in noise are visible; the optional fourth tile is the region map in hashed colours.
    Tiles of different sizes are padded to the largest.

    Args:
        rows: one sequence per example: ``lq, restored, hq`` and optionally ``regions``; each ``[H, W]`` or
            ``[1, H, W]`` (tensor or array).
        window: fixed ``(low, high)`` grey window for all rows, in the images' units. Defaults to per-row from HQ.

    Returns:
        uint8 ``[H_total, W_total, 3]``.
    """
    if len(rows) == 0:
        raise ValueError("render_panel needs at least one row of (lq, restored, hq[, regions]).")
    tiles_per_row = []
    for row in rows:
        if len(row) not in (3, 4):
            raise ValueError(f"each panel row is (lq, restored, hq[, regions]), got {len(row)} items.")
        lq, pred, hq = (_to_2d(t) for t in row[:3])
        lo, hi = window if window is not None else (float(hq.min()), float(np.percentile(hq, 99.5)))
        if hi <= lo:
            hi = lo + 1.0
        tiles = [_grey(lq, lo, hi), _grey(pred, lo, hi), _grey(hq, lo, hi)]
        if len(row) == 4:
            tiles.append(region_colors(row[3]))
        tiles_per_row.append(tiles)
    th = max(t.shape[0] for tiles in tiles_per_row for t in tiles)
    tw = max(t.shape[1] for tiles in tiles_per_row for t in tiles)
    ncol = max(len(tiles) for tiles in tiles_per_row)
    out = np.full((len(rows) * (th + _SEP) - _SEP, ncol * (tw + _SEP) - _SEP, 3), 40, dtype=np.uint8)
    for r, tiles in enumerate(tiles_per_row):
        for c, tile in enumerate(tiles):
            y, x = r * (th + _SEP), c * (tw + _SEP)
            out[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    return out


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 ``[H, W, 3]`` image as PNG (creating the folder); returns the path."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image)).save(path)
    return path
