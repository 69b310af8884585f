# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""rat_monai.inference"""

from __future__ import annotations

from .loading import bundle_version
from .overview import save_overview
from .restorer import FORMATS, ScanRestorer

__all__ = [
    "FORMATS",
    "ScanRestorer",
    "bundle_version",
    "save_overview",
]
