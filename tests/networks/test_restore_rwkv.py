# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import unittest

import torch
from monai.networks import eval_mode
from parameterized import parameterized

from rat_monai.networks.blocks import OmniShift, RWKVBlock, SpatialMix, bi_wkv_reference
from rat_monai.networks.nets import RestoreRWKV

TINY = {"dim": 8, "num_blocks": (1, 1, 1, 1), "num_refinement_blocks": 1}

# (name, constructor kwargs, input shape [B, C, H, W], expected output shape)
SHAPE_CASES = [
    ["odd_sizes", {**TINY}, (2, 1, 13, 21), (2, 1, 13, 21)],
    ["multiple_of_8", {**TINY}, (1, 1, 16, 24), (1, 1, 16, 24)],
    ["smaller_than_padding", {**TINY}, (1, 1, 3, 5), (1, 1, 3, 5)],
    ["rgb", {**TINY, "in_channels": 3, "out_channels": 3}, (1, 3, 9, 10), (1, 3, 9, 10)],
    ["channels_change", {**TINY, "in_channels": 2, "out_channels": 1, "recurrence": 1}, (1, 2, 8, 11), (1, 1, 8, 11)],
    ["recurrence_3", {**TINY, "recurrence": 3, "num_refinement_blocks": 0}, (1, 1, 12, 7), (1, 1, 12, 7)],
]


class TestOmniShift(unittest.TestCase):
    @parameterized.expand([[4, (2, 4, 7, 9)], [6, (1, 6, 5, 5)], [3, (1, 3, 1, 2)]])
    def test_reparameterised_equals_branches(self, dim, shape):
        torch.manual_seed(0)
        shift = OmniShift(dim)
        x = torch.randn(shape)
        shift.train()
        branches = shift(x)
        with eval_mode(shift):
            fused = shift(x)
        torch.testing.assert_close(fused, branches, rtol=1e-5, atol=1e-5)

    def test_fused_weight_tracks_parameter_updates(self):
        # the fused kernel is rebuilt at every eval call: a later weight change is reflected at once
        shift = OmniShift(2).eval()
        x = torch.randn(1, 2, 6, 6)
        with torch.no_grad():
            before = shift(x)
            shift.conv3x3.weight.add_(1.0)
            after = shift(x)
        self.assertFalse(torch.allclose(before, after))
        torch.testing.assert_close(after, shift.forward_unfused(x), rtol=1e-5, atol=1e-5)

    def test_ill_arg(self):
        with self.assertRaises(ValueError):
            OmniShift(0)


class TestSpatialMix(unittest.TestCase):
    def test_scan_orders_match_dense_reference(self):
        # pass 0 row-major, pass 1 column-major with pass 0's output as v: rebuild with the dense reference
        torch.manual_seed(1)
        height, width, dim = 5, 6, 4
        mix = SpatialMix(dim, recurrence=2).eval()
        tokens = torch.randn(2, height * width, dim)
        with torch.no_grad():
            out = mix(tokens, (height, width))
            shifted = mix.omni_shift(tokens.transpose(1, 2).reshape(2, dim, height, width)).flatten(2).transpose(1, 2)
            k, v, r = mix.key(shifted), mix.value(shifted), mix.receptance(shifted)
            t = height * width
            v = bi_wkv_reference(mix.spatial_decay[0] / t, mix.spatial_first[0] / t, k, v)

            def col(a):
                return a.reshape(2, height, width, dim).transpose(1, 2).reshape(2, t, dim)

            v_col = bi_wkv_reference(mix.spatial_decay[1] / t, mix.spatial_first[1] / t, col(k), col(v))
            v = v_col.reshape(2, width, height, dim).transpose(1, 2).reshape(2, t, dim)
            expected = mix.output(torch.sigmoid(r) * v)
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)

    def test_block_shape_and_residual_init(self):
        block = RWKVBlock(4)
        x = torch.randn(1, 4, 3, 5)
        self.assertEqual(block(x).shape, x.shape)
        torch.testing.assert_close(block.gamma1.detach(), torch.ones(4))


