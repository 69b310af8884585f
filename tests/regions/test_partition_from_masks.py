# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import unittest

import numpy as np
from parameterized import parameterized

from rat_monai.regions import partition_from_masks, partition_from_masks_reference


def _random_masks(seed: int, m: int, h: int, w: int) -> np.ndarray:
    """Overlapping random rectangles and blobs, some empty, some duplicated (ties in area)."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((m, h, w), bool)
    for i in range(m):
        kind = rng.integers(0, 4)
        if kind == 0:  # rectangle
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            masks[i, y0 : y0 + rng.integers(1, h), x0 : x0 + rng.integers(1, w)] = True
        elif kind == 1:  # random blob
            masks[i] = rng.random((h, w)) < rng.uniform(0.05, 0.6)
        elif kind == 2 and i > 0:  # copy of an earlier mask -> equal area tie
            masks[i] = masks[rng.integers(0, i)]
        # kind 3: empty mask
    return masks


# (seed, number of masks, H, W)
RANDOM_CASES = [(s, m, 17, 23) for s, m in [(0, 1), (1, 3), (2, 8), (3, 20), (4, 40), (5, 5)]]


class TestPartitionFromMasks(unittest.TestCase):
    @parameterized.expand(RANDOM_CASES)
    def test_matches_reference(self, seed, m, h, w):
        masks = _random_masks(seed, m, h, w)
        out = partition_from_masks(masks, (h, w))
        ref = partition_from_masks_reference(masks, (h, w))
        self.assertEqual(out.dtype, np.int32)
        self.assertEqual(out.shape, (h, w))
        np.testing.assert_array_equal(out, ref)
        # contiguous labels 0..L-1
        np.testing.assert_array_equal(np.unique(out), np.arange(out.max() + 1))
        # same result from SAM-style records
        records = [{"segmentation": mk, "area": int(mk.sum())} for mk in masks]
        np.testing.assert_array_equal(partition_from_masks(records, (h, w)), ref)

    def test_empty_list(self):
        out = partition_from_masks([], (5, 7))
        np.testing.assert_array_equal(out, np.zeros((5, 7), np.int32))
        np.testing.assert_array_equal(partition_from_masks(np.zeros((0, 5, 7), bool), (5, 7)), out)

    def test_full_cover_has_no_background(self):
        full = np.ones((1, 4, 6), bool)
        half = np.zeros((1, 4, 6), bool)
        half[0, :, :3] = True
        out = partition_from_masks(np.concatenate([full, half]), (4, 6))
        # the smaller mask wins where they overlap; the big mask keeps the rest; no background label
        np.testing.assert_array_equal(out[:, :3], 1)
        np.testing.assert_array_equal(out[:, 3:], 0)
        self.assertEqual(out.max(), 1)

    def test_background_is_last_and_smallest_wins(self):
        a = np.zeros((6, 6), bool)
        a[:4, :4] = True  # area 16
        b = np.zeros((6, 6), bool)
        b[2:4, 2:4] = True  # area 4, inside a
        out = partition_from_masks([b, a], (6, 6))  # input order must not matter for different areas
        self.assertEqual(out[0, 0], 0)  # largest mask painted first -> label 0
        self.assertEqual(out[2, 2], 1)
        self.assertEqual(out[5, 5], 2)  # background last
        np.testing.assert_array_equal(out, partition_from_masks([a, b], (6, 6)))

    def test_tie_goes_to_later_mask(self):
        a = np.zeros((4, 4), bool)
        a[:2] = True
        b = np.zeros((4, 4), bool)
        b[1:3] = True  # same area as a, overlapping on row 1
        out_ab = partition_from_masks([a, b], (4, 4))
        out_ba = partition_from_masks([b, a], (4, 4))
        self.assertEqual(out_ab[1, 0], out_ab[2, 0])  # row 1 went to b (later)
        self.assertEqual(out_ba[1, 0], out_ba[0, 0])  # row 1 went to a (later)

    def test_fully_overwritten_and_empty_masks_drop_out(self):
        big = np.ones((3, 3), bool)
        empty = np.zeros((3, 3), bool)
        hidden = np.zeros((3, 3), bool)
        hidden[0, 0] = True
        cover = hidden.copy()  # same area, later: overwrites `hidden` completely
        out = partition_from_masks([big, empty, hidden, cover], (3, 3))
        self.assertEqual(out.max(), 1)
        np.testing.assert_array_equal(np.unique(out), [0, 1])

    def test_area_from_records_orders_painting(self):
        a = np.zeros((3, 3), bool)
        a[0] = True
        b = np.zeros((3, 3), bool)
        b[0, :2] = True
        # the record's "area" (as SAM reports it) decides the order, even if it disagrees with the pixel count
        out = partition_from_masks([{"segmentation": a, "area": 1}, {"segmentation": b, "area": 9}], (3, 3))
        self.assertEqual(out[0, 0], out[0, 2])  # a (area 1) painted last wins everywhere it covers

    def test_ill_arg(self):
        with self.assertRaises(ValueError):
            partition_from_masks(np.zeros((2, 3, 3), bool), (4, 4))
        with self.assertRaises(ValueError):
            partition_from_masks([{"mask": np.zeros((3, 3), bool)}], (3, 3))
        with self.assertRaises(ValueError):
            partition_from_masks(np.zeros((3, 3, 3, 3), bool), (3, 3))


if __name__ == "__main__":
    unittest.main()
