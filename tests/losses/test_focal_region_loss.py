# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import unittest

import torch
from parameterized import parameterized

from rat_monai.losses import FocalRegionLoss


def reference_focal_region_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    regions: torch.Tensor,
    gamma: float,
    delta: float,
    normalize: str,
    reduction: str,
) -> torch.Tensor:
    """Slow per-image, per-region loop (as the published code does), in float64."""
    pred64, target64 = pred.double(), target.double()
    if regions.ndim == pred.ndim:
        regions = regions[:, 0]
    l1 = (pred64 - target64).abs()
    errors = []  # per image: dict label -> e_i ** delta
    for b in range(pred.shape[0]):
        per_image = {}
        for label in torch.unique(regions[b]).tolist():
            mask = regions[b] == label
            per_image[label] = l1[b][:, mask].mean().item() ** delta
        errors.append(per_image)
    weight_map = torch.zeros(regions.shape, dtype=torch.float64)
    batch_max = max(max(e.values()) for e in errors)
    for b, per_image in enumerate(errors):
        peak = batch_max if normalize == "batch" else max(per_image.values())
        for label, e in per_image.items():
            w = 0.0 if peak == 0 else min(max(e / peak, 0.0), 1.0)
            weight_map[b][regions[b] == label] = w
    loss = l1 * (1.0 + gamma * weight_map.unsqueeze(1))
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _case(batch, channels, shape, labels, seed):
    g = torch.Generator().manual_seed(seed)
    pred = torch.rand(batch, channels, *shape, generator=g)
    target = torch.rand(batch, channels, *shape, generator=g)
    regions = torch.tensor(labels)[torch.randint(0, len(labels), (batch, *shape), generator=g)]
    return pred, target, regions


# (name, batch, channels, spatial shape, label values, gamma, delta, normalize, reduction, regions with channel dim)
TEST_CASES = [
    ["contiguous_batch_mean", 2, 1, (8, 8), [0, 1, 2, 3], 1e-3, 1.0, "batch", "mean", False],
    ["noncontig_negative_image_mean", 3, 1, (7, 9), [-5, 2, 40, 1000], 0.5, 1.0, "image", "mean", False],
    ["multichannel_sum_delta2", 2, 3, (6, 5), [1, 7, 9], 2.0, 2.0, "batch", "sum", True],
    ["none_image_delta_half", 2, 2, (5, 6), [-1, 0, 3], 1.0, 0.5, "image", "none", False],
    ["volume_3d", 2, 1, (4, 5, 3), [10, 20, 30], 0.3, 1.0, "batch", "mean", False],
    ["single_region", 2, 1, (4, 4), [7], 1.0, 1.0, "image", "mean", True],
]


