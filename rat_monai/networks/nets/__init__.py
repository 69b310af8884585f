# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""rat_monai.networks.nets"""

from __future__ import annotations
from .rat import RAT, StackedRegionRAT
from .convert import convert_official_rat_state_dict
from .restore_rwkv import RestoreRWKV
