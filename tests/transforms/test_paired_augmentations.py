# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import unittest

import numpy as np
import torch
from monai.data import MetaTensor
from parameterized import parameterized

from rat_monai.transforms import paired_train_transforms
from rat_monai.transforms.spatial import DEFAULT_PATCH_SIZE

# (input H, W, patch size): larger than the patch (random crop), smaller (padded), mixed, equal
ALIGN_CASES = [
    (40, 36, 24),
    (20, 18, 32),
    (40, 18, (24, 24)),
    (16, 16, 16),
]


def _sample(h: int, w: int, with_regions: bool = True) -> dict:
    base = torch.arange(1, h * w + 1, dtype=torch.float32).reshape(1, h, w)  # every pixel distinct, all > 0
    d = {"image": MetaTensor(base.clone()), "label": MetaTensor(base.clone() * 2)}
    if with_regions:
        d["regions"] = base.clone().to(torch.int32)
    return d


class TestPairedTrainTransforms(unittest.TestCase):
    @parameterized.expand(ALIGN_CASES)
    def test_same_geometry_for_all_keys(self, h, w, patch):
        aug = paired_train_transforms(patch_size=patch, pad_value=0.0, region_pad_value=-1)
        size = (patch, patch) if isinstance(patch, int) else patch
        for seed in range(8):
            aug.set_random_state(seed)
            out = aug(_sample(h, w))
            img, lab, reg = out["image"], out["label"], out["regions"]
            self.assertEqual(tuple(img.shape[1:]), size)
            self.assertEqual(reg.dtype, torch.int32)
            torch.testing.assert_close(lab.as_tensor(), img.as_tensor() * 2)
            real = reg >= 1
            torch.testing.assert_close(img.as_tensor()[real], reg.as_tensor()[real].float())  # nothing interpolated
            self.assertTrue(bool((img.as_tensor()[~real] == 0).all()))  # image padding = pad_value
            self.assertTrue(bool((reg.as_tensor()[~real] == -1).all()))  # region padding = its own label
            expect_pad = max(0, size[0] - h) * size[1] + max(0, size[1] - w) * min(size[0], h)
            self.assertEqual(int((~real).sum()), expect_pad)
            # the output is an (unpadded part of a) rot90/flip of a crop of the input: all its values are distinct
            vals = reg.as_tensor()[real]
            self.assertEqual(len(torch.unique(vals)), len(vals))

    def test_without_regions_and_all_symmetries(self):
        aug = paired_train_transforms(keys=("image", "label", "regions"), patch_size=8, prob_rotate=0.75)
        seen = set()
        for seed in range(80):
            aug.set_random_state(seed)
            out = aug(_sample(8, 8, with_regions=False))
            self.assertNotIn("regions", out)
            torch.testing.assert_close(out["label"].as_tensor(), out["image"].as_tensor() * 2)
            seen.add(tuple(out["image"].as_tensor().flatten().tolist()))
        self.assertEqual(len(seen), 8)  # the 8 symmetries of the square are all reached

    def test_reproducible_with_seed(self):
        aug = paired_train_transforms(patch_size=12)
        aug.set_random_state(3)
        a = aug(_sample(30, 30))
        aug.set_random_state(3)
        b = aug(_sample(30, 30))
        torch.testing.assert_close(a["image"].as_tensor(), b["image"].as_tensor())
        torch.testing.assert_close(a["regions"].as_tensor(), b["regions"].as_tensor())

    @parameterized.expand([("pet",), ("ct",)])
    def test_default_patch_size(self, modality):
        aug = paired_train_transforms(keys=("image",), modality=modality)
        out = aug({"image": MetaTensor(torch.rand(1, 300, 300))})
        self.assertEqual(tuple(out["image"].shape), (1, DEFAULT_PATCH_SIZE[modality], DEFAULT_PATCH_SIZE[modality]))
        self.assertEqual(DEFAULT_PATCH_SIZE, {"pet": 192, "ct": 256})

    def test_no_crop(self):
        aug = paired_train_transforms(patch_size=4, crop=False, prob_rotate=0.0, prob_flip=0.0)
        out = aug(_sample(10, 7))
        self.assertEqual(tuple(out["image"].shape), (1, 10, 7))

    def test_ill_arg(self):
        with self.assertRaises(ValueError):
            paired_train_transforms(keys=())
        with self.assertRaises(ValueError):
            paired_train_transforms(modality="mr")
        with self.assertRaises(ValueError):
            paired_train_transforms(patch_size=(8, 8, 8))
        with self.assertRaises(ValueError):
            paired_train_transforms(patch_size=0)
        with self.assertRaises(ValueError):
            paired_train_transforms(patch_size=8, prob_flip=1.5)


if __name__ == "__main__":
    unittest.main()
