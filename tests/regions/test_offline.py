# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import logging
import unittest
from pathlib import Path

import numpy as np
import pytest
from parameterized import parameterized
from scipy import ndimage as ndi

from rat_monai.regions import (
    FelzenszwalbPartitioner,
    IntensityPartitioner,
    SlicPartitioner,
    SliceWindow,
    get_partitioner,
    merge_small_regions,
)


def _phantom(h: int = 64, w: int = 64) -> np.ndarray:
    """CT-like phantom in HU: air outside an ellipse of soft tissue with a bone disc and a lung hole."""
    yy, xx = np.mgrid[:h, :w]
    img = np.full((h, w), -1000.0, np.float32)
    body = ((yy - h / 2) / (0.4 * h)) ** 2 + ((xx - w / 2) / (0.45 * w)) ** 2 < 1
    img[body] = 40.0
    img[(yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (0.1 * h) ** 2] = 700.0
    img[(yy - h / 2) ** 2 + (xx - 2 * w / 3) ** 2 < (0.12 * h) ** 2] = -850.0
    rng = np.random.default_rng(0)
    return img + rng.normal(0, 10, img.shape).astype(np.float32)


# (method, kwargs)
CASES = [
    ("felzenszwalb", {}),
    ("felzenszwalb", {"scale": 50.0, "min_size": 20}),
    ("slic", {"n_segments": 30}),
    ("intensity", {"classes": 3}),
    ("intensity", {"split_foreground": False}),
]


def _body_and_air(hu: np.ndarray, margin: int) -> tuple[np.ndarray, np.ndarray]:
    body = hu > -500
    lab, n = ndi.label(body)
    body = lab == 1 + int(np.argmax(np.bincount(lab.ravel())[1:]))
    body = ndi.binary_fill_holes(body)
    return ndi.binary_erosion(body, iterations=margin), ~ndi.binary_dilation(body, iterations=margin)


class TestOfflinePartitioners(unittest.TestCase):
    @parameterized.expand(CASES)
    def test_phantom_partition(self, method, kwargs):
        img = np.stack([_phantom(), _phantom()[::-1]])
        part = get_partitioner(method, modality="ct", **kwargs)
        self.assertEqual(part.method, method)
        out = part(img)
        self.assertEqual(out.shape, img.shape)
        self.assertEqual(out.dtype, np.int32)
        for s, o in zip(img, out):
            np.testing.assert_array_equal(np.unique(o), np.arange(o.max() + 1))  # contiguous
            self.assertGreaterEqual(o.max() + 1, 2)
            body, air = _body_and_air(s, 2)
            self.assertFalse(set(np.unique(o[body])) & set(np.unique(o[air])), "air and body share a label")
        # deterministic
        np.testing.assert_array_equal(part(img), out)

    def test_settings_change_key(self):
        a = FelzenszwalbPartitioner(modality="ct").cache_key()
        b = FelzenszwalbPartitioner(modality="ct", scale=100).cache_key()
        c = FelzenszwalbPartitioner(modality="ct", window=(-200, 300)).cache_key()
        self.assertEqual(a, FelzenszwalbPartitioner(modality="ct").cache_key())
        self.assertEqual(len({a["digest"], b["digest"], c["digest"]}), 3)

    def test_auto_without_checkpoint_warns(self):
        with self.assertLogs("rat_monai.regions.factory", level=logging.WARNING) as cm:
            part = get_partitioner("auto")
        self.assertIsInstance(part, FelzenszwalbPartitioner)
        self.assertIn("no SAM checkpoint", "\n".join(cm.output))

    def test_window(self):
        w = SliceWindow(modality="ct")
        np.testing.assert_allclose(w(np.array([[-2000.0, 0.0, 1000.0]])), [[0.0, 0.5, 1.0]])
        p = SliceWindow(modality="pet")
        x = np.arange(100, dtype=np.float32).reshape(10, 10)
        self.assertAlmostEqual(float(p(x).min()), 0.0)
        self.assertAlmostEqual(float(p(x).max()), 1.0)
        np.testing.assert_array_equal(SliceWindow()(np.ones((3, 3))), np.zeros((3, 3)))
        rgb = w.to_rgb8(np.zeros((4, 5)))
        self.assertEqual((rgb.shape, rgb.dtype), ((4, 5, 3), np.uint8))

    def test_merge_small_regions(self):
        lab = np.zeros((10, 10), int)
        lab[5:, :] = 1
        lab[0, 0] = 2  # one-pixel speck
        out = merge_small_regions(lab, 4)
        self.assertEqual(out.max(), 1)
        self.assertEqual(out[0, 0], out[0, 1])

    def test_ill_arg(self):
        with self.assertRaises(ValueError):
            get_partitioner("watershed")
        with self.assertRaises(ValueError):
            get_partitioner("sam")  # no checkpoint
        with self.assertRaises(ValueError):
            FelzenszwalbPartitioner(scale=-1)
        with self.assertRaises(ValueError):
            SlicPartitioner(n_segments=0)
        with self.assertRaises(ValueError):
            IntensityPartitioner(classes=1)
        with self.assertRaises(ValueError):
            SliceWindow(modality="mr")
        with self.assertRaises(ValueError):
            SliceWindow(window=(1, 1))
        with self.assertRaises(ValueError):
            SliceWindow(window=(0, 1), percentiles=(0, 100))
        with self.assertRaises(ValueError):
            SliceWindow()(np.array([[np.nan, 1.0]]))
        with self.assertRaises(ValueError):
            FelzenszwalbPartitioner()(np.zeros((2, 2, 2, 2)))


def _read_ct_slice(folder: Path) -> np.ndarray:
    import pydicom

    files = sorted(folder.glob("*.dcm"))
    ds = pydicom.dcmread(files[len(files) // 2])
    return ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


@pytest.mark.parametrize("method", ["felzenszwalb", "slic", "intensity"])
def test_real_ct_separates_air_from_body(real_ct_dir, method):
    hu = _read_ct_slice(real_ct_dir)
    assert hu.shape == (512, 512)
    out = get_partitioner(method, modality="ct")(hu[None])[0]
    n = int(out.max()) + 1
    assert 5 <= n <= 500, f"{method}: {n} regions"
    body, air = _body_and_air(hu, 3)
    assert body.sum() > 10000 and air.sum() > 10000
    shared = set(np.unique(out[body]).tolist()) & set(np.unique(out[air]).tolist())
    assert not shared, f"{method}: labels {sorted(shared)} cover both air and body"


if __name__ == "__main__":
    unittest.main()
