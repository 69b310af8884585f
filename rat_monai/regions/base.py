# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""The partitioner interface shared by SAM and the offline partitioners."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

__all__ = ["RegionPartitioner", "settings_digest"]


def settings_digest(settings: dict[str, Any]) -> str:
    """sha256 hex digest of a JSON-able settings dict (key order does not matter)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


class RegionPartitioner:
    """Base class: ``__call__(slices [B, H, W] float) -> int32 [B, H, W]``, labels ``0..L-1`` per slice.

    Subclasses implement :meth:`partition_slice` (one slice) or override :meth:`__call__` (batched), and
    :meth:`settings` (every setting that changes the output; the disk cache key is built from it).
    """

    method: str = "base"

    def settings(self) -> dict[str, Any]:
        raise NotImplementedError

    def cache_key(self) -> dict[str, Any]:
        """The settings that key the cache, plus their digest (``"digest"``)."""
        s = {"method": self.method, **self.settings()}
        return {**s, "digest": settings_digest(s)}

    def partition_slice(self, img: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def _as_batch(slices: np.ndarray) -> np.ndarray:
        arr = np.asarray(slices)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise ValueError(f"slices must be [B, H, W] (or one [H, W] slice), got shape {arr.shape}.")
        return arr

    def __call__(self, slices: np.ndarray) -> np.ndarray:
        batch = self._as_batch(slices)
        if batch.shape[0] == 0:
            return np.zeros(batch.shape, np.int32)
        return np.stack([self.partition_slice(s) for s in batch]).astype(np.int32)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"
