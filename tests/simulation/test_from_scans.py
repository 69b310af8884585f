# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""``rat-monai simulate {ct,pet} --from SCAN``: pairs made from real scans (a few slices of ../shared/data/real)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from rat_monai.cli import main
from rat_monai.data import load_volume
from rat_monai.data.writers import write_nifti
from rat_monai.simulation.from_scans import ct_noise_hu, simulate_from_scans, simulate_pet_from_scan
from tests.conftest import shared_data


def _copy_slices(src: Path, dst: Path, start: int, n: int) -> Path:
    """Copy ``n`` consecutive slices (in z order) of the DICOM series ``src`` to ``dst``."""
    def z(f: Path) -> float:
        return float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2])

    files = sorted(src.iterdir(), key=z)
    dst.mkdir(parents=True)
    for f in files[start : start + n]:
        shutil.copy(f, dst / f.name)
    return dst


@pytest.fixture(scope="module")
def ct_run(tmp_path_factory):
    src = _copy_slices(shared_data("real", "ct_crlm1004", "CRLM-CT-1004", "image"),
                       tmp_path_factory.mktemp("src") / "ct", 20, 2)
    out = tmp_path_factory.mktemp("ct") / "sim"
    simulate_from_scans([src], out, "ct", dose_reduction=4, seed=0, progress=False)
    return src, out


@pytest.fixture(scope="module")
def pet_run(tmp_path_factory):
    src = _copy_slices(shared_data("real", "pet_fdg_sts001", "STS_001", "FDG_PET"),
                       tmp_path_factory.mktemp("src") / "pet", 150, 6)
    out = tmp_path_factory.mktemp("pet") / "sim"
    simulate_from_scans([src], out, "pet", dose_reduction=12, seed=0, progress=False)
    return src, out


@pytest.fixture(scope="module")
def ct_nifti(tmp_path_factory, ct_run):
    """The real CT subsampled to 128x128x2 (3.2 mm pixels) as NIfTI (HU), for the quick runs."""
    vol = load_volume(ct_run[0])
    aff = np.asarray(vol.affine, np.float64).copy()
    aff[:3, :2] *= 4
    path = tmp_path_factory.mktemp("nii") / "CROP-1.nii.gz"
    write_nifti(np.asarray(vol[0])[::4, ::4], aff, path)
    return path


def test_ct_label_is_the_scan(ct_run):
    src, out = ct_run
    ref = load_volume(src)
    for label in (out / "nifti" / "CRLM-CT-1004_full.nii.gz", out / "dicom" / "CRLM-CT-1004" / "full"):
        lab = load_volume(label, units="hu")
        np.testing.assert_array_equal(np.asarray(lab), np.asarray(ref))  # values, exactly
        np.testing.assert_allclose(np.asarray(lab.affine), np.asarray(ref.affine), atol=1e-4)  # geometry
    full = sorted((out / "dicom" / "CRLM-CT-1004" / "full").iterdir())
    assert [f.read_bytes() for f in full] == [f.read_bytes() for f in sorted(src.iterdir())]  # identity: same files
    low = load_volume(out / "dicom" / "CRLM-CT-1004" / "low")
    diff = np.asarray(low - ref)
    pad = np.asarray(ref) < -1100
    assert pad.any() and np.all(diff[pad] == 0)  # out-of-FOV padding (-3024) untouched
    body = np.asarray(ref) > -200
    assert 10.0 < diff[body].std() < 40.0  # quarter-dose noise added inside the body
    assert abs(diff[body].mean()) < 1.0  # zero-mean: FBP of zero-mean noise


