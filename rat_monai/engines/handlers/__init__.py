# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Ignite handlers of the RAT bundles, one per file as in ``monai.handlers``.

All follow MONAI's handler protocol (``attach(engine)``), so bundle configs list them in ``train#handlers`` or
``validate#handlers`` like MONAI's own handlers.
"""

from __future__ import annotations

from .checkpoint import (
    KEY_METRIC_KEY,
    ResumableCheckpointSaver,
    ResumeCheckpointLoader,
    checkpoints_newest_first,
    find_latest_checkpoint,
    make_saves_atomic,
)
from .image_panel import ImagePanelHandler, render_panel
from .iteration_limit import IterationLimitHandler
from .metrics_writer import RestorationMetricsWriter
from .time_estimate import DEFAULT_CHEAPER_OPTION, TrainingTimeEstimate

__all__ = [
    "DEFAULT_CHEAPER_OPTION",
    "ImagePanelHandler",
    "IterationLimitHandler",
    "KEY_METRIC_KEY",
    "RestorationMetricsWriter",
    "ResumableCheckpointSaver",
    "ResumeCheckpointLoader",
    "TrainingTimeEstimate",
    "checkpoints_newest_first",
    "find_latest_checkpoint",
    "make_saves_atomic",
    "render_panel",
]
