# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Paired low-dose / full-dose data sets of phantoms (``rat-monai simulate {pet,ct}``).

Per subject a random anthropomorphic torso (:func:`rat_monai.simulation.phantom.make_phantom`) is imaged slice by
slice with a 2D parallel-beam model at full and at reduced dose (:mod:`rat_monai.simulation.pet`,
:mod:`rat_monai.simulation.ct`; all slices of a volume go through one sparse product).

Output folder layout (the one :func:`rat_monai.data.datalist.build_datalist` recognises)::

    OUT/datalist.json                     Decathlon-style {"training", "validation", "test"}
    OUT/simulation.json                   settings + per-subject figures (PSNR of low vs full dose on the body)
    OUT/nifti/<subject>_low.nii.gz        "image" (PET in SUV, CT in HU) + <subject>_low.json sidecar
    OUT/nifti/<subject>_full.nii.gz       "label"                          + <subject>_full.json sidecar
    OUT/dicom/<subject>/low/*.dcm         "image_dicom" (PET: Bq/ml + SUV tags; CT: HU rescale)
    OUT/dicom/<subject>/full/*.dcm        "label_dicom"
    OUT/preview_<modality>.png            LQ | HQ | difference of a central slice of the first subject

Datalist entries: ``{"image": "nifti/sim000_low.nii.gz", "label": "nifti/sim000_full.nii.gz", "image_dicom":
"dicom/sim000/low", "label_dicom": "dicom/sim000/full", "subject": "sim000", "modality": "PT", "units": "suv"}``
(paths relative to the datalist's folder; ``units`` is "suv" for PET NIfTI, "hu" for CT). When only DICOM is
written, "image"/"label" point to the DICOM folders. The NIfTI sidecar JSON holds the same units plus the SUV
factor (SUV per Bq/ml) and the acquisition settings; the NIfTI header ``descrip`` says the units too.

Everything is deterministic per ``seed`` (numpy Generator seeded with ``[seed, subject]``, UIDs from pydicom's
``generate_uid`` with seed-derived entropy).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from rat_monai.data.datalist import split_counts
from rat_monai.data.writers import uid_from
from rat_monai.evaluation.metrics import psnr
from rat_monai.simulation.ct import simulate_ct_pair
from rat_monai.simulation.defaults import DEFAULT_DOSE_REDUCTION, DEFAULT_SHAPE, F18_HALF_LIFE, default_spacing
from rat_monai.simulation.dicom_export import ras_affine, write_synthetic_series
from rat_monai.simulation.output import save_preview, write_dataset_files, write_nifti_pair
from rat_monai.simulation.pet import simulate_pet_pair
from rat_monai.simulation.projectors import clear_projector_cache

__all__ = ["simulate_dataset"]

logger = logging.getLogger(__name__)


def simulate_dataset(
    out_dir: str | os.PathLike,
    modality: str = "pet",
    subjects: int = 4,
    seed: int = 0,
    shape: Sequence[int] | None = None,
    dose_reduction: float | None = None,
    formats: Sequence[str] = ("dicom", "nifti"),
    split: Sequence[float] = (0.7, 0.15, 0.15),
    progress: bool = True,
    iterations: int = 4,
    subsets: int = 8,
    preview: bool = True,
    overwrite: bool = False,
    **kwargs: Any,
) -> Path:
    """Simulate ``subjects`` paired scans into ``out_dir`` and write ``datalist.json`` (see the module docstring).

    Args:
        out_dir: destination folder; must be empty or absent unless ``overwrite``.
        modality: "pet" or "ct". Defaults to "pet".
        subjects: number of subjects. Defaults to 4.
        seed: random seed (same seed, same files). Defaults to 0.
        shape: ``(X, Y, Z)``. Defaults to (128, 128, 64) for PET, (256, 256, 32) for CT.
        dose_reduction: low-dose factor. Defaults to 12 (PET) / 4 (CT).
        formats: any of "dicom", "nifti". Defaults to both.
        split: (training, validation, test) fractions (see :func:`rat_monai.data.datalist.split_counts`).
            Defaults to (0.7, 0.15, 0.15).
        progress: show a tqdm progress bar. Defaults to True.
        iterations: PET OSEM iterations. Defaults to 4.
        subsets: PET OSEM subsets. Defaults to 8.
        preview: write ``preview_<modality>.png`` of the first subject. Defaults to True.
        overwrite: allow writing into a non-empty folder (its simulator outputs are replaced). Defaults to False.
        kwargs: passed to :func:`simulate_pet_pair` / :func:`simulate_ct_pair`.

    Returns:
        the path of ``datalist.json``.
    """
    modality = str(modality).lower()
    if modality not in ("pet", "ct"):
        raise ValueError(f"modality must be 'pet' or 'ct', got {modality!r}.")
    formats = tuple(str(f).lower() for f in ([formats] if isinstance(formats, str) else formats))
    if not formats or any(f not in ("dicom", "nifti") for f in formats):
        raise ValueError(f"formats must be a non-empty subset of ('dicom', 'nifti'), got {formats}.")
    if int(subjects) < 1:
        raise ValueError(f"subjects must be >= 1, got {subjects}.")
    shape = tuple(int(s) for s in (shape or DEFAULT_SHAPE[modality]))
    if len(shape) != 3 or shape[2] < 1 or min(shape[:2]) < 16:
        raise ValueError(f"shape must be (X, Y, Z) with X, Y >= 16 and Z >= 1, got {shape}.")
    drf = float(dose_reduction if dose_reduction is not None else DEFAULT_DOSE_REDUCTION[modality])
    split_counts(int(subjects), split)  # validate the split before simulating
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder; choose another --out.")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; choose an empty folder or pass --overwrite (overwrite=True).")
        for sub in ("nifti", "dicom"):
            shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)

    spacing = default_spacing(modality, shape)
    dicom_mod = "PT" if modality == "pet" else "CT"
    units = "suv" if modality == "pet" else "hu"
    entries, figures = [], []
    t_start = time.perf_counter()
    for s in tqdm(range(int(subjects)), desc=f"simulate {modality}", disable=not progress, unit="subject"):
        sid = f"sim{s:03d}"
        rng = np.random.default_rng([int(seed), s])
        t0 = time.perf_counter()
        if modality == "pet":
            res = simulate_pet_pair(shape, spacing, rng, drf, iterations=iterations, subsets=subsets, **kwargs)
            vols = {"low": res["low"] * res["suv_factor_low"], "full": res["full"] * res["suv_factor_full"]}
        else:
            res = simulate_ct_pair(shape, spacing, rng, drf, **kwargs)
            vols = {"low": res["low"], "full": res["full"]}
        sim_s = time.perf_counter() - t0
        origin = (-(shape[0] - 1) / 2 * spacing[0], -(shape[1] - 1) / 2 * spacing[1], -(shape[2] - 1) / 2 * spacing[2])
        affine = ras_affine(spacing, origin)
        entry: dict[str, Any] = {"subject": sid, "patient": f"SIM-{seed}-{sid}", "modality": dicom_mod, "units": units}
        scan_time = _dt.datetime(2020, 1, 1, 10, 0, 0) + _dt.timedelta(days=s)
        study_uid = uid_from("rat-monai-sim", modality, seed, s, "study")
        frame_uid = uid_from("rat-monai-sim", modality, seed, s, "frame")
        desc = {"low": f"low dose (1/{drf:g})", "full": "full dose"}
        if "nifti" in formats:
            sides = {}
            for part in ("low", "full"):
                side: dict[str, Any] = {"dose": part, "dose_reduction": drf, "seed": int(seed), "subject": sid,
                                        "patient": entry["patient"], "spacing": list(spacing)}
                if modality == "pet":
                    side.update(suv_factor=res[f"suv_factor_{part}"], weight_kg=res["weight_kg"],
                                injected_dose_bq=res["injected_dose_bq"] / (drf if part == "low" else 1.0),
                                uptake_s=res["uptake_s"], iterations=iterations, subsets=subsets)
                sides[part] = side
            entry.update(write_nifti_pair(out, sid, vols, affine, dicom_mod, units, desc, sidecars=sides))
        for key, part in (("image", "low"), ("label", "full")):
            if "dicom" in formats:
                ddir = out / "dicom" / sid / part
                common = dict(modality=dicom_mod, spacing=spacing, origin_lps=origin, study_uid=study_uid,
                              frame_uid=frame_uid, series_uid=uid_from("rat-monai-sim", modality, seed, s, part),
                              uid_entropy=("rat-monai-sim", modality, seed, s, part),
                              series_number=1 + int(part == "full"),
                              series_description=f"SIM {desc[part]}", patient_id=entry["patient"])
                if modality == "pet":
                    write_synthetic_series(res[part], ddir, patient_weight_kg=res["weight_kg"],
                                           injected_dose_bq=res["injected_dose_bq"] / (drf if part == "low" else 1.0),
                                           injection_time=scan_time - _dt.timedelta(seconds=res["uptake_s"]),
                                           series_time=scan_time, half_life_s=F18_HALF_LIFE, **common)
                else:
                    write_synthetic_series(res[part], ddir, series_time=scan_time, **common)
                entry[f"{key}_dicom"] = f"dicom/{sid}/{part}"
                if "nifti" not in formats:
                    entry[key] = entry[f"{key}_dicom"]
        body = res["body"]
        fig = {"subject": sid, "simulate_s": round(sim_s, 3),
               "psnr_low_vs_full_body_db": round(psnr(vols["low"], vols["full"], mask=body), 3),
               "psnr_full_vs_truth_body_db": round(psnr(vols["full"], res["truth"], mask=body), 3)}
        figures.append(fig)
        entries.append(entry)
        if preview and s == 0:
            k = shape[2] // 2
            save_preview(vols["low"][:, :, k], vols["full"][:, :, k], out / f"preview_{modality}.png", modality,
                         title=f"{sid} slice {k}: PSNR(LQ vs HQ, body) {fig['psnr_low_vs_full_body_db']:.1f} dB")
    summary = {"modality": modality, "subjects": int(subjects), "seed": int(seed), "shape": list(shape),
               "spacing": list(spacing), "dose_reduction": drf, "formats": list(formats),
               "total_s": round(time.perf_counter() - t_start, 3), "subjects_figures": figures}
    if modality == "pet":
        summary.update(iterations=iterations, subsets=subsets)
    header = {
        "name": f"rat-monai simulated {modality.upper()}",
        "description": f"paired low-dose (image) / full-dose (label) {dicom_mod}, dose reduction {drf:g}, seed {seed}",
        "modality": dicom_mod,
        "units": units,
    }
    path = write_dataset_files(out, entries, header, summary, split)  # one patient per phantom, kept in order
    clear_projector_cache()
    logger.info("simulated %d %s subjects into %s in %.1f s", subjects, modality, out, summary["total_s"])
    return path
