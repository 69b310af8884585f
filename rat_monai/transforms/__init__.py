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
from .intensity import (  # noqa: E402
    NormalizeUnits,
    NormalizeUnitsD,
    NormalizeUnitsd,
    NormalizeUnitsDict,
    RestoreClippedD,
    RestoreClippedd,
    RestoreClippedDict,
)
from .io import (  # noqa: E402
    LoadVolume,
    LoadVolumeD,
    LoadVolumed,
    LoadVolumeDict,
    WriteUnitsSidecard,
    WriteUnitsSidecarD,
    WriteUnitsSidecarDict,
)
from .region_channel import StackRegions, StackRegionsD, StackRegionsd, StackRegionsDict  # noqa: E402
from .spatial import paired_train_transforms  # noqa: E402
