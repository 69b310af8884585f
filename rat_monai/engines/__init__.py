# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""rat_monai.engines"""

from __future__ import annotations

from .bundle_utils import (
    BundleUserError,
    as_flag,
    datalist_split,
    ensure_dataset,
    epochs_for_iterations,
    handlers_for_rank,
    iteration_budget,
    metric_data_range,
    metric_window,
    windowed_pairs,
)
from .handlers import (
    ImagePanelHandler,
    IterationLimitHandler,
    RestorationMetricsWriter,
    ResumableCheckpointSaver,
    ResumeCheckpointLoader,
    TrainingTimeEstimate,
    checkpoints_newest_first,
    find_latest_checkpoint,
    render_panel,
)
from .utils import PrepareBatchStackRegions

__all__ = [
    "BundleUserError",
    "as_flag",
    "ImagePanelHandler",
    "IterationLimitHandler",
    "PrepareBatchStackRegions",
    "RestorationMetricsWriter",
    "ResumableCheckpointSaver",
    "ResumeCheckpointLoader",
    "TrainingTimeEstimate",
    "checkpoints_newest_first",
    "datalist_split",
    "ensure_dataset",
    "epochs_for_iterations",
    "find_latest_checkpoint",
    "handlers_for_rank",
    "iteration_budget",
    "metric_data_range",
    "metric_window",
    "windowed_pairs",
    "render_panel",
]
