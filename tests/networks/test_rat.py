# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""RAT: shapes, padding/cropping rule, region downsampling, packed vs dense, label invariance, TorchScript."""

from __future__ import annotations

import io
import unittest

import torch
import torch.nn.functional as F
from parameterized import parameterized

from rat_monai.networks.blocks import NAFBlock, RATBlock, WindowSelfAttention, window_partition, window_unpartition
from rat_monai.networks.nets import RAT
from rat_monai.networks.utils import randomise_weights

SMALL = dict(width=8, middle_blocks=2, layers_per_block=1, num_heads=2)


# RAT kwargs, image shape (B, C, H, W), region shape, expected output shape
TEST_CASES = [
    [dict(SMALL), (2, 1, 32, 48), (2, 32, 48), (2, 1, 32, 48)],
    [dict(SMALL), (1, 1, 37, 53), (1, 1, 37, 53), (1, 1, 37, 53)],
    [dict(SMALL), (2, 1, 17, 16), None, (2, 1, 17, 16)],
    [dict(SMALL, in_channels=3, out_channels=3), (1, 3, 20, 20), (1, 20, 20), (1, 3, 20, 20)],
    [dict(SMALL, in_channels=1, out_channels=2), (1, 1, 16, 16), (1, 16, 16), (1, 2, 16, 16)],
    [
        dict(SMALL, enc_blocks=(1, 1, 1), dec_blocks=(1, 0, 1), window_size=2),
        (1, 1, 33, 30),
        (1, 33, 30),
        (1, 1, 33, 30),
    ],
    [dict(SMALL, region_attention="dense", attn_scale=0.1), (1, 1, 24, 40), (1, 24, 40), (1, 1, 24, 40)],
]