class TestFocalRegionLoss(unittest.TestCase):
    @parameterized.expand(TEST_CASES)
    def test_matches_reference(self, _, batch, channels, shape, labels, gamma, delta, normalize, reduction, chan_dim):
        pred, target, regions = _case(batch, channels, shape, labels, seed=len(labels) + batch)
        if chan_dim:
            regions = regions.unsqueeze(1)
        loss = FocalRegionLoss(gamma=gamma, delta=delta, normalize=normalize, reduction=reduction)
        out = loss(pred, target, regions)
        expected = reference_focal_region_loss(pred, target, regions, gamma, delta, normalize, reduction)
        if reduction == "none":
            self.assertEqual(tuple(out.shape), (batch, channels, *shape))
        else:
            self.assertEqual(out.ndim, 0)
        torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-6)

    def test_same_label_in_two_images_is_two_regions(self):
        # image 0 has a large error, image 1 a small one, both with the single label 0: per-image normalisation
        # gives both weight 1; batch normalisation gives image 1 the ratio of the errors.
        pred = torch.stack([torch.full((1, 4, 4), 1.0), torch.full((1, 4, 4), 0.25)])
        target = torch.zeros_like(pred)
        regions = torch.zeros(2, 4, 4, dtype=torch.long)
        w_batch = FocalRegionLoss(normalize="batch").region_weights(pred, target, regions)
        w_image = FocalRegionLoss(normalize="image").region_weights(pred, target, regions)
        torch.testing.assert_close(w_batch[:, 0, 0], torch.tensor([1.0, 0.25]))
        torch.testing.assert_close(w_image[:, 0, 0], torch.tensor([1.0, 1.0]))

    @parameterized.expand([["mean"], ["sum"], ["none"]])
    def test_gamma_zero_is_l1(self, reduction):
        pred, target, regions = _case(2, 2, (6, 7), [3, -2, 8], seed=1)
        out = FocalRegionLoss(gamma=0.0, reduction=reduction)(pred, target, regions)
        torch.testing.assert_close(out, torch.nn.L1Loss(reduction=reduction)(pred, target))

    @parameterized.expand([["batch"], ["image"]])
    def test_zero_error_no_nan(self, normalize):
        pred = torch.rand(2, 1, 5, 5, requires_grad=True)
        regions = torch.randint(0, 3, (2, 5, 5))
        loss = FocalRegionLoss(gamma=1.0, normalize=normalize)(pred, pred.detach().clone(), regions)
        self.assertEqual(loss.item(), 0.0)
        loss.backward()
        self.assertFalse(torch.isnan(pred.grad).any())

    def test_gradient_flows_to_input_only(self):
        pred, target, regions = _case(2, 1, (6, 6), [0, 1, 2], seed=3)
        pred.requires_grad_(True)
        target.requires_grad_(True)
        gamma = 0.7
        loss_fn = FocalRegionLoss(gamma=gamma, reduction="sum")
        loss_fn(pred, target, regions).backward()
        # weights are detached: d loss / d pred = sign(pred - target) * (1 + gamma * w)
        w = loss_fn.region_weights(pred, target, regions).unsqueeze(1)
        self.assertFalse(w.requires_grad)
        torch.testing.assert_close(pred.grad, torch.sign(pred - target).detach() * (1 + gamma * w))
        torch.testing.assert_close(target.grad, -pred.grad)

    def test_weights_in_unit_interval_and_max_is_one(self):
        pred, target, regions = _case(3, 1, (8, 8), [0, 5, 9, 11], seed=4)
        w = FocalRegionLoss(normalize="image").region_weights(pred, target, regions)
        self.assertTrue(bool(((w >= 0) & (w <= 1)).all()))
        torch.testing.assert_close(w.reshape(3, -1).amax(1), torch.ones(3))

    def test_bfloat16(self):
        pred, target, regions = _case(2, 1, (6, 6), [0, 1], seed=5)
        out = FocalRegionLoss(gamma=0.5)(pred.bfloat16(), target.bfloat16(), regions)
        self.assertEqual(out.dtype, torch.bfloat16)
        expected = reference_focal_region_loss(pred, target, regions, 0.5, 1.0, "batch", "mean")
        torch.testing.assert_close(out.double(), expected, rtol=2e-2, atol=1e-2)

    # (name, constructor kwargs)
    @parameterized.expand(
        [
            ["reduction", {"reduction": "avg"}],
            ["normalize", {"normalize": "global"}],
            ["gamma", {"gamma": -1.0}],
            ["delta", {"delta": 0.0}],
        ]
    )
    def test_ill_arg(self, name, kwargs):
        with self.assertRaisesRegex(ValueError, name):
            FocalRegionLoss(**kwargs)

    # (name, pred shape, target shape, regions, message)
    @parameterized.expand(
        [
            ["target_shape", (2, 1, 4, 4), (2, 1, 4, 5), torch.zeros(2, 4, 4, dtype=torch.long), "same shape"],
            ["regions_shape", (2, 1, 4, 4), (2, 1, 4, 4), torch.zeros(2, 4, 5, dtype=torch.long), "regions must have"],
            ["regions_batch", (2, 1, 4, 4), (2, 1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), "regions must have"],
            ["regions_float", (2, 1, 4, 4), (2, 1, 4, 4), torch.zeros(2, 4, 4), "integer label map"],
            ["no_spatial", (2, 1), (2, 1), torch.zeros(2, dtype=torch.long), "at least one spatial"],
        ]
    )
    def test_ill_input(self, _, pred_shape, target_shape, regions, message):
        with self.assertRaisesRegex(ValueError, message):
            FocalRegionLoss()(torch.rand(pred_shape), torch.rand(target_shape), regions)


if __name__ == "__main__":
    unittest.main()
