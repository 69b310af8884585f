# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""2D parallel-beam projectors of the simulator: a sparse system matrix (pixel-driven) and a ray-driven projector.

Geometry (all in pixel units): a slice is an array ``[nx, ny]`` (flattened C-order, pixel ``(i, j)`` at
``x = i - (nx - 1) / 2``, ``y = j - (ny - 1) / 2``), ``n_angles`` views evenly spaced over ``[0, pi)`` and
``n_det`` detector bins of one pixel width centred on the rotation axis. A pixel projects onto
``t = x cos(theta) + y sin(theta)`` and its value is split linearly between the two nearest bins (pixel-driven
projection), so every column of the matrix has exactly ``2 * n_angles`` entries and the matrix is built directly in
CSC form without sorting. The back projector is the exact transpose (``A.T`` is a CSR view, no copy), which OSEM
needs; FBP uses the same transpose as its (linearly interpolating) back projection (both in
:mod:`rat_monai.simulation.reconstruction`).

Sinograms are arrays ``[n_angles, n_det, S]`` (``S`` slices processed together: one sparse product handles all
slices of a volume at once), images ``[nx, ny, S]``.

The tests compare :class:`ParallelProjector` with a plain loop reference (``tests/simulation/_reference.py``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

__all__ = ["ParallelProjector", "default_n_det", "forward_project_interp", "clear_projector_cache"]


def default_n_det(nx: int, ny: int) -> int:
    """Number of detector bins covering the slice diagonal (plus a margin of two bins)."""
    return int(math.ceil(math.hypot(nx, ny))) + 2


def _system_matrix(nx: int, ny: int, angles: tuple[float, ...], n_det: int) -> sp.csc_matrix:
    """Pixel-driven parallel-beam matrix ``[len(angles) * n_det, nx * ny]`` (float32, CSC)."""
    n_ang = len(angles)
    x = (np.arange(nx, dtype=np.float64) - (nx - 1) / 2.0)[:, None]
    y = (np.arange(ny, dtype=np.float64) - (ny - 1) / 2.0)[None, :]
    cos = np.cos(np.asarray(angles, dtype=np.float64))
    sin = np.sin(np.asarray(angles, dtype=np.float64))
    npix = nx * ny
    data = np.empty((npix, n_ang, 2), dtype=np.float32)
    rows = np.empty((npix, n_ang, 2), dtype=np.int32)
    offsets = (np.arange(n_ang, dtype=np.int64) * n_det)[None, :]
    chunk = max(1, (1 << 22) // max(n_ang, 1))  # bound temporaries to a few tens of MB
    xs = np.broadcast_to(x, (nx, ny)).ravel()
    ys = np.broadcast_to(y, (nx, ny)).ravel()
    for start in range(0, npix, chunk):
        stop = min(npix, start + chunk)
        t = xs[start:stop, None] * cos[None, :] + ys[start:stop, None] * sin[None, :] + (n_det - 1) / 2.0
        b0 = np.floor(t)
        w1 = t - b0
        b0 = b0.astype(np.int64)
        valid0 = (b0 >= 0) & (b0 < n_det)
        valid1 = (b0 + 1 >= 0) & (b0 + 1 < n_det)
        data[start:stop, :, 0] = np.where(valid0, 1.0 - w1, 0.0)
        data[start:stop, :, 1] = np.where(valid1, w1, 0.0)
        rows[start:stop, :, 0] = np.clip(b0, 0, n_det - 1) + offsets
        rows[start:stop, :, 1] = np.clip(b0 + 1, 0, n_det - 1) + offsets
    idx_dtype = np.int32 if npix * 2 * n_ang < 2**31 - 1 else np.int64  # int32 keeps scipy from upcasting indices
    indptr = np.arange(npix + 1, dtype=idx_dtype) * (2 * n_ang)
    mat = sp.csc_matrix((data.ravel(), rows.ravel(), indptr), shape=(n_ang * n_det, npix))
    return mat  # out-of-range bins are clipped with weight 0 (duplicates of weight 0 are harmless)


@functools.lru_cache(maxsize=16)
def _cached_matrix(nx: int, ny: int, angles: tuple[float, ...], n_det: int) -> sp.csc_matrix:
    return _system_matrix(nx, ny, angles, n_det)


def clear_projector_cache() -> None:
    """Free the cached system matrices (the simulator calls it when done; a 256x256 CT matrix is ~270 MB)."""
    _cached_matrix.cache_clear()


class ParallelProjector:
    """Parallel-beam forward / back projector of ``[nx, ny, S]`` slice stacks via one sparse matrix.

    Args:
        nx: slice size along the first array axis.
        ny: slice size along the second array axis. Defaults to ``nx``.
        n_angles: number of views over ``[0, pi)``. Defaults to ``max(nx, ny)``.
        n_det: number of detector bins. Defaults to :func:`default_n_det`.
        angle_indices: use only these views of the ``n_angles`` (an OSEM subset). Defaults to all.
        cache: keep the matrix in the module cache (reused by later projectors of the same geometry). False builds a
            private matrix that is freed with the projector (view blocks of large slices). Defaults to True.

    Examples::

        proj = ParallelProjector(64)
        sino = proj.forward(np.ones((64, 64, 3), np.float32))  # [64, n_det, 3]
        back = proj.back(sino)  # [64, 64, 3]
    """

    def __init__(
        self,
        nx: int,
        ny: int | None = None,
        n_angles: int | None = None,
        n_det: int | None = None,
        angle_indices: Sequence[int] | None = None,
        cache: bool = True,
    ) -> None:
        ny = nx if ny is None else ny
        if nx < 2 or ny < 2:
            raise ValueError(f"slice size must be at least 2x2, got {nx}x{ny}.")
        self.nx, self.ny = int(nx), int(ny)
        self.n_angles_total = int(n_angles if n_angles is not None else max(nx, ny))
        if self.n_angles_total < 1:
            raise ValueError(f"n_angles must be >= 1, got {n_angles}.")
        self.n_det = int(n_det if n_det is not None else default_n_det(nx, ny))
        if self.n_det < 2:
            raise ValueError(f"n_det must be >= 2, got {n_det}.")
        idx = range(self.n_angles_total) if angle_indices is None else [int(a) for a in angle_indices]
        if any(a < 0 or a >= self.n_angles_total for a in idx):
            raise ValueError(f"angle_indices must lie in [0, {self.n_angles_total}), got {list(idx)}.")
        self.angle_indices = tuple(idx)
        self.angles = tuple(math.pi * a / self.n_angles_total for a in self.angle_indices)
        build = _cached_matrix if cache else _system_matrix
        self.matrix = build(self.nx, self.ny, self.angles, self.n_det)

    @property
    def sino_shape(self) -> tuple[int, int]:
        return len(self.angles), self.n_det

    def _as_stack(self, img: np.ndarray) -> tuple[np.ndarray, bool]:
        img = np.asarray(img)
        single = img.ndim == 2
        if single:
            img = img[..., None]
        if img.ndim != 3 or img.shape[:2] != (self.nx, self.ny):
            raise ValueError(f"expected an image [{self.nx}, {self.ny}] or [{self.nx}, {self.ny}, S], got {img.shape}.")
        return img, single

    def forward(self, img: np.ndarray) -> np.ndarray:
        """Project ``[nx, ny]`` or ``[nx, ny, S]`` to ``[n_angles, n_det]`` or ``[n_angles, n_det, S]`` (float32)."""
        stack, single = self._as_stack(img)
        s = stack.shape[2]
        out = self.matrix @ np.ascontiguousarray(stack.reshape(-1, s), dtype=np.float32)
        out = np.asarray(out, dtype=np.float32).reshape(len(self.angles), self.n_det, s)
        return out[..., 0] if single else out

    def back(self, sino: np.ndarray) -> np.ndarray:
        """Exact adjoint of :meth:`forward`: ``[n_angles, n_det(, S)]`` -> ``[nx, ny(, S)]`` (float32)."""
        sino = np.asarray(sino)
        single = sino.ndim == 2
        if single:
            sino = sino[..., None]
        if sino.ndim != 3 or sino.shape[:2] != self.sino_shape:
            raise ValueError(f"expected a sinogram {self.sino_shape} (+ slices), got {sino.shape}.")
        s = sino.shape[2]
        out = self.matrix.T @ np.ascontiguousarray(sino.reshape(-1, s), dtype=np.float32)
        out = np.asarray(out, dtype=np.float32).reshape(self.nx, self.ny, s)
        return out[..., 0] if single else out


def _joseph_matrix(nx: int, ny: int, angles: Sequence[float], n_det: int) -> sp.csr_matrix:
    """Ray-driven (Joseph) system matrix ``[len(angles) * n_det, nx * ny]`` (float32 CSR, zero weights dropped)."""
    t = np.arange(n_det, dtype=np.float64)[:, None] - (n_det - 1) / 2.0
    xs = np.arange(nx, dtype=np.float64)[None, :] - (nx - 1) / 2.0
    ys = np.arange(ny, dtype=np.float64)[None, :] - (ny - 1) / 2.0
    data, cols, rows = [], [], []
    for a, th in enumerate(angles):
        c, sn = math.cos(th), math.sin(th)
        # points on the ray: (x, y) = t (c, sn) + u (-sn, c)
        if abs(sn) >= abs(c):  # step over x (index i), interpolate along y
            u = (t * c - xs) / sn
            minor = t * sn + u * c + (ny - 1) / 2.0
            n_minor, length, n_major = ny, 1.0 / abs(sn), nx
        else:  # step over y (index j), interpolate along x
            u = (ys - t * sn) / c
            minor = t * c - u * sn + (nx - 1) / 2.0
            n_minor, length, n_major = nx, 1.0 / abs(c), ny
        major = np.broadcast_to(np.arange(n_major)[None, :], minor.shape)
        ray = np.broadcast_to(np.arange(n_det)[:, None] + a * n_det, minor.shape)
        m0 = np.floor(minor)
        frac = minor - m0
        m0 = m0.astype(np.int64)
        for m, w in ((m0, 1.0 - frac), (m0 + 1, frac)):
            ok = (m >= 0) & (m < n_minor) & (w > 0)
            pix = major[ok] * ny + m[ok] if abs(sn) >= abs(c) else m[ok] * ny + major[ok]
            data.append((w[ok] * length).astype(np.float32))
            cols.append(pix.astype(np.int32))
            rows.append(ray[ok].astype(np.int32))
    r = np.concatenate(rows)
    mat = sp.csr_matrix((np.concatenate(data), (r, np.concatenate(cols))), shape=(len(angles) * n_det, nx * ny))
    return mat


def forward_project_interp(
    img: np.ndarray, n_angles: int | None = None, n_det: int | None = None, chunk: int = 16
) -> np.ndarray:
    """Ray-driven (Joseph) forward projection: the image is interpolated linearly along each ray.

    Same geometry and output layout as :meth:`ParallelProjector.forward`. Each ray is stepped one pixel at a time
    along its major axis (x or y, whichever the ray is closer to); at every step the two neighbouring pixels on the
    other axis are interpolated, and the sum is scaled by the path length per step (``1 / max(|cos|, |sin|)``).
    Unlike pixel-driven splatting this has no high-frequency (crosshatch) error on sharp edges, so the simulator
    generates CT data with it (an independent data model from the matrix the reconstruction uses). All slices are
    projected together by sparse matrices built for ``chunk`` views at a time (bounded memory, not cached).

    Args:
        img: ``[nx, ny]`` or ``[nx, ny, S]``.
        n_angles: views over ``[0, pi)``. Defaults to ``max(nx, ny)``.
        n_det: bins. Defaults to :func:`default_n_det`.
        chunk: views per sparse matrix. Defaults to 16.
    """
    arr = np.asarray(img, dtype=np.float32)
    single = arr.ndim == 2
    if single:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"expected an image [nx, ny] or [nx, ny, S], got {arr.shape}.")
    nx, ny, s = arr.shape
    n_angles = max(nx, ny) if n_angles is None else int(n_angles)
    n_det = default_n_det(nx, ny) if n_det is None else int(n_det)
    if n_angles < 1 or n_det < 2:
        raise ValueError(f"n_angles must be >= 1 and n_det >= 2, got {n_angles} and {n_det}.")
    flat = np.ascontiguousarray(arr.reshape(nx * ny, s))
    out = np.empty((n_angles, n_det, s), np.float32)
    for a0 in range(0, n_angles, chunk):
        idx = range(a0, min(n_angles, a0 + chunk))
        mat = _joseph_matrix(nx, ny, [math.pi * a / n_angles for a in idx], n_det)
        out[a0 : a0 + len(idx)] = np.asarray(mat @ flat, dtype=np.float32).reshape(len(idx), n_det, s)
    return out[..., 0] if single else out
