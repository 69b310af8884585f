# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""A fixed square grid as the region map (``get_partitioner("grid", cell_size=32)``): the content-blind partition of
the "region map replaced by a fixed grid" ablation, and, with a ``cell_size`` at least the slice size, ONE region
(R-MSA becomes global attention: the ``regions=None`` ablation at inference).

Importing this module adds ``"grid"`` to :data:`rat_monai.regions.offline.OFFLINE_PARTITIONERS`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .offline import OFFLINE_PARTITIONERS, OfflinePartitioner

__all__ = ["GridPartitioner", "grid_labels"]


def grid_labels(shape: tuple[int, int], cell_size: int) -> np.ndarray:
    """int32 ``[H, W]`` labels of ``cell_size`` x ``cell_size`` cells in row-major order, ``0..L-1`` (cells at the
    bottom / right edge are cut short)."""
    h, w = (int(s) for s in shape)
    rows = np.arange(h) // int(cell_size)
    cols = np.arange(w) // int(cell_size)
    ncols = (w + int(cell_size) - 1) // int(cell_size)
    return (rows[:, None] * ncols + cols[None, :]).astype(np.int32)


class GridPartitioner(OfflinePartitioner):
    """Square cells of ``cell_size`` pixels, whatever the image shows.

    Args:
        cell_size: cell side in pixels (of the full-resolution slice). Defaults to 32.
        kwargs: see :class:`~rat_monai.regions.offline.OfflinePartitioner`; ``split_foreground`` defaults to False
            here (a pure grid); True splits the cells along the body outline.

    Raises:
        ValueError: for ``cell_size < 1``.

    Examples::

        >>> GridPartitioner(cell_size=2)(np.zeros((1, 4, 4)))[0]
        array([[0, 0, 1, 1],
               [0, 0, 1, 1],
               [2, 2, 3, 3],
               [2, 2, 3, 3]], dtype=int32)
    """

    method = "grid"

    def __init__(self, cell_size: int = 32, split_foreground: bool = False, **kwargs: Any) -> None:
        super().__init__(split_foreground=split_foreground, **kwargs)
        if int(cell_size) < 1:
            raise ValueError(f"cell_size must be a positive number of pixels, got {cell_size}.")
        self.cell_size = int(cell_size)

    def _own_settings(self) -> dict[str, Any]:
        return {"cell_size": self.cell_size}

    def _segment(self, x: np.ndarray) -> np.ndarray:
        return grid_labels(x.shape, self.cell_size)


OFFLINE_PARTITIONERS.setdefault("grid", GridPartitioner)