class TestRAT(unittest.TestCase):
    @parameterized.expand(TEST_CASES)
    def test_shape(self, kwargs, x_shape, r_shape, out_shape):
        net = randomise_weights(RAT(**kwargs)).eval()
        x = torch.randn(x_shape)
        regions = None if r_shape is None else torch.randint(0, 5, r_shape)
        with torch.no_grad():
            out = net(x, regions)
        self.assertEqual(out.shape, out_shape)
        self.assertTrue(torch.isfinite(out).all())

    def test_default_parameter_count(self):
        self.assertEqual(sum(p.numel() for p in RAT().parameters()), 15_945_025)

    def test_packed_matches_dense_network(self):
        """Full network, odd size 37 x 53, batch 2 with different maps incl. negative labels: outputs and grads."""
        torch.manual_seed(0)
        x = torch.randn(2, 1, 37, 53)
        regions = torch.randint(-3, 6, (2, 37, 53)) * 11
        regions[1, :20] = -100
        regions[1, 30:, 40:] = 7  # one more region
        results = {}
        for impl in ("dense", "packed"):
            net = RAT(width=8, middle_blocks=1, layers_per_block=2, num_heads=4, region_attention=impl)
            randomise_weights(net)
            xi = x.clone().requires_grad_()
            out = net(xi, regions)
            (out * torch.cos(torch.arange(out.numel()).view(out.shape).float())).sum().backward()
            grads = {n: p.grad for n, p in net.named_parameters()}
            grads["input"] = xi.grad
            results[impl] = (out.detach(), grads)
        torch.testing.assert_close(results["packed"][0], results["dense"][0], atol=1e-5, rtol=0)
        torch.testing.assert_close(results["packed"][1]["input"], results["dense"][1]["input"], atol=1e-5, rtol=0)
        for name, grad in results["dense"][1].items():
            # parameter gradients sum thousands of per-pixel terms (|grad| up to ~50 here): float32 accumulation
            # error grows with the magnitude, so the 1e-5 bound is relative to the largest entry when that is > 1
            tol = 1e-5 * max(1.0, grad.abs().max().item())
            torch.testing.assert_close(results["packed"][1][name], grad, atol=tol, rtol=0, msg=name)

    def test_regions_matter_and_labels_are_arbitrary(self):
        net = randomise_weights(RAT(**SMALL), 3).eval()
        x = torch.randn(1, 1, 32, 32)
        regions = torch.randint(0, 4, (1, 32, 32))
        with torch.no_grad():
            out = net(x, regions)
            relabelled = net(x, regions * -5 + 2**33)  # same partition, other labels
            global_ = net(x, None)
            constant = net(x, torch.full((1, 32, 32), -9))
        torch.testing.assert_close(relabelled, out, atol=1e-6, rtol=0)
        torch.testing.assert_close(constant, global_, atol=1e-6, rtol=0)
        self.assertGreater((out - global_).abs().max().item(), 1e-4)

    def test_zero_init_layer_scales(self):
        """Freshly built, every R-MSA branch is scaled by zero, so the region map cannot change the output."""
        net = RAT(**SMALL).eval()
        for module in net.modules():
            if hasattr(module, "scale_region"):
                self.assertEqual(module.scale_region.abs().sum().item(), 0.0)
                self.assertEqual(module.scale_window.abs().sum().item(), 0.0)
        x = torch.randn(1, 1, 16, 16)
        with torch.no_grad():
            torch.testing.assert_close(net(x, torch.randint(0, 5, (1, 16, 16))), net(x, None))

    def test_latent_regions_and_padding_label(self):
        """Regions reach the middle as the top-left pixel of each 4 x 4 cell (F.interpolate nearest, 1/4); padded
        cells get a label that no real pixel has. (The labels are computed before the layouts split; the hook
        needs ``forward``, which only the reference layout calls.)"""
        net = RAT(**SMALL, layout="nchw").eval()
        seen = []
        hook = net.middle[0].register_forward_pre_hook(lambda m, args: seen.append(args[1].clone()))
        regions = torch.randint(-2, 9, (1, 32, 48))
        with torch.no_grad():
            net(torch.randn(1, 1, 32, 48), regions)
            net(torch.randn(1, 1, 37, 53), regions[:, :37, :45].repeat(1, 2, 2)[:, :37, :53])
        hook.remove()
        expected = F.interpolate(regions[:, None].float(), scale_factor=0.25, mode="nearest")[:, 0].long()
        torch.testing.assert_close(seen[0], expected)
        padded = seen[1]
        self.assertEqual(tuple(padded.shape), (1, 12, 16))  # 37 x 53 padded to 48 x 64
        real = padded[:, :10, :14]  # latent cells whose top-left pixel is inside the image
        self.assertEqual(int(padded[:, 10:].unique().numel()), 1)
        pad_label = padded[0, 11, 0]
        self.assertTrue(bool((padded[:, :, 14:] == pad_label).all()))
        self.assertFalse(bool((real == pad_label).any()))

    def test_state_dict_round_trip(self):
        net = randomise_weights(RAT(**SMALL), 4).eval()
        buffer = io.BytesIO()
        torch.save(net.state_dict(), buffer)
        buffer.seek(0)
        other = RAT(**SMALL).eval()
        other.load_state_dict(torch.load(buffer, map_location="cpu", weights_only=True))
        x, regions = torch.randn(1, 1, 20, 24), torch.randint(0, 3, (1, 20, 24))
        with torch.no_grad():
            torch.testing.assert_close(other(x, regions), net(x, regions))

    @parameterized.expand([["packed"], ["dense"]])
    def test_script(self, impl):
        net = randomise_weights(RAT(**SMALL, region_attention=impl), 5).eval()
        scripted = torch.jit.script(net)
        x, regions = torch.randn(2, 1, 21, 34), torch.randint(-1, 4, (2, 1, 21, 34))
        with torch.no_grad():
            torch.testing.assert_close(scripted(x, regions), net(x, regions), atol=1e-5, rtol=0)
            torch.testing.assert_close(scripted(x, None), net(x, None), atol=1e-5, rtol=0)

    def test_block_is_residual(self):
        block = RATBlock(8, 1, num_heads=2)
        with torch.no_grad():
            block.conv.weight.zero_()
            block.conv.bias.zero_()
        x = torch.randn(1, 8, 4, 4)
        torch.testing.assert_close(block(x, torch.zeros(1, 4, 4, dtype=torch.long)), x)

    def test_window_partition_round_trip(self):
        x = torch.randn(2, 6, 7, 3)
        windows, hp, wp = window_partition(x, 4)
        self.assertEqual((tuple(windows.shape), hp, wp), ((2 * 2 * 2, 16, 3), 8, 8))
        torch.testing.assert_close(window_unpartition(windows, 4, hp, wp, 6, 7), x, atol=0, rtol=0)

    def test_window_attention_is_local(self):
        attn = WindowSelfAttention(8, num_heads=2, window_size=4)
        self.assertAlmostEqual(attn.scale, 2**-0.5)
        x = torch.randn(1, 8, 8, 8)
        y = x.clone()
        y[:, :, 1, 2] += 1.0  # inside the top-left window
        with torch.no_grad():
            a, b = attn(x), attn(y)
        self.assertGreater((a - b)[:, :, :4, :4].abs().max().item(), 1e-4)
        torch.testing.assert_close(a[:, :, 4:], b[:, :, 4:], atol=0, rtol=0)
        torch.testing.assert_close(a[:, :, :4, 4:], b[:, :, :4, 4:], atol=0, rtol=0)
        self.assertEqual(attn(torch.randn(1, 8, 5, 7)).shape, (1, 8, 5, 7))  # padded and cropped

    def test_nafblock_identity_at_init(self):
        block = NAFBlock(8)
        x = torch.randn(1, 8, 9, 9)
        torch.testing.assert_close(block(x), x, atol=0, rtol=0)
        randomise_weights(block)
        self.assertGreater((block(x) - x).abs().max().item(), 1e-3)

    def test_zero_init_residual_starts_at_identity(self):
        """zero_init_residual: the untrained network returns its input exactly, the default does not, and one
        optimiser step moves it off the identity (the output convolution still learns)."""
        x, regions = torch.randn(2, 1, 24, 20), torch.randint(0, 4, (2, 24, 20))
        torch.manual_seed(0)
        net = RAT(**SMALL, zero_init_residual=True)
        torch.manual_seed(0)
        default = RAT(**SMALL)
        self.assertEqual(set(net.state_dict()), set(default.state_dict()))
        with torch.no_grad():
            torch.testing.assert_close(net(x, regions), x, atol=0, rtol=0)
            self.assertGreater((default(x, regions) - x).abs().max().item(), 1e-3)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        F.l1_loss(net(x, regions), x + 0.1 * torch.randn_like(x)).backward()
        self.assertGreater(net.conv_out.weight.grad.abs().max().item(), 0.0)
        opt.step()
        with torch.no_grad():
            self.assertGreater((net(x, regions) - x).abs().max().item(), 1e-5)

    def test_ill_arg(self):
        for kwargs, msg in (
            (dict(enc_blocks=(2, 2), dec_blocks=(2,)), "same number of levels"),
            (dict(width=10, num_heads=3), "divisible"),
            (dict(region_attention="sparse"), "region_attention"),
            (dict(middle_blocks=0), "positive"),
            (dict(window_size=0), "window_size"),
            (dict(in_channels=0), "positive"),
            (dict(enc_blocks=(-1, 2)), ">= 0"),
            (dict(out_channels=2, zero_init_residual=True), "global residual"),
        ):
            with self.assertRaisesRegex(ValueError, msg):
                RAT(**{**SMALL, **kwargs})
        net = RAT(**SMALL)
        with self.assertRaisesRegex(ValueError, r"x must be \[B, 1, H, W\]"):
            net(torch.randn(1, 2, 16, 16))
        with self.assertRaisesRegex(ValueError, "integer labels"):
            net(torch.randn(1, 1, 16, 16), torch.zeros(1, 16, 16))
        with self.assertRaisesRegex(ValueError, "regions must be"):
            net(torch.randn(1, 1, 16, 16), torch.zeros(1, 16, 15, dtype=torch.long))


if __name__ == "__main__":
    unittest.main()
