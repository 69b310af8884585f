# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Paired low-dose / full-dose PET and CT simulator (``rat-monai simulate {pet,ct}``).

Per subject a random anthropomorphic torso (:func:`rat_monai.data.phantom.make_phantom`) is imaged slice by slice
with a 2D parallel-beam model (:mod:`rat_monai.data.projectors`; all slices of a volume go through one sparse
product):

- PET: activity (Bq/ml, from SUV with a random weight / injected dose / uptake time) blurred by the system PSF,
  forward projected (ray-driven) with attenuation (511 keV mu map), plus a uniform scatter/randoms background;
  Poisson counts at full dose and at ``1 / dose_reduction`` of the counts; BOTH reconstructed by the same OSEM
  (pixel-driven matrix, attenuation and background modelled, ``iterations`` x ``subsets``) and the same Gaussian
  post-filter. The low-dose image is written as a real low-dose scan: Bq/ml ``1 / dose_reduction`` of the full dose
  and RadionuclideTotalDose reduced by the same factor, so both have the same SUV scale.
- CT: HU -> linear attenuation (mu_water = 0.0192 / mm), ray-driven line integrals, Poisson transmission counts with
  ``i0`` photons per ray at full dose and ``i0 / dose_reduction`` at low dose plus Gaussian electronic noise, log,
  then the same filtered back-projection for both; HU outside the circle (ellipse) inscribed in the slice is -1024.

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

import argparse
import datetime as _dt
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from rat_monai.data.dicom_export import ras_affine, uid_from, write_dicom_series
from rat_monai.data.phantom import make_phantom
from rat_monai.data.projectors import (
    ParallelProjector,
    clear_projector_cache,
    default_n_det,
    fbp,
    forward_project_interp,
    osem,
)
from rat_monai.data.sim_output import (  # noqa: F401 - split_counts / save_preview re-exported (public API)
    masked_psnr,
    save_preview,
    split_counts,
    write_dataset_files,
    write_nifti_pair,
)

__all__ = [
    "DEFAULT_SHAPE",
    "simulate_pet_pair",
    "simulate_ct_pair",
    "pet_counts_and_osem",
    "simulate_dataset",
    "split_counts",
    "masked_psnr",
    "save_preview",
    "add_arguments",
    "run",
]

logger = logging.getLogger(__name__)

DEFAULT_SHAPE = {"pet": (128, 128, 64), "ct": (256, 256, 32)}
DEFAULT_DOSE_REDUCTION = {"pet": 12.0, "ct": 4.0}
# in-plane and axial field of view in mm (spacing = fov / shape)
DEFAULT_FOV = {"pet": (500.0, 200.0), "ct": (380.0, 160.0)}
MU_WATER = 0.0192  # 1/mm, effective ~70 keV
F18_HALF_LIFE = 6586.2  # s


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _spacing(modality: str, shape: Sequence[int]) -> tuple[float, float, float]:
    fov_xy, fov_z = DEFAULT_FOV[modality]
    d = fov_xy / max(shape[0], shape[1])
    return (d, d, fov_z / shape[2])


