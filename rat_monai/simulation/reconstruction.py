# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Reconstruction for the simulator: the FBP filter, filtered back projection (CT) and OSEM (PET).

All of it runs on the projectors of :mod:`rat_monai.simulation.projectors` (same geometry, sinograms
``[n_angles, n_det, S]``, images ``[nx, ny, S]``). The tests compare :func:`osem` with a plain dense reference
(``tests/simulation/_reference.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from rat_monai.simulation.projectors import ParallelProjector, default_n_det

__all__ = ["ramp_filter", "filter_sinogram", "fbp", "fbp_blockwise", "osem"]

_FILTERS = ("ramp", "shepp-logan", "cosine", "hann")


def ramp_filter(n_det: int, filter_name: str = "ramp") -> np.ndarray:
    """Frequency response of the FBP filter for a zero-padded detector row (length = next power of two >= 2 n_det).

    The ramp is built from the band-limited spatial kernel (h[0] = 1/4, h[n odd] = -1/(pi n)^2) so that the DC term
    is right, then optionally windowed.

    Args:
        n_det: number of detector bins.
        filter_name: one of "ramp", "shepp-logan", "cosine", "hann". Defaults to "ramp".
    """
    if filter_name not in _FILTERS:
        raise ValueError(f"filter_name must be one of {_FILTERS}, got {filter_name!r}.")
    size = max(64, int(2 ** math.ceil(math.log2(2 * n_det))))
    n = np.concatenate([np.arange(1, size // 2 + 1, 2), np.arange(size // 2 - 1, 0, -2)])
    h = np.zeros(size)
    h[0] = 0.25
    h[1::2] = -1.0 / (np.pi * n) ** 2
    resp = 2 * np.real(np.fft.fft(h))
    omega = np.pi * np.fft.fftfreq(size)[: size // 2 + 1]
    resp = resp[: size // 2 + 1]
    if filter_name == "shepp-logan":
        resp[1:] *= np.sin(omega[1:] / 2) / (omega[1:] / 2)
    elif filter_name == "cosine":
        resp *= np.cos(omega / 2)
    elif filter_name == "hann":
        resp *= (1 + np.cos(omega)) / 2
    return resp


def filter_sinogram(sino: np.ndarray, n_det: int, filter_name: str = "ramp") -> np.ndarray:
    """Apply the FBP filter (:func:`ramp_filter`) along the detector axis of ``[n_views, n_det, S]`` (float32).

    Each view is filtered on its own, so a block of views can be filtered independently of the others.
    """
    resp = ramp_filter(n_det, filter_name)
    size = 2 * (len(resp) - 1)
    spec = np.fft.rfft(np.asarray(sino, dtype=np.float32), n=size, axis=1) * resp[None, :, None]
    return np.fft.irfft(spec, n=size, axis=1)[:, :n_det].astype(np.float32)


def fbp(sino: np.ndarray, projector: ParallelProjector, filter_name: str = "ramp") -> np.ndarray:
    """Filtered back projection of line integrals (in pixel units) ``[n_angles, n_det(, S)]`` -> ``[nx, ny(, S)]``.

    Args:
        sino: line integrals of the object per view / bin (slices last).
        projector: the projector whose views ``sino`` holds (all views of ``[0, pi)``).
        filter_name: see :func:`ramp_filter`. Defaults to "ramp".
    """
    sino = np.asarray(sino, dtype=np.float32)
    single = sino.ndim == 2
    if single:
        sino = sino[..., None]
    filtered = filter_sinogram(sino, projector.n_det, filter_name)
    img = projector.back(filtered) * np.float32(math.pi / (2 * len(projector.angles)))
    return img[..., 0] if single else img


def fbp_blockwise(
    sinogram_of: Callable[[ParallelProjector], np.ndarray],
    nx: int,
    ny: int | None = None,
    n_angles: int | None = None,
    n_det: int | None = None,
    filter_name: str = "ramp",
    block: int = 32,
    progress: Callable[[int], object] | None = None,
) -> np.ndarray:
    """:func:`fbp` without the whole system matrix: the views are handled ``block`` at a time.

    For each block of views a private (uncached) :class:`ParallelProjector` is built, ``sinogram_of(projector)``
    returns that block's line integrals ``[len(projector.angles), n_det, S]`` (it may forward project with the same
    projector, which is how :mod:`rat_monai.simulation.from_scans` makes its noise), and the filtered block is back
    projected and summed. Memory is one block's matrix (``2 * block * nx * ny`` entries) instead of all views'
    (a 512x512 slice with 512 views needs ~2 GB for the full matrix, ~130 MB per block of 32).

    Args:
        sinogram_of: callback giving the sinogram of a block (slices last, all blocks the same number of slices).
        nx: image size along the first axis.
        ny: image size along the second axis. Defaults to ``nx``.
        n_angles: views over ``[0, pi)``. Defaults to ``max(nx, ny)``.
        n_det: bins. Defaults to :func:`default_n_det`.
        filter_name: see :func:`ramp_filter`. Defaults to "ramp".
        block: views per block. Defaults to 32.
        progress: called with the number of views done after each block (e.g. a tqdm ``update``). Defaults to None.

    Returns:
        ``[nx, ny, S]`` float32, equal to ``fbp(full_sinogram, ParallelProjector(nx, ny, n_angles, n_det))``.
    """
    ny = nx if ny is None else ny
    n_angles = int(n_angles if n_angles is not None else max(nx, ny))
    n_det = int(n_det if n_det is not None else default_n_det(nx, ny))
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}.")
    img = None
    for a0 in range(0, n_angles, block):
        proj = ParallelProjector(nx, ny, n_angles=n_angles, n_det=n_det,
                                 angle_indices=range(a0, min(n_angles, a0 + block)), cache=False)
        sino = np.asarray(sinogram_of(proj), dtype=np.float32)
        if sino.ndim == 2:
            sino = sino[..., None]
        part = proj.back(filter_sinogram(sino, n_det, filter_name))
        img = part if img is None else img + part
        del proj
        if progress is not None:
            progress(len(range(a0, min(n_angles, a0 + block))))
    return img * np.float32(math.pi / (2 * n_angles))


def _subsets(n_angles: int, n_subsets: int) -> list[list[int]]:
    if n_subsets < 1 or n_subsets > n_angles:
        raise ValueError(f"subsets must be in [1, n_angles={n_angles}], got {n_subsets}.")
    return [list(range(s, n_angles, n_subsets)) for s in range(n_subsets)]


def osem(
    counts: np.ndarray,
    nx: int,
    ny: int | None = None,
    *,
    n_angles: int | None = None,
    n_det: int | None = None,
    attenuation: np.ndarray | None = None,
    background: np.ndarray | float = 0.0,
    scale: float = 1.0,
    iterations: int = 4,
    subsets: int = 8,
    init: np.ndarray | None = None,
    eps: float = 1e-8,
) -> np.ndarray:
    """Ordered-subsets expectation maximisation for ``counts ~ Poisson(scale * att * A x + background)``.

    All slices are reconstructed together (``counts`` is ``[n_angles, n_det, S]``); every subset update is two sparse
    products over all slices.

    Args:
        counts: measured counts ``[n_angles, n_det, S]`` (or 2D for one slice).
        nx: image size along the first axis.
        ny: image size along the second axis. Defaults to ``nx``.
        n_angles: number of views. Defaults to ``counts.shape[0]``.
        n_det: number of bins. Defaults to ``counts.shape[1]``.
        attenuation: attenuation factors ``exp(-int mu)`` per bin, same shape as ``counts``. Defaults to 1.
        background: expected additive counts (randoms + scatter), scalar or like ``counts``. Defaults to 0.
        scale: sensitivity (counts per unit of image value and pixel of path). Defaults to 1.
        iterations: full passes over the data. Defaults to 4.
        subsets: number of ordered subsets (interleaved views). Defaults to 8.
        init: starting image ``[nx, ny, S]``. Defaults to a uniform positive image.
        eps: floor of denominators. Defaults to 1e-8.

    Returns:
        the image estimate ``[nx, ny, S]`` (``[nx, ny]`` for 2D input), float32, in units of ``x``.
    """
    counts = np.asarray(counts, dtype=np.float32)
    single = counts.ndim == 2
    if single:
        counts = counts[..., None]
        if attenuation is not None and np.ndim(attenuation) == 2:
            attenuation = np.asarray(attenuation)[..., None]
        if np.ndim(background) == 2:
            background = np.asarray(background)[..., None]
    ny = nx if ny is None else ny
    n_angles = counts.shape[0] if n_angles is None else n_angles
    n_det = counts.shape[1] if n_det is None else n_det
    if counts.shape[:2] != (n_angles, n_det):
        raise ValueError(f"counts must be [n_angles={n_angles}, n_det={n_det}, S], got {counts.shape}.")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}.")
    s = counts.shape[2]
    att = np.ones_like(counts) if attenuation is None else np.broadcast_to(attenuation, counts.shape).astype(np.float32)
    bg = np.broadcast_to(np.asarray(background, dtype=np.float32), counts.shape)
    start = max(float(counts.sum()) / max(scale, eps) / (n_angles * nx * ny * s), eps)
    x = np.full((nx, ny, s), start, np.float32)
    if init is not None:
        x = np.array(init, dtype=np.float32).reshape(nx, ny, s)
    parts = []
    for idx in _subsets(n_angles, subsets):
        proj = ParallelProjector(nx, ny, n_angles=n_angles, n_det=n_det, angle_indices=idx)
        a_s = att[idx] * np.float32(scale)
        sens = proj.back(a_s)
        parts.append((proj, counts[idx], a_s, bg[idx], np.maximum(sens, eps)))
    for _ in range(iterations):
        for proj, y, a_s, b, sens in parts:
            expected = a_s * proj.forward(x) + b
            ratio = y / np.maximum(expected, eps)
            x *= proj.back(a_s * ratio) / sens
    return x[..., 0] if single else x
