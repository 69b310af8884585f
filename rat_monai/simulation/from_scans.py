# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Paired low-dose / full-dose data made from REAL full-dose scans (``rat-monai simulate {ct,pet} --from SCAN``).

CT (projection-domain noise insertion, the method used for the AAPM/Mayo low-dose CT challenge's quarter-dose
data: Yu et al., Med. Phys. 39(5) 2012):

- the full-dose side ("label") IS the real scan: same HU, same geometry, same DICOM files (copied unchanged);
- the low-dose side ("image") = the real scan + the FBP of the noise that the missing photons would have added.
  Model, slice by slice (2D, parallel beam: a fan-beam scan rebinned to parallel rays; the views are
  ``max(X, Y)`` over 180 degrees, detector bins one pixel wide, the projector and FBP of
  :mod:`rat_monai.simulation.projectors`): HU -> attenuation ``mu = 0.0192 / mm * (1 + HU / 1000)`` (voxels below
  -1100 HU, e.g. -3024 padding outside the scanner's field of view, are air), line integrals ``p``; expected
  full-dose counts per ray ``N = i0 * bowtie(t) * exp(-p)`` with a water-equivalent bowtie that compensates a
  500 mm (50 cm scan field of view) water cylinder, ``bowtie(t) = exp(-mu_w (R - sqrt(R^2 - t^2)))``, R = 250 mm.
  A scan at ``1 / d`` of the exposure has log-signal variance ``1 / (N / d) + s_e^2 / (N / d)^2``; the real scan
  already holds ``1 / N + s_e^2 / N^2``, so the inserted noise is zero-mean with the DIFFERENCE,
  ``(d - 1) / N + s_e^2 (d^2 - 1) / N^2`` (extra Poisson quantum noise in its Gaussian form, valid while ``N / d``
  is well above a few photons: ``N`` is floored at 20; plus electronic noise of ``s_e`` photons per ray). It is
  reconstructed with the same ramp-type filter (default Shepp-Logan) and added; FBP being linear, the sum is what
  a scan at ``1 / d`` of the dose would give. Outside the field of view nothing is added (padding stays padding);
  inside it the result is rounded to integer HU and clipped at -1024 HU as scanners store it.
- exposure: ``--i0`` photons per ray (one pixel-wide bin, one of the model's views), or from the DICOM tags:
  ``i0 = I0_REFERENCE * (mAs / 200) * (kVp / 120)^2 * (slice / 5 mm) * pixel_mm * (1000 / views)`` with mAs =
  XRayTubeCurrent x ExposureTime (else Exposure) divided by SpiralPitchFactor; without tags, the reference
  technique (120 kVp, 200 effective mAs). ``I0_REFERENCE`` is calibrated so that the modelled full-dose noise
  in the liver of CRLM-CT-1004 (GE LightSpeed16, 120 kVp, 282 effective mAs, 5 mm, STANDARD) matches the noise
  measured in that scan. Assumptions: the real scan is quantum-noise limited, its kernel is close to the FBP
  filter, tube current modulation is ignored (one exposure per scan), there is no beam hardening in the noise model.

PET (count thinning of the forward-projected activity): the real activity in Bq/ml (SUV via the series' tags, decay
handled as :func:`rat_monai.data.load_volume` does) is the object; attenuation at 511 keV is water
(0.0096 / mm) inside the body outline, or from a co-registered CT (``ct=``, resampled on the PET grid, bilinear HU ->
mu). Ray-driven projection, counts scaled to ``counts_per_slice`` true counts per slice (a clinical whole-body FDG
level), a uniform scatter/randoms background, Poisson counts at full dose and at ``1 / d`` of them, and the SAME
OSEM + post-filter for both (:func:`rat_monai.simulation.pet.pet_counts_and_osem`, as the phantom simulator). The
full-dose side is the OSEM of the full counts, NOT the original image: the original went through the vendor's own
reconstruction (algorithm, iterations, PSF/TOF, filter), so pairing it with our low-dose OSEM would teach a network
to change the reconstruction as well as to remove noise. With both sides through one reconstruction the pair
differs by dose only. The low-dose series keeps the SUV scale: Bq/ml at ``1 / d`` and RadionuclideTotalDose / d.

Output: the layout of :mod:`rat_monai.simulation.dataset` (``dicom/<subject>/{low,full}``, ``nifti/<subject>_{low,full}``,
``datalist.json`` split by patient, ``simulation.json`` with settings and per-subject figures, a preview PNG). The
low-dose series (and, for PET, the OSEM full-dose series) is a new series of the source's study and patient, with
SeriesDescription / ImageComments "simulated 1/<d> dose from <source series>".
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from scipy import ndimage
from tqdm.auto import tqdm

from rat_monai.data import load_volume
from rat_monai.data.writers import write_dicom_series
from rat_monai.evaluation.metrics import metric_settings, prepare_pair, psnr, ssim
from rat_monai.simulation.defaults import DEFAULT_DOSE_REDUCTION, MU_WATER
from rat_monai.simulation.output import save_preview, staged_output, write_dataset_files, write_nifti_pair
from rat_monai.simulation.pet import pet_counts_and_osem
from rat_monai.simulation.projectors import clear_projector_cache, default_n_det, forward_project_interp
from rat_monai.simulation.reconstruction import fbp_blockwise

__all__ = ["I0_REFERENCE", "ct_exposure_i0", "ct_noise_hu", "simulate_pet_from_scan", "simulate_from_scans"]

logger = logging.getLogger(__name__)

I0_REFERENCE = 2.6e6  # photons per ray: 120 kVp, 200 mAs, 5 mm slice, 1 mm bin, 1000 views (see module docstring)
OUT_OF_FOV_HU = -1100.0  # below: padding outside the scanner's field of view (GE writes -3024)
MU_WATER_511 = 0.0096  # 1/mm
BOWTIE_RADIUS_MM = 250.0
MIN_BODY_FRACTION = 0.005


def _tag_float(ds: Any, key: str) -> float | None:
    try:
        return float(ds.get(key, None)) if float(ds.get(key, None)) > 0 else None
    except (TypeError, ValueError):
        return None


def ct_exposure_i0(ds: Any | None, pixel_mm: float, slice_mm: float, n_angles: int) -> tuple[float, str]:
    """Full-dose photons per ray from a CT header's technique (see the module docstring) and how it was found."""
    kvp = _tag_float(ds, "KVP") if ds is not None else None
    mas = None
    if ds is not None:
        ma, ms = _tag_float(ds, "XRayTubeCurrent"), _tag_float(ds, "ExposureTime")
        mas = ma * ms / 1000.0 if ma and ms else _tag_float(ds, "Exposure")
        pitch = _tag_float(ds, "SpiralPitchFactor")
        mas = mas / pitch if mas and pitch else mas
    how = (f"DICOM tags: {mas:.0f} effective mAs" if mas else "reference 200 effective mAs (no mAs tags)") + (
        f", {kvp:g} kVp" if kvp else ", 120 kVp (no KVP tag)")
    i0 = I0_REFERENCE * ((mas or 200.0) / 200.0) * ((kvp or 120.0) / 120.0) ** 2
    return i0 * (slice_mm / 5.0) * pixel_mm * (1000.0 / n_angles), how


def ct_noise_hu(
    hu: np.ndarray,
    pixel_mm: float,
    dose_reduction: float,
    rng: np.random.Generator,
    i0: float,
    electronic_noise: float = 10.0,
    filter_name: str = "shepp-logan",
    n_angles: int | None = None,
    block: int = 32,
    progress: Any = None,
) -> np.ndarray:
    """The image-domain noise (HU, ``[X, Y, Z]`` float32) that lowers a real CT from full dose to ``1 / d`` of it.

    See the module docstring for the model. All slices go through each block of views together (one uncached
    matrix per block, :func:`rat_monai.simulation.reconstruction.fbp_blockwise`).

    Args: ``hu`` the full-dose scan ``[X, Y, Z]`` (padding below -1100 HU is air); ``pixel_mm`` square pixel size;
    ``dose_reduction`` d > 1; ``rng``; ``i0`` full-dose photons per ray at the bowtie centre; ``electronic_noise``
    photons per ray; ``filter_name`` of the FBP; ``n_angles`` views over 180 degrees (default ``max(X, Y)``);
    ``block`` views per block; ``progress`` a tqdm bar advanced by views.
    """
    nx, ny, _ = hu.shape
    n_angles = int(n_angles or max(nx, ny))
    n_det = default_n_det(nx, ny)
    mu = np.where(hu >= OUT_OF_FOV_HU, MU_WATER * (1.0 + hu / 1000.0), 0.0).clip(0).astype(np.float32)
    t = (np.arange(n_det) - (n_det - 1) / 2.0) * pixel_mm
    bowtie = np.exp(-MU_WATER * (BOWTIE_RADIUS_MM - np.sqrt(np.maximum(BOWTIE_RADIUS_MM**2 - t**2, 0.0))))
    d, se2 = float(dose_reduction), float(electronic_noise) ** 2

    def noise_sinogram(proj: Any) -> np.ndarray:
        line = proj.forward(mu) * np.float32(pixel_mm)  # nepers
        n = np.maximum(i0 * bowtie[None, :, None] * np.exp(-line.astype(np.float64)), 20.0)
        var = (d - 1.0) / n + se2 * (d * d - 1.0) / (n * n)
        noise = np.sqrt(var) * rng.standard_normal(line.shape)
        return (noise / pixel_mm).astype(np.float32)  # line integrals in pixel units

    mu_noise = fbp_blockwise(noise_sinogram, nx, ny, n_angles, n_det, filter_name, block,
                             progress=None if progress is None else progress.update)
    return (mu_noise / MU_WATER * 1000.0).astype(np.float32)


def _body_mask(vol: np.ndarray, threshold: float) -> np.ndarray:
    """Per slice: voxels above ``threshold`` after a 1-pixel smoothing, holes filled, largest 2D component."""
    out = np.zeros(vol.shape, bool)
    for k in range(vol.shape[2]):
        m = ndimage.gaussian_filter(vol[:, :, k].astype(np.float32), 1.0) > threshold
        lab, n = ndimage.label(m)
        if n:
            sizes = ndimage.sum(m, lab, range(1, n + 1))
            out[:, :, k] = ndimage.binary_fill_holes(lab == (1 + int(np.argmax(sizes))))
    return out


def _load(path: Path, modality: str) -> Any:
    nifti = path.is_file()
    units = ("hu" if modality == "ct" else "suv") if nifti else ("hu" if modality == "ct" else "bqml")
    try:
        vol = load_volume(path, modality=modality, units=units, progress=False)
    except (ValueError, FileNotFoundError, NotADirectoryError) as e:
        raise type(e)(f"--from {path}: cannot use it as a {modality.upper()} scan: {e}") from e
    if modality == "pet" and not nifti and vol.meta.get("suv_factor") is None:
        raise ValueError(f"--from {path}: the PET series has no SUV tags (PatientWeight, RadionuclideTotalDose, ...); "
                         "the low-dose series could not keep the SUV scale. Fix the tags or convert to SUV NIfTI.")
    return vol


def _header(vol: Any) -> Any:
    return pydicom.dcmread(vol.meta["dicom_files"][0], stop_before_pixels=True) if vol.meta.get("dicom_files") else None


def simulate_pet_from_scan(
    act: np.ndarray, spacing: Sequence[float], rng: np.random.Generator, dose_reduction: float, body: np.ndarray,
    mu511: np.ndarray | None = None, counts_per_slice: float = 1.5e6, scatter_fraction: float = 0.3,
    iterations: int = 4, subsets: int = 8, postfilter_fwhm_mm: float = 5.0, batch: int = 32, progress: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(low, full) OSEM images ``[X, Y, Z]`` of the activity ``act`` (any unit; outputs in the same unit, low at
    ``1 / dose_reduction`` of the scale), see the module docstring. ``mu511`` defaults to water in ``body``."""
    nx, ny, nz = act.shape
    mu = (body * MU_WATER_511).astype(np.float32) if mu511 is None else mu511.astype(np.float32)
    na, nd = max(nx, ny), default_n_det(nx, ny)
    proj = forward_project_interp(np.concatenate([np.maximum(act, 0), mu], axis=2).astype(np.float32), na, nd)
    att = np.exp(-proj[..., nz:] * np.float32(spacing[0])).astype(np.float32)
    trues = att * proj[..., :nz]
    scale = float(counts_per_slice * nz / max(float(trues.sum()), 1e-12))
    trues *= np.float32(scale)
    bg = float(scatter_fraction * trues[trues > 0].mean())
    sig = postfilter_fwhm_mm / 2.3548 / np.asarray(spacing[:2], dtype=np.float64)
    low, full = np.empty(act.shape, np.float32), np.empty(act.shape, np.float32)
    for z0 in range(0, nz, batch):
        z1 = min(nz, z0 + batch)
        low[..., z0:z1], full[..., z0:z1] = pet_counts_and_osem(
            trues[..., z0:z1], att[..., z0:z1], bg, scale, dose_reduction, rng, nx, ny, iterations, subsets, sig)
        if progress is not None:
            progress.update(z1 - z0)
    return low, full


def _resample_ct_to(ct: Any, ref: Any) -> np.ndarray:
    """HU of CT ``ct`` sampled (linear, -1000 outside) on the grid of volume ``ref`` through both affines."""
    m = np.linalg.inv(np.asarray(ct.affine, np.float64)) @ np.asarray(ref.affine, np.float64)
    return ndimage.affine_transform(np.asarray(ct[0], np.float32), m[:3, :3], m[:3, 3], output_shape=ref.shape[1:],
                                    order=1, cval=-1000.0)


def _hu_to_mu511(hu: np.ndarray) -> np.ndarray:
    mu = np.where(hu <= 0, MU_WATER_511 * (1.0 + hu / 1000.0), MU_WATER_511 + 6.4e-6 * hu)
    return np.clip(mu, 0.0, None).astype(np.float32)


def _subject_name(pid: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", pid).strip("_") or "scan"
    name = next(n for n in [base] + [f"{base}-{k}" for k in range(2, len(taken) + 3)] if n not in taken)
    taken.add(name)
    return name


def _figures(vols: dict[str, np.ndarray], body: np.ndarray, modality: str) -> dict[str, float]:
    """LQ-vs-HQ PSNR / SSIM over the body with the evaluation's conventions, and the noise added."""
    low, full = prepare_pair(vols["low"], vols["full"], modality)
    rng_ = metric_settings(modality).get("data_range") or float(full[body].max())
    ks = np.nonzero(body.any(axis=(0, 1)))[0]
    ks = ks[np.linspace(0, len(ks) - 1, min(len(ks), 24)).round().astype(int)]
    diff = (vols["low"] - vols["full"])[body]
    out = {"psnr_low_vs_full_body_db": round(psnr(low, full, rng_, mask=body), 3),
           "ssim_low_vs_full": round(float(np.mean([ssim(low[..., k], full[..., k], rng_) for k in ks])), 4),
           "data_range": float(rng_)}
    if modality == "ct":
        out["noise_std_low_minus_full_body_hu"] = round(float(diff.std()), 3)
    else:
        m_low, m_full = float(vols["low"][body].mean()), float(vols["full"][body].mean())
        out.update(mean_suv_body_low=round(m_low, 4), mean_suv_body_full=round(m_full, 4),
                   noise_std_low_minus_full_body_suv=round(float(diff.std()), 4),
                   relative_noise_low_minus_full_pct=round(100.0 * float(diff.std()) / max(m_full, 1e-12), 3))
    return out


def simulate_from_scans(
    sources: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    modality: str = "ct",
    dose_reduction: float | None = None,
    seed: int = 0,
    ct: Sequence[str | os.PathLike] | None = None,
    i0: float | None = None,
    electronic_noise: float = 10.0,
    formats: Sequence[str] = ("dicom", "nifti"),
    split: Sequence[float] = (0.7, 0.15, 0.15),
    progress: bool = True,
    preview: bool = True,
    overwrite: bool = False,
    iterations: int = 4,
    subsets: int = 8,
    counts_per_slice: float = 1.5e6,
) -> Path:
    """Turn real full-dose scans into a paired data set in ``out_dir`` (see the module docstring).

    Args:
        sources: DICOM series folders or NIfTI files (anything :func:`rat_monai.data.load_volume` reads); NIfTI CT
            is taken as HU and NIfTI PET as SUV.
        out_dir: output folder; must not exist (or be empty) unless ``overwrite``. Written only when all succeeded.
        modality: "ct" or "pet". Defaults to "ct".
        dose_reduction: ``d`` > 1 (4 = quarter dose). Defaults to 4 (CT) / 12 (PET).
        seed: random seed (same seed, same files). Defaults to 0.
        ct: PET only: one co-registered CT per source for the attenuation. Defaults to water in the body outline.
        i0: CT full-dose photons per ray. Defaults to the value from the mAs / kVp tags (:func:`ct_exposure_i0`).
        electronic_noise: CT electronic noise per ray in photons. Defaults to 10.
        formats: any of "dicom", "nifti" ("dicom" needs DICOM sources). Defaults to both.
        split: patient-level (training, validation, test) fractions. Defaults to (0.7, 0.15, 0.15).
        progress: tqdm bars (subjects; views for CT, slices for PET). Defaults to True.
        preview: write ``preview_<modality>.png`` of the first subject. Defaults to True.
        overwrite: replace an existing ``out_dir``. Defaults to False.
        iterations: PET OSEM iterations. Defaults to 4.
        subsets: PET OSEM subsets. Defaults to 8.
        counts_per_slice: PET mean true counts per slice at full dose. Defaults to 1.5e6.

    Returns:
        the path of ``datalist.json``.
    """
    modality = str(modality).lower()
    if modality not in ("ct", "pet"):
        raise ValueError(f"modality must be 'ct' or 'pet', got {modality!r}.")
    d = float(dose_reduction if dose_reduction is not None else DEFAULT_DOSE_REDUCTION[modality])
    if not d > 1.0:
        raise ValueError(f"--dose-reduction must be above 1 (4 = a quarter of the dose), got {d:g}.")
    sources = [Path(s) for s in sources]
    if not sources:
        raise ValueError("give at least one scan with --from.")
    formats = tuple(str(f).lower() for f in ([formats] if isinstance(formats, str) else formats))
    if not formats or any(f not in ("dicom", "nifti") for f in formats):
        raise ValueError(f"formats must be a non-empty subset of ('dicom', 'nifti'), got {formats}.")
    cts = [Path(c) for c in (ct or [])]
    if cts and (modality != "pet" or len(cts) != len(sources)):
        raise ValueError(f"--ct is for PET only, one CT per --from scan: got {len(cts)} for {len(sources)} scans.")
    if "dicom" in formats:
        for s in sources:
            if s.is_file():
                raise ValueError(f"--from {s}: a NIfTI file has no DICOM header to derive the low-dose series from; "
                                 "pass --formats nifti, or give the DICOM series folder.")
    mod = "CT" if modality == "ct" else "PT"
    units = "hu" if modality == "ct" else "suv"
    entries, figures, taken = [], [], set()
    t_start = time.perf_counter()
    with staged_output(out_dir, overwrite) as out:
        for i, path in enumerate(tqdm(sources, desc=f"simulate {modality} --from", unit="subject",
                                      disable=not progress)):
            t0 = time.perf_counter()
            vol = _load(path, modality)
            arr, spacing = np.asarray(vol[0], np.float32), tuple(float(v) for v in vol.meta["spacing"])
            if abs(spacing[0] - spacing[1]) > 1e-3 * spacing[0]:
                raise ValueError(f"--from {path}: pixels are {spacing[0]:g} x {spacing[1]:g} mm; the projector needs "
                                 "square pixels. Resample the scan in-plane first.")
            hdr = _header(vol)
            pid = str(getattr(hdr, "PatientID", "") or "") or re.sub(r"\.nii(\.gz)?$", "", path.name)
            sid = _subject_name(pid, taken)
            rng = np.random.default_rng([int(seed), i])
            if modality == "ct":
                fov = arr >= OUT_OF_FOV_HU
                body = _body_mask(np.where(fov, arr, -1000.0), -500.0)
            else:
                sf = float(vol.meta.get("suv_factor") or 1.0)
                body = _body_mask(arr * sf, 0.1)
            if body.mean() < MIN_BODY_FRACTION:
                raise ValueError(f"--from {path}: no usable body ({100 * body.mean():.2f} % of the voxels look like "
                                 f"a body, need {100 * MIN_BODY_FRACTION:g} %); is it the right scan and modality?")
            setting: dict[str, Any] = {"subject": sid, "patient": pid, "source": str(path)}
            if modality == "ct":
                na = max(arr.shape[:2])
                slice_mm = float(getattr(hdr, "SliceThickness", 0) or spacing[2]) if hdr else spacing[2]
                i0_used, how = (float(i0), "--i0") if i0 else ct_exposure_i0(hdr, spacing[0], slice_mm, na)
                with tqdm(total=na, desc=f"{sid} views", unit="view", leave=False, disable=not progress) as bar:
                    noise = ct_noise_hu(arr, spacing[0], d, rng, i0_used, electronic_noise, n_angles=na, progress=bar)
                low = np.where(fov, np.maximum(np.round(arr + noise), -1024.0), arr).astype(np.float32)
                vols, written = {"low": low, "full": arr}, {"low": low, "full": arr}
                setting.update(i0_per_ray=i0_used, exposure_from=how, views=na)
            else:
                mu511 = _hu_to_mu511(_resample_ct_to(_load(cts[i], "ct"), vol)) if cts else None
                with tqdm(total=arr.shape[2], desc=f"{sid} slices", unit="slice", leave=False,
                          disable=not progress) as bar:
                    low, full = simulate_pet_from_scan(arr, spacing, rng, d, body, mu511, counts_per_slice,
                                                       iterations=iterations, subsets=subsets, progress=bar)
                vols, written = {"low": low * sf * d, "full": full * sf}, {"low": low, "full": full}
                setting.update(suv_factor_full=sf, attenuation=str(cts[i]) if cts else "water in the body outline")
            entry: dict[str, Any] = {"subject": sid, "patient": pid, "modality": mod, "units": units}
            src_desc = str(vol.meta.get("series_description") or "") or (
                f"series {getattr(hdr, 'SeriesNumber', '')}".strip() if hdr else path.name)
            desc = {"low": f"simulated 1/{d:g} dose from {src_desc}",
                    "full": src_desc if modality == "ct" else f"simulated full dose (OSEM) from {src_desc}"}
            if "nifti" in formats:
                sides = {p: {**setting, "dose": p, "dose_reduction": d, "seed": int(seed), "description": desc[p],
                             "spacing": list(spacing)} for p in desc}
                entry.update(write_nifti_pair(out, sid, vols, np.asarray(vol.affine, np.float64), mod, units, desc,
                                              sides))
            if "dicom" in formats:
                files, src_uid = list(vol.meta["dicom_files"]), str(vol.meta.get("series_instance_uid"))
                number = int(getattr(hdr, "SeriesNumber", 0) or 0)
                for j, p in enumerate(("low", "full")):
                    ddir = out / "dicom" / sid / p
                    if p == "full" and modality == "ct":  # the real scan, unchanged
                        ddir.mkdir(parents=True)
                        for f in files:
                            shutil.copy2(f, ddir / Path(f).name)
                        continue
                    ent = ("rat-monai-real", src_uid, f"{d:g}", int(seed), p)
                    comments = (f"{desc[p]} (source SeriesInstanceUID {src_uid}); rat-monai simulate {modality} "
                                f"--from, dose reduction {d:g}, seed {seed}")
                    write_dicom_series(written[p], files, ddir, series_description=desc[p],
                                       derivation_description=desc[p], image_comments=comments,
                                       series_number=number + 1000 * (j + 1), uid_entropy=ent,
                                       dose_factor=1.0 / d if p == "low" else 1.0, keep_source_rescale=modality == "ct")
                entry.update(image_dicom=f"dicom/{sid}/low", label_dicom=f"dicom/{sid}/full")
                if "nifti" not in formats:
                    entry.update(image=entry["image_dicom"], label=entry["label_dicom"])
            fig = {**setting, "simulate_s": round(time.perf_counter() - t0, 3), **_figures(vols, body, modality)}
            figures.append(fig)
            entries.append(entry)
            if preview and i == 0:
                k = int(np.argmax(body.sum(axis=(0, 1))))
                save_preview(vols["low"][:, :, k], vols["full"][:, :, k], out / f"preview_{modality}.png", modality,
                             title=f"{sid} slice {k}: PSNR(LQ vs HQ, body) {fig['psnr_low_vs_full_body_db']:.1f} dB")
            clear_projector_cache()
        header = {"name": f"rat-monai {mod} simulated from real scans",
                  "description": f"paired simulated 1/{d:g} dose (image) / full dose (label) {mod}, seed {seed}",
                  "modality": mod, "units": units}
        summary = {"modality": modality, "from": [str(s) for s in sources], "seed": int(seed), "dose_reduction": d,
                   "formats": list(formats), "split": list(split), "electronic_noise": electronic_noise,
                   "total_s": round(time.perf_counter() - t_start, 3), "subjects_figures": figures}
        if modality == "pet":
            summary.update(iterations=iterations, subsets=subsets, counts_per_slice=counts_per_slice)
        path = write_dataset_files(out, entries, header, summary, split, seed)
    logger.info("simulated %d %s pairs from real scans into %s", len(entries), modality, out_dir)
    return Path(out_dir) / path.name
