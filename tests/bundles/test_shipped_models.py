# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""The trained weights the bundles ship (``bundles/<name>/models/model.pt``), on the real scans in ``../shared``.

- the file is a plain state dict under the size limit that loads strictly into the DEFAULT network of ``train.json``
  and ``inference.json``, through both loaders that read it (``ScanRestorer`` and MONAI's ``CheckpointLoader``);
- ``rat-monai infer`` restores a real scan with it, without ``--allow-untrained``;
- on simulated low-dose slices of the held-out TEST patient of each bundle (PET: STS_001 at 1/12 dose; CT:
  CRLM-CT-1006 at 1/4 dose, made with ``rat_monai.simulation.from_scans``, seed 0), the restoration is closer to full
  dose than the low-dose input: PSNR with the evaluation's conventions (CT: HU window [-1000, 1000], data range
  2000 HU; PET: SUV, data range = full-dose SUVmax of the slices).

The TorchScript export of the shipped weights is checked in test_model_zoo_rules.py (``ckpt_export``). A bundle
without weights yet is skipped (a failure for rat_pet, for a committed model.pt and under CI: ``shipped_weights``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from ignite.engine import Engine
from monai.bundle import ConfigParser

from rat_monai.cli import main
from rat_monai.data import load_volume
from rat_monai.data.writers import write_nifti
from rat_monai.evaluation.metrics import metric_settings, prepare_pair, psnr
from rat_monai.inference import ScanRestorer
from rat_monai.simulation import simulate_from_scans

pytestmark = pytest.mark.filterwarnings("ignore::rat_monai.data.SliceSpacingWarning")

REPO = Path(__file__).resolve().parents[2]
BUNDLES = ["rat_pet", "rat_ct"]
MAX_WEIGHTS_BYTES = 25 * 1024 * 1024  # the Model Zoo's limit for one file (larger ones go to large_files.yml)
# the held-out test patient of each bundle: (its fixture, first slice in z order, slices, dose reduction)
TEST_SCANS = {
    "rat_pet": ("real_pet_dir", 130, 6, 12.0),  # STS_001, torso
    "rat_ct": ("real_ct_test_dir", 24, 2, 4.0),  # CRLM-CT-1006, abdomen with the liver
}
CT_CROP = 256  # the simulated CT is restored on a central 256 x 256 crop (the 512 x 512 network pass costs ~4x)


def _modality(bundle: str) -> str:
    return bundle.split("_")[1]


def _parser(bundle: str, config: str) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / bundle / "configs" / f"{config}.json"))
    parser["bundle_root"] = str(REPO / "bundles" / bundle)
    parser["device"] = "$torch.device('cpu')"
    return parser


def _version(bundle: str) -> str:
    return json.loads((REPO / "bundles" / bundle / "configs" / "metadata.json").read_text())["version"]


@pytest.fixture
def test_scan(request, dicom_subset):
    """``test_scan(bundle)``: a few contiguous slices of the bundle's real test patient, copied to ``tmp_path``."""

    def get(bundle: str) -> Path:
        fixture, start, count, _ = TEST_SCANS[bundle]
        return dicom_subset(request.getfixturevalue(fixture), start, count)

    return get


@pytest.mark.parametrize("bundle", BUNDLES)
def test_weights_load_into_the_default_networks(bundle, shipped_weights):
    path = shipped_weights(bundle)
    assert path.stat().st_size < MAX_WEIGHTS_BYTES, f"{path}: {path.stat().st_size} bytes, over 25 MB"
    state = torch.load(path, map_location="cpu", weights_only=True)
    # a plain state dict (what both loaders and ckpt_export read), not a training checkpoint with optimizer state
    assert isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values())
    assert not {"model", "optimizer", "lr_scheduler", "trainer"} & set(state), sorted(state)[:5]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    for config in ("train", "inference"):
        net = _parser(bundle, config).get_parsed_content("network_def")
        fresh = {k: v.clone() for k, v in net.state_dict().items()}
        net.load_state_dict(state, strict=True)  # raises on a missing, unexpected or reshaped key
        assert any(not torch.equal(fresh[k], state[k]) for k in state), "the weights equal a fresh initialisation"

    # inference.json's Model Zoo path: MONAI's CheckpointLoader (strict) into the evaluator's network_def
    parser = _parser(bundle, "inference")
    loader = parser.get_parsed_content("handlers")[0]
    net = parser.get_parsed_content("network_def")
    assert loader.strict and Path(loader.load_path) == path
    loader(Engine(lambda engine, batch: None))
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    # ScanRestorer's loader (rat-monai infer): trained, same tensors
    restorer = ScanRestorer.from_bundle(REPO / "bundles" / bundle, device="cpu", progress=False)
    assert restorer.untrained is False
    for key, value in restorer.network.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_infer_restores_a_real_scan_without_allow_untrained(bundle, shipped_weights, test_scan, tmp_path, capsys):
    shipped_weights(bundle)
    scan = test_scan(bundle)
    out = tmp_path / "out"
    assert main(["infer", "--bundle", str(REPO / "bundles" / bundle), "--input", str(scan), "--output", str(out),
                 "--no-progress"]) == 0, capsys.readouterr().err  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    assert report["untrained"] is False and report["model_version"] == _version(bundle)
    assert report["num_slices"] == TEST_SCANS[bundle][2]
    written = sorted((out / "dicom").glob("*.dcm"))
    assert len(written) == TEST_SCANS[bundle][2]
    assert "UNTRAINED" not in str(pydicom.dcmread(written[0], stop_before_pixels=True).DerivationDescription)
    # the real scan is full dose: the trained restoration keeps it (a denoiser, not a new image), but is not a copy
    modality = _modality(bundle)
    source = np.asarray(load_volume(scan)[0])  # SUV / HU, as the restorer loads it
    restored = np.asarray(load_volume(out / "restored.nii.gz", modality=modality)[0])
    assert restored.shape == source.shape and np.isfinite(restored).all()
    rng = metric_settings(modality).get("data_range") or float(source.max())
    close = psnr(*prepare_pair(restored, source, modality), rng)
    print(f"{bundle}: PSNR(restored, full-dose input) {close:.2f} dB (data range {rng:g})")
    assert 30.0 < close < 99.0, f"restored vs the full-dose input: {close:.2f} dB"


