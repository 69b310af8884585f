# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""rat-monai: region-guided medical image restoration (Region Attention Transformer) on MONAI."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
