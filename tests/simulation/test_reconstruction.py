# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import unittest

import numpy as np
import pytest
from parameterized import parameterized

from rat_monai.simulation.projectors import ParallelProjector
from rat_monai.simulation.reconstruction import fbp, fbp_blockwise, osem, ramp_filter
from tests.simulation._reference import disk, osem_reference


class TestFBP(unittest.TestCase):
    @parameterized.expand([("ramp", 0.04), ("shepp-logan", 0.04), ("hann", 0.03)])
    def test_fbp_reconstructs_disk(self, name, tol):
        img, _, r2 = disk(96, 30.0, 2.0)
        proj = ParallelProjector(96, n_angles=144)
        rec = fbp(proj.forward(img), proj, name)
        inner = r2 < 26.0**2
        outer = (r2 > 34.0**2) & (r2 < 46.0**2)
        self.assertLess(float(np.abs(rec[inner] - 2.0).mean()), tol * 2.0)
        self.assertLess(float(np.abs(rec[outer]).mean()), tol * 2.0)

    def test_ill_arg(self):
        with self.assertRaises(ValueError):
            ramp_filter(10, "bogus")
        with self.assertRaises(ValueError):
            osem(np.ones((4, 14)), 8, subsets=5)
        with self.assertRaises(ValueError):
            osem(np.ones((4, 14)), 8, iterations=0)


class TestOSEM(unittest.TestCase):
    @parameterized.expand([(1, 1), (3, 4), (2, 6)])
    def test_matches_dense_reference(self, iterations, subsets):
        rng = np.random.default_rng(3)
        n, na = 12, 12
        img, _, _ = disk(n, 4.5, 5.0)
        proj = ParallelProjector(n, n_angles=na)
        att = np.exp(-0.05 * proj.forward(np.ones((n, n), np.float32))).astype(np.float32)
        counts = rng.poisson(2.0 * att * proj.forward(img) + 0.5).astype(np.float32)
        fast = osem(counts, n, attenuation=att, background=0.5, scale=2.0, iterations=iterations, subsets=subsets)
        dense = proj.matrix.toarray()
        ref = osem_reference(counts, dense, attenuation=att, background=0.5, scale=2.0, iterations=iterations,
                             subsets=subsets).reshape(n, n)
        np.testing.assert_allclose(fast, ref, rtol=2e-3, atol=2e-3 * ref.max())

    def test_dose_scaling_identity(self):
        # the simulator reconstructs low dose as (counts / f, background, scale) instead of (counts, f bg, f scale)
        rng = np.random.default_rng(4)
        img, _, _ = disk(16, 6.0, 3.0)
        proj = ParallelProjector(16, n_angles=16)
        f = 1.0 / 12
        y = rng.poisson(f * (5.0 * proj.forward(img) + 2.0)).astype(np.float32)
        a = osem(y, 16, background=2.0 * f, scale=5.0 * f, iterations=2, subsets=4)
        b = osem(y / np.float32(f), 16, background=2.0, scale=5.0, iterations=2, subsets=4)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(a.max()))

    def test_noiseless_converges(self):
        img, _, r2 = disk(32, 11.0, 4.0)
        proj = ParallelProjector(32, n_angles=32)
        y = 10.0 * proj.forward(img)
        rec = osem(y, 32, scale=10.0, iterations=10, subsets=8)
        inner = r2 < 8.0**2
        self.assertLess(abs(float(rec[inner].mean()) - 4.0), 0.1)
        self.assertLess(float(rec[r2 > 14.0**2].mean()), 0.1)
        # several slices at once give the same result as one by one
        both = osem(np.stack([y, 0.5 * y], -1), 32, scale=10.0, iterations=2, subsets=4)
        np.testing.assert_allclose(both[..., 1], osem(0.5 * y, 32, scale=10.0, iterations=2, subsets=4), rtol=1e-4,
                                   atol=1e-5)


def test_fbp_blockwise_equals_fbp():
    """The blockwise FBP (no whole system matrix) gives the whole-matrix FBP, for any block size."""
    rng = np.random.default_rng(0)
    proj = ParallelProjector(24, 20, n_angles=30)
    sino = rng.standard_normal((30, proj.n_det, 3)).astype(np.float32)
    ref = fbp(sino, proj, "shepp-logan")
    for block in (1, 7, 30, 64):
        done = []
        out = fbp_blockwise(lambda p: sino[list(p.angle_indices)], 24, 20, 30, proj.n_det, "shepp-logan", block,
                            progress=done.append)
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
        assert sum(done) == 30
    with pytest.raises(ValueError, match="block"):
        fbp_blockwise(lambda p: sino, 24, 20, 30, proj.n_det, block=0)


if __name__ == "__main__":
    unittest.main()
