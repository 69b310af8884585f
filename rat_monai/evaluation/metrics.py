# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Image-quality metrics of a restored slice / volume against the full-dose reference, in REAL units.

Data ranges (stated in every result file, see :func:`metric_settings`):

- CT: both images are clipped to an HU window (default ``[-1000, 1000]``, :data:`rat_monai.visualize.CT_WIDE_WINDOW`)
  and ``data_range`` is its width (2000 HU).
- PET: images stay in SUV (no clipping); ``data_range`` is the full-dose SUVmax of the VOLUME the slice belongs to
  (one fixed range per patient, so the slices of a volume are comparable and a cold slice is not scored on its own
  tiny range).

Metrics per slice: PSNR (:func:`psnr`, the project's PSNR, also used by the simulator's figures), SSIM (MONAI's
``SSIMMetric``, the one the training handlers use), region-wise PSNR (mean over the regions of the region map the
focal region loss sees, restricted to regions inside the body) and, for PET, the relative bias of SUVmax and SUVmean
in the hottest structures: the top 1 % of the full-dose body voxels of the slice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from monai.metrics import SSIMMetric

from rat_monai.data.slicing import DEFAULT_AIR_THRESHOLD
from rat_monai.visualize import CT_WIDE_WINDOW

__all__ = [
    "HOT_FRACTION",
    "MSE_FLOOR_DB",
    "psnr",
    "metric_settings",
    "prepare_pair",
    "ssim",
    "region_psnr",
    "hot_mask",
    "suv_bias",
    "slice_metrics",
    "volume_metrics",
]

HOT_FRACTION = 0.01  # top 1 % of the full-dose body voxels
MSE_FLOOR_DB = 100.0  # a region restored exactly counts as 100 dB instead of +inf


def metric_settings(modality: str, ct_window: Sequence[float] = CT_WIDE_WINDOW) -> dict:
    """The data-range conventions of the metrics, as written into the result files."""
    if modality == "ct":
        lo, hi = (float(v) for v in ct_window)
        return {
            "units": "HU",
            "ct_window": [lo, hi],
            "data_range": hi - lo,
            "data_range_rule": f"both images clipped to [{lo:g}, {hi:g}] HU; data_range = {hi - lo:g} HU",
        }
    return {
        "units": "SUV",
        "data_range_rule": "SUV, not clipped; data_range = full-dose SUVmax of the volume (per patient)",
        "body_threshold_suv": DEFAULT_AIR_THRESHOLD["pet"],
        "hot_fraction": HOT_FRACTION,
        "hot_rule": "hottest structures = top 1 % of the full-dose body voxels (SUV > 0.1) of each slice",
    }


def prepare_pair(
    pred: np.ndarray, ref: np.ndarray, modality: str, ct_window: Sequence[float] = CT_WIDE_WINDOW
) -> tuple[np.ndarray, np.ndarray]:
    """float64 copies of ``pred`` and ``ref``; clipped to ``ct_window`` for CT, unchanged (SUV) for PET."""
    p, r = np.asarray(pred, np.float64), np.asarray(ref, np.float64)
    if p.shape != r.shape:
        raise ValueError(f"prediction {p.shape} and reference {r.shape} differ in shape.")
    if modality == "ct":
        lo, hi = (float(v) for v in ct_window)
        p, r = np.clip(p, lo, hi), np.clip(r, lo, hi)
    return p, r


def ssim(pred: np.ndarray, ref: np.ndarray, data_range: float) -> float:
    """SSIM of one 2D slice with MONAI's ``SSIMMetric`` (11x11 Gaussian window, as in training validation)."""
    x = torch.as_tensor(np.asarray(pred, np.float32))[None, None]
    y = torch.as_tensor(np.asarray(ref, np.float32))[None, None]
    win = min(11, *x.shape[-2:])
    win -= 1 - win % 2  # odd
    metric = SSIMMetric(spatial_dims=2, data_range=float(data_range), win_size=win, reduction="none")
    return float(metric(x, y).mean())


def psnr(
    pred: np.ndarray, ref: np.ndarray, data_range: float | None = None, mask: np.ndarray | None = None
) -> float:
    """PSNR (dB) of ``pred`` against ``ref`` over ``mask``, capped at :data:`MSE_FLOOR_DB` so that an exact
    restoration does not put +inf into a mean.

    Args:
        pred: the image to score.
        ref: the reference, same shape.
        data_range: the peak of the PSNR. Defaults to the range (max - min) of ``ref`` over ``mask``.
        mask: boolean mask of the pixels that count, same shape. Defaults to None (all).

    Returns:
        ``10 log10(data_range^2 / MSE)`` in dB, at most :data:`MSE_FLOOR_DB`.
    """
    p = np.asarray(pred, np.float64)
    r = np.asarray(ref, np.float64)
    if mask is not None:
        p, r = p[mask], r[mask]
    if data_range is None:
        data_range = float(r.max() - r.min())
    mse = float(np.mean((p - r) ** 2))
    return MSE_FLOOR_DB if mse == 0 else min(10.0 * math.log10(data_range**2 / mse), MSE_FLOOR_DB)


