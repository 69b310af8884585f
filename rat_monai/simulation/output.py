# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""What every simulated data set shares: the staged output folder, the NIfTI pair + sidecars, ``datalist.json`` /
``simulation.json`` and the preview PNG.

Used by the phantom simulator (:mod:`rat_monai.simulation.dataset`) and the one from real scans
(:mod:`rat_monai.simulation.from_scans`), so that both write the same layout; the split is by patient
(:func:`rat_monai.data.datalist.split_by_patient`, as ``rat-monai datalist`` splits): never slices or scans of one
patient in two lists.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from rat_monai.data.datalist import split_by_patient
from rat_monai.data.writers import write_nifti
from rat_monai.visualize import display_window

__all__ = ["save_preview", "staged_output", "write_nifti_pair", "write_dataset_files"]


def save_preview(low: np.ndarray, full: np.ndarray, path: str | os.PathLike, modality: str, title: str = "") -> Path:
    """PNG panel LQ | HQ | LQ - HQ of a 2D slice ``[X, Y]`` (shown with rows = Y).

    LQ and HQ in the display window of :func:`rat_monai.visualize.display_window` (taken from HQ), the difference in
    +-100 HU (CT) or +- half the PET window. Drawn on a :class:`matplotlib.figure.Figure` of its own (no pyplot state,
    no change of the caller's backend).
    """
    low, full = np.asarray(low).T, np.asarray(full).T
    lo, hi, cmap = display_window(full, modality)
    kw = {"cmap": cmap, "vmin": lo, "vmax": hi}
    dlim, unit = (hi / 2, "SUV") if modality == "pet" else (100.0, "HU")
    fig = Figure(figsize=(13, 4.6))
    axes = fig.subplots(1, 3)
    for ax, img, name in ((axes[0], low, "low dose (LQ)"), (axes[1], full, "full dose (HQ)")):
        im = ax.imshow(img, **kw)
        ax.set_title(name)
        fig.colorbar(im, ax=ax, fraction=0.046, label=unit)
    im = axes[2].imshow(low - full, cmap="seismic", vmin=-dlim, vmax=dlim)
    axes[2].set_title("LQ - HQ")
    fig.colorbar(im, ax=axes[2], fraction=0.046, label=unit)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=80)
    return path


@contextlib.contextmanager
def staged_output(out_dir: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Write a data set into a temporary folder beside ``out_dir`` and move it into place only when all went well.

    On any error the temporary folder is removed: nothing half-written is left at ``out_dir``.

    Raises:
        FileExistsError: ``out_dir`` exists (and is not an empty folder) and ``overwrite`` is False.
    """
    out = Path(out_dir)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())) and not overwrite:
        raise FileExistsError(
            f"output folder {out} already exists; choose a new --out folder (or pass --overwrite to replace it)."
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    os.replace(tmp, out)


def write_nifti_pair(
    out: Path, sid: str, vols: dict[str, np.ndarray], affine: np.ndarray, modality: str, units: str,
    description: dict[str, str], sidecars: dict[str, dict[str, Any]],
) -> dict[str, str]:
    """Write ``nifti/<sid>_low.nii.gz`` ("image") and ``nifti/<sid>_full.nii.gz`` ("label") with JSON sidecars.

    Args:
        out: the data set folder.
        sid: subject name.
        vols: ``{"low": [X, Y, Z], "full": [X, Y, Z]}`` in ``units``.
        affine: RAS affine of both.
        modality: "PT" or "CT".
        units: "suv" or "hu" (header ``descrip`` and sidecar, see :func:`rat_monai.data.writers.write_nifti`).
        description: per part ("low", "full"), the header text after the units.
        sidecars: per part, the sidecar entries besides ``modality`` and ``units``.

    Returns:
        the datalist fields ``{"image": ..., "label": ...}`` (relative to ``out``).
    """
    (out / "nifti").mkdir(parents=True, exist_ok=True)
    entry = {}
    for key, part in (("image", "low"), ("label", "full")):
        fn = out / "nifti" / f"{sid}_{part}.nii.gz"
        write_nifti(vols[part], affine, fn, modality=modality, units=units, description=description[part],
                    sidecar=sidecars[part])
        entry[key] = f"nifti/{fn.name}"
    return entry


def write_dataset_files(
    out: Path, entries: list[dict], header: dict[str, Any], summary: dict[str, Any],
    split: Sequence[float] = (0.7, 0.15, 0.15), seed: int | None = None,
) -> Path:
    """Write ``datalist.json`` (``header`` + the patient-level split of ``entries``) and ``simulation.json``.

    Returns:
        the path of ``datalist.json``.
    """
    train, val, test = split_by_patient(entries, split, seed)
    path = out / "datalist.json"
    path.write_text(json.dumps({**header, "training": train, "validation": val, "test": test}, indent=2) + "\n")
    (out / "simulation.json").write_text(json.dumps(summary, indent=2) + "\n")
    return path
