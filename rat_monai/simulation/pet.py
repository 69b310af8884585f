# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""PET pairs from a phantom: the same subject at full and at reduced dose, reconstructed alike.

The activity (Bq/ml, from the phantom's SUV with a random weight / injected dose / uptake time) is blurred by the
system PSF, forward projected (ray-driven, :func:`rat_monai.simulation.projectors.forward_project_interp`) with
attenuation (511 keV mu map), plus a uniform scatter/randoms background; Poisson counts at full dose and at
``1 / dose_reduction`` of the counts; BOTH reconstructed by the same OSEM (pixel-driven matrix, attenuation and
background modelled, ``iterations`` x ``subsets``) and the same Gaussian post-filter. The low-dose image is a real
low-dose scan: Bq/ml at ``1 / dose_reduction`` of the full dose, so with RadionuclideTotalDose reduced by the same
factor both have the same SUV scale. :func:`pet_counts_and_osem` is shared with the simulator from real scans
(:mod:`rat_monai.simulation.from_scans`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from rat_monai.simulation.defaults import DEFAULT_SHAPE, F18_HALF_LIFE, as_rng, default_spacing
from rat_monai.simulation.phantom import make_phantom
from rat_monai.simulation.projectors import default_n_det, forward_project_interp
from rat_monai.simulation.reconstruction import osem

__all__ = ["simulate_pet_pair", "pet_counts_and_osem"]


def simulate_pet_pair(
    shape: Sequence[int] = DEFAULT_SHAPE["pet"],
    spacing: Sequence[float] | None = None,
    rng: np.random.Generator | int | None = None,
    dose_reduction: float = 12.0,
    iterations: int = 4,
    subsets: int = 8,
    counts_per_slice: float = 1.5e6,
    scatter_fraction: float = 0.3,
    psf_fwhm_mm: float = 5.0,
    postfilter_fwhm_mm: float = 5.0,
    n_angles: int | None = None,
) -> dict[str, Any]:
    """Simulate one PET subject at full and reduced dose.

    Args:
        shape: ``(X, Y, Z)``. Defaults to (128, 128, 64).
        spacing: voxel size in mm. Defaults to a 500 mm in-plane, 200 mm axial field of view.
        rng: Generator or seed. Defaults to None (unseeded).
        dose_reduction: counts factor of the low-dose scan (12 -> 1/12 of the counts). Defaults to 12.
        iterations: OSEM iterations (same for both). Defaults to 4.
        subsets: OSEM subsets. Defaults to 8.
        counts_per_slice: mean true counts per slice at full dose. Defaults to 1.5e6.
        scatter_fraction: uniform background counts as a fraction of the mean true counts per bin. Defaults to 0.3.
        psf_fwhm_mm: in-plane system resolution applied to the activity before projection. Defaults to 5.
        postfilter_fwhm_mm: in-plane Gaussian post-filter of both reconstructions. Defaults to 5.
        n_angles: views. Defaults to the larger in-plane size.

    Returns:
        dict with "low", "full" (Bq/ml, ``[X, Y, Z]`` float32; the low-dose one at its own, reduced, activity scale),
        "truth" (SUV), "body" (mask), "spacing", "weight_kg", "injected_dose_bq" (full dose), "uptake_s",
        "suv_factor_full" / "suv_factor_low" (SUV per Bq/ml, decay-corrected to the scan start).
    """
    if dose_reduction < 1:
        raise ValueError(f"dose_reduction must be >= 1, got {dose_reduction}.")
    rng = as_rng(rng)
    shape = tuple(int(s) for s in shape)
    spacing = tuple(spacing) if spacing is not None else default_spacing("pet", shape)
    ph = make_phantom(shape, spacing, rng)
    nx, ny, nz = shape
    weight = float(rng.uniform(55, 95))
    dose = float(weight * rng.uniform(3.0, 4.5) * 1e6)  # Bq, ~3.7 MBq/kg
    uptake = float(rng.uniform(50, 75) * 60)  # s
    dose_at_scan = dose * 2.0 ** (-uptake / F18_HALF_LIFE)
    suv_factor = weight * 1000.0 / dose_at_scan  # SUV per Bq/ml
    act = ph.suv / suv_factor  # Bq/ml
    sig_psf = psf_fwhm_mm / 2.3548 / np.asarray(spacing[:2])
    act_b = ndimage.gaussian_filter(act, sigma=(sig_psf[0], sig_psf[1], 0), mode="constant")
    na = int(n_angles if n_angles is not None else max(nx, ny))
    nd = default_n_det(nx, ny)
    # data from the ray-driven projector, reconstruction with the (pixel-driven) OSEM matrix: no inverse crime
    att = np.exp(-forward_project_interp(ph.mu511, na, nd) * np.float32(spacing[0])).astype(np.float32)
    trues = att * forward_project_interp(act_b, na, nd)
    scale = float(counts_per_slice * nz / max(float(trues.sum()), 1e-12))
    trues *= scale
    support = trues > 0
    bg = np.float32(scatter_fraction * (trues[support].mean() if support.any() else 0.0))
    sig_pf = postfilter_fwhm_mm / 2.3548 / np.asarray(spacing[:2])
    low, full = pet_counts_and_osem(trues, att, bg, scale, dose_reduction, rng, nx, ny, iterations=iterations,
                                    subsets=subsets, postfilter_sigma=sig_pf)
    out = {"low": low, "full": full}
    return {
        "low": out["low"],
        "full": out["full"],
        "truth": ph.suv,
        "body": ph.body,
        "spacing": spacing,
        "weight_kg": weight,
        "injected_dose_bq": dose,
        "uptake_s": uptake,
        "suv_factor_full": suv_factor,
        "suv_factor_low": suv_factor * dose_reduction,
    }


def pet_counts_and_osem(
    trues: np.ndarray,
    att: np.ndarray,
    background: float,
    scale: float,
    dose_reduction: float,
    rng: np.random.Generator,
    nx: int,
    ny: int,
    iterations: int = 4,
    subsets: int = 8,
    postfilter_sigma: Sequence[float] = (0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson counts at full dose and at ``1 / dose_reduction`` of them, both through the SAME OSEM + post-filter.

    Args:
        trues: expected true counts at full dose ``[n_angles, n_det, S]`` (attenuated, scaled by ``scale``).
        att: attenuation factors like ``trues``.
        background: expected scatter + randoms per bin at full dose.
        scale: counts per unit of image value and pixel of path (the OSEM sensitivity).
        dose_reduction: counts factor of the low-dose scan (>= 1).
        rng: random generator (full-dose counts are drawn first, then low-dose).
        nx: image size along the first axis.
        ny: image size along the second axis.
        iterations: OSEM iterations. Defaults to 4.
        subsets: OSEM subsets. Defaults to 8.
        postfilter_sigma: in-plane Gaussian post-filter sigma in pixels. Defaults to none.

    Returns:
        ``(low, full)`` images ``[nx, ny, S]`` float32 in image units; ``low`` at its own activity scale (``1 /
        dose_reduction`` of ``full``'s), as a real low-dose scan reconstructs.
    """
    nz = trues.shape[2]
    f_low = 1.0 / dose_reduction
    counts_full = rng.poisson(np.maximum(trues + background, 0)).astype(np.float32)
    counts_low = rng.poisson(np.maximum((trues + background) * f_low, 0)).astype(np.float32)
    # One OSEM over both doses: EM with (counts / f, background, scale) has exactly the iterates of
    # (counts, f * background, f * scale), so the low-dose counts are divided by f and share the full-dose model.
    rec = osem(np.concatenate([counts_full, counts_low / np.float32(f_low)], axis=2), nx, ny,
               n_angles=trues.shape[0], n_det=trues.shape[1], attenuation=np.concatenate([att, att], axis=2),
               background=background, scale=scale, iterations=iterations, subsets=subsets)
    sig = tuple(float(v) for v in postfilter_sigma)
    if max(sig) > 0:
        rec = ndimage.gaussian_filter(rec, sigma=(sig[0], sig[1], 0), mode="constant")
    rec = np.maximum(rec, 0)
    return (rec[..., nz:] * np.float32(f_low)).astype(np.float32), rec[..., :nz].astype(np.float32)
