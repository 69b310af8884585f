# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Agreement between two partitions."""

from __future__ import annotations

import numpy as np

__all__ = ["adjusted_rand_index"]


def _comb2(n: np.ndarray) -> float:
    n = n.astype(np.float64)
    return float((n * (n - 1) / 2).sum())


def adjusted_rand_index(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two label maps of the same shape (1 = identical partitions, ~0 = chance).

    Label values do not matter, only which pixels share a label. Two single-region maps give 1.
    """
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    if a.shape != b.shape:
        raise ValueError(f"label maps differ in size: {a.size} vs {b.size}.")
    n = a.size
    if n < 2:
        return 1.0
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    _, joint = np.unique(ia.astype(np.int64) * (ib.max() + 1) + ib, return_counts=True)
    sum_ij = _comb2(joint)
    sum_a, sum_b = _comb2(np.bincount(ia)), _comb2(np.bincount(ib))
    total = n * (n - 1) / 2
    expected = sum_a * sum_b / total
    max_index = (sum_a + sum_b) / 2
    if max_index == expected:
        return 1.0
    return float((sum_ij - expected) / (max_index - expected))
