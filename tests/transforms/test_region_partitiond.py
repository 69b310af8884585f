# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import json
import tempfile
import unittest
from unittest import mock

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader, MetaTensor, PersistentDataset
from monai.transforms import Compose
from parameterized import parameterized

from rat_monai.regions import FelzenszwalbPartitioner, get_partitioner
from rat_monai.transforms import (
    RegionPartition,
    RegionPartitiond,
    RegionPartitionDict,
    RegionPartitionVolume,
    RegionPartitionVolumed,
)


def _slice(seed: int = 0, h: int = 32, w: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    img = np.where((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (h / 3) ** 2, 50.0, -1000.0)
    img[: h // 2, : w // 2] += 400.0 * (img[: h // 2, : w // 2] > 0)
    return (img + rng.normal(0, 5, img.shape)).astype(np.float32)


KW = {"method": "felzenszwalb", "modality": "ct", "scale": 50.0, "min_size": 10}
TYPES = [
    ("numpy", lambda x: x),
    ("torch", torch.as_tensor),
    ("metatensor", lambda x: MetaTensor(torch.as_tensor(x), meta={"filename_or_obj": "a.nii"})),
]
# (type name, converter, add a channel axis)
ARRAY_CASES = [(n, f, c) for n, f in TYPES for c in (True, False)]


class TestRegionPartition(unittest.TestCase):
    @parameterized.expand(ARRAY_CASES)
    def test_array(self, _name, conv, channel):
        img = _slice()
        out = RegionPartition(**KW)(conv(img[None] if channel else img))
        ref = get_partitioner(**KW)(img[None])
        self.assertIsInstance(out, MetaTensor)
        self.assertEqual(out.dtype, torch.int32)
        self.assertEqual(tuple(out.shape), (1, *img.shape))
        np.testing.assert_array_equal(out.numpy(), ref)
        self.assertEqual(out.meta["region_method"], "felzenszwalb")
        self.assertEqual(out.meta["num_regions"], int(ref.max()) + 1)
        self.assertEqual(json.loads(out.meta["region_settings"])["scale"], 50.0)
        if _name == "metatensor":
            self.assertEqual(out.meta["filename_or_obj"], "a.nii")

    def test_dict_and_aliases(self):
        data = {"image": _slice(1)[None], "label": _slice(2)[None]}
        self.assertIs(RegionPartitionDict, RegionPartitiond)
        out = RegionPartitiond(keys=["image", "label"], region_key=["r_img", "r_lab"], **KW)(data)
        np.testing.assert_array_equal(out["r_img"].numpy(), RegionPartition(**KW)(data["image"]).numpy())
        np.testing.assert_array_equal(out["r_lab"].numpy(), RegionPartition(**KW)(data["label"]).numpy())
        self.assertIs(out["image"], data["image"])
        out = RegionPartitiond(keys="missing", allow_missing_keys=True, **KW)(data)
        self.assertNotIn("regions", out)

    def test_region_kwargs_dict(self):
        # partitioner settings as one dict (a bundle's `region_kwargs` id) give the same partitioner as keywords
        method = {"method": KW["method"], "modality": KW["modality"]}
        settings = {"scale": KW["scale"], "min_size": KW["min_size"]}
        for cls in (RegionPartitiond, RegionPartitionVolumed):
            by_dict = cls(region_kwargs=settings, **method).inner.partitioner.cache_key()
            self.assertEqual(by_dict, cls(**KW).inner.partitioner.cache_key())
            overridden = cls(region_kwargs=settings, scale=20.0, **method).inner.partitioner.cache_key()
            self.assertNotEqual(by_dict, overridden)

    def test_disk_cache_with_monai_datasets(self):
        data = [{"image": _slice(i)[None]} for i in range(3)]
        with tempfile.TemporaryDirectory() as d:
            t = RegionPartitiond(cache_dir=f"{d}/regions", **KW)
            with mock.patch.object(FelzenszwalbPartitioner, "partition_slice", autospec=True,
                                   side_effect=FelzenszwalbPartitioner.partition_slice) as m:  # fmt: skip
                first = [t(x)["regions"] for x in data]
                self.assertEqual(m.call_count, 3)
                # a fresh transform (new process, new epoch) reads the disk cache instead of recomputing
                t2 = RegionPartitiond(cache_dir=f"{d}/regions", **KW)
                ds = PersistentDataset(data, transform=Compose([t2]), cache_dir=f"{d}/persistent")
                batch = next(iter(DataLoader(ds, batch_size=3)))
                cds = CacheDataset(data, transform=t2, progress=False)
                self.assertEqual(m.call_count, 3)
            self.assertEqual(tuple(batch["regions"].shape), (3, 1, *data[0]["image"].shape[1:]))
            for i in range(3):
                np.testing.assert_array_equal(batch["regions"][i].numpy(), first[i].numpy())
                np.testing.assert_array_equal(cds[i]["regions"].numpy(), first[i].numpy())

    def test_ill_arg(self):
        with self.assertRaises(ValueError):
            RegionPartition(method="nope")
        with self.assertRaises(ValueError):
            RegionPartition(**KW)(np.zeros((2, 8, 8)))
        with self.assertRaises(ValueError):
            RegionPartition(**KW)(np.zeros((1, 8, 8, 3)))
        with self.assertRaises(ValueError):
            RegionPartitiond(keys=["a", "b"], region_key="r", **KW)
        with self.assertRaises(ValueError):
            RegionPartitionVolume(batch_size=0, **KW)
        with self.assertRaises(ValueError):
            RegionPartitionVolume(**KW)(np.zeros((2, 8, 8, 3)))


class TestRegionPartitionVolume(unittest.TestCase):
    @parameterized.expand([(1,), (2,), (8,)])
    def test_volume_matches_slices(self, batch_size):
        vol = np.stack([_slice(i) for i in range(5)], axis=-1)[None]  # [1, H, W, D]
        affine = torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0]))
        img = MetaTensor(torch.as_tensor(vol), affine=affine)
        with tempfile.TemporaryDirectory() as d:
            t = RegionPartitionVolumed(batch_size=batch_size, progress=False, cache_dir=d, **KW)
            out = t({"image": img})["regions"]
            again = t({"image": img})["regions"]
        self.assertEqual(tuple(out.shape), vol.shape)
        self.assertEqual(out.dtype, torch.int32)
        torch.testing.assert_close(out.affine, affine.to(out.affine.dtype))
        part = get_partitioner(**KW)
        for z in range(vol.shape[-1]):
            np.testing.assert_array_equal(out[0, ..., z].numpy(), part(vol[0, ..., z][None])[0])
        self.assertEqual(out.meta["num_regions"], [int(out[0, ..., z].max()) + 1 for z in range(5)])
        np.testing.assert_array_equal(again.numpy(), out.numpy())


if __name__ == "__main__":
    unittest.main()
