# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Checks that stop ``rat-monai infer`` before a silently wrong result or a lost folder.

- the input's modality must be the one the bundle was trained on (``network_data_format`` in
  ``configs/metadata.json``);
- a PET input must be an F-18 PET acquisition like the PET bundle's training data: another radionuclide (by code,
  name or half-life) or a SPECT/NM camera's image stored as PET is refused;
- the values must be in the units the network expects (SUV for PET, HU for CT; ``load_volume`` checks NIfTI values);
- ``--overwrite`` replaces only a folder holding an earlier rat-monai output, never the current folder, and the
  output and region cache folders must be writable before any work starts.

Each refusal names the check and the ``--allow CHECK`` option (``allow=[...]`` of ``ScanRestorer``) that overrides
it; an overridden check is logged as a warning and recorded in ``report.json`` under ``"safety"``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pydicom

from rat_monai.data.modality import normalize_modality

__all__ = [
    "ALLOW_CHOICES",
    "F18_HALF_LIFE_S",
    "bundle_modality",
    "check_acquisition",
    "check_input",
    "check_output_folder",
    "check_writable",
    "is_rat_monai_output",
    "validate_allow",
]

logger = logging.getLogger(__name__)

#: checks a user may override with ``--allow CHECK``
ALLOW_CHOICES = ("modality", "radionuclide", "acquisition", "units", "tilt", "gaps")
#: F-18 half-life in seconds (109.77 min); what the PET bundle was trained on (FDG)
F18_HALF_LIFE_S = 6586.2
_F18_CODES = {"C-111A1", "77004003"}  # SNOMED (SRT, SCT) codes of ^18^Fluorine
_F18_TEXT = re.compile(r"(\^?18\^?\s*F(luorine)?\b)|(\bF(luorine)?\s*[-^]?\s*18\b)|\bFDG\b|fluciclovine|psma-?1007",
                       re.IGNORECASE)  # fmt: skip
_SPECT_TEXT = re.compile(r"spect|\bnm\b|symbia|intevo|infinia|discovery\s*(nm|670|630)|optima\s*nm|brightview|"
                         r"precedence|ventri|e\.cam|\bforte\b|gamma\s*camera|anyscan|starguide|veriton|d-spect",
                         re.IGNORECASE)  # fmt: skip
_MODALITY_NAMES = {"PT": "PET", "CT": "CT"}
#: key in report.json that marks a folder as a rat-monai output (``--overwrite`` may replace it)
OUTPUT_MARK = "rat_monai_output"


def validate_allow(allow: Iterable[str] | str | None) -> frozenset[str]:
    """The set of overridden checks; raises ValueError for a name not in :data:`ALLOW_CHOICES`."""
    names = [allow] if isinstance(allow, str) else list(allow or [])
    bad = [a for a in names if str(a).lower() not in ALLOW_CHOICES]
    if bad:
        raise ValueError(f"unknown check(s) to allow: {bad}; the checks are {', '.join(ALLOW_CHOICES)}.")
    return frozenset(str(a).lower() for a in names)


def bundle_modality(bundle_root: str | os.PathLike) -> str | None:
    """The input modality (``"PT"``, ``"CT"``, ...) in ``network_data_format.inputs.image`` of the bundle's
    ``configs/metadata.json``, or None when the file or the entry is absent."""
    try:
        with open(Path(bundle_root) / "configs" / "metadata.json", encoding="utf-8") as f:
            fmt = json.load(f).get("network_data_format", {})
        inputs = fmt.get("inputs", {})
        image = inputs.get("image") or next(iter(inputs.values()), {})
        value = image.get("modality")
    except (OSError, ValueError, AttributeError, StopIteration):
        return None
    return None if not value else str(value).upper()


def _refuse_or_warn(check: str, message: str, allow: frozenset[str], advice: str) -> str:
    if check in allow:
        logger.warning("%s; continuing because --allow %s was given.", message, check)
        return "overridden"
    raise ValueError(f"{message} (check '{check}'). {advice} Pass --allow {check} (allow=['{check}']) to proceed.")


