# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""The single-tensor region channel: stack_regions / split_regions round trip, shapes, scripting, bad inputs."""

from __future__ import annotations

import unittest

import torch
from parameterized import parameterized

from rat_monai.networks.region_channel import MAX_EXACT_FLOAT_LABEL, split_regions, stack_regions

# image shape, region shape (with or without the channel dim)
CASES = [
    [(2, 1, 6, 5), (2, 6, 5)],
    [(2, 1, 6, 5), (2, 1, 6, 5)],
    [(1, 3, 4, 4), (1, 4, 4)],
    [(2, 1, 3, 4, 5), (2, 3, 4, 5)],  # 3D
]


class TestRegionChannel(unittest.TestCase):
    @parameterized.expand(CASES)
    def test_round_trip(self, image_shape, region_shape):
        g = torch.Generator().manual_seed(0)
        image = torch.rand(image_shape, generator=g)
        regions = torch.randint(-5, 2**20, region_shape, generator=g)
        stacked = stack_regions(image, regions)
        self.assertEqual(stacked.shape, (image_shape[0], image_shape[1] + 1, *image_shape[2:]))
        self.assertEqual(stacked.dtype, image.dtype)
        back_image, back_regions = split_regions(stacked)
        torch.testing.assert_close(back_image, image)
        self.assertEqual(back_regions.dtype, torch.int64)
        self.assertTrue(torch.equal(back_regions, regions.reshape(back_regions.shape)))
        _, again = split_regions(stacked, image_channels=image_shape[1])
        self.assertTrue(torch.equal(again, back_regions))

    def test_rounds_float_labels(self):
        stacked = torch.tensor([[[[0.0]], [[2.9999]]]])
        self.assertEqual(int(split_regions(stacked)[1]), 3)

    def test_scriptable(self):
        scripted = torch.jit.script(split_regions)
        stacked = stack_regions(torch.zeros(1, 1, 2, 2), torch.ones(1, 2, 2, dtype=torch.int64))
        image, regions = scripted(stacked, 1)
        self.assertEqual(image.shape, (1, 1, 2, 2))
        self.assertTrue(torch.equal(regions, torch.ones(1, 1, 2, 2, dtype=torch.int64)))

    def test_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "2\\*\\*24|below"):
            stack_regions(torch.zeros(1, 1, 2, 2), torch.full((1, 2, 2), MAX_EXACT_FLOAT_LABEL + 1))
        with self.assertRaisesRegex(ValueError, "matching the image"):
            stack_regions(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 3))
        with self.assertRaisesRegex(ValueError, "stacked tensor"):
            split_regions(torch.zeros(1, 1, 2, 2))  # no image channel left
        with self.assertRaisesRegex(ValueError, "stacked tensor"):
            split_regions(torch.zeros(1, 3, 2, 2), image_channels=1)


if __name__ == "__main__":
    unittest.main()