class TestRestoreRWKV(unittest.TestCase):
    @parameterized.expand(SHAPE_CASES)
    def test_shape_forward_backward(self, _, kwargs, input_shape, expected_shape):
        torch.manual_seed(0)
        net = RestoreRWKV(**kwargs)
        x = torch.randn(input_shape, requires_grad=True)
        out = net(x)
        self.assertEqual(tuple(out.shape), expected_shape)
        out.square().mean().backward()
        self.assertTrue(torch.isfinite(x.grad).all())
        grads = [p.grad for p in net.parameters() if p.requires_grad]
        self.assertTrue(all(g is not None and torch.isfinite(g).all() for g in grads))
        # the Bi-WKV decays and bonuses are trained: their gradients are non-zero
        self.assertGreater(float(net.encoder_level1[0].att.spatial_decay.grad.abs().sum()), 0.0)
        self.assertGreater(float(net.encoder_level1[0].att.spatial_first.grad.abs().sum()), 0.0)

    def test_eval_reparameterised_equals_training_path(self):
        torch.manual_seed(2)
        net = RestoreRWKV(**TINY)
        x = torch.randn(2, 1, 11, 14)
        with torch.no_grad():
            net.train()
            train_out = net(x)
            net.eval()
            eval_out = net(x)
        torch.testing.assert_close(eval_out, train_out, rtol=1e-5, atol=1e-5)

    def test_regions_are_ignored(self):
        torch.manual_seed(3)
        net = RestoreRWKV(**TINY)
        x = torch.randn(1, 1, 10, 9)
        with eval_mode(net):
            a = net(x)
            b = net(x, regions=torch.randint(0, 5, (1, 10, 9)))
        torch.testing.assert_close(a, b)

    def test_global_residual_and_crop(self):
        # zeroing the output conv leaves exactly the (un-padded) input
        net = RestoreRWKV(**TINY)
        torch.nn.init.zeros_(net.output.weight)
        x = torch.randn(1, 1, 7, 13)
        with eval_mode(net):
            torch.testing.assert_close(net(x), x)

    def test_state_dict_round_trip(self):
        torch.manual_seed(4)
        net = RestoreRWKV(**TINY)
        other = RestoreRWKV(**TINY)
        other.load_state_dict(net.state_dict())
        x = torch.randn(1, 1, 8, 8)
        with eval_mode(net, other):
            torch.testing.assert_close(net(x), other(x))

    def test_default_parameter_count(self):
        # default config: dim 48, blocks (4, 6, 6, 8), 4 refinement blocks
        net = RestoreRWKV()
        self.assertEqual(len(net.encoder_level1), 4)
        self.assertEqual(len(net.latent), 8)
        self.assertEqual(len(net.refinement), 4)
        self.assertEqual(net.refinement[0].gamma1.numel(), 96)
        self.assertEqual(net.latent[0].gamma1.numel(), 384)

    # (constructor kwargs)
    @parameterized.expand(
        [
            [{"dim": 7}],
            [{"dim": 0}],
            [{"in_channels": 0}],
            [{"num_blocks": (1, 1, 1)}],
            [{"num_blocks": (1, -1, 1, 1)}],
            [{"num_refinement_blocks": -1}],
            [{"recurrence": 0}],
        ]
    )
    def test_ill_arg(self, kwargs):
        with self.assertRaises(ValueError):
            RestoreRWKV(**{**TINY, **kwargs})

    def test_ill_input(self):
        net = RestoreRWKV(**TINY)
        with self.assertRaisesRegex(ValueError, "expects input"):
            net(torch.randn(1, 2, 8, 8))
        with self.assertRaisesRegex(ValueError, "expects input"):
            net(torch.randn(1, 8, 8))


if __name__ == "__main__":
    unittest.main()