def region_psnr(
    pred: np.ndarray, ref: np.ndarray, regions: np.ndarray, data_range: float, body: np.ndarray | None = None
) -> float:
    """Mean over regions of the per-region PSNR.

    Only regions whose reference mean lies inside the body (``body`` mask: the region's majority of pixels) count,
    so the air around the patient (identical in both images for CT, all zeros for PET) does not add +inf or 100 dB
    terms. The selection depends on the reference and the region map only, never on the method, so the scores of two
    methods stay paired. A region restored exactly counts as :data:`MSE_FLOOR_DB`. NaN when no region qualifies.
    """
    labels = np.asarray(regions)
    if labels.shape != np.shape(ref):
        raise ValueError(f"region map {labels.shape} and reference {np.shape(ref)} differ in shape.")
    inside = np.ones(labels.shape, bool) if body is None else np.asarray(body, bool)
    _, inv = np.unique(labels, return_inverse=True)
    inv = inv.reshape(-1)
    counts = np.bincount(inv)
    in_body = np.bincount(inv, weights=inside.reshape(-1).astype(np.float64))
    err = (np.asarray(pred, np.float64) - np.asarray(ref, np.float64)).reshape(-1) ** 2
    mse = np.bincount(inv, weights=err) / np.maximum(counts, 1)
    keep = in_body > 0.5 * counts
    if not keep.any():
        return float("nan")
    floor = data_range**2 * 10.0 ** (-MSE_FLOOR_DB / 10.0)
    values = 10.0 * np.log10(data_range**2 / np.maximum(mse[keep], floor))
    return float(values.mean())


def hot_mask(ref: np.ndarray, body: np.ndarray, fraction: float = HOT_FRACTION) -> np.ndarray:
    """The hottest ``fraction`` of the body voxels of ``ref`` (at least one voxel); all False without body."""
    body = np.asarray(body, bool)
    if not body.any():
        return np.zeros(body.shape, bool)
    vals = np.asarray(ref)[body]
    k = max(1, int(math.ceil(fraction * vals.size)))
    thr = np.partition(vals, vals.size - k)[vals.size - k]
    return body & (np.asarray(ref) >= thr)


def suv_bias(pred: np.ndarray, ref: np.ndarray, hot: np.ndarray) -> tuple[float, float]:
    """Relative bias in % of SUVmax and SUVmean of ``pred`` vs ``ref`` inside the ``hot`` mask (NaN if empty)."""
    hot = np.asarray(hot, bool)
    if not hot.any():
        return float("nan"), float("nan")
    p, r = np.asarray(pred, np.float64)[hot], np.asarray(ref, np.float64)[hot]
    rmax, rmean = float(r.max()), float(r.mean())
    bmax = 100.0 * (float(p.max()) - rmax) / rmax if rmax > 0 else float("nan")
    bmean = 100.0 * (float(p.mean()) - rmean) / rmean if rmean > 0 else float("nan")
    return bmax, bmean


def _finite_mean(values: Sequence[float]) -> float:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _body(ref: np.ndarray, modality: str) -> np.ndarray:
    return np.asarray(ref) > DEFAULT_AIR_THRESHOLD[modality]


def slice_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    regions: np.ndarray,
    modality: str,
    data_range: float,
    ct_window: Sequence[float] = CT_WIDE_WINDOW,
) -> dict[str, float]:
    """All metrics of one slice (real units in; CT is clipped to ``ct_window`` here).

    Returns:
        ``{"psnr", "ssim", "region_psnr"}`` plus, for PET, ``{"suvmax_bias_pct", "suvmean_bias_pct"}``.
    """
    body = _body(ref, modality)
    p, r = prepare_pair(pred, ref, modality, ct_window)
    out = {
        "psnr": psnr(p, r, data_range),
        "ssim": ssim(p, r, data_range),
        "region_psnr": region_psnr(p, r, regions, data_range, body),
    }
    if modality == "pet":
        out["suvmax_bias_pct"], out["suvmean_bias_pct"] = suv_bias(p, r, hot_mask(r, body))
    return out


def volume_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    modality: str,
    data_range: float,
    slice_rows: Sequence[Mapping[str, float]],
    ct_window: Sequence[float] = CT_WIDE_WINDOW,
) -> dict[str, float]:
    """Per-volume metrics of the evaluated slices ``[Z, H, W]``: PSNR from the volume's mean squared error, SSIM and
    region PSNR as the mean over its slices, PET biases over the union of the slices' hot masks."""
    p, r = prepare_pair(pred, ref, modality, ct_window)
    out = {
        "psnr": psnr(p, r, data_range),
        "ssim": _finite_mean([s["ssim"] for s in slice_rows]),
        "region_psnr": _finite_mean([s["region_psnr"] for s in slice_rows]),
    }
    if modality == "pet":
        body = _body(ref, modality)
        hot = np.stack([hot_mask(r[k], body[k]) for k in range(r.shape[0])])
        out["suvmax_bias_pct"], out["suvmean_bias_pct"] = suv_bias(p, r, hot)
    return out
