# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""region_attention: packed fast path vs dense boolean-mask reference (outputs and gradients), memory bound, script."""

from __future__ import annotations

import unittest
from unittest import mock

import torch
import torch.nn.functional as F
from parameterized import parameterized

from rat_monai.networks.blocks import RegionSelfAttention, region_attention
from rat_monai.networks.blocks.region_attention import _region_attention


def _map(kind: str, b: int, n: int, g: torch.Generator) -> torch.Tensor:
    if kind == "one_region":
        return torch.full((b, n), 3, dtype=torch.int64)
    if kind == "every_token_own":
        return torch.arange(n).repeat(b, 1)
    if kind == "singleton_region":  # 2 big regions plus a region of exactly 1 token
        r = torch.randint(0, 2, (b, n), generator=g)
        r[:, n // 3] = 99
        return r
    if kind == "noncontiguous_negative":
        labels = torch.tensor([-7, -1, 0, 5, 1000, 2**40])
        return labels[torch.randint(0, len(labels), (b, n), generator=g)]
    if kind == "batch_different_maps":
        r = torch.randint(0, 4, (b, n), generator=g)
        r[1] = torch.randint(-3, 20, (n,), generator=g)
        r[2] = 0
        return r
    if kind == "mixed_sizes":  # sizes spanning several power-of-two buckets
        sizes = [1, 2, 3, 5, 9, 17, 33]
        r = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
        r = torch.cat([r, torch.full((n - len(r),), 50)])
        return torch.stack([r[torch.randperm(n, generator=g)] for _ in range(b)])
    raise ValueError(kind)


# region map kind, batch, heads, tokens N, head dim, scale, score_budget (small budgets force query chunking)
TEST_CASES = [
    ["one_region", 2, 2, 40, 8, None, 2**25],
    ["every_token_own", 2, 2, 40, 8, 0.3, 2**25],
    ["singleton_region", 2, 3, 45, 4, 0.5, 2**25],
    ["noncontiguous_negative", 2, 2, 64, 8, None, 2**25],
    ["batch_different_maps", 3, 2, 50, 8, 0.35, 2**25],
    ["mixed_sizes", 2, 2, 100, 8, None, 2**25],
    ["mixed_sizes_chunked", 2, 2, 100, 8, None, 200],
    ["one_region_chunked", 1, 2, 77, 8, 0.4, 2 * 77 * 5],
]


def _qkv(b, h, n, d, seed, dv=None):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, dd, generator=g).requires_grad_() for dd in (d, d, dv or d)]


