# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""For the simulator tests only: plain (slow) references of the fast projector and OSEM, and a disk test image."""

from __future__ import annotations

import math

import numpy as np

from rat_monai.simulation.projectors import default_n_det

__all__ = ["disk", "forward_project_reference", "osem_reference"]


def disk(n: int, radius: float, value: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A centred disk ``[n, n]`` of ``value`` (float32), the centred pixel coordinates and their squared radius."""
    c = np.arange(n) - (n - 1) / 2
    r2 = c[:, None] ** 2 + c[None, :] ** 2
    return (r2 < radius**2).astype(np.float32) * value, c, r2


def forward_project_reference(img: np.ndarray, n_angles: int, n_det: int | None = None) -> np.ndarray:
    """Plain loop reference of :meth:`ParallelProjector.forward` for one slice ``[nx, ny]`` (slow; tests only)."""
    nx, ny = img.shape
    n_det = default_n_det(nx, ny) if n_det is None else n_det
    sino = np.zeros((n_angles, n_det), dtype=np.float64)
    for a in range(n_angles):
        th = math.pi * a / n_angles
        for i in range(nx):
            for j in range(ny):
                t = (i - (nx - 1) / 2.0) * math.cos(th) + (j - (ny - 1) / 2.0) * math.sin(th) + (n_det - 1) / 2.0
                b = math.floor(t)
                w = t - b
                if 0 <= b < n_det:
                    sino[a, b] += (1 - w) * img[i, j]
                if 0 <= b + 1 < n_det:
                    sino[a, b + 1] += w * img[i, j]
    return sino


def osem_reference(
    counts: np.ndarray,
    matrix: np.ndarray,
    attenuation: np.ndarray | None = None,
    background: float = 0.0,
    scale: float = 1.0,
    iterations: int = 4,
    subsets: int = 8,
    n_angles: int | None = None,
    eps: float = 1e-8,
) -> np.ndarray:
    """Plain dense OSEM for ONE slice (reference for tests).

    Args:
        counts: ``[n_angles, n_det]``.
        matrix: dense system matrix ``[n_angles * n_det, npix]`` (rows view-major).
        attenuation: ``[n_angles, n_det]`` factors. Defaults to 1.
        background: additive expected counts. Defaults to 0.
        scale: sensitivity. Defaults to 1.
        iterations: passes. Defaults to 4.
        subsets: subsets. Defaults to 8.
        n_angles: number of views. Defaults to ``counts.shape[0]``.
        eps: floor. Defaults to 1e-8.

    Returns:
        the image as a flat vector ``[npix]`` (float64).
    """
    n_angles = counts.shape[0] if n_angles is None else n_angles
    n_det = counts.shape[1]
    y = counts.reshape(-1).astype(np.float64)
    att = np.ones_like(y) if attenuation is None else attenuation.reshape(-1).astype(np.float64)
    sys_m = matrix.astype(np.float64) * (att * scale)[:, None]
    npix = matrix.shape[1]
    x = np.full(npix, max(y.sum() / max(scale, eps) / (n_angles * npix), eps))
    for _ in range(iterations):
        for idx in [list(range(s, n_angles, subsets)) for s in range(subsets)]:  # as osem's subsets
            rows = np.concatenate([np.arange(a * n_det, (a + 1) * n_det) for a in idx])
            a_s = sys_m[rows]
            ratio = y[rows] / np.maximum(a_s @ x + background, eps)
            x = x * (a_s.T @ ratio) / np.maximum(a_s.T @ np.ones(len(rows)), eps)
    return x
