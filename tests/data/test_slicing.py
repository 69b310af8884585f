# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import tempfile
import unittest
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import DataLoader, MetaTensor
from monai.transforms import Compose, LoadImaged, MapTransform, RandFlipd, Randomizable
from parameterized import parameterized

from rat_monai.data import PairedSliceDataset
from rat_monai.data.datalist import load_datalist
from rat_monai.data.slicing import DEFAULT_AIR_THRESHOLD, keep_slices
from rat_monai.simulation import simulate_dataset

AFFINE = np.array([[-2.0, 0, 0, 30.0], [0, -2.0, 0, 40.0], [0, 0, 3.0, -50.0], [0, 0, 0, 1]])


def _write(path: Path, vol: np.ndarray, affine: np.ndarray = AFFINE) -> str:
    nib.save(nib.Nifti1Image(vol.astype(np.float32), affine), str(path))
    return str(path)


def _pair(tmp_path: Path, name: str, nz: int = 6, empty: tuple = (0, 5), shape=(12, 10), seed=0):
    rng = np.random.default_rng(seed)
    lab = np.zeros((*shape, nz), np.float32)
    lab[2:-2, 2:-2, :] = 1.0 + rng.random((shape[0] - 4, shape[1] - 4, nz))
    lab[..., list(empty)] = 0.0
    img = lab + 0.01 * rng.standard_normal(lab.shape).astype(np.float32)
    item = {"image": _write(tmp_path / f"{name}_low.nii.gz", img)}
    item["label"] = _write(tmp_path / f"{name}_full.nii.gz", lab)
    return {**item, "subject": name}, img, lab


class CountingTransform(MapTransform):
    """Deterministic transform that counts its calls (a stand-in for a costly region partitioner)."""

    def __init__(self):
        super().__init__(keys=("image",))
        self.calls = 0

    def __call__(self, data):
        self.calls += 1
        d = dict(data)
        d["regions"] = (d["image"] > 1.5).to(torch.int32)
        return d


# (air_threshold, min_fraction, expected kept slices of a 6-slice pair whose slices 0 and 5 are empty)
KEEP_CASES = [
    (0.5, 0.01, [1, 2, 3, 4]),
    (-1.0, 0.01, [0, 1, 2, 3, 4, 5]),
    (5.0, 0.01, []),
    (0.5, 0.99, []),
]


