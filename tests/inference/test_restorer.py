# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Whole-scan restoration on the real CT/PET series.

Most tests use a one-parameter stand-in network (``y = scale * image``) so that the pipeline around the network
(loading, region maps, cache, batching, inverse normalisation, DICOM/NIfTI writing, safety) is checked against
values computed independently; the RAT itself (tiny, untrained) runs in the batch-invariance and bundle tests.
"""

from __future__ import annotations

import json
import os
import shutil
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from parameterized import parameterized

from rat_monai.data import load_volume
from rat_monai.data.writers import write_nifti
from rat_monai.inference import ScanRestorer
from rat_monai.regions import RegionCache

pytestmark = pytest.mark.filterwarnings("ignore::rat_monai.data.SliceSpacingWarning")

REPO = Path(__file__).resolve().parents[2]
TINY_RAT = {
    "width": 8,
    "network_def#middle_blocks": 1,
    "network_def#layers_per_block": 1,
    "untrained": True,  # not the shipped weights (they fit the default network only)
    "progress": False,
}


class ScaledImage(torch.nn.Module):
    """Stand-in network ``[B, 2, H, W] -> scale * image``; records the region channels it saw; can fail on demand."""

    def __init__(self, scale: float = 1.05, fail_on_call: int | None = None) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(float(scale)))
        self.fail_on_call = fail_on_call
        self.calls = 0
        self.region_channels: list[torch.Tensor] = []
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_on_call is not None and self.calls >= self.fail_on_call:
            raise RuntimeError("simulated crash in the network stage")
        self.batch_sizes.append(int(x.shape[0]))
        if x.shape[1] > 1:
            self.region_channels.append(x[:, 1].clone())
        return self.scale * x[:, :1]


def _sorted_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.dcm"))
    heads = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    normal = np.cross(*np.asarray(heads[0].ImageOrientationPatient, float).reshape(2, 3))
    pos = [float(np.dot(normal, np.asarray(h.ImagePositionPatient, float))) for h in heads]
    return [files[i] for i in np.argsort(pos)]


def _copy_subset(src: Path, dst: Path, start: int, count: int) -> Path:
    dst.mkdir(parents=True)
    for f in _sorted_files(src)[start : start + count]:
        shutil.copy2(f, dst / f.name)
    return dst


@pytest.fixture
def ct_subset(real_ct_dir, tmp_path) -> Path:
    """6 contiguous slices (512x512) of the real CT, copied so the input folder is ours."""
    return _copy_subset(real_ct_dir, tmp_path / "ct_in", 16, 6)


@pytest.fixture
def pet_subset(real_pet_dir, tmp_path) -> Path:
    """8 contiguous slices (128x128) of the real PET through the torso."""
    return _copy_subset(real_pet_dir, tmp_path / "pet_in", 130, 8)


def _restorer(net: torch.nn.Module, modality: str = "ct", **kwargs) -> ScanRestorer:
    kwargs.setdefault("region_method", "felzenszwalb")
    kwargs.setdefault("batch_size", 4)
    return ScanRestorer(net, modality, allow_untrained=True, progress=False, **kwargs)


def _read_series(folder: Path) -> sitk.Image:
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))
    return sitk.ReadImage(files, sitk.sitkFloat64)


def _dicom_xyz(folder: Path) -> np.ndarray:
    return np.transpose(sitk.GetArrayFromImage(_read_series(folder)), (2, 1, 0))


def _assert_same_geometry(out_dicom: Path, in_dicom: Path) -> None:
    a, b = _read_series(out_dicom), _read_series(in_dicom)
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-9)


def _assert_same_order_and_uids(out_dicom: Path, in_dicom: Path) -> None:
    src = [pydicom.dcmread(f, stop_before_pixels=True) for f in _sorted_files(in_dicom)]
    new = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(out_dicom.glob("*.dcm"))]
    assert len(new) == len(src)
    # the files are written in z order and every slice keeps its source's position and instance number
    assert [list(map(float, d.ImagePositionPatient)) for d in new] == [
        list(map(float, d.ImagePositionPatient)) for d in src
    ]
    assert [d.InstanceNumber for d in new] == [d.InstanceNumber for d in src]
    assert {d.StudyInstanceUID for d in new} == {src[0].StudyInstanceUID}
    assert len({d.SeriesInstanceUID for d in new}) == 1 and new[0].SeriesInstanceUID != src[0].SeriesInstanceUID
    assert all(d.SourceImageSequence[0].ReferencedSOPInstanceUID == s.SOPInstanceUID for d, s in zip(new, src))


def test_ct_restoration_end_to_end(ct_subset, tmp_path):
    net = ScaledImage(1.05)
    out = tmp_path / "restored_ct"
    report = _restorer(net, "ct").run(ct_subset, out)

    assert sorted(p.name for p in out.iterdir()) == ["dicom", "overview.png", "report.json", "restored.json", "restored.nii.gz"]
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report, default=str))
    assert report["num_slices"] == 6 and report["units_in"] == report["units_out"] == "hu"
    assert set(report["timings"]["stages"]) == {"load", "regions", "network", "write"}
    assert report["regions"]["misses"] == 6 and report["regions"]["hits"] == 0
    assert (
        report["untrained"] is True
        and "UNTRAINED" in pydicom.dcmread(next((out / "dicom").iterdir())).DerivationDescription
    )
    assert net.batch_sizes == [4, 2]

    # the network saw normalised slices and the region maps as the last channel
    regions = torch.cat(net.region_channels)
    assert regions.shape == (6, 512, 512) and torch.equal(regions, regions.round())
    assert all(len(torch.unique(r)) > 1 for r in regions)

    # expected: denormalise(1.05 * normalise(HU)) = 1.05 * (HU + 1024) - 1024 (default CT normalisation)
    source = load_volume(ct_subset)
    expected = 1.05 * (source[0].numpy().astype(np.float64) + 1024.0) - 1024.0
    nifti = nib.load(out / "restored.nii.gz")
    np.testing.assert_allclose(nifti.affine, source.affine.numpy(), atol=1e-4)
    np.testing.assert_allclose(np.asarray(nifti.dataobj), expected, atol=1e-2)

    dicom = _dicom_xyz(out / "dicom")
    value_range = expected.max() - expected.min()
    assert np.abs(dicom - expected).max() < 1e-3 * value_range
    _assert_same_geometry(out / "dicom", ct_subset)
    _assert_same_order_and_uids(out / "dicom", ct_subset)
    assert (out / "overview.png").stat().st_size > 1000


@pytest.mark.slow
def test_pet_full_series(real_pet_dir, tmp_path):
    """All 267 slices of the real PET: Bq/ml back in DICOM, geometry and order kept."""
    out = tmp_path / "restored_pet"
    report = _restorer(ScaledImage(0.9), "pet", batch_size=32).run(real_pet_dir, out)
    assert report["num_slices"] == 267 and (report["units_in"], report["units_out"]) == ("suv", "bqml")

    source = load_volume(real_pet_dir, units="bqml")
    expected = 0.9 * source[0].numpy().astype(np.float64)  # SUV scaling is linear: 0.9 * SUV <-> 0.9 * Bq/ml
    dicom = _dicom_xyz(out / "dicom")
    assert np.abs(dicom - expected).max() < 1e-3 * (expected.max() - expected.min())
    _assert_same_geometry(out / "dicom", real_pet_dir)
    _assert_same_order_and_uids(out / "dicom", real_pet_dir)
    head = pydicom.dcmread(next((out / "dicom").iterdir()), stop_before_pixels=True)
    assert head.Units == "BQML" and head.Modality == "PT"
    nifti = nib.load(out / "restored.nii.gz")
    np.testing.assert_allclose(nifti.affine, source.affine.numpy(), atol=1e-4)
    np.testing.assert_allclose(np.asarray(nifti.dataobj), expected, rtol=1e-5, atol=1e-2)


@pytest.mark.slow
def test_batch_size_invariance_tiny_rat(pet_subset, tmp_path):
    """An untrained, seeded RAT gives identical outputs with batches of 1 and of 8."""
    outputs, states = [], []
    cache = tmp_path / "cache"
    for bs in (1, 8):
        restorer = ScanRestorer.from_bundle(REPO / "bundles" / "rat_pet", batch_size=bs, **TINY_RAT)
        states.append(restorer.network.state_dict())
        report = restorer.run(pet_subset, tmp_path / f"bs{bs}", format="nifti", cache_dir=cache)
        assert report["settings"]["batch_size"] == bs
        outputs.append(np.asarray(nib.load(tmp_path / f"bs{bs}" / "restored.nii.gz").dataobj))
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])  # seeded: the same untrained weights
    assert report["regions"]["hits"] == 8  # the second run reused the first run's region maps
    assert outputs[0].shape == (128, 128, 8)
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_interrupt_leaves_no_output_and_resume_uses_cache(ct_subset, tmp_path):
    out = tmp_path / "out"
    crashing = ScaledImage(fail_on_call=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _restorer(crashing, "ct", batch_size=2).run(ct_subset, out)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no partial folder either
    cache = tmp_path / "out.regions_cache"
    assert len(RegionCache(cache)) == 6  # the region stage finished and was cached

    report = _restorer(ScaledImage(), "ct", batch_size=2).run(ct_subset, out)
    assert (report["regions"]["hits"], report["regions"]["misses"]) == (6, 0)
    assert (out / "report.json").is_file() and len(list((out / "dicom").iterdir())) == 6


def test_stale_partial_folder_is_removed(ct_subset, tmp_path):
    # a folder left by a run that was killed with SIGKILL in the write stage (its process no longer exists)
    stale = tmp_path / ".out.rat-partial-999999999-deadbeef"
    (stale / "dicom").mkdir(parents=True)
    _restorer(ScaledImage(), "ct", batch_size=8, use_regions=False).run(ct_subset, tmp_path / "out", format="nifti")
    assert not stale.exists()


def test_overwrite(ct_subset, tmp_path, monkeypatch):
    """--overwrite replaces only an earlier rat-monai output, never a user's folder or the current folder (item 6)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous result")
    restorer = _restorer(ScaledImage(), "ct", batch_size=8, use_regions=False)
    with pytest.raises(FileExistsError, match="--overwrite"):
        restorer.run(ct_subset, out, format="nifti")
    with pytest.raises(FileExistsError, match="not an earlier rat-monai output"):
        restorer.run(ct_subset, out, format="nifti", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]  # untouched
    shutil.rmtree(out)
    restorer.run(ct_subset, out, format="nifti")
    (out / "report.json").write_text((out / "report.json").read_text())  # an earlier rat-monai output
    restorer.run(ct_subset, out, format="nifti", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["overview.png", "report.json", "restored.json", "restored.nii.gz"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    monkeypatch.chdir(out)  # --output . --overwrite: refused before any work
    with pytest.raises(ValueError, match="current folder"):
        restorer.run(ct_subset, ".", format="nifti", overwrite=True)


def test_nifti_input(pet_subset, tmp_path):
    source = load_volume(pet_subset)  # SUV
    nifti_in = Path(write_nifti(source, source.affine, tmp_path / "pet_suv.nii.gz"))
    restorer = _restorer(ScaledImage(1.1), "pet")
    with pytest.raises(ValueError, match="needs a DICOM series input"):
        restorer.run(nifti_in, tmp_path / "o1", format="dicom")
    report = restorer.run(nifti_in, tmp_path / "o2")  # "both" -> NIfTI only for a NIfTI input
    assert "dicom" not in report["files"]
    out = nib.load(tmp_path / "o2" / "restored.nii.gz")
    np.testing.assert_allclose(out.affine, nib.load(nifti_in).affine, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out.dataobj), 1.1 * source[0].numpy(), rtol=1e-5, atol=1e-6)


def test_path_safety(ct_subset, tmp_path):
    restorer = _restorer(ScaledImage(), "ct")
    with pytest.raises(ValueError, match="inside the input folder"):
        restorer.run(ct_subset, ct_subset / "restored")
    with pytest.raises(ValueError, match="contains\\) the input"):
        restorer.run(ct_subset, tmp_path, overwrite=True)
    with pytest.raises(ValueError, match="region cache .* inside the input folder"):
        restorer.run(ct_subset, tmp_path / "o", cache_dir=ct_subset / "cache")
    with pytest.raises(FileNotFoundError, match="input not found"):
        restorer.run(tmp_path / "nope", tmp_path / "o")
    with pytest.raises(ValueError, match="no input scan given"):
        restorer.run(None, tmp_path / "o")
    assert sorted(p.name for p in ct_subset.iterdir()) == sorted(p.name for p in ct_subset.glob("*.dcm"))


def test_unreadable_inputs(pet_subset, tmp_path):
    restorer = _restorer(ScaledImage(), "ct")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("no images here")
    with pytest.raises((ValueError, FileNotFoundError), match="junk"):
        restorer.run(junk, tmp_path / "o1")
    with pytest.raises(ValueError, match="PT scan but this model restores CT"):
        restorer.run(pet_subset, tmp_path / "o2")
    for name in ("o1", "o2"):
        assert not (tmp_path / name).exists()


def test_checkpoint_loading(tmp_path):
    ckpt = tmp_path / "model.pt"
    torch.save(ScaledImage(2.5).state_dict(), ckpt)
    restorer = ScanRestorer(ScaledImage(1.0), "ct", checkpoint=ckpt, progress=False)
    assert restorer.untrained is False and restorer.network.scale.item() == 2.5
    torch.save({"network": ScaledImage(3.0).state_dict(), "optimizer": {}}, ckpt)
    assert ScanRestorer(ScaledImage(1.0), "ct", checkpoint=ckpt).network.scale.item() == 3.0

    with pytest.raises(FileNotFoundError, match="--allow-untrained"):
        ScanRestorer(ScaledImage(), "ct", checkpoint=tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint was given"):
        ScanRestorer(ScaledImage(), "ct")
    torch.save({"other.weight": torch.zeros(1)}, ckpt)
    with pytest.raises(ValueError, match="does not fit the network"):
        ScanRestorer(ScaledImage(), "ct", checkpoint=ckpt)
    ckpt.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read the checkpoint"):
        ScanRestorer(ScaledImage(), "ct", checkpoint=ckpt)


def test_from_bundle_untrained():
    """``untrained=True`` builds the bundle's network with its seeded initial weights and loads no checkpoint, even
    when the bundle ships weights."""
    bundle = REPO / "bundles" / "rat_pet"
    restorer = ScanRestorer.from_bundle(bundle, **TINY_RAT)
    assert restorer.untrained is True and restorer.checkpoint is None
    with pytest.raises(ValueError, match="untrained=True"):
        ScanRestorer.from_bundle(bundle, checkpoint="model.pt", **TINY_RAT)


class TestScanRestorerArgs(unittest.TestCase):
    @parameterized.expand(
        [
            ("modality", {"modality": "mr"}, "modality must be"),
            ("batch_size", {"batch_size": 0}, "batch_size must be"),
            ("overview", {"overview_slices": -1}, "overview_slices must be"),
            ("network", {"network": "not a module"}, "torch.nn.Module"),
        ]
    )
    def test_ill_arg(self, _, kwargs, message):
        args = {"network": ScaledImage(), "modality": "ct", "allow_untrained": True, **kwargs}
        with self.assertRaisesRegex(ValueError, message):
            ScanRestorer(**args)

    def test_bad_format(self):
        with self.assertRaisesRegex(ValueError, "format must be one of"):
            _restorer(ScaledImage()).run(".", "/nonexistent/out", format="png")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(pet_subset, tmp_path):
    cache = tmp_path / "cache"
    _restorer(ScaledImage(), "pet").run(pet_subset, tmp_path / "cpu", format="nifti", cache_dir=cache)
    report = _restorer(ScaledImage(), "pet", device="cuda").run(
        pet_subset, tmp_path / "gpu", format="nifti", cache_dir=cache
    )
    assert report["settings"]["device"].startswith("cuda") and "cuda_mb" in report["peak_memory"]
    cpu, gpu = (np.asarray(nib.load(tmp_path / d / "restored.nii.gz").dataobj) for d in ("cpu", "gpu"))
    np.testing.assert_allclose(gpu, cpu, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_fails_before_any_work(ct_subset, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    net = ScaledImage()
    try:
        with pytest.raises(ValueError, match="not writable"):
            _restorer(net, "ct").run(ct_subset, locked / "out")
    finally:
        locked.chmod(0o700)
    assert net.calls == 0


def test_clipped_values_pass_through(ct_subset, tmp_path):
    """With clip=True (the CT bundle's setting) voxels outside [hu_min, hu_max] keep their input value.

    The real CRLM-1004 slices carry -3024 HU outside the scanner's field of view: the network never sees those
    values (they are clamped to -1024 HU), so the restored scan must give them back unchanged, not as air.
    """
    net = ScaledImage(1.05)
    norm = {"hu_min": -1024.0, "hu_max": 3072.0, "clip": True}
    _restorer(net, "ct", normalization=norm).run(ct_subset, tmp_path / "out", format="nifti")
    source = load_volume(ct_subset)[0].numpy().astype(np.float64)
    restored = np.asarray(nib.load(tmp_path / "out" / "restored.nii.gz").dataobj, dtype=np.float64)
    outside = (source < -1024.0) | (source > 3072.0)
    assert outside.sum() > 1000, "the real CT subset should contain out-of-field-of-view padding"
    np.testing.assert_array_equal(restored[outside], source[outside])
    inside = ~outside
    np.testing.assert_allclose(restored[inside], 1.05 * (source[inside] + 1024.0) - 1024.0, atol=1e-2)