def _simulated_pair(bundle: str, src: Path, tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """(low-dose NIfTI to restore, low-dose array, full-dose array) from the real test slices ``src``."""
    modality, dose = _modality(bundle), TEST_SCANS[bundle][3]
    sim = tmp_path / "sim"
    simulate_from_scans([src], sim, modality, dose_reduction=dose, seed=0, formats=("nifti",), progress=False,
                        preview=False)  # fmt: skip
    (low_path,) = (sim / "nifti").glob("*_low.nii.gz")
    (full_path,) = (sim / "nifti").glob("*_full.nii.gz")
    low_vol = load_volume(low_path, modality=modality)
    low, full = np.asarray(low_vol[0]), np.asarray(load_volume(full_path, modality=modality)[0])
    if modality == "ct":  # central crop, the same geometry for the restorer (origin moved to the crop's corner)
        x0, y0 = ((n - CT_CROP) // 2 for n in low.shape[:2])
        low, full = low[x0 : x0 + CT_CROP, y0 : y0 + CT_CROP], full[x0 : x0 + CT_CROP, y0 : y0 + CT_CROP]
        affine = np.asarray(low_vol.affine, np.float64).copy()
        affine[:3, 3] += affine[:3, :3] @ np.array([x0, y0, 0.0])
        low_path = Path(write_nifti(low, affine, tmp_path / "low_crop.nii.gz", modality="ct", units="hu"))
    return low_path, low, full


@pytest.mark.parametrize("bundle", BUNDLES)
def test_restoration_beats_simulated_low_dose(bundle, shipped_weights, test_scan, tmp_path):
    """The real assertion: on the held-out patient, PSNR(restored, full) > PSNR(low, full), per volume and slice."""
    shipped_weights(bundle)
    modality = _modality(bundle)
    low_path, low, full = _simulated_pair(bundle, test_scan(bundle), tmp_path)
    restorer = ScanRestorer.from_bundle(REPO / "bundles" / bundle, device="cpu", progress=False)
    report = restorer.run(low_path, tmp_path / "restored", format="nifti")
    assert report["untrained"] is False
    restored = np.asarray(load_volume(tmp_path / "restored" / "restored.nii.gz", modality=modality)[0])
    assert restored.shape == low.shape == full.shape

    # data range: CT 2000 HU (both clipped to [-1000, 1000]); PET the full-dose SUVmax of these slices
    rng = metric_settings(modality).get("data_range") or float(full.max())
    (r, f), (lo, _) = prepare_pair(restored, full, modality), prepare_pair(low, full, modality)
    gain = psnr(r, f, rng) - psnr(lo, f, rng)
    per_slice = [psnr(r[..., k], f[..., k], rng) - psnr(lo[..., k], f[..., k], rng) for k in range(f.shape[-1])]
    print(f"{bundle}: PSNR low {psnr(lo, f, rng):.2f} dB -> restored {psnr(r, f, rng):.2f} dB (data range {rng:g}); "
          f"per-slice gains {np.round(per_slice, 2).tolist()}")  # fmt: skip
    assert gain > 0.0, f"{bundle}: the restoration is {-gain:.2f} dB FARTHER from full dose than the low-dose input"
    assert min(per_slice) > 0.0, f"{bundle}: per-slice PSNR gains {per_slice}"
