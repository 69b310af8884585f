# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Finding DICOM image series in a folder: which files are DICOM images (with or without the file preamble), how they
group into series, and the errors that say which file is broken or which series to pick.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from .modality import normalize_modality

__all__ = ["format_series_table", "list_dicom_series", "select_dicom_series"]

# Values larger than this are read from the file only when accessed (pixel data of the chosen series only).
_DEFER_SIZE = "8 KB"


def _is_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _read_header(path: Path) -> Dataset | None:
    """Dataset of ``path`` with large values (pixel data) deferred: parsed once, pixels read only when needed.

    ``None`` when the file is not DICOM; ValueError when it is broken DICOM.
    """
    try:
        ds = pydicom.dcmread(path, defer_size=_DEFER_SIZE)
    except InvalidDicomError:
        return _read_headerless(path)
    except Exception as e:  # noqa: BLE001 - pydicom raises many types for broken files
        if _is_dicom_preamble(path):
            raise _corrupt_error(path, f"{type(e).__name__}: {e}") from e
        return None
    # pydicom stops silently at EOF: an image object whose header lacks Rows/Columns was cut short.
    sop = ds.file_meta.get("MediaStorageSOPClassUID", None) if hasattr(ds, "file_meta") else None
    if sop is not None and "Image Storage" in getattr(sop, "name", "") and ("Rows" not in ds or "Columns" not in ds):
        raise _corrupt_error(path, f"a {sop.name} object whose header ends before Rows/Columns")
    return ds


def _read_headerless(path: Path) -> Dataset | None:
    """A DICOM data set stored without preamble/file meta (older exports): accepted only if it is clearly an image
    slice (Rows, Columns, SeriesInstanceUID, ImagePositionPatient); the transfer syntax is set from its encoding."""
    try:
        with warnings.catch_warnings():  # forced reads of non-DICOM files warn about the VR they "found"
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, defer_size=_DEFER_SIZE)
        if not all(k in ds for k in ("Rows", "Columns", "SeriesInstanceUID", "ImagePositionPatient")):
            return None
        implicit, little = ds.original_encoding
    except Exception:  # noqa: BLE001 - any parse failure means "not DICOM"
        return None
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        )
    return ds


def _corrupt_error(path: Path | str, why: str) -> ValueError:
    return ValueError(
        f"DICOM file {path} could not be read ({why}); the file is truncated or corrupt. Re-export it from the "
        "source, or remove it from the folder if the series is complete without it."
    )


def _scan_folder(folder: Path) -> tuple[list[tuple[Path, Dataset]], list[Path], list[Path]]:
    """(image instances with headers, ignored files, subfolders) of the files directly in ``folder``."""
    images: list[tuple[Path, Dataset]] = []
    ignored: list[Path] = []
    subdirs: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            subdirs.append(entry)
            continue
        if not entry.is_file():
            continue
        ds = _read_header(entry)
        # images only: DICOMDIR, RTSTRUCT, SR, presentation states etc. have no Rows/Columns and are ignored.
        if ds is None or "Rows" not in ds or "Columns" not in ds:
            ignored.append(entry)
            continue
        images.append((entry, ds))
    return images, ignored, subdirs


def _check_folder(folder: str | os.PathLike) -> Path:
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(
            f"DICOM folder {folder} does not exist; pass the folder that holds the series' .dcm files."
        )
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder; pass the folder that holds the series' .dcm files.")
    return folder


def _no_dicom_error(folder: Path, ignored: list[Path], subdirs: list[Path]) -> FileNotFoundError:
    if not ignored and not subdirs:
        return FileNotFoundError(f"DICOM folder {folder} is empty; pass the folder that holds the series' .dcm files.")
    shown = ", ".join(p.name for p in ignored[:5]) + (" ..." if len(ignored) > 5 else "")
    msg = f"no DICOM image files in {folder}: {len(ignored)} file(s) checked and none is a DICOM image"
    msg += f" ({shown})" if ignored else ""
    if subdirs:
        sub = ", ".join(p.name for p in subdirs[:5]) + (" ..." if len(subdirs) > 5 else "")
        msg += f"; subfolders are not searched ({sub}): pass the subfolder that holds the series"
    else:
        msg += "; pass the folder that holds the series' .dcm files"
    return FileNotFoundError(msg + ".")


