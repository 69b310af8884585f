# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""The ``report.json`` of a restoration: what was restored, with which model and settings, the safety checks, the
region cache, the time and CPU time per stage and the peak memory."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

import rat_monai

from .safety import OUTPUT_MARK

__all__ = ["StageTimer", "build_report", "peak_rss_mb", "write_report"]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(peak) / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0)


class StageTimer:
    """Wall-clock and CPU seconds (this process, all threads) of named stages, from the timer's creation on.

    Example::

        timer = StageTimer()
        with timer.stage("load"):
            volume = load_volume(path)
        timer.wall["load"], timer.cpu["load"], timer.total()
    """

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name`` (recorded when the block finishes without an error)."""
        t0, c0 = time.perf_counter(), time.process_time()
        yield
        self.wall[name] = time.perf_counter() - t0
        self.cpu[name] = time.process_time() - c0

    def total(self) -> float:
        """Seconds since the timer was created."""
        return time.perf_counter() - self.start


def build_report(
    *,
    src: os.PathLike,
    out: os.PathLike,
    fmt: str,
    meta: Mapping[str, Any],
    shape: tuple[int, ...],
    units_out: Any,
    series_uid: str | None,
    region_stats: Mapping[str, Any],
    timer: StageTimer,
    files: Mapping[str, Any],
    restorer: Any,
) -> dict:
    """The report of one restoration (what ``report.json`` holds).

    Args:
        src, out: input scan and output folder.
        fmt: the output format (``"dicom"``, ``"nifti"`` or ``"both"``).
        meta: ``load_volume`` meta of the input.
        shape: the input volume's shape ``[X, Y, Z]`` (Z slices).
        units_out: units of the written output (those of the input are ``meta["units"]``).
        series_uid: SeriesInstanceUID of the written DICOM series (None without one).
        region_stats: ``{"hits", "misses", "cache_dir", "method", "settings"}`` of the region stage.
        timer: the stages' times.
        files: the written files.
        restorer: the :class:`~rat_monai.inference.ScanRestorer` (model, settings, safety record, device).

    Returns:
        a JSON-able dict; ``"rat_monai_output": "infer"`` marks the folder as replaceable by ``--overwrite``.
    """
    n = int(shape[-1])
    stages = {
        k: {
            "seconds": round(v, 4),
            "seconds_per_slice": round(v / max(n, 1), 5),
            "cpu_seconds": round(timer.cpu.get(k, float("nan")), 4),
        }
        for k, v in timer.wall.items()
    }
    peak = {"rss_mb": round(peak_rss_mb(), 1)}
    if restorer.device.type == "cuda":
        peak["cuda_mb"] = round(torch.cuda.max_memory_allocated(restorer.device) / 2**20, 1)
    spacing = meta.get("spacing")
    return {
        OUTPUT_MARK: "infer",  # lets a later --overwrite replace this folder
        "rat_monai_version": rat_monai.__version__,
        "model_version": restorer.model_version,
        "untrained": restorer.untrained,
        "input": str(src),
        "output": str(out),
        "format": fmt,
        "modality": restorer.modality,
        "input_modality": meta.get("modality"),
        "units_in": meta.get("units"),
        "units_out": units_out,
        "suv_factor": meta.get("suv_factor"),
        "num_slices": n,
        "shape": [int(s) for s in shape],
        "spacing": None if spacing is None else [float(s) for s in spacing],
        "study_instance_uid": meta.get("study_instance_uid"),
        "input_series_instance_uid": meta.get("series_instance_uid"),
        "output_series_instance_uid": series_uid,
        "settings": {
            "batch_size": restorer.batch_size,
            "device": str(restorer.device),
            "use_regions": restorer.use_regions,
            "region_method": restorer.region_method,
            "sam_checkpoint": restorer.sam_checkpoint,
            "region_kwargs": dict(restorer.region_kwargs),
            "normalization": dict(restorer.normalization),
            "checkpoint": restorer.checkpoint,
            "units": restorer.units,
            "series_uid": restorer.series_uid,
            "allow": sorted(restorer.allow),
        },
        "safety": dict(restorer.safety),
        "regions": dict(region_stats),
        "timings": {"stages": stages, "total_seconds": round(timer.total(), 4)},
        "peak_memory": peak,
        "files": dict(files),
    }


def write_report(path: os.PathLike, report: Mapping[str, Any]) -> None:
    """Write ``report`` as indented JSON (values JSON cannot hold as their ``str``)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=4, default=str)
        f.write("\n")
