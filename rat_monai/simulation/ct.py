# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""CT pairs from a phantom: the same subject at full and at reduced dose, reconstructed alike.

HU -> linear attenuation (mu_water = 0.0192 / mm), ray-driven line integrals
(:func:`rat_monai.simulation.projectors.forward_project_interp`), Poisson transmission counts with ``i0`` photons per
ray at full dose and ``i0 / dose_reduction`` at low dose plus Gaussian electronic noise, log, then the same filtered
back-projection (:func:`rat_monai.simulation.reconstruction.fbp`) for both; HU outside the circle (ellipse) inscribed
in the slice is -1024.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from rat_monai.simulation.defaults import DEFAULT_SHAPE, MU_WATER, as_rng, default_spacing
from rat_monai.simulation.phantom import make_phantom
from rat_monai.simulation.projectors import ParallelProjector, forward_project_interp
from rat_monai.simulation.reconstruction import fbp

__all__ = ["simulate_ct_pair"]


def simulate_ct_pair(
    shape: Sequence[int] = DEFAULT_SHAPE["ct"],
    spacing: Sequence[float] | None = None,
    rng: np.random.Generator | int | None = None,
    dose_reduction: float = 4.0,
    i0: float = 1e6,
    electronic_noise: float = 10.0,
    filter_name: str = "shepp-logan",
    n_angles: int | None = None,
    resolution_fwhm_mm: float = 1.2,
    reference_pixel_mm: float | None = 380.0 / 256,
) -> dict[str, Any]:
    """Simulate one CT subject at full and reduced dose (HU).

    Args:
        shape: ``(X, Y, Z)``. Defaults to (256, 256, 32).
        spacing: voxel size in mm. Defaults to a 380 mm in-plane, 160 mm axial field of view.
        rng: Generator or seed. Defaults to None (unseeded).
        dose_reduction: photon factor of the low-dose scan (4 = quarter dose). Defaults to 4.
        i0: unattenuated photons per ray (detector bin of one pixel width) at full dose, for a pixel of
            ``reference_pixel_mm``. Defaults to 1e6.
        electronic_noise: std of additive Gaussian detector noise in photons. Defaults to 10.
        filter_name: FBP filter (see :func:`rat_monai.simulation.reconstruction.ramp_filter`).
            Defaults to "shepp-logan".
        n_angles: views. Defaults to the larger in-plane size.
        resolution_fwhm_mm: in-plane Gaussian blur of the attenuation map before projection (system resolution).
            Defaults to 1.2.
        reference_pixel_mm: ``i0`` is scaled by ``reference_pixel_mm / pixel`` so that the image noise in HU is
            about the same at any shape (with views ~ image size, the FBP variance goes as 1 / (photons * pixel)):
            a tiny test set is about as noisy as the default 256x256 one. None keeps ``i0`` per ray whatever the
            pixel. Defaults to 380 / 256.

    Returns:
        dict with "low", "full" (HU, ``[X, Y, Z]`` float32), "truth" (HU), "body" (mask), "spacing".
    """
    if dose_reduction < 1:
        raise ValueError(f"dose_reduction must be >= 1, got {dose_reduction}.")
    rng = as_rng(rng)
    shape = tuple(int(s) for s in shape)
    spacing = tuple(spacing) if spacing is not None else default_spacing("ct", shape)
    ph = make_phantom(shape, spacing, rng)
    nx, ny, nz = shape
    proj = ParallelProjector(nx, ny, n_angles=n_angles)
    mu = np.maximum(MU_WATER * (1.0 + ph.hu / 1000.0), 0).astype(np.float32)
    sig = resolution_fwhm_mm / 2.3548 / np.asarray(spacing[:2])
    mu = ndimage.gaussian_filter(mu, sigma=(sig[0], sig[1], 0), mode="nearest")  # system blur; avoids aliasing
    line = forward_project_interp(mu, proj.n_angles_total, proj.n_det) * np.float32(spacing[0])  # nepers
    xs = np.arange(nx) - (nx - 1) / 2
    ys = np.arange(ny) - (ny - 1) / 2
    fov = (xs[:, None] / (nx / 2)) ** 2 + (ys[None, :] / (ny / 2)) ** 2 <= 1.0  # inscribed circle (ellipse)
    if reference_pixel_mm is not None:
        i0 = i0 * float(reference_pixel_mm) / float(spacing[0])
    sinos = []
    for f in (1.0, 1.0 / dose_reduction):  # full, low
        n0 = i0 * f
        det = rng.poisson(n0 * np.exp(-line)).astype(np.float32)
        det += rng.normal(0.0, electronic_noise, size=det.shape).astype(np.float32)
        sinos.append(np.log(np.float32(n0) / np.maximum(det, 1.0)).astype(np.float32))
    # one filtered back-projection for both doses (same filter, same back projector)
    mu_rec = fbp(np.concatenate(sinos, axis=2) / np.float32(spacing[0]), proj, filter_name)
    hu = (mu_rec / MU_WATER - 1.0) * 1000.0
    hu[~fov] = -1024.0
    hu = np.clip(hu, -1024.0, 3071.0).astype(np.float32)
    return {"low": hu[..., nz:], "full": hu[..., :nz], "truth": ph.hu, "body": ph.body, "spacing": spacing}