def simulate_pet_pair(
    shape: Sequence[int] = DEFAULT_SHAPE["pet"],
    spacing: Sequence[float] | None = None,
    rng: np.random.Generator | int | None = None,
    dose_reduction: float = 12.0,
    iterations: int = 4,
    subsets: int = 8,
    counts_per_slice: float = 1.5e6,
    scatter_fraction: float = 0.3,
    psf_fwhm_mm: float = 5.0,
    postfilter_fwhm_mm: float = 5.0,
    n_angles: int | None = None,
) -> dict[str, Any]:
    """Simulate one PET subject at full and reduced dose.

    Args:
        shape: ``(X, Y, Z)``. Defaults to (128, 128, 64).
        spacing: voxel size in mm. Defaults to a 500 mm in-plane, 200 mm axial field of view.
        rng: Generator or seed. Defaults to None (unseeded).
        dose_reduction: counts factor of the low-dose scan (12 -> 1/12 of the counts). Defaults to 12.
        iterations: OSEM iterations (same for both). Defaults to 4.
        subsets: OSEM subsets. Defaults to 8.
        counts_per_slice: mean true counts per slice at full dose. Defaults to 1.5e6.
        scatter_fraction: uniform background counts as a fraction of the mean true counts per bin. Defaults to 0.3.
        psf_fwhm_mm: in-plane system resolution applied to the activity before projection. Defaults to 5.
        postfilter_fwhm_mm: in-plane Gaussian post-filter of both reconstructions. Defaults to 5.
        n_angles: views. Defaults to the larger in-plane size.

    Returns:
        dict with "low", "full" (Bq/ml, ``[X, Y, Z]`` float32; the low-dose one at its own, reduced, activity scale),
        "truth" (SUV), "body" (mask), "spacing", "weight_kg", "injected_dose_bq" (full dose), "uptake_s",
        "suv_factor_full" / "suv_factor_low" (SUV per Bq/ml, decay-corrected to the scan start).
    """
    if dose_reduction < 1:
        raise ValueError(f"dose_reduction must be >= 1, got {dose_reduction}.")
    rng = _rng(rng)
    shape = tuple(int(s) for s in shape)
    spacing = tuple(spacing) if spacing is not None else _spacing("pet", shape)
    ph = make_phantom(shape, spacing, rng)
    nx, ny, nz = shape
    weight = float(rng.uniform(55, 95))
    dose = float(weight * rng.uniform(3.0, 4.5) * 1e6)  # Bq, ~3.7 MBq/kg
    uptake = float(rng.uniform(50, 75) * 60)  # s
    dose_at_scan = dose * 2.0 ** (-uptake / F18_HALF_LIFE)
    suv_factor = weight * 1000.0 / dose_at_scan  # SUV per Bq/ml
    act = ph.suv / suv_factor  # Bq/ml
    sig_psf = psf_fwhm_mm / 2.3548 / np.asarray(spacing[:2])
    act_b = ndimage.gaussian_filter(act, sigma=(sig_psf[0], sig_psf[1], 0), mode="constant")
    na = int(n_angles if n_angles is not None else max(nx, ny))
    nd = default_n_det(nx, ny)
    # data from the ray-driven projector, reconstruction with the (pixel-driven) OSEM matrix: no inverse crime
    att = np.exp(-forward_project_interp(ph.mu511, na, nd) * np.float32(spacing[0])).astype(np.float32)
    trues = att * forward_project_interp(act_b, na, nd)
    scale = float(counts_per_slice * nz / max(float(trues.sum()), 1e-12))
    trues *= scale
    support = trues > 0
    bg = np.float32(scatter_fraction * (trues[support].mean() if support.any() else 0.0))
    sig_pf = postfilter_fwhm_mm / 2.3548 / np.asarray(spacing[:2])
    low, full = pet_counts_and_osem(trues, att, bg, scale, dose_reduction, rng, nx, ny, iterations=iterations,
                                    subsets=subsets, postfilter_sigma=sig_pf)
    out = {"low": low, "full": full}
    return {
        "low": out["low"],
        "full": out["full"],
        "truth": ph.suv,
        "body": ph.body,
        "spacing": spacing,
        "weight_kg": weight,
        "injected_dose_bq": dose,
        "uptake_s": uptake,
        "suv_factor_full": suv_factor,
        "suv_factor_low": suv_factor * dose_reduction,
    }


