# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Decathlon-style datalists of paired scans (``rat-monai datalist FOLDER``).

Format (read with MONAI's own ``monai.data.load_decathlon_datalist``)::

    {"training": [{"image": "nifti/a_low.nii.gz", "label": "nifti/a_full.nii.gz", ...}, ...],
     "validation": [...], "test": [...]}

Paths are relative to the datalist's folder (MONAI joins them with ``base_dir``).

Naming convention recognised by :func:`build_datalist` (what :mod:`rat_monai.simulation` writes):

- NIfTI: ``<subject>_low.nii[.gz]`` (low quality -> "image") beside ``<subject>_full.nii[.gz]`` (-> "label"),
  in any subfolder. A sidecar ``<subject>_low.json`` may give "modality" / "units", copied into the entry.
- DICOM: folders ``<subject>/low/`` and ``<subject>/full/`` holding the two series (-> "image_dicom",
  "label_dicom"), in any subfolder.

The same ``<subject>`` name in both forms is one subject: "image"/"label" point to the NIfTI files and
"image_dicom"/"label_dicom" to the folders; with only DICOM, "image"/"label" point to the DICOM folders.

Several folders (e.g. a phantom set and sets made from real scans, ``rat-monai datalist A B --out merged.json``)
merge into one datalist; a subject name found in two folders is prefixed with its folder's name. The split is by
PATIENT (:func:`split_by_patient`): each entry's "patient" comes from the sidecar, else
the PatientID of the full-dose DICOM series, else the subject name; all scans of a patient land in one list.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from monai.data import load_decathlon_datalist

__all__ = ["build_datalist", "load_datalist", "split_counts", "split_by_patient", "add_arguments", "run"]

logger = logging.getLogger(__name__)

_NII = re.compile(r"^(?P<subject>.+)_(?P<part>low|full)\.nii(\.gz)?$")


def load_datalist(path: str | os.PathLike, key: str = "training") -> list[dict]:
    """Read the ``key`` list of a Decathlon-style datalist with ``monai.data.load_decathlon_datalist``.

    Paths in "image" and "label" are joined with the datalist's folder; other entries that name an existing path
    relative to it (e.g. "image_dicom") are joined too, as MONAI does.

    Args:
        path: the datalist JSON file.
        key: "training", "validation", "test" or another list key. Defaults to "training".
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"datalist {path} does not exist; build one with 'rat-monai datalist FOLDER' or 'rat-monai simulate'."
        )
    try:
        with open(path) as f:
            content = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"datalist {path} is not valid JSON ({e}); rebuild it with 'rat-monai datalist'.") from e
    if key not in content:
        lists = [k for k, v in content.items() if isinstance(v, list)]
        raise ValueError(f"datalist {path} has no {key!r} list; it has {lists}.")
    return load_decathlon_datalist(str(path), is_segmentation=True, data_list_key=key, base_dir=str(path.parent))


def _find_pairs(folder: Path) -> dict[str, dict[str, Any]]:
    subjects: dict[str, dict[str, Any]] = {}

    def add(subject: str, kind: str, low: Path, full: Path) -> None:
        rec = subjects.setdefault(subject, {})
        if kind in rec:
            raise ValueError(
                f"subject {subject!r} appears twice as {kind}: {rec[kind][0]} and {low}; rename one of them."
            )
        rec[kind] = (low, full)

    unpaired = []
    for p in sorted(folder.rglob("*.nii*")):
        m = _NII.match(p.name)
        if not m or m["part"] != "low" or not p.is_file():
            continue
        partners = (p.parent / f"{m['subject']}_full.nii.gz", p.parent / f"{m['subject']}_full.nii")
        full = [q for q in partners if q.is_file()]
        if not full:
            unpaired.append(str(p))
            continue
        add(m["subject"], "nifti", p, full[0])
    for d in sorted(folder.rglob("low")):
        if not d.is_dir() or not any(f.is_file() for f in d.iterdir()):
            continue
        full_d = d.parent / "full"
        if not full_d.is_dir() or not any(f.is_file() for f in full_d.iterdir()):
            unpaired.append(str(d))
            continue
        add(d.parent.name, "dicom", d, full_d)
    if unpaired:
        logger.warning("low-dose scans without a full-dose partner, skipped: %s", ", ".join(unpaired))
    return subjects


def _patient(rec: dict[str, Any], meta: dict[str, Any], name: str) -> str:
    if meta.get("patient"):
        return str(meta["patient"])
    if "dicom" in rec:
        for f in sorted(rec["dicom"][1].iterdir()):
            try:
                pid = str(pydicom.dcmread(f, stop_before_pixels=True).get("PatientID", "") or "")
            except Exception:  # noqa: BLE001 - not DICOM: try the next file
                continue
            if pid:
                return pid
    return name


def split_counts(n: int, split: Sequence[float] = (0.7, 0.15, 0.15)) -> tuple[int, int, int]:
    """Numbers of (training, validation, test) items for ``n`` items and ``split`` fractions.

    Validation and test get ``n * fraction`` items rounded half up, at least one each when their fraction is
    positive and ``n`` allows (training keeps at least one); training gets the rest.

    Args:
        n: number of items (patients).
        split: (training, validation, test) fractions, normalised by their sum. Defaults to (0.7, 0.15, 0.15).

    Returns:
        ``(n_training, n_validation, n_test)``, summing to ``n``.

    Raises:
        ValueError: ``split`` is not three non-negative fractions with a positive sum, or ``n`` < 1.
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

    Returns:
        the (training, validation, test) entry lists.
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


def build_datalist(
    folder: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike | None = None,
    split: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> dict:
    """Pair the low / full scans found under ``folder`` (one or several; see the module docstring) into a datalist.

    Subjects are sorted by name, their patients shuffled with ``seed`` and split by patient with
    :func:`split_by_patient` (validation and test get at least one patient each when
    there are enough).

    Args:
        folder: folder to search (recursively), or a list of folders to merge.
        out: write the datalist JSON here (paths relative to its folder). Defaults to None (not written; paths
            relative to the (first) folder).
        split: (training, validation, test) fractions. Defaults to (0.7, 0.15, 0.15).
        seed: shuffle seed. Defaults to 0.

    Returns:
        the datalist dict.
    """
    folders = [Path(folder)] if isinstance(folder, (str, os.PathLike)) else [Path(f) for f in folder]
    if not folders:
        raise ValueError("give at least one folder of paired scans.")
    found: list[tuple[Path, dict[str, dict[str, Any]]]] = []
    for f in folders:
        if not f.is_dir():
            raise FileNotFoundError(f"{f} is not a folder; give the folder that holds the paired scans.")
        subjects = _find_pairs(f)
        if not subjects:
            raise ValueError(
                f"no paired scans found under {f}: expected <subject>_low.nii.gz + <subject>_full.nii.gz files or "
                "<subject>/low + <subject>/full DICOM folders."
            )
        found.append((f, subjects))
    base = Path(out).resolve().parent if out is not None else folders[0].resolve()
    counts: dict[str, int] = {}
    for _, subjects in found:
        for name in subjects:
            counts[name] = counts.get(name, 0) + 1

    def rel(p: Path) -> str:
        return Path(os.path.relpath(p.resolve(), base)).as_posix()

    entries = []
    for f, subjects in found:
        for name in sorted(subjects):
            rec = subjects[name]
            entry: dict[str, Any] = {}
            meta: dict[str, Any] = {}
            if "nifti" in rec:
                low, full = rec["nifti"]
                entry.update(image=rel(low), label=rel(full))
                side = low.with_name(_NII.match(low.name)["subject"] + "_low.json")  # type: ignore[index]
                if side.is_file():
                    try:
                        meta = json.loads(side.read_text())
                        entry.update({k: meta[k] for k in ("modality", "units") if k in meta})
                    except (json.JSONDecodeError, OSError) as e:
                        logger.warning("ignoring unreadable sidecar %s (%s)", side, e)
            if "dicom" in rec:
                low, full = rec["dicom"]
                entry.update(image_dicom=rel(low), label_dicom=rel(full))
                entry.setdefault("image", entry["image_dicom"])
                entry.setdefault("label", entry["label_dicom"])
            entry["subject"] = name if counts[name] == 1 else f"{f.resolve().name}-{name}"
            entry["patient"] = _patient(rec, meta, name)
            entries.append(entry)
    mods = {e["modality"] for e in entries if "modality" in e}
    if len(mods) > 1:
        raise ValueError(f"the folders {[str(f) for f in folders]} mix modalities {sorted(mods)}; a datalist trains "
                         "one model: merge PET folders and CT folders separately.")
    train, val, test = split_by_patient(entries, split, seed)
    datalist = {
        "name": "paired scans from " + ", ".join(f.name for f in folders),
        "training": train,
        "validation": val,
        "test": test,
    }
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(datalist, indent=2) + "\n")
    return datalist


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``rat-monai datalist``."""
    parser.add_argument(
        "folder", nargs="+",
        help="folder(s) with <subject>_low/_full NIfTI files or <subject>/low|full DICOM folders; several are merged "
             "into one datalist split by patient",
    )
    parser.add_argument("--out", default=None,
                        help="datalist file to write (default FOLDER/datalist.json; required with several folders)")
    parser.add_argument("--split", type=float, nargs=3, default=[0.7, 0.15, 0.15], metavar=("TRAIN", "VAL", "TEST"),
                        help="split fractions (default 0.7 0.15 0.15)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing datalist file")


def run(args: argparse.Namespace) -> int:
    """Run ``rat-monai datalist``; prints the written path and the split sizes."""
    folders = [args.folder] if isinstance(args.folder, str) else list(args.folder)
    if not args.out and len(folders) > 1:
        raise ValueError(f"merging {len(folders)} folders needs --out FILE (where to write the merged datalist).")
    out = Path(args.out) if args.out else Path(folders[0]) / "datalist.json"
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it or --out to write elsewhere.")
    dl = build_datalist(folders, out=out, split=args.split, seed=args.seed)
    print(f"{out}: {len(dl['training'])} training, {len(dl['validation'])} validation, {len(dl['test'])} test")
    return 0
