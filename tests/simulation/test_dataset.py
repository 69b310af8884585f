# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import json
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from rat_monai.data import load_volume
from rat_monai.data.datalist import load_datalist, split_counts
from rat_monai.evaluation.metrics import psnr
from rat_monai.simulation import TISSUES, make_phantom, simulate_ct_pair, simulate_dataset

PET_SHAPE = (48, 48, 8)
CT_SHAPE = (48, 48, 6)


@pytest.fixture(scope="module")
def pet_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "pet"
    simulate_dataset(out, "pet", subjects=3, seed=7, shape=PET_SHAPE, progress=False)
    return out


@pytest.fixture(scope="module")
def ct_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "ct"
    simulate_dataset(out, "ct", subjects=2, seed=7, shape=CT_SHAPE, progress=False, preview=False)
    return out


def _nii(path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).get_fdata(), np.float32)


@pytest.mark.parametrize("modality", ["pet", "ct"])
def test_layout_and_datalist(modality, pet_dir, ct_dir):
    out = pet_dir if modality == "pet" else ct_dir
    dl = json.loads((out / "datalist.json").read_text())
    n = 3 if modality == "pet" else 2
    entries = dl["training"] + dl["validation"] + dl["test"]
    assert len(entries) == n and len(dl["training"]) >= 1 and len(dl["validation"]) >= 1
    for e in entries:
        for key in ("image", "label", "image_dicom", "label_dicom"):
            assert not Path(e[key]).is_absolute() and (out / e[key]).exists(), e[key]
        assert e["image"].endswith("_low.nii.gz") and e["label"].endswith("_full.nii.gz")
        assert e["units"] == ("suv" if modality == "pet" else "hu")
    loaded = load_datalist(out / "datalist.json", "training")
    assert Path(loaded[0]["image"]).is_file() and Path(loaded[0]["image_dicom"]).is_dir()
    side = json.loads((out / "nifti" / "sim000_low.json").read_text())
    assert side["units"] == dl["units"] and side["dose"] == "low"
    assert (out / "preview_pet.png").is_file() == (modality == "pet")


def test_pet_low_dose_is_noisier_and_full_dose_is_anatomy(pet_dir):
    summary = json.loads((pet_dir / "simulation.json").read_text())
    for fig in summary["subjects_figures"]:
        assert 20.0 < fig["psnr_low_vs_full_body_db"] < 40.0, fig
    low, full = _nii(pet_dir / "nifti/sim000_low.nii.gz"), _nii(pet_dir / "nifti/sim000_full.nii.gz")
    ph = make_phantom(PET_SHAPE, summary["spacing"], np.random.default_rng([7, 0]))
    body = ph.body
    # same SUV scale, but low dose further from the truth than full dose
    assert abs(float(low[body].mean()) / float(full[body].mean()) - 1.0) < 0.1
    assert psnr(low, ph.suv, mask=body) < psnr(full, ph.suv, mask=body) - 1.0
    # full dose follows the anatomy: the liver is hotter than muscle and air is near zero
    liver = ph.labels == TISSUES["liver"][0]
    muscle = ph.labels == TISSUES["muscle"][0]
    assert full[liver].mean() > 1.5 * full[muscle].mean()
    assert float(np.corrcoef(full[body], ph.suv[body])[0, 1]) > 0.6
    assert float(np.abs(full[~body]).mean()) < 0.1 * float(full[body].mean())


def test_ct_low_dose_is_noisier(ct_dir):
    summary = json.loads((ct_dir / "simulation.json").read_text())
    spacing = summary["spacing"]
    ph = make_phantom(CT_SHAPE, spacing, np.random.default_rng([7, 0]))
    low, full = _nii(ct_dir / "nifti/sim000_low.nii.gz"), _nii(ct_dir / "nifti/sim000_full.nii.gz")
    muscle = ph.labels == TISSUES["muscle"][0]
    # noise = difference to a noiseless reconstruction of the same phantom (same rng stream up to the noise)
    clean = simulate_ct_pair(CT_SHAPE, spacing, np.random.default_rng([7, 0]), i0=1e13, electronic_noise=0.0)["full"]
    body = ph.body
    noise_low, noise_full = np.std((low - clean)[body]), np.std((full - clean)[body])
    assert noise_low > 1.6 * noise_full > 0  # quarter dose: about twice the noise std
    lung = ph.labels == TISSUES["lung"][0]
    assert full[lung].mean() < -600 and abs(full[muscle].mean() - ph.hu[muscle].mean()) < 40
    assert full.min() >= -1024 and low.min() >= -1024


