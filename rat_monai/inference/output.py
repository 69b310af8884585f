# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""The output folder of ``rat-monai infer``: what it holds, and that nothing partial is ever left where it should be.

- :func:`write_outputs` writes the restored scan as the source stores it (a DICOM series derived from the source
  files, a NIfTI with its units sidecar) and the PNG overview;

- :func:`check_output_paths` refuses, before any work, an output that is (or holds, or lies in) the input, a region
  cache inside the input folder, an existing output without ``overwrite`` and folders that cannot be written;
- :func:`atomic_output_dir` hands out a hidden temporary folder beside the output
  (``.<name>.rat-partial-<pid>-<random>``) and moves it into place only when the block finished without an error;
  on any error (or Ctrl-C / SIGTERM) the temporary folder is removed. An existing output (``overwrite``) is
  renamed away first and deleted after the new one is in place;
- :func:`clean_stale_partials` removes the temporary folders of earlier runs that were killed (their process is gone).
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.uid import generate_uid

from rat_monai.data.modality import normalize_modality
from rat_monai.data.units import suv_to_bqml

from rat_monai.data.writers import DEFAULT_SERIES_SUFFIX, write_dicom_series, write_nifti
from .overview import save_overview
from .safety import check_output_folder, check_writable

__all__ = ["atomic_output_dir", "check_output_paths", "clean_stale_partials", "write_outputs"]

logger = logging.getLogger(__name__)

_PARTIAL_TAG = ".rat-partial-"
_OLD_TAG = ".rat-replaced-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def _hidden_sibling(out: Path, tag: str) -> Path:
    """``<parent>/.<name><tag><pid>-<random>``: a temporary name beside ``out`` that says which process made it."""
    return out.parent / f".{out.name}{tag}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def check_output_paths(src: Path, out: Path, overwrite: bool, cache_dir: Path) -> None:
    """Refuse, before any work, inputs and outputs that would lose or mix data.

    Args:
        src: the input scan (DICOM folder or NIfTI file).
        out: the output folder.
        overwrite: an existing output may be replaced (only an earlier rat-monai output, see
            :func:`~rat_monai.inference.safety.check_output_folder`).
        cache_dir: the region cache folder.

    Raises:
        FileNotFoundError: the input does not exist.
        FileExistsError: the output exists and may not be replaced.
        ValueError: the output is, holds or lies in the input; the cache lies in the input folder; a folder cannot
            be written.
    """
    if not src.exists():
        raise FileNotFoundError(f"input not found: {src} (give a DICOM series folder or a .nii/.nii.gz file).")
    src_r, out_r, cache_r = src.resolve(), out.resolve(), cache_dir.resolve()
    if out_r == src_r or _is_within(src_r, out_r):
        raise ValueError(f"output {out} is (or contains) the input {src}; choose an output folder elsewhere.")
    if src_r.is_dir() and _is_within(out_r, src_r):
        raise ValueError(f"output {out} lies inside the input folder {src}; never write into the input folder.")
    if src_r.is_dir() and _is_within(cache_r, src_r):
        raise ValueError(f"region cache {cache_dir} lies inside the input folder {src}; pick another cache_dir.")
    check_output_folder(out, overwrite)
    check_writable(cache_dir, "region cache folder")
    parent = out_r.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise ValueError(f"cannot write the output {out}: {parent} is not writable; choose another output folder.")


def clean_stale_partials(out: Path) -> None:
    """Remove temporary folders of earlier runs into ``out`` that were killed (their process is gone)."""
    for tag in (_PARTIAL_TAG, _OLD_TAG):
        for p in out.parent.glob(f".{out.name}{tag}*"):
            try:
                pid = int(p.name[len(f".{out.name}{tag}") :].split("-")[0])
            except ValueError:
                continue
            if not _pid_alive(pid):
                logger.info("removing %s left by an interrupted run (process %d)", p, pid)
                shutil.rmtree(p, ignore_errors=True)


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    if out.exists():
        check_output_folder(out, overwrite)  # (again: it may have appeared or changed during the run)
        old = _hidden_sibling(out, _OLD_TAG)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


