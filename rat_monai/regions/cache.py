# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""On-disk cache of region maps, keyed by slice content and generator settings.

A region map costs seconds (SAM) to compute and never changes for the same slice and settings, so it is computed once
and stored under ``cache_dir/<k[:2]>/<k>.npz`` where ``k = sha256(slice bytes, dtype, shape, settings)``. The settings
of a SAM generator include the sha256 of its checkpoint file, its thresholds and the intensity window, so changing
any of them misses the cache instead of returning a stale map. Writes are atomic (temporary file + rename), so
several DataLoader workers or processes may share one cache directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

__all__ = ["RegionCache", "region_cache_key", "cached_partition"]


def region_cache_key(img: np.ndarray, settings: dict[str, Any]) -> str:
    """sha256 hex key of one slice (bytes + dtype + shape) and the partitioner settings."""
    arr = np.ascontiguousarray(np.asarray(img))
    h = hashlib.sha256()
    h.update(f"{arr.dtype.str}|{arr.shape}|".encode())
    h.update(arr.tobytes())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()


class RegionCache:
    """Region maps on disk.

    Args:
        cache_dir: folder for the cache (created on first write).

    Example::

        cache = RegionCache("/tmp/regions")
        key = cache.key(slice_hu, partitioner.cache_key())
        labels = cache.get(key)
        if labels is None:
            labels = partitioner(slice_hu[None])[0]
            cache.put(key, labels)
    """

    def __init__(self, cache_dir: str | os.PathLike) -> None:
        self.cache_dir = Path(cache_dir)
        if self.cache_dir.exists() and not self.cache_dir.is_dir():
            raise ValueError(f"cache_dir {self.cache_dir} exists and is not a folder; pass a folder path.")

    @staticmethod
    def key(img: np.ndarray, settings: dict[str, Any]) -> str:
        return region_cache_key(img, settings)

    def path(self, key: str) -> Path:
        if len(key) < 8 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"cache key must be a hex digest, got {key!r}.")
        return self.cache_dir / key[:2] / f"{key}.npz"

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    def get(self, key: str) -> np.ndarray | None:
        """The stored int32 map, or None when absent or unreadable.

        A corrupt entry (e.g. a truncated ``.npz`` left by a full disk) is a miss: the caller computes the map again
        and :meth:`put` replaces the file.
        """
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            with np.load(p) as z:
                return z["labels"].astype(np.int32)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None

    def put(self, key: str, labels: np.ndarray) -> Path:
        """Store ``labels`` atomically; returns the file path."""
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        labels = np.asarray(labels)
        small = labels.astype(np.uint16) if labels.size and 0 <= labels.min() and labels.max() < 65536 else labels
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=p.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez_compressed(f, labels=small)
            os.replace(tmp, p)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return p

    def __len__(self) -> int:
        return sum(1 for _ in self.cache_dir.glob("*/*.npz")) if self.cache_dir.is_dir() else 0

    def __repr__(self) -> str:
        return f"RegionCache({str(self.cache_dir)!r})"


def cached_partition(
    partitioner: Any,
    slices: np.ndarray,
    cache: RegionCache | None = None,
    batch_size: int = 8,
    progress: bool = False,
    desc: str = "regions",
) -> tuple[np.ndarray, dict[str, int]]:
    """Partition ``slices [B, H, W]`` through ``cache``: only slices not in the cache are computed, in batches.

    Args:
        partitioner: callable ``[b, H, W] -> int32 [b, H, W]`` with ``cache_key()`` (see ``get_partitioner``).
        slices: ``[B, H, W]`` slices in real units.
        cache: a :class:`RegionCache` or None (compute everything). Defaults to None.
        batch_size: slices per partitioner call. Defaults to 8.
        progress: show a tqdm progress bar over slices. Defaults to False.
        desc: progress bar label. Defaults to ``"regions"``.

    Returns:
        ``(labels, counts)``: int32 ``[B, H, W]`` and ``{"hits": slices read from the cache, "misses": slices
        computed}`` (without a cache every slice is a miss).

    Raises:
        ValueError: ``slices`` is not ``[B, H, W]`` or ``batch_size`` < 1.
    """
    slices = np.asarray(slices)
    if slices.ndim != 3:
        raise ValueError(f"slices must be [B, H, W], got shape {slices.shape}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    out = np.zeros(slices.shape, np.int32)
    keys: list[str | None] = [None] * len(slices)
    todo = list(range(len(slices)))
    if cache is not None:
        settings = partitioner.cache_key()
        todo = []
        for i, s in enumerate(slices):
            keys[i] = cache.key(s, settings)
            hit = cache.get(keys[i])  # type: ignore[arg-type]
            if hit is not None and hit.shape == s.shape:
                out[i] = hit
            else:
                todo.append(i)
    with tqdm(total=len(slices), desc=desc, disable=not progress, unit="slice") as bar:
        bar.update(len(slices) - len(todo))
        for start in range(0, len(todo), batch_size):
            idx = todo[start : start + batch_size]
            res = np.asarray(partitioner(slices[idx]), dtype=np.int32)
            for j, i in enumerate(idx):
                out[i] = res[j]
                if cache is not None:
                    cache.put(keys[i], res[j])  # type: ignore[arg-type]
            bar.update(len(idx))
    return out, {"hits": len(slices) - len(todo), "misses": len(todo)}