def _check_modality(found: str | None, expected: str, src: Path, allow: frozenset[str]) -> dict[str, Any]:
    record = {"expected": expected, "found": found, "status": "ok"}
    if found is None:
        record["status"] = "assumed"  # a NIfTI without a declaration: the caller's modality is taken
    elif found != expected:
        name = _MODALITY_NAMES.get(expected, expected)
        other = {"PT": "rat_pet", "CT": "rat_ct"}.get(found)
        advice = f"Use the {other} bundle." if other else f"This model restores {name} only."
        record["status"] = _refuse_or_warn(
            "modality",
            f"input {src} is a {found} scan but this model restores {name} (the modality it was trained on)",
            allow,
            advice,
        )
    return record


def check_acquisition(header: Any, src: Path, allow: frozenset[str]) -> dict[str, Any]:
    """Refuse a PET header that is not an F-18 PET acquisition (the PET bundle's training data).

    Radionuclide: the ``RadionuclideCodeSequence`` (code or meaning), the ``Radiopharmaceutical`` name and the
    ``RadionuclideHalfLife`` (F-18: 6586 s, +-2 %) of the ``RadiopharmaceuticalInformationSequence``; any of them
    naming another nuclide refuses ("radionuclide"); none present is recorded as unknown with a warning.
    Acquisition: a SPECT / NM camera's image stored as PET (Manufacturer, ManufacturerModelName, StationName or
    SeriesDescription naming a SPECT/NM product) is refused ("acquisition").

    Returns:
        ``{"radionuclide": {...}, "acquisition": {...}}`` for the report.
    """
    seq = header.get("RadiopharmaceuticalInformationSequence", None) or []
    rp = seq[0] if len(seq) else {}
    codes = rp.get("RadionuclideCodeSequence", None) or [] if hasattr(rp, "get") else []
    code = codes[0] if len(codes) else {}
    code_value = str(code.get("CodeValue", "") or "").strip() if hasattr(code, "get") else ""
    meaning = str(code.get("CodeMeaning", "") or "").strip() if hasattr(code, "get") else ""
    drug = str(rp.get("Radiopharmaceutical", "") or "").strip() if hasattr(rp, "get") else ""
    try:
        half_life = float(rp.get("RadionuclideHalfLife", None) or 0.0) if hasattr(rp, "get") else 0.0
    except (TypeError, ValueError):
        half_life = 0.0
    evidence = []  # (what, says F-18?)
    if code_value or meaning:
        evidence.append((f"radionuclide code {code_value} {meaning!r}".strip(),
                         code_value in _F18_CODES or bool(_F18_TEXT.search(meaning))))  # fmt: skip
    if half_life > 0:
        evidence.append((f"half-life {half_life:g} s", abs(half_life - F18_HALF_LIFE_S) <= 0.02 * F18_HALF_LIFE_S))
    if drug and _F18_TEXT.search(drug):
        evidence.append((f"radiopharmaceutical {drug!r}", True))
    found = "; ".join(w for w, _ in evidence) or "not recorded"
    nuclide = {"expected": f"F-18 (half-life {F18_HALF_LIFE_S:g} s)", "found": found, "status": "ok"}
    if not evidence:
        nuclide["status"] = "unknown"
        logger.warning("input %s does not record its radionuclide; assuming F-18 as the PET bundle expects.", src)
    elif not all(ok for _, ok in evidence):
        nuclide["status"] = _refuse_or_warn(
            "radionuclide",
            f"input {src} is not an F-18 PET ({found}); the PET bundle was trained on F-18 (FDG) PET, so its "
            "SUV scale and noise are different",
            allow,
            "Restore only F-18 PET with this bundle.",
        )
    names = {k: str(header.get(k, "") or "").strip() for k in
             ("Manufacturer", "ManufacturerModelName", "StationName", "SeriesDescription")}  # fmt: skip
    camera = "; ".join(f"{k} {v!r}" for k, v in names.items() if v and _SPECT_TEXT.search(v))
    acquisition = {"expected": "PET", "found": camera or "PET", "status": "ok"}
    if camera:
        acquisition["status"] = _refuse_or_warn(
            "acquisition",
            f"input {src} is stored as PET but comes from a SPECT/NM camera ({camera}); the PET bundle was trained on "
            "PET",
            allow,
            "Do not restore SPECT with the PET bundle.",
        )
    return {"radionuclide": nuclide, "acquisition": acquisition}


