# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""MONAI transforms that load PET/CT volumes in real units (wrappers of :func:`rat_monai.data.load_volume`), and the
one that declares the units of a NIfTI written by ``SaveImaged`` (so that the file reads back in the right units)."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence

from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import ensure_tuple_rep

from rat_monai.data.modality import normalize_modality
from rat_monai.data.units import ASSUMED_UNITS, write_units_sidecar
from rat_monai.data.volume import load_volume

__all__ = [
    "LoadVolume",
    "LoadVolumed",
    "LoadVolumeD",
    "LoadVolumeDict",
    "WriteUnitsSidecard",
    "WriteUnitsSidecarD",
    "WriteUnitsSidecarDict",
]


class LoadVolume(Transform):
    """Load a DICOM series folder or NIfTI file as ``MetaTensor`` [1, X, Y, Z] in SUV / HU.

    See :func:`rat_monai.data.load_volume` for the geometry, units and meta keys.

    Args:
        series_uid: SeriesInstanceUID when a folder holds several series. Defaults to None.
        units: "auto" (PET SUV, CT HU), "suv", "bqml", "hu" or "stored". Defaults to "auto".
        modality: "pet"/"ct"/... to pick a series or declare a NIfTI's modality. Defaults to None.
        allow_gaps: tolerate missing DICOM slices with a warning. Defaults to False.
        allow_tilt: keep a gantry-tilted (sheared) series with a sheared affine and a warning. Defaults to False.
        check_units: refuse NIfTI values that contradict their declared or assumed units. Defaults to True.
    """

    def __init__(
        self,
        series_uid: str | None = None,
        units: str = "auto",
        modality: str | None = None,
        allow_gaps: bool = False,
        allow_tilt: bool = False,
        check_units: bool = True,
    ) -> None:
        self.series_uid = series_uid
        self.units = units
        self.modality = modality
        self.allow_gaps = allow_gaps
        self.allow_tilt = allow_tilt
        self.check_units = check_units

    def __call__(self, path: str | os.PathLike) -> MetaTensor:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"LoadVolume expects a path (str or pathlib.Path), got {type(path).__name__}.")
        return load_volume(
            path,
            series_uid=self.series_uid,
            units=self.units,
            modality=self.modality,
            allow_gaps=self.allow_gaps,
            allow_tilt=self.allow_tilt,
            check_units=self.check_units,
        )


class LoadVolumed(MapTransform):
    """Dictionary version of :class:`LoadVolume`: replaces each path under ``keys`` by its loaded volume.

    Args:
        keys: keys whose values are paths (e.g. ``("image", "label")``).
        series_uid: one SeriesInstanceUID for all keys, or a sequence with one per key. Defaults to None.
        units: one unit choice for all keys or one per key. Defaults to "auto".
        modality: one modality for all keys or one per key. Defaults to None.
        allow_missing_keys: don't raise when a key is absent. Defaults to False.
        allow_gaps: tolerate missing DICOM slices with a warning. Defaults to False.
        allow_tilt: keep gantry-tilted (sheared) series with a sheared affine and a warning. Defaults to False.
        check_units: refuse NIfTI values that contradict their declared or assumed units. Defaults to True.
    """

    def __init__(
        self,
        keys: KeysCollection,
        series_uid: str | Sequence[str | None] | None = None,
        units: str | Sequence[str] = "auto",
        modality: str | Sequence[str | None] | None = None,
        allow_missing_keys: bool = False,
        allow_gaps: bool = False,
        allow_tilt: bool = False,
        check_units: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        n = len(self.keys)
        self.loaders = {
            key: LoadVolume(
                series_uid=s, units=u, modality=m, allow_gaps=allow_gaps, allow_tilt=allow_tilt, check_units=check_units
            )
            for key, s, u, m in zip(
                self.keys, ensure_tuple_rep(series_uid, n), ensure_tuple_rep(units, n), ensure_tuple_rep(modality, n)
            )
        }

    def __call__(self, data: Mapping[Hashable, str | os.PathLike]) -> dict[Hashable, MetaTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loaders[key](d[key])
        return d


LoadVolumeD = LoadVolumeDict = LoadVolumed


class WriteUnitsSidecard(MapTransform):
    """After ``SaveImaged(..., savepath_in_metadict=True)``: write the JSON units sidecar beside each saved NIfTI.

    ``SaveImaged`` cannot state the units of what it writes; without a declaration a restored PET NIfTI could later
    be read in the wrong units. This writes ``<name>.json`` = ``{"modality", "units", "written_by"}`` (the format
    :func:`rat_monai.data.load_volume` reads first) next to the path ``SaveImaged`` recorded under
    ``meta["saved_to"]``.

    Args:
        keys: keys whose tensors were saved (their ``meta`` holds ``"saved_to"``).
        modality: "pet"/"PT" or "ct"/"CT".
        units: units of the saved values. Defaults to None, meaning what the bundles compute in (SUV for PET, HU for
            CT: ``rat_monai.data.units.ASSUMED_UNITS``).
        allow_missing_keys: don't raise for absent keys. Defaults to False.

    Raises:
        ValueError: a tensor without ``meta["saved_to"]`` (``SaveImaged`` must run first with
            ``savepath_in_metadict=True``), or a modality without assumed units.
    """

    def __init__(
        self, keys: KeysCollection, modality: str, units: str | None = None, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.modality = normalize_modality(modality)
        if units is None and self.modality not in ASSUMED_UNITS:
            raise ValueError(f"no assumed units for modality {modality!r}: pass units= ('suv', 'bqml' or 'hu').")
        self.units = units or ASSUMED_UNITS[self.modality]

    def __call__(self, data: Mapping[Hashable, MetaTensor]) -> dict[Hashable, MetaTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            saved = getattr(d[key], "meta", {}).get("saved_to")
            if not saved:
                raise ValueError(
                    f"{key!r} has no meta['saved_to']: run SaveImaged(..., savepath_in_metadict=True) before "
                    "WriteUnitsSidecard."
                )
            write_units_sidecar(saved, self.modality, self.units, written_by="rat-monai SaveImaged")
        return d


WriteUnitsSidecarD = WriteUnitsSidecarDict = WriteUnitsSidecard