def test_ct_dicom_round_trip_and_tags(ct_run):
    src, out = ct_run
    src_ds = pydicom.dcmread(next(src.iterdir()), stop_before_pixels=True)
    for part in ("low", "full"):
        folder = out / "dicom" / "CRLM-CT-1004" / part
        vol = load_volume(folder)
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        img = reader.Execute()
        arr = np.asarray(vol[0])
        np.testing.assert_allclose(sitk.GetArrayFromImage(img).transpose(2, 1, 0), arr)
        aff = np.asarray(vol.affine)
        np.testing.assert_allclose(img.GetOrigin(), [-aff[0, 3], -aff[1, 3], aff[2, 3]], atol=1e-3)
        np.testing.assert_allclose(img.GetSpacing(), vol.meta["spacing"], rtol=1e-5)
        np.testing.assert_allclose(np.reshape(img.GetDirection(), (3, 3)), np.eye(3), atol=1e-6)
    ds = pydicom.dcmread(next((out / "dicom" / "CRLM-CT-1004" / "low").iterdir()), stop_before_pixels=True)
    assert ds.PatientID == src_ds.PatientID and ds.StudyInstanceUID == src_ds.StudyInstanceUID
    assert ds.SeriesInstanceUID != src_ds.SeriesInstanceUID
    assert ds.SeriesDescription == "simulated 1/4 dose from CT CH/AB/PEL" and "simulated" in ds.ImageComments
    sim = json.loads((out / "simulation.json").read_text())
    fig = sim["subjects_figures"][0]
    assert fig["exposure_from"].startswith("DICOM tags") and fig["psnr_low_vs_full_body_db"] > 20
    assert 0 < fig["ssim_low_vs_full"] < 1 and (out / "preview_ct.png").is_file()
    dl = json.loads((out / "datalist.json").read_text())
    assert dl["training"][0]["patient"] == "CRLM-CT-1004" and dl["training"][0]["image_dicom"].endswith("/low")


def test_ct_noise_variance_grows_as_dose_reduction_minus_one():
    """Uniform water cylinder: variance of the inserted noise at d = 4 is 3x that at d = 2 (within 15 %)."""
    n, pixel = 96, 3.0
    x = (np.arange(n) - (n - 1) / 2) * pixel
    r = np.hypot(x[:, None], x[None, :])
    hu = np.broadcast_to(np.where(r < 120.0, 0.0, -1000.0)[..., None], (n, n, 8)).astype(np.float32)
    inner = np.broadcast_to((r < 90.0)[..., None], hu.shape)
    var = {d: float(ct_noise_hu(hu, pixel, d, np.random.default_rng(1), 2e5)[inner].var()) for d in (2.0, 4.0)}
    assert 3.0 * 0.85 < var[4.0] / var[2.0] < 3.0 * 1.15
    # quantum noise alone goes as 1 / photons: a quarter of i0 -> four times the variance (d fixed)
    v = [float(ct_noise_hu(hu, pixel, 2.0, np.random.default_rng(1), i0, electronic_noise=0.0)[inner].var())
         for i0 in (2e5, 5e4)]
    assert 4.0 * 0.85 < v[1] / v[0] < 4.0 * 1.15


def test_pet_suv_scale_and_series(pet_run):
    src, out = pet_run
    low, full = load_volume(out / "dicom" / "STS_001" / "low"), load_volume(out / "dicom" / "STS_001" / "full")
    src_vol = load_volume(src)
    body = np.asarray(src_vol[0]) > 0.3
    m_low, m_full = float(np.asarray(low[0])[body].mean()), float(np.asarray(full[0])[body].mean())
    assert abs(m_low / m_full - 1) < 0.03  # SUV scale kept (Bq/ml / 12 with the dose / 12)
    assert abs(m_full / float(np.asarray(src_vol[0])[body].mean()) - 1) < 0.1  # OSEM keeps the activity scale
    for part, vol in (("low", low), ("full", full)):
        np.testing.assert_allclose(np.asarray(vol.affine), np.asarray(src_vol.affine), atol=1e-3)
        nii = load_volume(out / "nifti" / f"STS_001_{part}.nii.gz")
        np.testing.assert_allclose(np.asarray(nii[0]), np.asarray(vol[0]), rtol=1e-3, atol=2e-3 * float(vol.max()))
    ds_src = pydicom.dcmread(next(src.iterdir()), stop_before_pixels=True)
    ds = pydicom.dcmread(next((out / "dicom" / "STS_001" / "low").iterdir()), stop_before_pixels=True)
    dose = float(ds.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose)
    assert dose == pytest.approx(float(ds_src.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose) / 12,
                                 rel=1e-5)
    assert ds.StudyInstanceUID == ds_src.StudyInstanceUID and ds.SeriesDescription.startswith("simulated 1/12 dose")
    fig = json.loads((out / "simulation.json").read_text())["subjects_figures"][0]
    assert abs(fig["mean_suv_body_low"] / fig["mean_suv_body_full"] - 1) < 0.03


