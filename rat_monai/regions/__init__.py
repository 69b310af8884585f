# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""rat_monai.regions"""

from __future__ import annotations