class TestRegionAttention(unittest.TestCase):
    @parameterized.expand(TEST_CASES)
    def test_packed_matches_dense(self, kind, b, h, n, d, scale, budget):
        g = torch.Generator().manual_seed(0)
        regions = _map(kind.replace("_chunked", ""), b, n, g)
        outs, grads = {}, {}
        for impl in ("dense", "packed"):
            q, k, v = _qkv(b, h, n, d, 1)
            out = region_attention(q, k, v, regions, scale, impl=impl, score_budget=budget)
            weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
            (out * weight).sum().backward()
            outs[impl], grads[impl] = out.detach(), [t.grad for t in (q, k, v)]
        self.assertEqual(outs["packed"].shape, (b, h, n, d))
        torch.testing.assert_close(outs["packed"], outs["dense"], atol=1e-5, rtol=0)
        for gp, gd in zip(grads["packed"], grads["dense"]):
            torch.testing.assert_close(gp, gd, atol=1e-5, rtol=0)

    def test_dense_is_within_region_attention(self):
        """The reference itself: per region, plain softmax attention over that region's tokens only."""
        b, h, n, d = 2, 2, 30, 4
        regions = torch.randint(-2, 3, (b, n), generator=torch.Generator().manual_seed(3))
        q, k, v = (t.detach() for t in _qkv(b, h, n, d, 4))
        out = region_attention(q, k, v, regions, 0.5, impl="dense")
        expected = torch.zeros_like(out)
        for i in range(b):
            for label in regions[i].unique():
                idx = (regions[i] == label).nonzero().squeeze(1)
                attn = (q[i][:, idx] @ k[i][:, idx].transpose(-1, -2) * 0.5).softmax(-1)
                expected[i][:, idx] = attn @ v[i][:, idx]
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
        full = region_attention(q, k, v, torch.zeros_like(regions), 0.5, impl="dense")
        self.assertGreater((full - out).abs().max().item(), 1e-2)  # restriction changes the result

    def test_value_dim_differs(self):
        q, k, v = _qkv(1, 2, 20, 4, 5, dv=6)
        regions = torch.randint(0, 3, (1, 20), generator=torch.Generator().manual_seed(0))
        a = region_attention(q, k, v, regions, impl="packed")
        b = region_attention(q, k, v, regions, impl="dense")
        self.assertEqual(a.shape, (1, 2, 20, 6))
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)

    def test_packed_never_builds_n_by_n(self):
        """Every SDPA call of the packed path has a score block within the budget and far below N x N."""
        b, h, n, d, budget = 1, 2, 512, 4, 2 * 512 * 64
        g = torch.Generator().manual_seed(0)
        regions = torch.randint(0, 6, (b, n), generator=g)
        regions[:, : n // 2] = 7  # one region with ~half of the tokens
        q, k, v = (t.detach() for t in _qkv(b, h, n, d, 6))
        sizes = []
        real_sdpa = F.scaled_dot_product_attention

        def spy(q_, k_, v_, *args, **kwargs):
            sizes.append(q_.shape[:-1].numel() * k_.shape[-2])
            return real_sdpa(q_, k_, v_, *args, **kwargs)

        with mock.patch.object(F, "scaled_dot_product_attention", side_effect=spy):
            out = region_attention(q, k, v, regions, impl="packed", score_budget=budget)
        self.assertGreater(len(sizes), 1)
        self.assertLessEqual(max(sizes), budget)
        self.assertLess(max(sizes), b * h * n * n // 4)
        torch.testing.assert_close(out, region_attention(q, k, v, regions, impl="dense"), atol=1e-5, rtol=0)

    def test_script(self):
        scripted = torch.jit.script(_region_attention)
        q, k, v = (t.detach() for t in _qkv(2, 2, 33, 4, 7))
        regions = torch.randint(-4, 4, (2, 33), generator=torch.Generator().manual_seed(1))
        for impl in ("packed", "dense"):
            torch.testing.assert_close(
                scripted(q, k, v, regions, 0.3, impl, 300), _region_attention(q, k, v, regions, 0.3, impl, 300)
            )

    def test_module(self):
        module = RegionSelfAttention(16, num_heads=4)
        self.assertAlmostEqual(module.scale, 4**-0.5)  # published num_heads ** -0.5
        x = torch.randn(2, 16, 5, 7)
        regions = torch.randint(0, 3, (2, 5, 7))
        out = module(x, regions)
        module.impl = "dense"
        self.assertEqual(out.shape, x.shape)
        torch.testing.assert_close(out, module(x, regions), atol=1e-5, rtol=0)

    def test_ill_arg(self):
        q = torch.randn(1, 2, 10, 4)
        r = torch.zeros(1, 10, dtype=torch.int64)
        with self.assertRaisesRegex(ValueError, "impl"):
            region_attention(q, q, q, r, impl="flash")
        with self.assertRaisesRegex(ValueError, "regions must be"):
            region_attention(q, q, q, r[:, :5])
        with self.assertRaisesRegex(ValueError, "integer"):
            region_attention(q, q, q, r.float())
        with self.assertRaisesRegex(ValueError, r"\[B, heads, N, d\]"):
            region_attention(q, q[:, :1], q, r)
        with self.assertRaisesRegex(ValueError, "score_budget"):
            region_attention(q, q, q, r, score_budget=0)
        with self.assertRaisesRegex(ValueError, "divisible"):
            RegionSelfAttention(10, num_heads=4)
        with self.assertRaisesRegex(ValueError, "impl"):
            RegionSelfAttention(8, num_heads=4, impl="sparse")


if __name__ == "__main__":
    unittest.main()
