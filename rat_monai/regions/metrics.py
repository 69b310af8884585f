# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Agreement between two partitions."""

from __future__ import annotations

import numpy as np

__all__ = [
    "adjusted_rand_index",
    "class_purity",
    "hu_classes",
    "largest_fraction",
    "latent_labels",
    "region_attention_cost",
    "HU_PURITY_CLASSES",
]


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


def latent_labels(labels: np.ndarray, factor: int = 4) -> np.ndarray:
    """Region map at the RAT latent: the top-left pixel of each whole ``factor x factor`` cell.

    The same as ``F.interpolate(labels, scale_factor=1 / factor, mode="nearest")`` (tested), which the network uses.
    """
    labels = np.asarray(labels)
    h, w = labels.shape[-2] // factor, labels.shape[-1] // factor
    return labels[..., : h * factor : factor, : w * factor : factor]


def region_attention_cost(labels: np.ndarray, factor: int = 4) -> float:
    """Exact region attention cost at the latent relative to full attention: ``sum_r n_r^2 / N^2`` (one slice)."""
    lat = latent_labels(labels, factor)
    _, counts = np.unique(lat, return_counts=True)
    return float((counts.astype(np.float64) ** 2).sum() / float(lat.size) ** 2)


# HU classes of the purity figure: (name, lo, hi); pixels between the ranges belong to no class
HU_PURITY_CLASSES: tuple[tuple[str, float, float], ...] = (
    ("air/lung", -np.inf, -500.0), ("fat", -150.0, -30.0), ("soft tissue", -30.0, 150.0), ("bone", 300.0, np.inf),
)  # fmt: skip


def hu_classes(hu: np.ndarray) -> np.ndarray:
    """Class index of each pixel by :data:`HU_PURITY_CLASSES`, -1 between the ranges."""
    hu = np.asarray(hu, dtype=np.float32)
    out = np.full(hu.shape, -1, np.int64)
    for i, (_, lo, hi) in enumerate(HU_PURITY_CLASSES):
        out[(hu >= lo) & (hu < hi)] = i
    return out


def class_purity(classes: np.ndarray, labels: np.ndarray, within: np.ndarray | None = None) -> float:
    """Fraction of classed pixels (``classes >= 0``, inside ``within``) whose region's majority class is theirs.

    A region's majority is taken over all its classed pixels (inside and outside ``within``).
    """
    classes, labels = np.asarray(classes).ravel(), np.asarray(labels).ravel()
    if classes.shape != labels.shape:
        raise ValueError(f"classes and labels differ in size: {classes.size} vs {labels.size}.")
    _, lab = np.unique(labels, return_inverse=True)
    ok = classes >= 0
    n_cls = int(classes.max()) + 1 if ok.any() else 1
    joint = np.bincount(lab[ok] * n_cls + classes[ok], minlength=(int(lab.max()) + 1) * n_cls).reshape(-1, n_cls)
    major = joint.argmax(axis=1)
    sel = ok if within is None else ok & np.asarray(within, bool).ravel()
    if not sel.any():
        return 1.0
    return float((major[lab[sel]] == classes[sel]).mean())


def largest_fraction(labels: np.ndarray, within: np.ndarray) -> float:
    """Largest share of ``within`` (e.g. the body) that one region covers."""
    within = np.asarray(within, bool)
    if not within.any():
        return 0.0
    _, counts = np.unique(np.asarray(labels)[within], return_counts=True)
    return float(counts.max() / within.sum())
