# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import importlib
import unittest

import torch
from parameterized import parameterized

from rat_monai.networks.blocks.bi_wkv import bi_wkv, bi_wkv_reference

# the package re-exports the function under the module's name: fetch the module itself for its private helpers
bi_wkv_module = importlib.import_module("rat_monai.networks.blocks.bi_wkv")


def _inputs(batch, length, channels, k_scale, w_scale, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(channels, generator=g) * w_scale / length
    u = torch.randn(channels, generator=g) * w_scale / length
    k = torch.randn(batch, length, channels, generator=g) * k_scale
    v = torch.randn(batch, length, channels, generator=g)
    return [t.to(dtype).requires_grad_(True) for t in (w, u, k, v)]


def _assert_close_scaled(test, actual, expected, rtol, msg):
    """Elementwise rtol plus an absolute floor of rtol * max|expected| (sums of many float32 terms), at least 1e-6."""
    atol = max(rtol * float(expected.detach().abs().max()), 1e-6)
    torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol, atol=atol, msg=msg)


# (name, batch, T, C, |k| scale, w/u scale before the division by T, chunk_size)
TEST_CASES = [
    ["single_token", 2, 1, 3, 1.0, 1.0, None],
    ["short", 2, 7, 3, 1.0, 1.0, None],
    ["ragged_last_chunk", 2, 100, 4, 3.0, 5.0, None],
    ["large_k", 1, 257, 3, 60.0, 5.0, None],
    ["huge_k", 1, 300, 2, 200.0, 2.0, None],
    ["strong_decay", 1, 333, 3, 5.0, 400.0, None],  # chunks shortened by the |w| cap
    ["strong_decay_loop", 1, 300, 2, 5.0, 5000.0, None],  # so many chunks that the sequential inter-chunk scan runs
    ["explicit_chunk", 2, 90, 3, 10.0, 3.0, 8],
]


def _check_against_reference(test, w, u, k, v, chunk_size=None, rtol=1e-4, seed=1):
    """Output and all four gradients of ``bi_wkv`` against the float64 dense reference."""
    out = bi_wkv(w, u, k, v, chunk_size=chunk_size)
    test.assertEqual(out.shape, v.shape)
    test.assertEqual(out.dtype, v.dtype)
    ref = bi_wkv_reference(*(t.double() for t in (w, u, k, v)))
    _assert_close_scaled(test, out, ref, rtol, "output")
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    got = torch.autograd.grad(out, (w, u, k, v), grad)
    expected = torch.autograd.grad(ref, (w, u, k, v), grad.double())
    for name, a, b in zip("ukv", got[1:], expected[1:]):
        _assert_close_scaled(test, a, b, rtol, f"grad {name}")
    # d/dw multiplies terms by distances up to T that cancel between numerator and denominator, so in float32 an
    # O(T) scan carries an absolute error of about eps * T per row (the dense reference forms v_i - y_t per pair);
    # allow 1e-6 * T * max|g| * max|v| on top of rtol (float64 inputs are checked at rtol alone)
    length = k.shape[1]
    floor = 0.0 if v.dtype == torch.float64 else 1e-6 * length * float(grad.abs().max()) * float(v.detach().abs().max())
    atol = max(rtol * float(expected[0].abs().max()), floor, 1e-6)
    torch.testing.assert_close(got[0].double(), expected[0].double(), rtol=rtol, atol=atol, msg="grad w")


class TestBiWKV(unittest.TestCase):
    @parameterized.expand(TEST_CASES)
    def test_matches_reference(self, _, batch, length, channels, k_scale, w_scale, chunk_size):
        _check_against_reference(self, *_inputs(batch, length, channels, k_scale, w_scale, seed=length), chunk_size)

    @parameterized.expand(TEST_CASES)
    def test_matches_reference_float64(self, _, batch, length, channels, k_scale, w_scale, chunk_size):
        # the algorithm itself is exact: in float64 it matches the dense reference to 1e-8 (all gradients included)
        args = _inputs(batch, length, channels, k_scale, w_scale, seed=length, dtype=torch.float64)
        _check_against_reference(self, *args, chunk_size, rtol=1e-8)

    def test_long_sequence(self):
        # T = 4096 against the dense reference (a 4096^2 matrix per channel: keep B and C tiny); |k| up to ~80
        _check_against_reference(self, *_inputs(1, 4096, 2, 20.0, 10.0, seed=0), seed=2)

    def test_recompute_matches_plain_autograd(self):
        # recompute=True (checkpointed intermediates, the default) and plain autograd give the same gradients
        grads = []
        for recompute in (True, False):
            w, u, k, v = _inputs(2, 150, 3, 10.0, 3.0, seed=9, dtype=torch.float64)
            out = bi_wkv(w, u, k, v, recompute=recompute)
            out.square().sum().backward()
            grads.append([t.grad for t in (w, u, k, v)])
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)

    def test_dense_and_loop_inter_chunk_agree(self):
        g = torch.Generator().manual_seed(5)
        step = torch.randn(3, generator=g)  # decay over one chunk, both signs
        mu = torch.randn(2, 16, 3, generator=g) * 20  # log-scales of 16 chunk totals
        total = torch.rand(2, 2, 16, 3, generator=g)  # [P, B, n, C]
        off_d, val_d = bi_wkv_module._inter_chunk_dense(mu, total, step)
        off_l, val_l = bi_wkv_module._inter_chunk_loop(mu, total, step)
        dense = val_d * torch.exp(off_d)
        loop = val_l * torch.exp(off_l)
        torch.testing.assert_close(dense, loop, rtol=1e-4, atol=0.0)
        self.assertEqual(float(val_d[:, :, 0].abs().max()), 0.0)  # the first chunk starts from an empty state

    def test_bfloat16(self):
        w, u, k, v = _inputs(2, 64, 4, 20.0, 3.0, seed=3)
        args = [t.detach().bfloat16().requires_grad_(True) for t in (w, u, k, v)]
        out = bi_wkv(*args)
        self.assertEqual(out.dtype, torch.bfloat16)
        ref = bi_wkv_reference(*(t.double() for t in args))
        torch.testing.assert_close(out.double(), ref, rtol=2e-2, atol=2e-2)
        out.float().sum().backward()
        self.assertTrue(all(torch.isfinite(t.grad.float()).all() for t in args))

    def test_uniform_attention_limit(self):
        # w = u = 0 and k = 0: every token gets the plain mean of v
        v = torch.randn(2, 50, 3)
        zeros = torch.zeros(3)
        out = bi_wkv(zeros, zeros, torch.zeros_like(v), v)
        torch.testing.assert_close(out, v.mean(1, keepdim=True).expand_as(v))

    # (name, w shape, u shape, k shape, v shape)
    @parameterized.expand(
        [
            ["k_v_mismatch", (3,), (3,), (1, 5, 3), (1, 6, 3)],
            ["k_not_3d", (3,), (3,), (5, 3), (5, 3)],
            ["w_wrong_channels", (4,), (3,), (1, 5, 3), (1, 5, 3)],
            ["u_2d", (3,), (1, 3), (1, 5, 3), (1, 5, 3)],
            ["empty_sequence", (3,), (3,), (1, 0, 3), (1, 0, 3)],
        ]
    )
    def test_ill_arg(self, _, w_shape, u_shape, k_shape, v_shape):
        with self.assertRaises(ValueError):
            bi_wkv(torch.zeros(w_shape), torch.zeros(u_shape), torch.zeros(k_shape), torch.zeros(v_shape))


if __name__ == "__main__":
    unittest.main()
