# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import unittest

import torch
from monai.data import MetaTensor
from parameterized import parameterized

from rat_monai.engines import PrepareBatchStackRegions
from rat_monai.networks.region_channel import split_regions


def _batch(b=2, h=12, w=10, regions_shape="channel"):
    g = torch.Generator().manual_seed(0)
    regions = torch.randint(-1, 7, (b, 1, h, w), generator=g).int()
    if regions_shape == "plain":
        regions = regions[:, 0]
    return {
        "image": MetaTensor(torch.rand(b, 1, h, w, generator=g)),
        "label": torch.rand(b, 1, h, w, generator=g),
        "regions": regions,
    }


# (regions layout, regions_in_target, expected input channels, expected target channels)
CASES = [
    ("channel", False, 2, 1),
    ("channel", True, 2, 2),
    ("plain", False, 2, 1),
    ("plain", True, 2, 2),
]


class TestPrepareBatchStackRegions(unittest.TestCase):
    @parameterized.expand(CASES)
    def test_stacking(self, layout, in_target, in_ch, tgt_ch):
        batch = _batch(regions_shape=layout)
        inputs, targets = PrepareBatchStackRegions(regions_in_target=in_target)(batch, device="cpu")
        self.assertEqual(inputs.shape[1], in_ch)
        self.assertEqual(targets.shape[1], tgt_ch)
        regions = batch["regions"] if layout == "channel" else batch["regions"][:, None]
        torch.testing.assert_close(inputs[:, :1], batch["image"].as_tensor())
        self.assertTrue(torch.equal(inputs[:, 1:].long(), regions.long()))
        torch.testing.assert_close(targets[:, :1], batch["label"])
        if in_target:
            label, back = split_regions(targets)
            self.assertTrue(torch.equal(back, regions.long()))
            torch.testing.assert_close(label, batch["label"])
        self.assertNotIsInstance(inputs, MetaTensor)

    def test_without_regions_or_label(self):
        batch = _batch()
        image, label = PrepareBatchStackRegions(use_regions=False)(batch)
        self.assertEqual(image.shape[1], 1)
        del batch["label"]
        inputs, target = PrepareBatchStackRegions()(batch)
        self.assertIsNone(target)
        self.assertEqual(inputs.shape[1], 2)

    def test_single_region_input(self):
        # the global-MSA ablation: the network sees one region (label 0), the loss still gets the real map
        batch = _batch()
        inputs, targets = PrepareBatchStackRegions(regions_in_target=True, single_region_input=True)(batch)
        image, regions = split_regions(inputs)
        torch.testing.assert_close(image, batch["image"].as_tensor())
        self.assertFalse(regions.any())
        self.assertTrue(torch.equal(split_regions(targets)[1], batch["regions"].long()))

    def test_ill_arg(self):
        batch = _batch()
        del batch["regions"]
        with self.assertRaisesRegex(KeyError, "regions"):
            PrepareBatchStackRegions()(batch)
        batch = _batch()
        batch["regions"] = batch["regions"][:, :, :5]
        with self.assertRaisesRegex(ValueError, "matching the image"):
            PrepareBatchStackRegions()(batch)


if __name__ == "__main__":
    unittest.main()
