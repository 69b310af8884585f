# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""rat_monai.data"""

from __future__ import annotations
from .dicom_geometry import SliceSpacingWarning  # noqa: E402
from .dicom_scan import list_dicom_series  # noqa: E402
from .normalization import denormalize_units, normalize_units  # noqa: E402
from .volume import load_volume  # noqa: E402
from .datalist import build_datalist, load_datalist  # noqa: E402
from .slicing import PairedSliceDataset  # noqa: E402
