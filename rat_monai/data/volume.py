# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""``load_volume``: a DICOM series folder or a NIfTI file -> ``MetaTensor`` [1, X, Y, Z] in real units."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor, NibabelReader
from monai.utils import SpaceKeys
from torch.utils.data._utils.collate import default_collate_fn_map

from .dicom import read_dicom_series
from .modality import normalize_modality
from .units import (
    ASSUMED_UNITS,
    UNIT_CHOICES,
    bqml_to_suv,
    check_units_plausible,
    read_declared_units,
    resolve_units,
    suv_body_weight_factor,
    suv_to_bqml,
)

__all__ = ["load_volume", "register_none_collate", "NIFTI_SUFFIXES"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")

_UNIT_MODALITY = {"suv": "PT", "bqml": "PT", "hu": "CT"}


def _collate_none(batch: Sequence[None], *, collate_fn_map: dict | None = None) -> list[None]:
    return list(batch)


def register_none_collate() -> None:
    """Let ``torch``/MONAI ``default_collate`` batch ``None`` values (into a list) instead of raising ``TypeError``.

    ``load_volume`` keeps every meta key present with ``None`` when unknown (``suv_factor`` of a CT, the UIDs of a
    NIfTI); MONAI collates MetaTensor meta with ``default_collate``, which rejects ``None``. This adds a handler to
    ``torch.utils.data._utils.collate.default_collate_fn_map`` (the same registry MONAI's ``list_data_collate``
    extends for ``MetaTensor``); ``decollate_batch`` gives the ``None`` back per item. Called on import.
    """
    default_collate_fn_map.setdefault(type(None), _collate_none)


register_none_collate()


def _is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in NIFTI_SUFFIXES)


def _base_meta(path: Path) -> dict[str, Any]:
    return {
        "modality": None,
        "units": None,
        "suv_factor": None,
        "filename_or_obj": str(path),
        "series_instance_uid": None,
        "study_instance_uid": None,
        "dicom_files": [],
        "slice_positions": [],
        "spacing": None,
    }


def _positions_from_affine(affine: np.ndarray, nz: int) -> list[float]:
    col = affine[:3, 2]
    n = np.linalg.norm(col)
    normal = col / n if n > 0 else np.array([0.0, 0.0, 1.0])
    return [float((affine[:3, 3] + k * col) @ normal) for k in range(nz)]


def _nifti_units(
    arr: torch.Tensor, path: Path, req: str, modality: str | None, declared: dict | None
) -> tuple[torch.Tensor, str | None, str | None, float | None]:
    """Values, units, modality and SUV factor of a NIfTI from the request and the file's own declaration."""
    stored = declared["units"] if declared else None
    factor = declared.get("suv_factor") if declared else None
    if declared and declared.get("modality"):
        modality = declared["modality"]  # what the file says it is wins; callers compare meta["modality"]
    if req in ("auto", "stored") or stored is None or stored == req:
        out = stored if req in ("auto", "stored") else req
        if req == "auto" and stored == "bqml" and factor:  # PET "auto" means SUV, as for DICOM
            return torch.from_numpy(bqml_to_suv(arr, factor)), "suv", modality, factor
        return arr, out, modality, factor
    if stored == "bqml" and req == "suv" and factor:
        return torch.from_numpy(bqml_to_suv(arr, factor)), "suv", modality, factor
    if stored == "suv" and req == "bqml" and factor:
        return torch.from_numpy(suv_to_bqml(arr, factor)), "bqml", modality, factor
    raise ValueError(
        f"NIfTI file {path} declares its values in {stored.upper()} ({declared['source']}), but units={req!r} was "
        f"requested and no conversion is possible{'' if factor else ' (no suv_factor in a sidecar)'}; load it with "
        f"units='auto' or 'stored', or fix the declaration."
    )