@contextmanager
def atomic_output_dir(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """A temporary folder to write the output into, renamed to ``out`` when the block ends without an error.

    Args:
        out: the final output folder (its parent is created).
        overwrite: replace an existing ``out`` (an earlier rat-monai output) at the end. Defaults to False.

    Yields:
        the temporary folder, beside ``out``.

    Raises:
        ValueError: the parent of ``out`` cannot be created or written.
        FileExistsError: ``out`` appeared during the run and may not be replaced.

    Example::

        with atomic_output_dir(Path("restored/pet")) as tmp:
            write_nifti(volume, affine, tmp / "restored.nii.gz")
    """
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create the output's parent folder {out.parent}: {e}") from e
    tmp = _hidden_sibling(out, _PARTIAL_TAG)
    try:
        tmp.mkdir()
    except PermissionError as e:
        raise ValueError(f"cannot write into {out.parent} (permission denied); choose another output.") from e
    try:
        yield tmp
        _move_into_place(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_outputs(
    folder: Path,
    out: Path,
    fmt: str,
    meta: Mapping[str, Any],
    real: np.ndarray,
    restored: np.ndarray,
    regions: np.ndarray | None,
    affine: np.ndarray,
    modality: str,
    derivation: str,
    overview_slices: int = 3,
    progress: bool = True,
) -> tuple[dict[str, Any], str | None, Any]:
    """Write a restored scan into ``folder`` (e.g. from :func:`atomic_output_dir`), as it will be named in ``out``.

    PET in SUV goes back to Bq/ml, as the source stores it; everything else stays in the units it was loaded in.

    Args:
        folder: where to write now.
        out: the final output folder (the paths in the returned ``files``).
        fmt: ``"dicom"``, ``"nifti"`` or ``"both"``; DICOM is written only for a DICOM input.
        meta: ``load_volume`` meta of the input (``units``, ``suv_factor``, ``dicom_files``).
        real: the input ``[X, Y, Z]`` in real units (for the overview).
        restored: the restored scan ``[X, Y, Z]`` in the input's units.
        regions: region maps ``[Z, X, Y]`` or None.
        affine: the input's affine (for the NIfTI).
        modality: ``"pet"`` or ``"ct"``.
        derivation: DICOM DerivationDescription.
        overview_slices: rows of the PNG overview (0: none). Defaults to 3.
        progress: tqdm bar while writing DICOM. Defaults to True.

    Returns:
        ``(files, series_uid, units_out)``: the written files, the new SeriesInstanceUID (None without DICOM) and
        the units of the written values.
    """
    units_in, suv_factor = meta.get("units"), meta.get("suv_factor")
    units_out, to_stored = units_in, restored
    if units_in == "suv" and suv_factor:
        units_out, to_stored = "bqml", suv_to_bqml(restored, suv_factor)
    files: dict[str, Any] = {}
    series_uid = None
    dicom_files = list(meta.get("dicom_files") or [])
    if dicom_files and fmt in ("dicom", "both"):
        series_uid = generate_uid()
        written = write_dicom_series(
            to_stored,
            dicom_files,
            folder / "dicom",
            series_description_suffix=DEFAULT_SERIES_SUFFIX,
            derivation_description=derivation,
            series_instance_uid=series_uid,
            progress=progress,
        )
        files["dicom"] = str(out / "dicom")
        files["dicom_slices"] = len(written)
    if fmt in ("nifti", "both"):
        write_nifti(
            to_stored,
            affine,
            folder / "restored.nii.gz",
            modality=normalize_modality(modality),
            units=units_out or ("hu" if modality == "ct" else "suv"),  # None: the assumed units
            description="rat-monai restored",
            suv_factor=suv_factor if units_out == "bqml" else None,
        )
        files["nifti"] = str(out / "restored.nii.gz")
        files["nifti_units"] = str(out / "restored.json")
    if overview_slices > 0:
        save_overview(
            folder / "overview.png",
            real,
            restored,
            None if regions is None else np.moveaxis(regions, 0, -1),
            modality=modality,
            num_slices=overview_slices,
            units=str(units_in),
        )
        files["overview"] = str(out / "overview.png")
    return files, series_uid, units_out
