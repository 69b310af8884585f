# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""rat_monai.losses"""

from __future__ import annotations

from .focal_region import FocalRegionLoss, region_mean_error
from .stacked_region import StackedRegionLoss

__all__ = ["FocalRegionLoss", "StackedRegionLoss", "region_mean_error"]