def pet_counts_and_osem(
    trues: np.ndarray,
    att: np.ndarray,
    background: float,
    scale: float,
    dose_reduction: float,
    rng: np.random.Generator,
    nx: int,
    ny: int,
    iterations: int = 4,
    subsets: int = 8,
    postfilter_sigma: Sequence[float] = (0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson counts at full dose and at ``1 / dose_reduction`` of them, both through the SAME OSEM + post-filter.

    Args:
        trues: expected true counts at full dose ``[n_angles, n_det, S]`` (attenuated, scaled by ``scale``).
        att: attenuation factors like ``trues``.
        background: expected scatter + randoms per bin at full dose.
        scale: counts per unit of image value and pixel of path (the OSEM sensitivity).
        dose_reduction: counts factor of the low-dose scan (>= 1).
        rng: random generator (full-dose counts are drawn first, then low-dose).
        nx: image size along the first axis.
        ny: image size along the second axis.
        iterations: OSEM iterations. Defaults to 4.
        subsets: OSEM subsets. Defaults to 8.
        postfilter_sigma: in-plane Gaussian post-filter sigma in pixels. Defaults to none.

    Returns:
        ``(low, full)`` images ``[nx, ny, S]`` float32 in image units; ``low`` at its own activity scale (``1 /
        dose_reduction`` of ``full``'s), as a real low-dose scan reconstructs.
    """
    nz = trues.shape[2]
    f_low = 1.0 / dose_reduction
    counts_full = rng.poisson(np.maximum(trues + background, 0)).astype(np.float32)
    counts_low = rng.poisson(np.maximum((trues + background) * f_low, 0)).astype(np.float32)
    # One OSEM over both doses: EM with (counts / f, background, scale) has exactly the iterates of
    # (counts, f * background, f * scale), so the low-dose counts are divided by f and share the full-dose model.
    rec = osem(np.concatenate([counts_full, counts_low / np.float32(f_low)], axis=2), nx, ny,
               n_angles=trues.shape[0], n_det=trues.shape[1], attenuation=np.concatenate([att, att], axis=2),
               background=background, scale=scale, iterations=iterations, subsets=subsets)
    sig = tuple(float(v) for v in postfilter_sigma)
    if max(sig) > 0:
        rec = ndimage.gaussian_filter(rec, sigma=(sig[0], sig[1], 0), mode="constant")
    rec = np.maximum(rec, 0)
    return (rec[..., nz:] * np.float32(f_low)).astype(np.float32), rec[..., :nz].astype(np.float32)


def simulate_ct_pair(
    shape: Sequence[int] = DEFAULT_SHAPE["ct"],
    spacing: Sequence[float] | None = None,
    rng: np.random.Generator | int | None = None,
    dose_reduction: float = 4.0,
    i0: float = 1e6,
    electronic_noise: float = 10.0,
    filter_name: str = "shepp-logan",
    n_angles: int | None = None,
    resolution_fwhm_mm: float = 1.2,
    reference_pixel_mm: float | None = 380.0 / 256,
) -> dict[str, Any]:
    """Simulate one CT subject at full and reduced dose (HU).

    Args:
        shape: ``(X, Y, Z)``. Defaults to (256, 256, 32).
        spacing: voxel size in mm. Defaults to a 380 mm in-plane, 160 mm axial field of view.
        rng: Generator or seed. Defaults to None (unseeded).
        dose_reduction: photon factor of the low-dose scan (4 = quarter dose). Defaults to 4.
        i0: unattenuated photons per ray (detector bin of one pixel width) at full dose, for a pixel of
            ``reference_pixel_mm``. Defaults to 1e6.
        electronic_noise: std of additive Gaussian detector noise in photons. Defaults to 10.
        filter_name: FBP filter (see :func:`rat_monai.data.projectors.ramp_filter`). Defaults to "shepp-logan".
        n_angles: views. Defaults to the larger in-plane size.
        resolution_fwhm_mm: in-plane Gaussian blur of the attenuation map before projection (system resolution).
            Defaults to 1.2.
        reference_pixel_mm: ``i0`` is scaled by ``reference_pixel_mm / pixel`` so that the image noise in HU is
            about the same at any shape (with views ~ image size, the FBP variance goes as 1 / (photons * pixel)):
            a tiny test set is about as noisy as the default 256x256 one. None keeps ``i0`` per ray whatever the
            pixel. Defaults to 380 / 256.

    Returns:
        dict with "low", "full" (HU, ``[X, Y, Z]`` float32), "truth" (HU), "body" (mask), "spacing".
    """
    if dose_reduction < 1:
        raise ValueError(f"dose_reduction must be >= 1, got {dose_reduction}.")
    rng = _rng(rng)
    shape = tuple(int(s) for s in shape)
    spacing = tuple(spacing) if spacing is not None else _spacing("ct", shape)
    ph = make_phantom(shape, spacing, rng)
    nx, ny, nz = shape
    proj = ParallelProjector(nx, ny, n_angles=n_angles)
    mu = np.maximum(MU_WATER * (1.0 + ph.hu / 1000.0), 0).astype(np.float32)
    sig = resolution_fwhm_mm / 2.3548 / np.asarray(spacing[:2])
    mu = ndimage.gaussian_filter(mu, sigma=(sig[0], sig[1], 0), mode="nearest")  # system blur; avoids aliasing
    line = forward_project_interp(mu, proj.n_angles_total, proj.n_det) * np.float32(spacing[0])  # nepers
    xs = np.arange(nx) - (nx - 1) / 2
    ys = np.arange(ny) - (ny - 1) / 2
    fov = (xs[:, None] / (nx / 2)) ** 2 + (ys[None, :] / (ny / 2)) ** 2 <= 1.0  # inscribed circle (ellipse)
    if reference_pixel_mm is not None:
        i0 = i0 * float(reference_pixel_mm) / float(spacing[0])
    sinos = []
    for f in (1.0, 1.0 / dose_reduction):  # full, low
        n0 = i0 * f
        det = rng.poisson(n0 * np.exp(-line)).astype(np.float32)
        det += rng.normal(0.0, electronic_noise, size=det.shape).astype(np.float32)
        sinos.append(np.log(np.float32(n0) / np.maximum(det, 1.0)).astype(np.float32))
    # one filtered back-projection for both doses (same filter, same back projector)
    mu_rec = fbp(np.concatenate(sinos, axis=2) / np.float32(spacing[0]), proj, filter_name)
    hu = (mu_rec / MU_WATER - 1.0) * 1000.0
    hu[~fov] = -1024.0
    hu = np.clip(hu, -1024.0, 3071.0).astype(np.float32)
    return {"low": hu[..., nz:], "full": hu[..., :nz], "truth": ph.hu, "body": ph.body, "spacing": spacing}


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
        split: (training, validation, test) fractions (see :func:`split_counts`). Defaults to (0.7, 0.15, 0.15).
        progress: show a tqdm progress bar. Defaults to True.
        iterations: PET OSEM iterations. Defaults to 4.
        subsets: PET OSEM subsets. Defaults to 8.
        preview: write ``preview_<modality>.png`` of the first subject. Defaults to True.
        overwrite: allow writing into a non-empty folder (its simulator outputs are replaced). Defaults to False.
        kwargs: passed to :func:`simulate_pet_pair` / :func:`simulate_ct_pair`.

    Returns:
        the path of ``datalist.json``.
    """
    from tqdm.auto import tqdm

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

    spacing = _spacing(modality, shape)
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
                side: dict[str, Any] = {"modality": dicom_mod, "units": units, "dose": part, "dose_reduction": drf,
                                        "seed": int(seed), "subject": sid, "patient": entry["patient"],
                                        "spacing": list(spacing)}
                if modality == "pet":
                    side.update(suv_factor=res[f"suv_factor_{part}"], weight_kg=res["weight_kg"],
                                injected_dose_bq=res["injected_dose_bq"] / (drf if part == "low" else 1.0),
                                uptake_s=res["uptake_s"], iterations=iterations, subsets=subsets)
                sides[part] = side
            entry.update(write_nifti_pair(out, sid, vols, affine, sidecars=sides,
                                          description={p: f"{dicom_mod} {units.upper()} {desc[p]}" for p in desc}))
        for key, part in (("image", "low"), ("label", "full")):
            if "dicom" in formats:
                ddir = out / "dicom" / sid / part
                common = dict(modality=dicom_mod, spacing=spacing, origin_lps=origin, study_uid=study_uid,
                              frame_uid=frame_uid, series_uid=uid_from("rat-monai-sim", modality, seed, s, part),
                              uid_entropy=("rat-monai-sim", modality, seed, s, part),
                              series_number=1 + int(part == "full"),
                              series_description=f"SIM {desc[part]}", patient_id=entry["patient"])
                if modality == "pet":
                    write_dicom_series(res[part], ddir, patient_weight_kg=res["weight_kg"],
                                       injected_dose_bq=res["injected_dose_bq"] / (drf if part == "low" else 1.0),
                                       injection_time=scan_time - _dt.timedelta(seconds=res["uptake_s"]),
                                       series_time=scan_time, half_life_s=F18_HALF_LIFE, **common)
                else:
                    write_dicom_series(res[part], ddir, series_time=scan_time, **common)
                entry[f"{key}_dicom"] = f"dicom/{sid}/{part}"
                if "nifti" not in formats:
                    entry[key] = entry[f"{key}_dicom"]
        body = res["body"]
        fig = {"subject": sid, "simulate_s": round(sim_s, 3),
               "psnr_low_vs_full_body_db": round(masked_psnr(vols["low"], vols["full"], body), 3),
               "psnr_full_vs_truth_body_db": round(masked_psnr(vols["full"], res["truth"], body), 3)}
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``rat-monai simulate``."""
    parser.add_argument("modality", choices=("pet", "ct"), help="which modality to simulate")
    parser.add_argument("--out", required=True, help="output folder (must be empty unless --overwrite)")
    parser.add_argument("--from", dest="sources", action="append", default=None, metavar="SCAN",
                        help="make the pairs from this real full-dose scan (DICOM series folder or NIfTI; repeat for "
                             "several) instead of phantoms: see rat_monai.data.simulate_real")
    parser.add_argument("--ct", dest="ct", action="append", default=None, metavar="CT",
                        help="PET --from only: co-registered CT for the attenuation (one per --from, same order)")
    parser.add_argument("--i0", type=float, default=None,
                        help="CT --from only: full-dose photons per ray (default: from the mAs/kVp tags)")
    parser.add_argument("--subjects", type=int, default=None, help="number of phantom subjects (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), default=None,
                        help="volume shape (default 128 128 64 for PET, 256 256 32 for CT)")
    parser.add_argument("--dose-reduction", type=float, default=None, help="low-dose factor (default 12 PET, 4 CT)")
    parser.add_argument("--iterations", type=int, default=4, help="PET OSEM iterations (default 4)")
    parser.add_argument("--subsets", type=int, default=8, help="PET OSEM subsets (default 8)")
    parser.add_argument("--formats", nargs="+", choices=("dicom", "nifti"), default=["dicom", "nifti"],
                        help="what to write (default both)")
    parser.add_argument("--split", type=float, nargs=3, default=[0.7, 0.15, 0.15],
                        metavar=("TRAIN", "VAL", "TEST"), help="split fractions (default 0.7 0.15 0.15)")
    parser.add_argument("--no-preview", action="store_true", help="do not write the preview PNG")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--overwrite", action="store_true", help="allow a non-empty output folder")


def run(args: argparse.Namespace) -> int:
    """Run ``rat-monai simulate`` with parsed ``args``; prints the datalist path."""
    if args.sources:
        if args.subjects is not None or args.shape is not None:
            raise ValueError("--subjects and --shape are for phantoms; with --from the scans set both.")
        from rat_monai.data.simulate_real import simulate_from_scans

        path = simulate_from_scans(
            args.sources, args.out, modality=args.modality, dose_reduction=args.dose_reduction, seed=args.seed,
            ct=args.ct, i0=args.i0, formats=args.formats, split=args.split, progress=not args.no_progress,
            preview=not args.no_preview, overwrite=args.overwrite, iterations=args.iterations, subsets=args.subsets,
        )
    else:
        if args.ct or args.i0 is not None:
            raise ValueError("--ct and --i0 go with --from SCAN (simulation from a real scan).")
        path = simulate_dataset(
            args.out, modality=args.modality, subjects=4 if args.subjects is None else args.subjects, seed=args.seed,
            shape=args.shape, dose_reduction=args.dose_reduction, formats=args.formats, split=args.split,
            progress=not args.no_progress, iterations=args.iterations, subsets=args.subsets,
            preview=not args.no_preview, overwrite=args.overwrite,
        )
    print(path)
    return 0
