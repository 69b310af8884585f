# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""A PNG overview of a restoration: a few axial slices as rows, columns input | restored | region map."""

from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure

from rat_monai.visualize import display_window, label_colors

__all__ = ["pick_overview_slices", "save_overview"]


def pick_overview_slices(volume: np.ndarray, num_slices: int = 3) -> list[int]:
    """``num_slices`` slice indices spread evenly over the slices that hold signal (all slices when none stand out).

    Args:
        volume: ``[X, Y, Z]`` real-unit volume.
        num_slices: how many indices. Defaults to 3.
    """
    z = volume.shape[-1]
    if num_slices <= 0 or z == 0:
        return []
    flat = volume.reshape(-1, z)
    signal = flat.std(axis=0)
    candidates = np.flatnonzero(signal > 0.05 * signal.max()) if signal.max() > 0 else np.arange(z)
    if candidates.size == 0:
        candidates = np.arange(z)
    if num_slices >= candidates.size:
        return [int(c) for c in candidates]
    # the centres of num_slices equal parts of the candidate list: distinct, symmetric, away from the ends
    return [int(candidates[int((i + 0.5) * candidates.size / num_slices)]) for i in range(num_slices)]


def save_overview(
    path: str | os.PathLike,
    inputs: np.ndarray,
    restored: np.ndarray,
    regions: np.ndarray | None = None,
    modality: str = "ct",
    num_slices: int = 3,
    units: str = "",
) -> str:
    """Save the overview PNG.

    Args:
        path: output ``.png`` file.
        inputs: input volume ``[X, Y, Z]`` in real units; slice ``z`` is shown as ``inputs[:, :, z].T`` (rows, cols),
            as a DICOM viewer shows the source slice.
        restored: restored volume ``[X, Y, Z]`` in the same units.
        regions: region maps ``[X, Y, Z]`` or None (the column is left out). Defaults to None.
        modality: ``"ct"`` (soft-tissue window) or ``"pet"`` (inverted grey, 0 .. 99.5th percentile), see
            :func:`rat_monai.visualize.display_window`. Defaults to ``"ct"``.
        num_slices: rows in the figure. Defaults to 3.
        units: units label for the titles. Defaults to ``""``.

    Returns:
        the written path.
    """
    if inputs.shape != restored.shape:
        raise ValueError(f"inputs {inputs.shape} and restored {restored.shape} must have the same shape.")
    zs = pick_overview_slices(inputs, num_slices)
    lo, hi, cmap = display_window(inputs, modality)
    cols = 3 if regions is not None else 2
    fig = Figure(figsize=(3.2 * cols, 3.2 * len(zs)))  # no pyplot: no global figure state, no GUI backend
    axes = fig.subplots(len(zs), cols, squeeze=False)
    for row, z in enumerate(zs):
        panels = [(inputs[:, :, z].T, f"input z={z}"), (restored[:, :, z].T, "restored")]
        for col, (img, title) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_title(f"{title} [{units}]" if units else title, fontsize=8)
        if regions is not None:
            labels = regions[:, :, z].T
            axes[row, 2].imshow(label_colors(labels), interpolation="nearest")
            axes[row, 2].set_title(f"regions ({np.unique(labels).size})", fontsize=8)
        for ax in axes[row]:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=80)
    return os.fspath(path)