def _load_nifti(path: Path, units: str, modality: str | None, check_units: bool = True) -> MetaTensor:
    reader = NibabelReader(as_closest_canonical=False)
    try:
        img = reader.read(str(path))
        data, img_meta = reader.get_data(img)
        descrip = img.header.get("descrip") if hasattr(img, "header") else None
    except Exception as e:  # noqa: BLE001 - nibabel raises many types for broken files
        raise ValueError(
            f"NIfTI file {path} could not be read ({type(e).__name__}: {e}); the file is truncated or not NIfTI. "
            "Re-export it."
        ) from e
    arr = torch.as_tensor(np.asarray(data, dtype=np.float32))
    shape = tuple(arr.shape)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise ValueError(
            f"NIfTI file {path} has shape {shape}; load_volume needs a 3D volume (X, Y, Z). Split 4D "
            "(dynamic/multi-channel) files into one volume per file."
        )
    affine = np.asarray(img_meta["affine"], dtype=np.float64)
    meta = _base_meta(path)
    req = resolve_units(units, modality)
    if modality is None and req in _UNIT_MODALITY:
        modality = _UNIT_MODALITY[req]
    # NIfTI has no unit tags: the JSON sidecar or the header descrip (what rat-monai writes) declares them; else
    # "auto"/"stored" leave units unknown and an explicit unit is the caller's declaration of the stored values
    declared = read_declared_units(path, None if descrip is None else np.asarray(descrip).item())
    arr, meta["units"], modality, meta["suv_factor"] = _nifti_units(arr, path, req, modality, declared)
    meta["modality"] = modality
    meta["units_declared_by"] = declared["source"] if declared else None
    if check_units:
        assumed = meta["units"] or (ASSUMED_UNITS.get(str(modality)) if req == "auto" else None)
        check_units_plausible(arr.numpy(), modality, assumed, str(path))
    meta["slice_positions"] = _positions_from_affine(affine, arr.shape[-1])
    meta["spacing"] = tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))
    meta["original_affine"] = np.asarray(img_meta.get("original_affine", affine), dtype=np.float64)
    meta["space"] = img_meta.get("space", SpaceKeys.RAS)
    meta["spatial_shape"] = np.asarray(arr.shape)
    meta["original_channel_dim"] = 0  # channel at dim 0 (MONAI convention): EnsureChannelFirst is a no-op
    return MetaTensor(arr[None].contiguous(), affine=torch.as_tensor(affine, dtype=torch.float64), meta=meta)