def test_deterministic_per_seed(tmp_path, pet_dir):
    a = simulate_dataset(tmp_path / "a", "pet", subjects=1, seed=7, shape=PET_SHAPE, progress=False,
                         formats=("nifti",), preview=False)
    b = simulate_dataset(tmp_path / "b", "pet", subjects=1, seed=8, shape=PET_SHAPE, progress=False,
                         formats=("nifti",), preview=False)
    same = _nii(a.parent / "nifti/sim000_low.nii.gz")
    np.testing.assert_array_equal(same, _nii(pet_dir / "nifti/sim000_low.nii.gz"))
    assert not np.array_equal(same, _nii(b.parent / "nifti/sim000_low.nii.gz"))
    # only NIfTI: no DICOM keys
    entry = json.loads(a.read_text())["training"][0]
    assert "image_dicom" not in entry and not (a.parent / "dicom").exists()
    # DICOM UIDs are deterministic too
    c = simulate_dataset(tmp_path / "c", "pet", subjects=1, seed=7, shape=PET_SHAPE, progress=False,
                         formats=("dicom",), preview=False)
    uid_c = pydicom.dcmread(c.parent / "dicom/sim000/low/slice_0000.dcm").SOPInstanceUID
    assert uid_c == pydicom.dcmread(pet_dir / "dicom/sim000/low/slice_0000.dcm").SOPInstanceUID
    assert json.loads(c.read_text())["training"][0]["image"] == "dicom/sim000/low"


def test_pet_dicom_tags_and_suv_round_trip(pet_dir):
    low = pydicom.dcmread(pet_dir / "dicom/sim000/low/slice_0003.dcm")
    full = pydicom.dcmread(pet_dir / "dicom/sim000/full/slice_0003.dcm")
    assert low.Modality == "PT" and low.Units == "BQML" and low.DecayCorrection == "START"
    assert low.StudyInstanceUID == full.StudyInstanceUID and low.SeriesInstanceUID != full.SeriesInstanceUID
    rp_low = low.RadiopharmaceuticalInformationSequence[0]
    rp_full = full.RadiopharmaceuticalInformationSequence[0]
    assert float(rp_full.RadionuclideTotalDose) == pytest.approx(12 * float(rp_low.RadionuclideTotalDose), rel=1e-4)
    assert low.pixel_array.dtype == np.int16 and float(low.RescaleSlope) > 0
    for part in ("low", "full"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vol = load_volume(pet_dir / f"dicom/sim000/{part}")
        ref = _nii(pet_dir / f"nifti/sim000_{part}.nii.gz")
        assert vol.meta["units"] == "suv"
        np.testing.assert_allclose(vol[0].numpy(), ref, atol=2e-4 * float(ref.max()) + 1e-6)
        nii_aff = nib.load(str(pet_dir / f"nifti/sim000_{part}.nii.gz")).affine
        np.testing.assert_allclose(vol.affine.numpy(), nii_aff, atol=1e-3)


def test_ct_dicom_round_trip(ct_dir):
    ds = pydicom.dcmread(ct_dir / "dicom/sim001/full/slice_0000.dcm")
    assert ds.Modality == "CT" and float(ds.RescaleIntercept) == -1024 and float(ds.RescaleSlope) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vol = load_volume(ct_dir / "dicom/sim001/full")
    np.testing.assert_allclose(vol[0].numpy(), _nii(ct_dir / "nifti/sim001_full.nii.gz"), atol=0.51)


def test_ill_arg(tmp_path):
    with pytest.raises(ValueError, match="modality"):
        simulate_dataset(tmp_path / "x", "mr", subjects=1)
    with pytest.raises(ValueError, match="formats"):
        simulate_dataset(tmp_path / "x", "pet", subjects=1, formats=("png",))
    with pytest.raises(ValueError, match="subjects"):
        simulate_dataset(tmp_path / "x", "pet", subjects=0)
    with pytest.raises(ValueError, match="shape"):
        simulate_dataset(tmp_path / "x", "pet", subjects=1, shape=(8, 8, 8))
    with pytest.raises(ValueError, match="split"):
        split_counts(3, (0.5, 0.5))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f.txt").write_text("x")
    with pytest.raises(FileExistsError, match="overwrite"):
        simulate_dataset(tmp_path / "full", "pet", subjects=1, shape=(16, 16, 8))
    with pytest.raises(ValueError):
        make_phantom((4, 4), (1, 1, 1))


@pytest.mark.parametrize("modality", ["pet", "ct"])
def test_non_square_slices(modality, tmp_path):
    dl = simulate_dataset(tmp_path / modality, modality, subjects=1, shape=(40, 28, 2), progress=False, preview=False)
    fig = json.loads((dl.parent / "simulation.json").read_text())["subjects_figures"][0]
    assert fig["psnr_full_vs_truth_body_db"] > 20.0  # the whole body is reconstructed, not cut by the FOV
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vol = load_volume(dl.parent / "dicom/sim000/full")
    assert tuple(vol.shape) == (1, 40, 28, 2)
    np.testing.assert_allclose(vol[0].numpy(), _nii(dl.parent / "nifti/sim000_full.nii.gz"),
                               atol=0.51 if modality == "ct" else 1e-3 * float(vol.max()))