class TestPairedSliceDataset(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = Path(self._tmp.name)
        self.loader = LoadImaged(keys=("image", "label"), image_only=True, ensure_channel_first=True)

    def tearDown(self):
        self._tmp.cleanup()

    @parameterized.expand(KEEP_CASES)
    def test_keep_slices(self, thr, frac, expected):
        _, _, lab = _pair(self.tmp, "a")
        self.assertEqual(keep_slices(lab[None], thr, frac).tolist(), expected)

    def test_slices_values_meta_and_world_position(self):
        item_a, img_a, lab_a = _pair(self.tmp, "a")
        item_b, img_b, lab_b = _pair(self.tmp, "b", nz=4, empty=(3,), seed=1)
        ds = PairedSliceDataset([item_a, item_b], volume_transform=self.loader, progress=False, air_threshold=0.5)
        self.assertEqual(len(ds), 4 + 3)
        self.assertEqual(ds.slices_dropped, 3)
        self.assertEqual([v["kept"] for v in ds.volume_info], [4, 3])
        for i in range(len(ds)):
            d = ds[i]
            src_img, z = (img_a, d["slice_index"]) if d["subject"] == "a" else (img_b, d["slice_index"])
            np.testing.assert_allclose(d["image"][0].numpy(), src_img[..., z], rtol=1e-6)
            self.assertEqual(tuple(d["label"].shape), (1, 12, 10))
            self.assertTrue(d["source_image"].endswith(f"{d['subject']}_low.nii.gz"))
            self.assertTrue(d["source_label"].endswith(f"{d['subject']}_full.nii.gz"))
            self.assertEqual(d["image"].meta["slice_index"], z)
            # the slice's affine maps its pixel (i, j) to the volume's world position of (i, j, z)
            world = d["image"].affine.numpy() @ np.array([3.0, 4.0, 0.0, 1.0])
            np.testing.assert_allclose(world, AFFINE @ np.array([3.0, 4.0, z, 1.0]))
        batch = next(iter(DataLoader(ds, batch_size=3)))
        self.assertEqual(tuple(batch["image"].shape), (3, 1, 12, 10))
        self.assertEqual(len(batch["slice_index"]), 3)

    def test_items_with_different_extra_keys_batch_together(self):
        """A merged datalist (one item with a DICOM folder key, one without) must still collate into batches."""
        item_a, _, _ = _pair(self.tmp, "a")
        item_b, _, _ = _pair(self.tmp, "b", seed=1)
        item_a["image_dicom"], item_a["source"] = "dicom/a/low", "real"
        item_b["source"] = "phantom"
        ds = PairedSliceDataset([item_a, item_b], volume_transform=self.loader, progress=False, air_threshold=0.5)
        self.assertTrue(all("image_dicom" not in ds[i] for i in range(len(ds))))
        self.assertEqual({ds[i]["source"] for i in range(len(ds))}, {"real", "phantom"})
        for batch in DataLoader(ds, batch_size=len(ds)):
            self.assertEqual(len(batch["source"]), len(ds))

    def test_geometry_mismatch_names_both_files(self):
        item, img, lab = _pair(self.tmp, "a")
        shifted = AFFINE.copy()
        shifted[0, 3] += 5.0
        item["label"] = _write(self.tmp / "shifted_full.nii.gz", lab, shifted)
        with self.assertRaises(ValueError) as cm:
            PairedSliceDataset([item], volume_transform=self.loader, progress=False)
        self.assertIn("a_low.nii.gz", str(cm.exception))
        self.assertIn("shifted_full.nii.gz", str(cm.exception))
        item["label"] = _write(self.tmp / "small_full.nii.gz", lab[:, :, :4])
        with self.assertRaisesRegex(ValueError, "small_full.nii.gz.*\\(12, 10, 4\\)"):
            PairedSliceDataset([item], volume_transform=self.loader, progress=False)

    def test_deterministic_prefix_cached_random_tail_per_access(self):
        item, _, _ = _pair(self.tmp, "a")
        for cache_rate, expected_calls in ((1.0, 4), (0.0, 12)):
            counter = CountingTransform()
            tf = Compose([counter, RandFlipd(keys=("image", "label", "regions"), prob=0.5, spatial_axis=0)])
            ds = PairedSliceDataset([item], transform=tf, volume_transform=self.loader, cache_rate=cache_rate,
                                    air_threshold=0.5, progress=False)
            for _ in range(3):  # three epochs
                outs = [ds[i] for i in range(len(ds))]
            self.assertEqual(counter.calls, expected_calls)
            self.assertTrue(all("regions" in o for o in outs))
            self.assertIsInstance(tf.transforms[1], Randomizable)

    def test_default_thresholds_and_loader(self):
        self.assertEqual(DEFAULT_AIR_THRESHOLD["pet"], 0.1)
        self.assertEqual(DEFAULT_AIR_THRESHOLD["ct"], -500.0)
        # default volume_transform is rat_monai's LoadVolumed (NIfTI as stored)
        item, img, _ = _pair(self.tmp, "a")
        ds = PairedSliceDataset([item], progress=False)
        self.assertEqual(len(ds), 4)
        self.assertIsInstance(ds[0]["image"], MetaTensor)
        np.testing.assert_allclose(ds[0]["image"][0].numpy(), img[..., 1], rtol=1e-6)

    def test_ill_arg(self):
        item, _, _ = _pair(self.tmp, "a")
        with self.assertRaisesRegex(ValueError, "air_threshold"):
            PairedSliceDataset([item], volume_transform=self.loader, modality="mr", progress=False)
        with self.assertRaisesRegex(ValueError, "min_fraction"):
            PairedSliceDataset([item], volume_transform=self.loader, min_fraction=1.5, progress=False)
        with self.assertRaisesRegex(ValueError, "'label'"):
            PairedSliceDataset([{"image": item["image"]}], volume_transform=self.loader, progress=False)
        with self.assertRaisesRegex(ValueError, "\\[C, X, Y, Z\\]"):
            PairedSliceDataset([item], volume_transform=lambda d: {"image": torch.zeros(3, 3), "label": 0},
                               progress=False)
        with self.assertRaises(ValueError):
            keep_slices(np.zeros((3, 3, 3)), 0.0)


def test_simulated_dicom_pairs_with_default_loader(tmp_path):
    dl = simulate_dataset(tmp_path / "sim", "pet", subjects=2, seed=1, shape=(32, 32, 8), progress=False,
                          preview=False, iterations=1, subsets=4)
    data = [{"image": e["image_dicom"], "label": e["label_dicom"]} for e in load_datalist(dl, "training")]
    ds = PairedSliceDataset(data, modality="pet", progress=False)
    d = ds[0]
    assert d["image"].meta["units"] == "suv" and d["image"].meta["dicom_file"].endswith(".dcm")
    assert "dicom_files" not in d["image"].meta
    assert float(d["label"].max()) > 0.5  # SUV scale, not Bq/ml
    # the NIfTI entries: units unknown to the loader, taken from the datalist entry
    ds = PairedSliceDataset(load_datalist(dl, "training"), modality="pet", progress=False)
    assert ds[0]["image"].meta["units"] == "suv" and ds[0]["units"] == "suv"


@pytest.mark.parametrize("modality", ["pet", "ct"])
def test_real_series(modality, request):
    """The real scanner series paired with itself: the air-slice rule on real SUV / HU data and per-slice metadata."""
    folder = request.getfixturevalue("real_pet_dir" if modality == "pet" else "real_ct_dir")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = PairedSliceDataset([{"image": str(folder), "label": str(folder)}], modality=modality, progress=False)
    info = ds.volume_info[0]
    assert info["slices"] == (267 if modality == "pet" else 41)
    assert 0 < info["kept"] <= info["slices"] and len(ds) == info["kept"]
    thr = DEFAULT_AIR_THRESHOLD[modality]
    zs = []
    for i in range(0, len(ds), max(1, len(ds) // 10)):
        d = ds[i]
        assert float((d["label"] > thr).float().mean()) > 0.01
        assert d["image"].meta["dicom_file"].startswith(str(folder))
        zs.append(float(d["image"].affine[2, 3]))
    assert zs == sorted(zs)  # slices in position order, world z from the affine