def test_pet_noise_grows_as_counts_fall(pet_run):
    vol = load_volume(pet_run[0], units="bqml")
    act = np.asarray(vol[0])[..., :3]
    body = act > 0.2 * act.mean()
    noise = []
    for d in (2.0, 6.0, 20.0):
        low, full = simulate_pet_from_scan(act, vol.meta["spacing"], np.random.default_rng(0), d, body)
        noise.append(float((low * d - full)[body].std()))
    assert noise[0] < noise[1] < noise[2]


def test_deterministic_per_seed(tmp_path, ct_nifti):
    def run(name, seed):
        simulate_from_scans([ct_nifti], tmp_path / name, "ct", seed=seed, formats=("nifti",), progress=False,
                            preview=False)
        return np.asarray(load_volume(tmp_path / name / "nifti" / "CROP-1_low.nii.gz"))

    a, b, c = run("a", 0), run("b", 0), run("c", 1)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 5


def test_patient_level_split(tmp_path, ct_nifti):
    srcs = []
    for i, pid in enumerate(["P1", "P1", "P2", "P3", "P4"]):  # P1 has two scans
        p = tmp_path / f"in{i}" / f"{pid}.nii.gz"
        p.parent.mkdir()
        shutil.copy(ct_nifti, p)
        srcs.append(p)
    assert main(["simulate", "ct", *sum((["--from", str(s)] for s in srcs), []), "--out", str(tmp_path / "o"),
                 "--formats", "nifti", "--no-progress", "--no-preview", "--split", "0.5", "0.25", "0.25"]) == 0
    dl = json.loads((tmp_path / "o" / "datalist.json").read_text())
    where = {}
    for key in ("training", "validation", "test"):
        for e in dl[key]:
            where.setdefault(e["patient"], set()).add(key)
    assert sorted(where) == ["P1", "P2", "P3", "P4"] and all(len(v) == 1 for v in where.values())
    assert {e["subject"] for k in ("training", "validation", "test") for e in dl[k]} == {"P1", "P1-2", "P2", "P3", "P4"}


def test_bad_input(tmp_path, pet_run, ct_nifti):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=f"--from {pet_run[0]}.*no CT series"):
        simulate_from_scans([pet_run[0]], out, "ct", progress=False)
    assert not out.exists()
    with pytest.raises(ValueError, match="above 1"):
        simulate_from_scans([ct_nifti], out, "ct", dose_reduction=1.0, progress=False)
    empty = tmp_path / "air.nii.gz"
    write_nifti(np.full((32, 32, 2), -1000.0, np.float32), np.eye(4), empty)
    with pytest.raises(ValueError, match=f"--from {empty}: no usable body"):
        simulate_from_scans([ct_nifti, empty], out, "ct", formats=("nifti",), progress=False)
    assert not out.exists() and not list(tmp_path.glob(".out.partial*"))  # nothing half-written
    with pytest.raises(ValueError, match="NIfTI file has no DICOM header"):
        simulate_from_scans([ct_nifti], out, "ct", progress=False)
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="already exists"):
        simulate_from_scans([ct_nifti], out, "ct", formats=("nifti",), progress=False)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert main(["simulate", "ct", "--from", str(ct_nifti), "--out", str(tmp_path / "x"), "--subjects", "2"]) == 1
    assert main(["simulate", "ct", "--out", str(tmp_path / "x"), "--i0", "1e5"]) == 1


def test_pet_nifti_with_ct_attenuation(tmp_path, pet_run):
    """NIfTI PET (SUV) with a co-registered CT (``--ct``): the CT is resampled through the affines for the mu map."""
    vol = load_volume(pet_run[0])
    aff = np.asarray(vol.affine, np.float64)
    suv = np.asarray(vol[0])[..., :3]
    pet, ct = tmp_path / "pet.nii.gz", tmp_path / "ct.nii.gz"
    write_nifti(suv, aff, pet)
    write_nifti(np.where(suv > 0.1, 0.0, -1000.0).astype(np.float32), aff, ct)
    simulate_from_scans([pet], tmp_path / "o", "pet", ct=[ct], formats=("nifti",), progress=False, preview=False)
    fig = json.loads((tmp_path / "o" / "simulation.json").read_text())["subjects_figures"][0]
    assert fig["attenuation"] == str(ct) and fig["subject"] == "pet"
    assert abs(fig["mean_suv_body_low"] / fig["mean_suv_body_full"] - 1) < 0.03
    with pytest.raises(ValueError, match="one CT per --from"):
        simulate_from_scans([pet, pet], tmp_path / "p", "pet", ct=[ct], formats=("nifti",), progress=False)