def check_input(meta: Mapping[str, Any], src: Path, modality: str, allow: frozenset[str]) -> dict[str, Any]:
    """All input checks of a loaded volume (``load_volume`` meta) for a model of ``modality`` (``"pet"``/``"ct"``).

    Returns:
        the ``"safety"`` record of the report: per check ``{"expected", "found", "status"}`` with status ``ok``,
        ``assumed``, ``unknown`` or ``overridden``, plus ``"allowed"`` (the overridden checks asked for).
    """
    expected = normalize_modality(modality)
    record: dict[str, Any] = {"allowed": sorted(allow), "modality": _check_modality(meta.get("modality"), expected,
                                                                                     src, allow)}  # fmt: skip
    files = list(meta.get("dicom_files") or [])
    if expected == "PT" and meta.get("modality") == "PT" and files:
        header = pydicom.dcmread(files[0], stop_before_pixels=True, force=True)
        record.update(check_acquisition(header, src, allow))
    units, want = meta.get("units"), ("suv" if expected == "PT" else "hu")
    record["units"] = {"expected": want, "found": units, "declared_by": meta.get("units_declared_by"),
                       "status": "ok" if units == want else "assumed"}  # fmt: skip
    if units not in (None, want) and meta.get("modality") in (None, expected):
        record["units"]["status"] = _refuse_or_warn(
            "units",
            f"input {src} is loaded in {str(units).upper()} but the network expects {want.upper()}",
            allow,
            "Load it in the expected units (units='auto'), or give a NIfTI sidecar with an suv_factor.",
        )
    return record


def check_writable(folder: Path, what: str) -> None:
    """Raise ValueError unless ``folder`` (or, when it does not exist yet, its nearest existing parent) is a
    writable folder; checked before any work so that a long run does not fail at its end."""
    probe = folder.resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ValueError(f"{what} {folder}: {probe} is a file, not a folder; choose another path.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {folder} cannot be written ({probe} is not writable); choose another folder.")


def is_rat_monai_output(folder: Path) -> bool:
    """True when ``folder/report.json`` is a report written by ``rat-monai infer``."""
    try:
        with open(folder / "report.json", encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and (
        report.get(OUTPUT_MARK) == "infer" or {"rat_monai_version", "output_series_instance_uid"} <= set(report)
    )


def check_output_folder(out: Path, overwrite: bool) -> None:
    """Refuse an output folder that cannot or must not be replaced: an existing folder without ``overwrite``, a
    folder that holds no earlier rat-monai output, the current folder or one above it."""
    if not out.exists():
        return
    if not overwrite:
        raise FileExistsError(f"output {out} already exists; pass --overwrite (overwrite=True) to replace it.")
    if not out.is_dir():
        raise ValueError(f"output {out} exists and is not a folder; remove it or choose another output path.")
    out_r, cwd = out.resolve(), Path.cwd().resolve()
    if out_r == cwd or out_r in cwd.parents or out_r == Path(out_r.anchor):
        raise ValueError(
            f"output {out} is the current folder (or contains it) and cannot be replaced; give a new folder, e.g. "
            f"--output {Path(out) / 'restored'}."
        )
    if not is_rat_monai_output(out):
        raise FileExistsError(
            f"output {out} exists and is not an earlier rat-monai output (no rat-monai report.json in it), so "
            "--overwrite will not replace it; choose a new output folder or remove it yourself."
        )
