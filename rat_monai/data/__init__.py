# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""rat_monai.data: loading scans in real units, modality names, units, normalisation, datalists, slice datasets.

The names below are loaded on first use (PEP 562 module ``__getattr__``), not when the package is imported: the
modality table (:mod:`~rat_monai.data.modality`) is imported by :mod:`rat_monai.regions`, and an eager ``__init__``
loads ``monai`` (through ``volume``/``slicing``) with it: 2 s of the 5.5 s that ``import rat_monai.regions`` took
(measured with ``python -X importtime``). ``from rat_monai.data import load_volume`` and
``rat_monai.data.load_volume`` work as before.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

#: public name -> submodule that defines it
_EXPORTS = {
    "SliceSpacingWarning": "dicom_geometry",
    "list_dicom_series": "dicom_scan",
    "denormalize_units": "normalization",
    "normalize_units": "normalization",
    "load_volume": "volume",
    "build_datalist": "datalist",
    "load_datalist": "datalist",
    "PairedSliceDataset": "slicing",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # what static tools see; at run time __getattr__ loads each name on first use
    from .datalist import build_datalist, load_datalist
    from .dicom_geometry import SliceSpacingWarning
    from .dicom_scan import list_dicom_series
    from .normalization import denormalize_units, normalize_units
    from .slicing import PairedSliceDataset
    from .volume import load_volume


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
