# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import unittest

import numpy as np
from parameterized import parameterized

from rat_monai.simulation.projectors import ParallelProjector, forward_project_interp
from tests.simulation._reference import disk, forward_project_reference

# (nx, ny, n_angles)
SHAPES = [(16, 16, 8), (12, 9, 7), (10, 14, 5)]


class TestParallelProjector(unittest.TestCase):
    @parameterized.expand(SHAPES)
    def test_matches_loop_reference(self, nx, ny, na):
        img = np.random.default_rng(0).random((nx, ny)).astype(np.float32)
        proj = ParallelProjector(nx, ny, n_angles=na)
        np.testing.assert_allclose(proj.forward(img), forward_project_reference(img, na), rtol=1e-5, atol=1e-5)

    @parameterized.expand(SHAPES)
    def test_adjoint(self, nx, ny, na):
        rng = np.random.default_rng(1)
        proj = ParallelProjector(nx, ny, n_angles=na)
        x = rng.random((nx, ny, 3)).astype(np.float32)
        y = rng.random((*proj.sino_shape, 3)).astype(np.float32)
        lhs = float(np.sum(proj.forward(x).astype(np.float64) * y))
        rhs = float(np.sum(x.astype(np.float64) * proj.back(y)))
        self.assertAlmostEqual(lhs, rhs, delta=1e-4 * abs(lhs))

    def test_batch_equals_single_and_subsets_are_rows(self):
        rng = np.random.default_rng(2)
        proj = ParallelProjector(16, n_angles=12)
        stack = rng.random((16, 16, 4)).astype(np.float32)
        full = proj.forward(stack)
        for s in range(4):
            np.testing.assert_allclose(full[..., s], proj.forward(stack[..., s]), rtol=1e-6, atol=1e-6)
        sub = ParallelProjector(16, n_angles=12, angle_indices=[1, 5, 9])
        np.testing.assert_allclose(sub.forward(stack), full[[1, 5, 9]], rtol=1e-6, atol=1e-6)

    def test_mass_is_preserved(self):
        # every view of a pixel-driven projection sums to the image sum
        img, _, _ = disk(32, 10.0)
        sino = ParallelProjector(32, n_angles=9).forward(img)
        np.testing.assert_allclose(sino.sum(axis=1), np.full(9, img.sum()), rtol=1e-5)

    def test_interp_projector_matches_chord_lengths(self):
        # a uniform disk projects to the chord length 2 sqrt(R^2 - t^2) at every view
        n, rad = 64, 20.0
        img, _, _ = disk(n, rad)
        sino = forward_project_interp(img, n_angles=6)
        proj = ParallelProjector(n, n_angles=6)
        t = np.arange(proj.n_det) - (proj.n_det - 1) / 2
        chord = 2 * np.sqrt(np.clip(rad**2 - t**2, 0, None))
        central = np.abs(t) < rad - 2
        for a in range(6):
            np.testing.assert_allclose(sino[a][central], chord[central], atol=1.2)
        # and agrees with the matrix projector on a smooth image
        x = np.outer(np.hanning(n), np.hanning(n)).astype(np.float32)
        np.testing.assert_allclose(forward_project_interp(x, 6), proj.forward(x), atol=0.02 * proj.forward(x).max())

    def test_ill_arg(self):
        with self.assertRaises(ValueError):
            ParallelProjector(1)
        with self.assertRaises(ValueError):
            ParallelProjector(8, n_angles=4, angle_indices=[4])
        with self.assertRaises(ValueError):
            ParallelProjector(8, n_angles=0)
        with self.assertRaises(ValueError):
            ParallelProjector(8).forward(np.zeros((7, 8)))
        with self.assertRaises(ValueError):
            ParallelProjector(8).back(np.zeros((3, 3)))


if __name__ == "__main__":
    unittest.main()
