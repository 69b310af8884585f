# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""rat_monai.transforms"""

from __future__ import annotations
from .regions import (  # noqa: E402
    RegionPartition,
    RegionPartitionD,
    RegionPartitiond,
    RegionPartitionDict,
    RegionPartitionVolume,
    RegionPartitionVolumeD,
    RegionPartitionVolumed,
    RegionPartitionVolumeDict,
)
from .intensity import NormalizeUnits, NormalizeUnitsD, NormalizeUnitsd, NormalizeUnitsDict  # noqa: E402
from .io import LoadVolume, LoadVolumeD, LoadVolumed, LoadVolumeDict  # noqa: E402
from .spatial import paired_train_transforms  # noqa: E402