def load_volume(
    path: str | os.PathLike,
    series_uid: str | None = None,
    units: str = "auto",
    modality: str | None = None,
    allow_gaps: bool = False,
    allow_tilt: bool = False,
    progress: bool = False,
    check_units: bool = True,
) -> MetaTensor:
    """Load a DICOM series folder or a NIfTI file as a float32 ``MetaTensor`` [1, X, Y, Z] in real units.

    DICOM (a folder): slices are sorted by position along the slice normal (never InstanceNumber or file name),
    each slice is rescaled with its own RescaleSlope/RescaleIntercept, non-DICOM and non-image files are ignored,
    and ``vol[0, :, :, z].T`` equals the z-th slice's pixel array in the requested units (no flips). The affine is
    the DICOM LPS geometry converted to RAS as MONAI's readers do (``diag(-1,-1,1,1) @ affine_lps``), origin at the
    first sorted slice's ImagePositionPatient, z column = normal * mean step ``(last - first) / (n - 1)``. Non-uniform
    steps (e.g. overlapping PET beds, 3.19-3.29 mm) give a ``SliceSpacingWarning`` with the figures and keep the mean
    step (exact positions in ``meta["slice_positions"]``); missing slices raise unless ``allow_gaps``; gantry tilt
    (a sheared stack) raises unless ``allow_tilt``.

    Units (``units=``):
        - ``"auto"``: PET -> body-weight SUV (error naming the missing tag if it cannot be computed), CT -> HU,
          other modalities and NIfTI -> as stored.
        - ``"suv"``: PET body-weight SUV (decay corrected to SeriesDate/SeriesTime, see ``rat_monai.data.units``).
        - ``"bqml"``: PET activity concentration in Bq/ml (needs Units=BQML; no SUV tags needed).
        - ``"hu"``: CT Hounsfield units.
        - ``"stored"``: the modality-LUT output as stored, whatever it is.
        For NIfTI the file's own declaration is read: a JSON sidecar ``<name>.json`` with ``"modality"``,
        ``"units"`` (and ``"suv_factor"``), as rat-monai writes, or else the header ``descrip`` (``"PT BQML ..."``).
        A declared Bq/ml PET with an ``suv_factor`` is converted to SUV for ``"auto"``/``"suv"``; a request the
        declaration contradicts raises. Without a declaration ``"suv"``/``"bqml"``/``"hu"`` declare what the stored
        values are (and imply the modality), ``"auto"``/``"stored"`` leave ``meta["units"]`` None.
        NIfTI values are then checked against their declared units, or the assumed ones (SUV for PET, HU for CT)
        with ``"auto"``: see :func:`rat_monai.data.units.check_units_plausible`; ``check_units=False`` skips it.

    Args:
        path: DICOM series folder or ``.nii``/``.nii.gz`` file.
        series_uid: SeriesInstanceUID to load when the folder holds several series. Defaults to None.
        units: one of ``"auto"``, ``"suv"``, ``"bqml"``, ``"hu"``, ``"stored"``. Defaults to ``"auto"``.
        modality: ``"pet"``/``"PT"``, ``"ct"``/``"CT"``, ... For DICOM it picks the series among several and is
            checked against the Modality tag; for NIfTI it records what the file is. Defaults to None.
        allow_gaps: load DICOM series with missing slices (warning instead of error). Defaults to False.
        allow_tilt: load a gantry-tilted (sheared) DICOM series without resampling: the affine's z column is the mean
            ImagePositionPatient step, not orthogonal to the slices (warning instead of error). Defaults to False.
        progress: tqdm bar while reading DICOM pixel data. Defaults to False.
        check_units: refuse a NIfTI whose values contradict its declared or assumed units (e.g. "HU" without air,
            "SUV" with a body median in the thousands). Defaults to True.

    Returns:
        ``MetaTensor`` float32 [1, X, Y, Z] with RAS ``affine`` and meta keys ``modality`` ("PT", "CT", other DICOM
        string or None), ``units`` ("suv", "bqml", "hu", a stored string or None), ``suv_factor`` (SUV per Bq/ml for
        PET with SUV tags, else None), ``filename_or_obj``, ``series_instance_uid``, ``study_instance_uid``,
        ``dicom_files`` (z order; [] for NIfTI), ``slice_positions`` (mm along the normal), ``spacing`` (x, y, z mm),
        plus MONAI's ``original_affine``, ``spatial_shape``, ``space`` ("RAS").

    Raises:
        FileNotFoundError: ``path`` does not exist; empty folder; folder without DICOM images.
        ValueError: several series and no choice (lists UID, modality, description, slice count); SUV tags missing
            (names the tag); truncated/corrupt/undecodable file (names it); bad geometry; bad ``units``.

    Examples::

        >>> pet = load_volume("STS_001/FDG_PET")            # body-weight SUV, [1, 128, 128, 267]
        >>> ct = load_volume("CRLM-CT-1004/image", units="hu")
    """
    if units not in UNIT_CHOICES and not (isinstance(units, str) and units.lower() in UNIT_CHOICES):
        raise ValueError(f"units must be one of {UNIT_CHOICES}, got {units!r}.")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist; pass a DICOM series folder or a .nii/.nii.gz file (check the path and the "
            "current directory)."
        )
    want_mod = normalize_modality(modality)
    if path.is_file():
        if _is_nifti(path):
            return _load_nifti(path, units, want_mod, check_units)
        raise ValueError(
            f"{path} is a file but not NIfTI (.nii/.nii.gz); for DICOM pass the folder that holds the series, "
            "not a single slice."
        )
    series = read_dicom_series(
        path,
        series_uid=series_uid,
        modality=modality,
        allow_gaps=allow_gaps,
        allow_tilt=allow_tilt,
        progress=progress,
    )
    mod = series.info["modality"]
    req = resolve_units(units, mod)
    first = series.first
    vol = series.volume
    suv_factor = None
    if mod == "PT":
        stored_units = str(first.get("Units", "") or "").strip().upper()
        if stored_units == "GML" and req in ("auto", "suv", "stored"):  # stored as body-weight SUV already
            out_units = "suv"
        elif req in ("auto", "suv"):
            suv_factor = suv_body_weight_factor(first, path=series.files[0])
            out_units = "suv"
            vol = bqml_to_suv(vol, suv_factor)
        else:
            try:
                suv_factor = suv_body_weight_factor(first, path=series.files[0])
            except ValueError:
                suv_factor = None
            if req == "bqml" and stored_units != "BQML":  # (GML included: Bq/ml cannot be recovered from SUV)
                raise ValueError(
                    f"units='bqml' needs PET Units (0054,1001) BQML but DICOM file {series.files[0]} has "
                    f"{stored_units or 'no Units'}; load with units='stored'."
                )
            out_units = "bqml" if req == "bqml" or stored_units == "BQML" else (stored_units.lower() or None)
    elif mod == "CT":
        out_units = "hu" if req in ("auto", "hu") else str(first.get("RescaleType", "") or "").strip().lower() or "hu"
    else:
        out_units = str(first.get("RescaleType", "") or "").strip().lower() or None

    meta = _base_meta(path)
    meta.update(
        {
            "modality": mod,
            "units": out_units,
            "suv_factor": suv_factor,
            "series_instance_uid": series.info["series_instance_uid"],
            "study_instance_uid": series.info["study_instance_uid"],
            "series_description": series.info["description"],
            "dicom_files": list(series.files),
            "slice_positions": list(series.positions),
            "spacing": series.spacing,
            "original_affine": series.affine.copy(),
            "spatial_shape": np.asarray(vol.shape),
            "space": SpaceKeys.RAS,
            "original_channel_dim": 0,  # channel at dim 0 (MONAI convention): EnsureChannelFirst is a no-op
        }
    )
    return MetaTensor(
        torch.from_numpy(np.ascontiguousarray(vol))[None], affine=torch.as_tensor(series.affine), meta=meta
    )
