# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""rat_monai.evaluation: the results table of the bundles (``rat-monai evaluate``)."""

from __future__ import annotations

from .methods import (
    CLASSICAL_GRIDS,
    ClassicalMethod,
    IdentityMethod,
    Method,
    NetworkMethod,
    bm3d_available,
    classical_method,
    noise_sigma,
    read_overrides,
    tune,
)
from .metrics import (
    HOT_FRACTION,
    hot_mask,
    metric_settings,
    psnr,
    region_psnr,
    slice_metrics,
    ssim,
    suv_bias,
    volume_metrics,
)
from .report import findings, markdown_report, write_report
from .runner import METRICS, evaluate, load_split, volume_data_range
from .statistics import mean_std, paired_bootstrap

__all__ = [
    "CLASSICAL_GRIDS",
    "ClassicalMethod",
    "HOT_FRACTION",
    "IdentityMethod",
    "METRICS",
    "Method",
    "NetworkMethod",
    "bm3d_available",
    "classical_method",
    "evaluate",
    "findings",
    "hot_mask",
    "load_split",
    "volume_data_range",
    "markdown_report",
    "mean_std",
    "metric_settings",
    "noise_sigma",
    "paired_bootstrap",
    "psnr",
    "read_overrides",
    "region_psnr",
    "slice_metrics",
    "ssim",
    "suv_bias",
    "tune",
    "volume_metrics",
    "write_report",
]
