# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Summary statistics and the seeded paired bootstrap of a method's difference against the reference method."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["mean_std", "paired_bootstrap"]


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """``(mean, std, n)`` over the finite values (population std, ``ddof=0``); NaNs when none is finite."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std()), int(v.size)


def paired_bootstrap(
    method: Sequence[float],
    reference: Sequence[float],
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Percentile bootstrap interval of ``mean(method - reference)`` over paired samples (slices or volumes).

    Pairs where either value is not finite are dropped. The same ``seed`` gives the same interval.

    Args:
        method: the method's values, one per sample.
        reference: the reference method's values on the same samples, same order.
        n_boot: bootstrap resamples. Defaults to 2000.
        confidence: interval coverage. Defaults to 0.95.
        seed: seed of ``numpy.random.default_rng``. Defaults to 0.

    Returns:
        ``{"mean_diff", "ci_low", "ci_high", "n", "excludes_zero"}``; with fewer than 2 pairs the interval is NaN
        and ``excludes_zero`` False.

    Raises:
        ValueError: when the two sequences differ in length, ``n_boot < 1`` or ``confidence`` is not in (0, 1).
    """
    a, b = np.asarray(method, np.float64), np.asarray(reference, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples must be two 1D sequences of equal length, got {a.shape} and {b.shape}.")
    if int(n_boot) < 1 or not 0.0 < confidence < 1.0:
        raise ValueError(f"need n_boot >= 1 and 0 < confidence < 1, got {n_boot} and {confidence}.")
    d = (a - b)[np.isfinite(a) & np.isfinite(b)]
    if d.size < 2:  # one pair has no spread to resample: no interval
        nan = float("nan")
        mean = float(d.mean()) if d.size else nan
        return {"mean_diff": mean, "ci_low": nan, "ci_high": nan, "n": int(d.size), "excludes_zero": False}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(int(n_boot), d.size))
    means = d[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return {
        "mean_diff": float(d.mean()),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "n": int(d.size),
        "excludes_zero": bool(lo > 0 or hi < 0),
    }
