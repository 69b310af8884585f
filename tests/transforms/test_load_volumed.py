# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""LoadVolume / LoadVolumed: paths -> MetaTensor volumes in SUV/HU inside MONAI pipelines."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor, decollate_batch
from monai.transforms import Compose, EnsureChannelFirstd, Invertd

from rat_monai.data import denormalize_units, load_volume
from rat_monai.transforms import LoadVolume, LoadVolumeD, LoadVolumed, LoadVolumeDict, NormalizeUnitsd


def _small_folders(real_pet_dir: Path, real_ct_dir: Path, dst: Path) -> tuple[Path, Path]:
    """Four PET slices and four CT slices copied into separate folders (and one mixed folder)."""
    pet, ct, mixed = dst / "pet", dst / "ct", dst / "mixed"
    for d in (pet, ct, mixed):
        d.mkdir()
    for f in sorted(real_pet_dir.glob("*.dcm"))[100:104]:
        shutil.copy(f, pet)
        shutil.copy(f, mixed)
    for f in sorted(real_ct_dir.glob("*.dcm"))[10:14]:
        shutil.copy(f, ct)
        shutil.copy(f, mixed)
    return pet, ct


def test_aliases():
    assert LoadVolumeD is LoadVolumed and LoadVolumeDict is LoadVolumed


@pytest.mark.parametrize("as_path", [True, False])  # pathlib.Path or str
def test_array_transform_equals_load_volume(real_pet_dir, real_ct_dir, tmp_path, as_path):
    _, ct = _small_folders(real_pet_dir, real_ct_dir, tmp_path)
    out = LoadVolume(units="hu")(ct if as_path else str(ct))
    ref = load_volume(ct)
    assert isinstance(out, MetaTensor) and out.shape == (1, 512, 512, 4)
    torch.testing.assert_close(out.as_tensor(), ref.as_tensor())
    assert out.meta["units"] == "hu" and out.meta["dicom_files"] == ref.meta["dicom_files"]


def test_dict_per_key_settings(real_pet_dir, real_ct_dir, tmp_path):
    """image and label from one mixed folder, chosen per key by modality, with per-key units."""
    _small_folders(real_pet_dir, real_ct_dir, tmp_path)
    mixed = tmp_path / "mixed"
    loader = LoadVolumed(("pet", "ct"), modality=("pet", "ct"), units=("bqml", "auto"))
    out = loader({"pet": mixed, "ct": str(mixed), "other": 3})
    assert out["other"] == 3
    assert out["pet"].meta["modality"] == "PT" and out["pet"].meta["units"] == "bqml"
    assert out["ct"].meta["modality"] == "CT" and out["ct"].meta["units"] == "hu"
    assert out["pet"].shape == (1, 128, 128, 4) and out["ct"].shape == (1, 512, 512, 4)
    suv = LoadVolumed("pet", modality="pet")({"pet": mixed})["pet"]
    np.testing.assert_allclose(suv.numpy(), out["pet"].numpy() * out["pet"].meta["suv_factor"], rtol=1e-5)


def test_in_monai_dataset(real_pet_dir, real_ct_dir, tmp_path):
    _, ct = _small_folders(real_pet_dir, real_ct_dir, tmp_path)
    nii = tmp_path / "label.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((5, 6, 7), np.float32), np.eye(4)), str(nii))
    # EnsureChannelFirstd after LoadVolumed is a no-op (original_channel_dim is 0, as MONAI sets for stacked data)
    pipeline = Compose([LoadVolumed(["image", "label"]), EnsureChannelFirstd(["image", "label"])])
    ds = Dataset([{"image": ct, "label": nii}], transform=pipeline)
    item = ds[0]
    assert item["image"].shape == (1, 512, 512, 4) and item["label"].shape == (1, 5, 6, 7)
    assert item["image"].meta["filename_or_obj"] == str(ct)


def test_missing_keys():
    with pytest.raises(KeyError):
        LoadVolumed("image")({"label": "x"})
    assert LoadVolumed("image", allow_missing_keys=True)({"label": "x"}) == {"label": "x"}


def test_ill_arg(tmp_path):
    with pytest.raises(TypeError, match="expects a path"):
        LoadVolume()(np.zeros(3))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LoadVolumed("image")({"image": tmp_path / "nothing"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="units must be one of"):
            LoadVolume(units="kelvin")(tmp_path)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_dataloader_collate_decollate_invert(real_pet_dir, real_ct_dir, tmp_path, batch_size):
    """Volumes with None-valued meta (suv_factor of a CT) go through MONAI's DataLoader, decollate and Invertd."""
    files = sorted(real_ct_dir.glob("*.dcm"))
    for name, part in (("a", files[0:3]), ("b", files[5:8])):
        (tmp_path / name).mkdir()
        for f in part:
            shutil.copy(f, tmp_path / name)
    pre = Compose([LoadVolumed("image"), NormalizeUnitsd("image", modality="auto")])
    data = [{"image": tmp_path / "a"}, {"image": tmp_path / "b"}]
    loader = DataLoader(Dataset(data, transform=pre), batch_size=batch_size, num_workers=0)
    batch = next(iter(loader))
    assert batch["image"].shape == (batch_size, 1, 512, 512, 3)
    assert batch["image"].meta["suv_factor"] == [None] * batch_size
    batch["pred"] = batch["image"].clone()  # stands in for the network output
    items = decollate_batch(batch)
    first = items[0]["image"]
    assert first.meta["suv_factor"] is None and first.meta["units"] == "hu"
    assert first.meta["dicom_files"] == load_volume(tmp_path / "a").meta["dicom_files"]
    restored = Invertd("pred", pre, orig_keys="image")(items[0])["pred"]
    torch.testing.assert_close(restored.as_tensor(), load_volume(tmp_path / "a").as_tensor(), rtol=0, atol=0)
    # the recorded parameters survive collation and invert a bare tensor too
    rec = first.meta["normalization"]
    torch.testing.assert_close(denormalize_units(first.as_tensor(), **rec), restored.as_tensor(), rtol=0, atol=0)
