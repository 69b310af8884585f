# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""rat_monai.engines"""

from __future__ import annotations

from .bundle_utils import (
    BundleUserError,
    checkpoints_newest_first,
    datalist_split,
    ensure_dataset,
    epochs_for_iterations,
    find_latest_checkpoint,
    handlers_for_rank,
    iteration_budget,
)
from .handlers import (
    ImagePanelHandler,
    IterationLimitHandler,
    RestorationMetricsWriter,
    ResumableCheckpointSaver,
    ResumeCheckpointLoader,
)
from .panels import region_colors, render_panel, save_png
from .time_estimate import TrainingTimeEstimate
from .utils import PrepareBatchStackRegions, StackedRegionLoss, split_stacked_target, stack_regions

__all__ = [
    "BundleUserError",
    "ImagePanelHandler",
    "IterationLimitHandler",
    "PrepareBatchStackRegions",
    "RestorationMetricsWriter",
    "ResumableCheckpointSaver",
    "ResumeCheckpointLoader",
    "StackedRegionLoss",
    "TrainingTimeEstimate",
    "checkpoints_newest_first",
    "datalist_split",
    "ensure_dataset",
    "epochs_for_iterations",
    "find_latest_checkpoint",
    "handlers_for_rank",
    "iteration_budget",
    "region_colors",
    "render_panel",
    "save_png",
    "split_stacked_target",
    "stack_regions",
]
