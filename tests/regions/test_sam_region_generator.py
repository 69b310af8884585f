# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import numpy as np
import pytest
import torch
from parameterized import parameterized
from tiny_sam_models import ct_like_slices, tiny_sam

from rat_monai.regions import RegionCache, adjusted_rand_index, cached_partition, get_partitioner
from rat_monai.regions.sam import SamRegionGenerator, load_sam
from rat_monai.transforms import RegionPartition

# (points_per_side, pred_iou_thresh, stability_score_thresh, H, W)
STOCK_CASES = [
    (4, 0.0, 0.0, 32, 40),
    (5, 0.0, 0.0, 40, 32),
    (4, 0.3, 0.5, 32, 32),
]


def _valid(test: unittest.TestCase, out: np.ndarray, shape: tuple[int, ...]) -> None:
    test.assertEqual(out.shape, shape)
    test.assertEqual(out.dtype, np.int32)
    for o in out:
        np.testing.assert_array_equal(np.unique(o), np.arange(o.max() + 1))


class TestSamRegionGenerator(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = tiny_sam()
        # the tiny model gains nothing from threads; one thread avoids oversubscribing the shared CPU
        cls._threads = torch.get_num_threads()
        torch.set_num_threads(1)

    @classmethod
    def tearDownClass(cls):
        torch.set_num_threads(cls._threads)

    @parameterized.expand(STOCK_CASES)
    def test_equals_stock_generator(self, pps, iou, stab, h, w):
        x = ct_like_slices(2, h, w)
        gen = SamRegionGenerator(self.model, points_per_side=pps, pred_iou_thresh=iou, stability_score_thresh=stab,
                                 points_per_batch=7, modality="ct")  # fmt: skip
        out = gen(x)
        _valid(self, out, x.shape)
        ref = gen.reference(x)  # partition_from_masks(SamAutomaticMaskGenerator(...).generate(rgb))
        np.testing.assert_array_equal(out, ref)
        if iou == 0.0:
            self.assertGreaterEqual(int(out[0].max()) + 1, 3, "the tiny model should give several regions")
        # one slice at a time gives the same as the batch
        np.testing.assert_array_equal(gen(x[1]), out[1:])

    def test_single_mask_output(self):
        x = ct_like_slices(2, 32, 40)
        kw = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, points_per_batch=7, modality="ct")
        single = SamRegionGenerator(self.model, multimask_output=False, **kw)
        multi = SamRegionGenerator(self.model, **kw)
        out = single(x)
        _valid(self, out, x.shape)
        # the stock generator asked for one mask per prompt gives the same partition
        np.testing.assert_array_equal(out, single.reference(x))
        feats, size = single.encode([single.to_rgb(x[0])])
        points = single.point_grid(x[0])
        n_single = len(single.masks_for_slice(feats, points, size, x.shape[1:])[0])
        n_multi = len(multi.masks_for_slice(feats, points, size, x.shape[1:])[0])
        self.assertLessEqual(n_single, len(points))
        self.assertGreater(n_multi, n_single)
        self.assertNotEqual(single.cache_key()["digest"], multi.cache_key()["digest"])

    def test_custom_sam_with_zero_dim_buffer(self):
        # a user-built Sam with a BatchNorm (0-d int64 num_batches_tracked buffer) and its own input size (128)
        model = tiny_sam(seed=3, img_size=128)
        model.image_encoder.neck.append(torch.nn.BatchNorm2d(32).eval())
        self.assertEqual(model.state_dict()["image_encoder.neck.4.num_batches_tracked"].dim(), 0)
        kw = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, modality="ct")
        gen = SamRegionGenerator(model=model, **kw)
        self.assertEqual(gen.transform.target_length, 128)
        x = ct_like_slices(1, 32, 40)
        np.testing.assert_array_equal(gen(x), gen.reference(x))
        digest = gen.cache_key()["digest"]
        model.image_encoder.neck[4].num_batches_tracked += 1  # the 0-d buffer is part of the weights hash
        self.assertNotEqual(SamRegionGenerator(model=model, **kw).cache_key()["digest"], digest)
        with self.assertRaises(ValueError):
            SamRegionGenerator(model=torch.nn.Linear(2, 2))

    def test_skip_background_and_bf16(self):
        x = ct_like_slices(2, 32, 40)
        base = SamRegionGenerator(self.model, points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                                  modality="ct")  # fmt: skip
        skip = SamRegionGenerator(self.model, points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                                  modality="ct", skip_background=True)  # fmt: skip
        pts_all, pts_fg = base.point_grid(x[0]), skip.point_grid(x[0])
        self.assertLess(len(pts_fg), len(pts_all))
        self.assertGreater(len(pts_fg), 0)
        ij = pts_fg.astype(int)
        self.assertTrue(np.all(x[0][ij[:, 1], ij[:, 0]] > -500), "a prompt was placed in air")
        _valid(self, skip(x), x.shape)
        bf = SamRegionGenerator(self.model, points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                                modality="ct", dtype=torch.bfloat16)  # fmt: skip
        out_bf = bf(x)
        _valid(self, out_bf, x.shape)
        self.assertGreater(adjusted_rand_index(out_bf[0], base(x)[0]), -1.0)
        # an all-air slice gets no prompts and one background region
        air = np.full((1, 32, 40), -1000.0, np.float32)
        np.testing.assert_array_equal(skip(air), np.zeros((1, 32, 40), np.int32))

    def test_cache_key_and_transform(self):
        gen = SamRegionGenerator(self.model, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
        key = gen.cache_key()
        same = SamRegionGenerator(self.model, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
        self.assertEqual(key, same.cache_key())
        variants = [
            dict(points_per_side=5), dict(pred_iou_thresh=0.1), dict(skip_background=True),
            dict(dtype=torch.bfloat16), dict(window=(-100, 100)),
        ]  # fmt: skip
        base_kw = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
        digests = {SamRegionGenerator(self.model, **{**base_kw, **v}).cache_key()["digest"] for v in variants}
        self.assertEqual(len(digests | {key["digest"]}), len(variants) + 1)
        other = SamRegionGenerator(tiny_sam(seed=5), **base_kw)
        self.assertNotEqual(other.cache_key()["digest"], key["digest"])
        # through get_partitioner("auto", model=...) and the transform with a disk cache
        self.assertIsInstance(get_partitioner("auto", model=self.model), SamRegionGenerator)
        x = ct_like_slices(1, 32, 32)
        with tempfile.TemporaryDirectory() as d:
            t = RegionPartition(method="sam", model=self.model, cache_dir=d, **base_kw)
            out = t(x)
            self.assertEqual(out.meta["region_method"], "sam")
            np.testing.assert_array_equal(out.numpy(), gen(x))
            self.assertEqual(len(RegionCache(d)), 1)
            np.testing.assert_array_equal(cached_partition(gen, x, RegionCache(d))[0], gen(x))

    def test_ill_arg(self):
        with tempfile.TemporaryDirectory() as d:
            tiny_path = Path(d, "tiny.pth")
            torch.save(self.model.state_dict(), tiny_path)
            with self.assertRaisesRegex(ValueError, "does not match model_type='vit_b'"):
                SamRegionGenerator(tiny_path, model_type="vit_b")
            with self.assertRaises(FileNotFoundError):
                SamRegionGenerator(Path(d, "missing.pth"))
            other = Path(d, "other.pth")
            torch.save({"conv.weight": torch.zeros(2)}, other)
            with self.assertRaisesRegex(ValueError, "not a SAM state dict"):
                load_sam(other)
            junk = Path(d, "junk.pth")
            junk.write_bytes(b"not a checkpoint")
            with self.assertRaisesRegex(ValueError, "cannot read"):
                load_sam(junk)
            with self.assertRaisesRegex(ValueError, "model_type"):
                load_sam(tiny_path, model_type="vit_x")
        with self.assertRaises(ValueError):
            SamRegionGenerator()
        with self.assertRaises(ValueError):
            SamRegionGenerator(self.model, dtype=torch.float16)
        with self.assertRaises(ValueError):
            SamRegionGenerator(self.model, points_per_side=0)
        with self.assertRaises(ValueError):
            SamRegionGenerator(self.model, pred_iou_thresh=1.5)
        with self.assertRaises(ValueError):
            SamRegionGenerator(torch.nn.Linear(2, 2))
        with self.assertRaises(ValueError):
            SamRegionGenerator(self.model)(np.zeros((1, 1, 8, 8)))


class TestAdjustedRandIndex(unittest.TestCase):
    def test_values(self):
        a = np.array([0, 0, 1, 1, 2, 2])
        self.assertAlmostEqual(adjusted_rand_index(a, a), 1.0)
        self.assertAlmostEqual(adjusted_rand_index(a, a + 7), 1.0)  # label values do not matter
        self.assertAlmostEqual(adjusted_rand_index(a, np.array([1, 1, 0, 0, 2, 2])), 1.0)
        self.assertLess(adjusted_rand_index(a, np.array([0, 1, 0, 1, 0, 1])), 0.0)
        # textbook value (Hubert & Arabie): partial agreement
        self.assertAlmostEqual(adjusted_rand_index([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]), 0.24242424, places=6)
        with self.assertRaises(ValueError):
            adjusted_rand_index(a, a[:3])


@pytest.mark.slow
def test_vit_b_random_checkpoint_end_to_end(tmp_path):
    """ViT-B with random weights saved as a checkpoint: load, 4x4 grid on one slice (bf16 autocast, background
    skipped), mismatched model_type -> clear error."""
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    path = tmp_path / "sam_vit_b_random.pth"
    model = sam_model_registry["vit_b"]()
    torch.save(model.state_dict(), path)
    del model
    with pytest.raises(ValueError, match="holds a vit_b model"):
        SamRegionGenerator(path, model_type="vit_l")
    gen = SamRegionGenerator(path, model_type="vit_b", points_per_side=4, pred_iou_thresh=0.5,
                             stability_score_thresh=0.5, modality="ct", skip_background=True,
                             dtype=torch.bfloat16)  # fmt: skip  (bf16 halves the 1024x1024 encoder's attention memory)
    x = ct_like_slices(1, 64, 64)
    out = gen(x)
    assert out.shape == (1, 64, 64) and out.dtype == np.int32
    np.testing.assert_array_equal(np.unique(out[0]), np.arange(out[0].max() + 1))
    assert gen.cache_key()["weights_sha256"] != ""
    assert gen.timings["encoder"] > 0
