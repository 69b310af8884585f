# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Scanner defaults (shape, field of view, dose reduction) and physical constants of the PET and CT simulators."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "DEFAULT_SHAPE",
    "DEFAULT_DOSE_REDUCTION",
    "DEFAULT_FOV",
    "MU_WATER",
    "F18_HALF_LIFE",
    "as_rng",
    "default_spacing",
]

DEFAULT_SHAPE = {"pet": (128, 128, 64), "ct": (256, 256, 32)}
DEFAULT_DOSE_REDUCTION = {"pet": 12.0, "ct": 4.0}
# in-plane and axial field of view in mm (spacing = fov / shape)
DEFAULT_FOV = {"pet": (500.0, 200.0), "ct": (380.0, 160.0)}
MU_WATER = 0.0192  # 1/mm, effective ~70 keV
F18_HALF_LIFE = 6586.2  # s


def as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    """``rng`` itself when it is a Generator, else ``numpy.random.default_rng(rng)``."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def default_spacing(modality: str, shape: Sequence[int]) -> tuple[float, float, float]:
    """Voxel size in mm that fits ``shape`` ``(X, Y, Z)`` into the modality's :data:`DEFAULT_FOV` (square pixels)."""
    fov_xy, fov_z = DEFAULT_FOV[modality]
    d = fov_xy / max(shape[0], shape[1])
    return (d, d, fov_z / shape[2])
