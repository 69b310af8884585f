# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import tempfile
import unittest
from unittest import mock

import numpy as np
from parameterized import parameterized

from rat_monai.regions import FelzenszwalbPartitioner, RegionCache, cached_partition, region_cache_key

# labels to store: (dtype, values)
STORE_CASES = [
    (np.int32, np.arange(12).reshape(3, 4)),
    (np.int32, np.full((3, 4), 70000)),  # beyond uint16
    (np.int32, np.zeros((0, 4))),
]


class TestRegionCache(unittest.TestCase):
    @parameterized.expand(STORE_CASES)
    def test_round_trip(self, dtype, labels):
        with tempfile.TemporaryDirectory() as d:
            cache = RegionCache(d)
            key = cache.key(np.ones((3, 4)), {"a": 1})
            self.assertIsNone(cache.get(key))
            self.assertNotIn(key, cache)
            cache.put(key, labels.astype(dtype))
            self.assertIn(key, cache)
            got = cache.get(key)
            self.assertEqual(got.dtype, np.int32)
            np.testing.assert_array_equal(got, labels)
            self.assertEqual(len(cache), 1)

    def test_key_depends_on_content_dtype_shape_settings(self):
        x = np.arange(12, dtype=np.float32).reshape(3, 4)
        k = region_cache_key(x, {"s": 1})
        self.assertEqual(k, region_cache_key(x.copy(), {"s": 1}))
        others = [
            region_cache_key(x + 1, {"s": 1}),
            region_cache_key(x.astype(np.float64), {"s": 1}),
            region_cache_key(x.reshape(4, 3), {"s": 1}),
            region_cache_key(x, {"s": 2}),
        ]
        self.assertNotIn(k, others)
        self.assertEqual(len(set(others)), 4)

    def test_cached_partition_computes_once(self):
        rng = np.random.default_rng(0)
        slices = rng.normal(size=(5, 24, 24)).astype(np.float32)
        slices[3] = slices[1]  # duplicate content
        part = FelzenszwalbPartitioner(scale=20, min_size=5)
        ref = part(slices)
        with tempfile.TemporaryDirectory() as d:
            cache = RegionCache(d)
            with mock.patch.object(FelzenszwalbPartitioner, "__call__", side_effect=part.__call__, autospec=False) as m:
                out1, counts1 = cached_partition(part, slices, cache=cache, batch_size=2)
                n_calls_first = m.call_count
                out2, counts2 = cached_partition(part, slices, cache=cache, batch_size=2)
                self.assertEqual(m.call_count, n_calls_first)  # all hits the second time
            self.assertEqual(counts1, {"hits": 0, "misses": 5})
            self.assertEqual(counts2, {"hits": 5, "misses": 0})
            np.testing.assert_array_equal(out1, ref)
            np.testing.assert_array_equal(out2, ref)
            self.assertEqual(len(cache), 4)  # the duplicate slice shares one entry
            # another setting misses
            other = FelzenszwalbPartitioner(scale=40, min_size=5)
            np.testing.assert_array_equal(cached_partition(other, slices, cache=cache)[0], other(slices))
            self.assertEqual(len(cache), 8)

    def test_corrupt_entry_is_a_miss(self):
        with tempfile.TemporaryDirectory() as d:
            cache = RegionCache(d)
            key = "ab" * 32
            cache.path(key).parent.mkdir(parents=True)
            cache.path(key).write_bytes(b"not a zip")
            self.assertIsNone(cache.get(key))

    def test_ill_arg(self):
        with tempfile.NamedTemporaryFile() as f:
            with self.assertRaises(ValueError):
                RegionCache(f.name)
        with tempfile.TemporaryDirectory() as d:
            with self.assertRaises(ValueError):
                RegionCache(d).path("../../etc")
            with self.assertRaises(ValueError):
                cached_partition(FelzenszwalbPartitioner(), np.zeros((4, 4)), RegionCache(d))
            with self.assertRaises(ValueError):
                cached_partition(FelzenszwalbPartitioner(), np.zeros((1, 4, 4)), batch_size=0)


def test_truncated_entry_is_recomputed_and_rewritten(real_pet_dir, tmp_path):
    """A truncated .npz (zipfile.BadZipFile, issue 15 item 7) is a miss, recomputed and replaced, on real PET slices."""
    from rat_monai.data import load_volume

    files = sorted(p for p in real_pet_dir.iterdir() if p.is_file())[:3]
    for f in files:
        (tmp_path / "pet").mkdir(exist_ok=True)
        (tmp_path / "pet" / f.name).symlink_to(f)
    vol = load_volume(tmp_path / "pet")
    slices = np.moveaxis(vol[0].numpy(), -1, 0)
    part = FelzenszwalbPartitioner(scale=20, min_size=5)
    cache = RegionCache(tmp_path / "cache")
    ref, _ = cached_partition(part, slices, cache=cache)
    entry = cache.path(cache.key(slices[1], part.cache_key()))
    good = entry.read_bytes()
    entry.write_bytes(good[: len(good) // 2])  # truncated: zipfile.BadZipFile on np.load
    assert cache.get(cache.key(slices[1], part.cache_key())) is None
    labels, counts = cached_partition(part, slices, cache=cache)
    np.testing.assert_array_equal(labels, ref)
    assert counts == {"hits": len(slices) - 1, "misses": 1}
    np.testing.assert_array_equal(cache.get(cache.key(slices[1], part.cache_key())), ref[1])  # rewritten


if __name__ == "__main__":
    unittest.main()