def list_dicom_series(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """List the DICOM image series stored directly in ``folder`` (subfolders are not searched).

    Non-DICOM files and non-image DICOM objects (DICOMDIR, RTSTRUCT, SR, ...) are ignored.

    Args:
        folder: folder to scan.

    Returns:
        one dict per series, sorted by (modality, series number, uid), with keys ``"uid"`` (SeriesInstanceUID),
        ``"modality"``, ``"description"`` (SeriesDescription or ""), ``"series_number"`` (int or None),
        ``"study_instance_uid"``, ``"num_slices"`` and ``"files"`` (list[str], file-name order, not z order).
        Empty when the folder holds no DICOM image.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        NotADirectoryError: ``folder`` is a file.
        ValueError: a file with a DICOM preamble is truncated or corrupt (names the file).
    """
    folder = _check_folder(folder)
    images, _, _ = _scan_folder(folder)
    return [{k: v for k, v in s.items() if not k.startswith("_")} for s in _group_series(images)]


def _group_series(images: list[tuple[Path, Dataset]]) -> list[dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for path, ds in images:
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        g = groups.get(uid)
        if g is None:
            number = ds.get("SeriesNumber", None)
            try:
                number = int(number) if number not in (None, "") else None
            except (TypeError, ValueError):
                number = None
            g = groups[uid] = {
                "uid": uid or None,
                "modality": str(ds.get("Modality", "") or "") or None,
                "description": str(ds.get("SeriesDescription", "") or ""),
                "series_number": number,
                "study_instance_uid": str(ds.get("StudyInstanceUID", "") or "") or None,
                "num_slices": 0,
                "files": [],
                "_headers": [],
            }
        g["files"].append(str(path))
        g["_headers"].append(ds)
        g["num_slices"] += 1

    def order(g: dict[str, Any]) -> tuple[str, int, str]:
        return (g["modality"] or "", g["series_number"] if g["series_number"] is not None else -1, g["uid"] or "")

    return sorted(groups.values(), key=order)


def format_series_table(series: Sequence[dict[str, Any]]) -> str:
    """One line per series: UID, modality, description, slice count (for error messages)."""
    lines = []
    for s in series:
        lines.append(
            f"  - {s['uid']}  modality={s['modality']}  description={s['description']!r}  "
            f"series_number={s['series_number']}  slices={s['num_slices']}"
        )
    return "\n".join(lines)


def select_dicom_series(
    folder: str | os.PathLike, series_uid: str | None = None, modality: str | None = None
) -> dict[str, Any]:
    """Pick one series of ``folder``: by ``series_uid``, else the only one (of ``modality`` if given).

    Args:
        folder: folder holding the DICOM files.
        series_uid: SeriesInstanceUID to load. Defaults to None (the folder must hold exactly one series, or exactly
            one of ``modality``).
        modality: "pet"/"PT", "ct"/"CT", ... used to narrow the choice and checked against the chosen series.
            Defaults to None.

    Returns:
        the series dict (as in :func:`list_dicom_series`, plus the private ``"_headers"`` list).

    Raises:
        FileNotFoundError: the folder does not exist, is empty, or holds no DICOM image.
        ValueError: several series and no (matching) choice -- the message lists UID, modality, description and
            slice count of each; or ``series_uid`` is not in the folder; or the modality does not match.
    """
    folder = _check_folder(folder)
    images, ignored, subdirs = _scan_folder(folder)
    if not images:
        raise _no_dicom_error(folder, ignored, subdirs)
    series = _group_series(images)
    want_mod = normalize_modality(modality)
    if series_uid is not None:
        chosen = [s for s in series if s["uid"] == str(series_uid)]
        if not chosen:
            raise ValueError(
                f"series_uid={series_uid!r} is not in DICOM folder {folder}; the series found are:\n"
                f"{format_series_table(series)}\nPass one of these UIDs as series_uid=."
            )
        s = chosen[0]
        if want_mod is not None and s["modality"] != want_mod:
            raise ValueError(
                f"series {series_uid} in {folder} has modality {s['modality']}, but modality={modality!r} was "
                "requested; fix the series_uid or the modality argument."
            )
        return s
    candidates = series if want_mod is None else [s for s in series if s["modality"] == want_mod]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ValueError(
            f"DICOM folder {folder} holds no {want_mod} series (modality={modality!r}); the series found are:\n"
            f"{format_series_table(series)}\nPass the matching modality, or series_uid= one of these UIDs."
        )
    what = "series" if want_mod is None else f"{want_mod} series"
    raise ValueError(
        f"DICOM folder {folder} holds {len(candidates)} {what}; choose one with series_uid=:\n"
        f"{format_series_table(candidates)}"
    )
