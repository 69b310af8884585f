# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Decathlon-style datalists of paired scans (``rat-monai datalist FOLDER``).

Format (read with MONAI's own ``monai.data.load_decathlon_datalist``)::

    {"training": [{"image": "nifti/a_low.nii.gz", "label": "nifti/a_full.nii.gz", ...}, ...],
     "validation": [...], "test": [...]}

Paths are relative to the datalist's folder (MONAI joins them with ``base_dir``).

Naming convention recognised by :func:`build_datalist` (what :mod:`rat_monai.data.simulate` writes):

- NIfTI: ``<subject>_low.nii[.gz]`` (low quality -> "image") beside ``<subject>_full.nii[.gz]`` (-> "label"),
  in any subfolder. A sidecar ``<subject>_low.json`` may give "modality" / "units", copied into the entry.
- DICOM: folders ``<subject>/low/`` and ``<subject>/full/`` holding the two series (-> "image_dicom",
  "label_dicom"), in any subfolder.

The same ``<subject>`` name in both forms is one subject: "image"/"label" point to the NIfTI files and
"image_dicom"/"label_dicom" to the folders; with only DICOM, "image"/"label" point to the DICOM folders.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["build_datalist", "load_datalist", "add_arguments", "run"]

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
    from monai.data import load_decathlon_datalist

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


def build_datalist(
    folder: str | os.PathLike,
    out: str | os.PathLike | None = None,
    split: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> dict:
    """Pair the low / full scans found under ``folder`` (see the module docstring) into a split datalist.

    Subjects are sorted by name, shuffled with ``seed`` and split with
    :func:`rat_monai.data.simulate.split_counts` (validation and test get at least one subject each when there are
    enough).

    Args:
        folder: folder to search (recursively).
        out: write the datalist JSON here (paths relative to its folder). Defaults to None (not written; paths
            relative to ``folder``).
        split: (training, validation, test) fractions. Defaults to (0.7, 0.15, 0.15).
        seed: shuffle seed. Defaults to 0.

    Returns:
        the datalist dict.
    """
    from rat_monai.data.simulate import split_counts

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; give the folder that holds the paired scans.")
    subjects = _find_pairs(folder)
    if not subjects:
        raise ValueError(
            f"no paired scans found under {folder}: expected <subject>_low.nii.gz + <subject>_full.nii.gz files or "
            "<subject>/low + <subject>/full DICOM folders."
        )
    base = Path(out).resolve().parent if out is not None else folder.resolve()

    def rel(p: Path) -> str:
        return Path(os.path.relpath(p.resolve(), base)).as_posix()

    entries = []
    for name in sorted(subjects):
        rec = subjects[name]
        entry: dict[str, Any] = {}
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
        entry["subject"] = name
        entries.append(entry)
    order = np.random.default_rng(seed).permutation(len(entries))
    entries = [entries[i] for i in order]
    n_train, n_val, _ = split_counts(len(entries), split)
    datalist = {
        "name": f"paired scans from {folder.name}",
        "training": entries[:n_train],
        "validation": entries[n_train : n_train + n_val],
        "test": entries[n_train + n_val :],
    }
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(datalist, indent=2) + "\n")
    return datalist


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``rat-monai datalist``."""
    parser.add_argument(
        "folder", help="folder with <subject>_low/_full NIfTI files or <subject>/low|full DICOM folders"
    )
    parser.add_argument("--out", default=None, help="datalist file to write (default FOLDER/datalist.json)")
    parser.add_argument("--split", type=float, nargs=3, default=[0.7, 0.15, 0.15], metavar=("TRAIN", "VAL", "TEST"),
                        help="split fractions (default 0.7 0.15 0.15)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing datalist file")


def run(args: argparse.Namespace) -> int:
    """Run ``rat-monai datalist``; prints the written path and the split sizes."""
    out = Path(args.out) if args.out else Path(args.folder) / "datalist.json"
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it or --out to write elsewhere.")
    dl = build_datalist(args.folder, out=out, split=args.split, seed=args.seed)
    print(f"{out}: {len(dl['training'])} training, {len(dl['validation'])} validation, {len(dl['test'])} test")
    return 0
