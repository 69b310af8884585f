# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import unittest

import torch

from rat_monai.losses import FocalRegionLoss, StackedRegionLoss
from rat_monai.networks.region_channel import stack_regions


def _batch(b=2, h=12, w=10):
    """Label, integer region map and the stacked target ``cat(label, regions)`` the trainer hands the loss."""
    g = torch.Generator().manual_seed(0)
    label = torch.rand(b, 1, h, w, generator=g)
    regions = torch.randint(-1, 7, (b, 1, h, w), generator=g).int()
    return {"label": label, "regions": regions, "target": stack_regions(label, regions)}


class TestStackedRegionLoss(unittest.TestCase):
    def test_matches_direct_call(self):
        batch = _batch(b=3)
        target = batch["target"]
        pred = torch.rand(3, 1, 12, 10, requires_grad=True)
        inner = FocalRegionLoss(gamma=0.5)
        got = StackedRegionLoss(inner)(pred, target)
        want = inner(pred, batch["label"], batch["regions"].long())
        torch.testing.assert_close(got, want)
        got.backward()
        self.assertIsNotNone(pred.grad)

    def test_plain_loss(self):
        batch = _batch()
        target = batch["target"]
        pred = torch.rand(2, 1, 12, 10)
        got = StackedRegionLoss(torch.nn.L1Loss(), pass_regions=False)(pred, target)
        torch.testing.assert_close(got, torch.nn.functional.l1_loss(pred, batch["label"]))

    def test_ill_arg(self):
        with self.assertRaises(ValueError):
            StackedRegionLoss("l1")  # type: ignore[arg-type]
        with self.assertRaisesRegex(ValueError, "stacked target"):
            StackedRegionLoss(FocalRegionLoss())(torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4))
        with self.assertRaisesRegex(ValueError, "differ in shape"):
            StackedRegionLoss(FocalRegionLoss())(torch.rand(2, 1, 4, 4), torch.rand(2, 3, 4, 4))


if __name__ == "__main__":
    unittest.main()
