# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""What every simulated data set shares: the output folder, the NIfTI pair + sidecars, the patient-level split,
``datalist.json`` / ``simulation.json``, the figures (PSNR) and the preview PNG.

Used by the phantom simulator (:mod:`rat_monai.data.simulate`), the real-derived one
(:mod:`rat_monai.data.simulate_real`) and ``rat-monai datalist`` (:mod:`rat_monai.data.datalist`), so that all of
them write the same layout and split the same way (by patient: never slices or scans of one patient in two lists).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rat_monai.data.dicom_export import write_nifti

__all__ = [
    "split_counts",
    "split_by_patient",
    "masked_psnr",
    "save_preview",
    "staged_output",
    "write_nifti_pair",
    "write_dataset_files",
]


def masked_psnr(
    test: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None, data_range: float | None = None
) -> float:
    """PSNR (dB) of ``test`` against ``ref`` over ``mask`` with ``data_range`` (default: ref max - min over mask)."""
    t = np.asarray(test, np.float64)
    r = np.asarray(ref, np.float64)
    if mask is not None:
        t, r = t[mask], r[mask]
    if data_range is None:
        data_range = float(r.max() - r.min())
    mse = float(np.mean((t - r) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def split_counts(n: int, split: Sequence[float] = (0.7, 0.15, 0.15)) -> tuple[int, int, int]:
    """Numbers of (training, validation, test) items for ``n`` items and ``split`` fractions.

    Validation and test get ``n * fraction`` items rounded half up, at least one each when their fraction is
    positive and ``n`` allows (training keeps at least one); training gets the rest.
    """
    if len(split) != 3 or min(split) < 0 or sum(split) <= 0:
        raise ValueError(f"split must be three non-negative fractions (training, validation, test), got {split}.")
    if n < 1:
        raise ValueError(f"need at least one subject, got {n}.")
    tot = float(sum(split))
    fr = [s / tot for s in split]
    n_val = int(math.floor(n * fr[1] + 0.5 + 1e-9))  # round half up
    n_test = int(math.floor(n * fr[2] + 0.5 + 1e-9))
    if fr[1] > 0 and n_val == 0 and n >= 2:
        n_val = 1
    if fr[2] > 0 and n_test == 0 and n >= 3:
        n_test = 1
    while n_val + n_test > n - 1 and (n_val or n_test):
        if n_test >= n_val and n_test:
            n_test -= 1
        else:
            n_val -= 1
    if fr[0] == 0 and n_val + n_test < n:  # no training wanted: give the rest to validation/test
        n_test = n - n_val
    return n - n_val - n_test, n_val, n_test


def save_preview(low: np.ndarray, full: np.ndarray, path: str | os.PathLike, modality: str, title: str = "") -> Path:
    """PNG panel LQ | HQ | LQ - HQ of a 2D slice ``[X, Y]`` (shown with rows = Y)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    low, full = np.asarray(low).T, np.asarray(full).T
    if modality == "pet":
        kw = {"cmap": "gray_r", "vmin": 0.0, "vmax": max(float(np.percentile(full, 99.5)), 1e-6)}
        dlim = kw["vmax"] / 2
        unit = "SUV"
    else:
        kw = {"cmap": "gray", "vmin": -160.0, "vmax": 240.0}
        dlim = 100.0
        unit = "HU"
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))
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
    plt.close(fig)
    return path


def split_by_patient(
    entries: Sequence[dict[str, Any]], split: Sequence[float] = (0.7, 0.15, 0.15), seed: int | None = None
) -> tuple[list[dict], list[dict], list[dict]]:
    """Split datalist ``entries`` into (training, validation, test) by PATIENT.

    Entries are grouped by their ``"patient"`` (falling back to ``"subject"``), the patients are counted with
    :func:`split_counts` and every entry of a patient goes to its patient's list: no patient is in two lists.

    Args:
        entries: datalist entries.
        split: (training, validation, test) fractions. Defaults to (0.7, 0.15, 0.15).
        seed: shuffle the patients (in order of first appearance) with ``numpy.random.default_rng(seed)``. None
            keeps that order. Defaults to None.
    """
    groups: dict[str, list[dict]] = {}
    for e in entries:
        groups.setdefault(str(e.get("patient", e.get("subject", ""))), []).append(e)
    patients = list(groups)
    if seed is not None:
        patients = [patients[i] for i in np.random.default_rng(seed).permutation(len(patients))]
    n_train, n_val, _ = split_counts(len(patients), split)
    parts = (patients[:n_train], patients[n_train : n_train + n_val], patients[n_train + n_val :])
    return tuple([e for p in part for e in groups[p]] for part in parts)  # type: ignore[return-value]


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
    out: Path, sid: str, vols: dict[str, np.ndarray], affine: np.ndarray, description: dict[str, str],
    sidecars: dict[str, dict[str, Any]],
) -> dict[str, str]:
    """Write ``nifti/<sid>_low.nii.gz`` ("image") and ``nifti/<sid>_full.nii.gz`` ("label") with JSON sidecars.

    Returns:
        the datalist fields ``{"image": ..., "label": ...}`` (relative to ``out``).
    """
    entry = {}
    for key, part in (("image", "low"), ("label", "full")):
        fn = out / "nifti" / f"{sid}_{part}.nii.gz"
        write_nifti(vols[part], affine, fn, description=description[part])
        (out / "nifti" / f"{sid}_{part}.json").write_text(json.dumps(sidecars[part], indent=2) + "\n")
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
