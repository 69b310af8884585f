# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""The anatomical ('tissue') partitioners: real CT / PET figures, partition rules, determinism, cache keys."""

from __future__ import annotations

import logging
import unittest
from pathlib import Path

import numpy as np
import pytest
import torch
from parameterized import parameterized
from scipy import ndimage as ndi

from tests.conftest import shared_data
from rat_monai.regions import (
    CtTissuePartitioner,
    FelzenszwalbPartitioner,
    PetUptakePartitioner,
    air_tiles,
    class_purity,
    class_superpixels,
    get_partitioner,
    hu_classes,
    largest_fraction,
    latent_labels,
    merge_small_pieces,
    region_attention_cost,
    region_cache_key,
)

CT_SERIES = ["ct_crlm1004/CRLM-CT-1004/image", "ct_crlm1006/CRLM-CT-1006/image", "ct_lidc0314/LIDC-IDRI-0314/image"]


def _ct_slices(series: str, fractions: tuple[float, ...] = (0.3, 0.7)) -> list[np.ndarray]:
    import pydicom

    files = sorted(shared_data("real", *series.split("/")).glob("*.dcm"))
    out = []
    for f in fractions:
        ds = pydicom.dcmread(files[int(f * (len(files) - 1))])
        out.append(ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    return out


def _reference_body(hu: np.ndarray) -> np.ndarray:
    """An outline independent of the partitioner: largest HU > -500 component, holes filled."""
    lab, _ = ndi.label(hu > -500)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return ndi.binary_fill_holes(lab == sizes.argmax())


def _contiguous(labels: np.ndarray) -> bool:
    return bool(np.array_equal(np.unique(labels), np.arange(labels.max() + 1)))


@pytest.mark.parametrize("series", CT_SERIES)
def test_real_ct_purity_size_cost(series):
    """Issue targets on real 512x512 slices: purity >= 95 %, in-body regions <= 25 % of the body, cost <= 0.15."""
    part = get_partitioner("auto", modality="ct")
    assert isinstance(part, CtTissuePartitioner)
    for hu in _ct_slices(series):
        assert hu.shape == (512, 512)
        labels = part(hu[None])[0]
        assert labels.dtype == np.int32 and _contiguous(labels)
        body = _reference_body(hu)
        purity = class_purity(hu_classes(hu), labels, body)
        assert purity >= 0.95, f"{series}: tissue purity {purity:.3f}"
        assert largest_fraction(labels, body) <= 0.25
        assert region_attention_cost(labels) <= 0.15
        # body and air share no label (3 px margins around the outline; the plain reference outline keeps the
        # cushion / sheet where it touches the skin, about 0.1 % of the body, so allow 0.5 %)
        inner, outer = ndi.binary_erosion(body, iterations=3), ~ndi.binary_dilation(body, iterations=3)
        shared = np.isin(labels[inner], np.unique(labels[outer]))
        assert shared.sum() <= 5e-3 * inner.sum(), f"{series}: {shared.sum()} body pixels share a region with air"
        # no air tile is larger than a 128x128 tile
        assert np.bincount(labels[~part.body(hu)]).max() <= 128 * 128


def test_real_ct_old_default_fails_the_targets():
    """The old default (felzenszwalb at -1000..1000 HU) merges soft tissue: the figures above do catch that."""
    hu = _ct_slices(CT_SERIES[0], (0.5,))[0]
    labels = FelzenszwalbPartitioner(modality="ct")(hu[None])[0]
    body = _reference_body(hu)
    assert largest_fraction(labels, body) > 0.25 or class_purity(hu_classes(hu), labels, body) < 0.95


@pytest.fixture(scope="module")
def real_pet_suv():
    import warnings

    from rat_monai.data import load_volume

    with warnings.catch_warnings():  # the known non-uniform slice step of this series (see data/real/README.md)
        warnings.simplefilter("ignore")
        vol = load_volume(shared_data("real", "pet_fdg_sts001", "STS_001", "FDG_PET"))
    return np.asarray(vol[0].numpy(), np.float32)


def test_real_pet_hot_structures_and_air(real_pet_suv):
    suv = real_pet_suv
    part = get_partitioner("auto", modality="pet")
    assert isinstance(part, PetUptakePartitioner)
    per_slice_max = suv.reshape(-1, suv.shape[-1]).max(0)
    bladder = int(per_slice_max.argmax())  # SUVmax 66.5 is the bladder
    brain = suv.shape[-1] - 1 if per_slice_max[-1] > per_slice_max[0] else 0  # the head end of the scan
    mid = suv.shape[-1] // 2
    picked = [bladder, brain, mid]
    labels = part(np.moveaxis(suv[..., picked], -1, 0))
    for z, lab in zip(picked, labels):
        s = suv[..., z]
        assert _contiguous(lab)
        # body and air never share a region: no region holds more than 2 % (and 4 px) of its pixels both in clear
        # tissue (SUV > 0.3 after a sigma-1 smoothing) and in clear air (< 0.03); in between lie the blurred outline
        # and a low-uptake arm or two, which either side may own
        smooth = ndi.gaussian_filter(s, 1.0)
        inner, outer = smooth > 0.3, smooth < 0.03
        assert inner.any() and outer.any()
        n_in, n_out = np.bincount(lab[inner], minlength=lab.max() + 1), np.bincount(lab[outer], minlength=lab.max() + 1)
        mixed = np.minimum(n_in, n_out) > np.maximum(0.02 * (n_in + n_out), 4)
        assert not mixed.any(), f"slice {z}: regions {np.nonzero(mixed)[0]} hold body and air"
        assert region_attention_cost(lab) <= 0.15
        # the hottest structure of the slice: every region touching its core is made of hot pixels
        if z in (bladder, brain):
            core = s > 0.5 * s.max()
            for r in np.unique(lab[core]):
                assert np.median(s[lab == r]) > 2.0, f"slice {z}: region {r} mixes hot and background"


class TestTissuePartitioners(unittest.TestCase):
    def _phantom(self, h=96, w=112, seed=0):
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[:h, :w]
        hu = np.full((h, w), -1000.0, np.float32)
        hu[((yy - h / 2) / (0.4 * h)) ** 2 + ((xx - w / 2) / (0.42 * w)) ** 2 < 1] = -100.0  # fat
        hu[((yy - h / 2) / (0.33 * h)) ** 2 + ((xx - w / 2) / (0.35 * w)) ** 2 < 1] = 50.0  # soft tissue
        hu[(yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (0.1 * h) ** 2] = -850.0  # lung
        hu[(yy - 0.6 * h) ** 2 + (xx - 0.65 * w) ** 2 < (0.08 * h) ** 2] = 700.0  # bone
        hu[h - 8 : h - 5, 5:-5] = 100.0  # table: a 3-pixel plate under the body
        return hu + rng.normal(0, 10, hu.shape).astype(np.float32)

    def test_phantom_classes_table_and_tiles(self):
        hu = self._phantom()
        part = CtTissuePartitioner(cell=16, air_tile=32)
        labels = part(hu[None])[0]
        cls, body = part.classes(hu)
        self.assertFalse(body[-7, 50], "the table must not be body")
        self.assertTrue(body[48, 56])
        # no region mixes classes or crosses the outline
        for r in np.unique(labels):
            in_body = body[labels == r]
            self.assertTrue(in_body.all() or not in_body.any())
            if in_body.all():
                self.assertEqual(len(np.unique(cls[labels == r])), 1)
        # air: one region per 32x32 tile
        tiles = air_tiles(hu.shape, 32)
        for r in np.unique(labels[~body]):
            self.assertEqual(len(np.unique(tiles[labels == r])), 1)
        self.assertEqual(len(np.unique(labels[~body])), len(np.unique(tiles[~body])))
        self.assertGreaterEqual(class_purity(hu_classes(hu), labels, body), 0.99)

    def test_determinism_and_batch(self):
        hu = np.stack([self._phantom(seed=1), self._phantom(seed=2)[::-1].copy()])
        for part, x in ((CtTissuePartitioner(cell=16, air_tile=32), hu), (PetUptakePartitioner(), (hu + 1000) / 300)):
            out = part(x)
            np.testing.assert_array_equal(part(x), out)
            np.testing.assert_array_equal(part(x[1])[0], out[1])  # one slice alone == the same slice in a batch

    def test_pet_hot_lesion_is_its_own_region(self):
        h = w = 64
        yy, xx = np.mgrid[:h, :w]
        suv = np.where(((yy - 32) / 22.0) ** 2 + ((xx - 32) / 26.0) ** 2 < 1, 0.8, 0.0).astype(np.float32)
        suv[(yy - 30) ** 2 + (xx - 20) ** 2 < 9] = 8.0  # lesion
        suv[(yy - 35) ** 2 + (xx - 44) ** 2 < 36] = 30.0  # bladder
        labels = PetUptakePartitioner(cell=12, air_tile=16)(suv[None])[0]
        lesion, bladder = labels[30, 20], labels[35, 44]
        self.assertNotEqual(lesion, bladder)
        for value, r in ((8.0, lesion), (30.0, bladder)):
            disc = suv == value
            # the region is the structure (all of it, plus at most a 2 px rim of partial volume), nothing else
            self.assertTrue((labels[disc] == r).all())
            self.assertTrue(ndi.binary_dilation(disc, iterations=2)[labels == r].all())
        self.assertNotIn(labels[0, 0], labels[suv > 0.5])

    def test_empty_and_constant_slices(self):
        cases = ((CtTissuePartitioner(), -1000.0), (CtTissuePartitioner(), 40.0), (PetUptakePartitioner(), 0.0))
        for part, value in cases:
            out = part(np.full((1, 70, 50), value, np.float32))[0]
            self.assertTrue(_contiguous(out))
        # an all-air 512x512 slice: 16 tiles of 128x128
        self.assertEqual(int(CtTissuePartitioner()(np.full((512, 512), -1000.0))[0].max()) + 1, 16)

    def test_cache_key_follows_every_setting(self):
        hu = self._phantom()
        for cls, changes in (
            (CtTissuePartitioner, {"tissue_edges": (-450, -30, 200), "body_threshold": -400, "body_opening": 2,
                                   "cell": 40, "compactness": 0.01, "min_size": 20, "air_tile": 64, "sigma": 1.0,
                                   "attach": 10}),
            (PetUptakePartitioner, {"body_suv": 0.2, "hot_factor": 2.5, "hot_min_suv": 1.5, "hot_min_size": 4,
                                    "cell": 12, "compactness": 0.1, "min_size": 4, "air_tile": 16, "sigma": 1.0,
                                    "attach": 4}),
        ):  # fmt: skip
            base = region_cache_key(hu, cls().cache_key())
            self.assertEqual(base, region_cache_key(hu, cls().cache_key()))
            self.assertEqual(set(changes), set(cls().settings()), "every setting must be covered here")
            keys = {region_cache_key(hu, cls(**{k: v}).cache_key()) for k, v in changes.items()}
            self.assertEqual(len(keys | {base}), len(changes) + 1)

    def test_factory(self):
        with self.assertLogs("rat_monai.regions.factory", level=logging.WARNING) as cm:
            self.assertIsInstance(get_partitioner("auto", modality="CT"), CtTissuePartitioner)
        self.assertIn("'tissue'", "\n".join(cm.output))
        self.assertIsInstance(get_partitioner("tissue", modality="pt"), PetUptakePartitioner)
        self.assertIsInstance(get_partitioner("felzenszwalb", modality="ct"), FelzenszwalbPartitioner)
        with self.assertRaisesRegex(ValueError, "modality"):
            get_partitioner("tissue")
        with self.assertRaisesRegex(ValueError, "window"):
            get_partitioner("tissue", modality="ct", window=(-100, 100))

    def test_ill_arg(self):
        with self.assertRaises(ValueError):
            CtTissuePartitioner(tissue_edges=(0, -30, 200))
        with self.assertRaises(ValueError):
            CtTissuePartitioner(cell=1)
        with self.assertRaises(ValueError):
            CtTissuePartitioner(modality="pet")
        with self.assertRaises(ValueError):
            PetUptakePartitioner(body_suv=0)
        with self.assertRaises(ValueError):
            CtTissuePartitioner()(np.array([[np.nan, 1.0]]))


class TestBuildingBlocks(unittest.TestCase):
    def test_superpixels_stay_in_their_class(self):
        rng = np.random.default_rng(0)
        cls = np.zeros((40, 50), np.int64)
        cls[:, 25:] = 1
        cls[5:8, 5:8] = 2  # a seedless piece far from any seed of its class
        cls[:3, :3] = -1
        sp = class_superpixels(cls, rng.random((40, 50)), cell=10, compactness=0.01)
        self.assertTrue((sp[:3, :3] == -1).all())
        for r in np.unique(sp[sp >= 0]):
            self.assertEqual(len(np.unique(cls[sp == r])), 1)
        self.assertEqual(len(np.unique(sp[cls == 2])), 1)
        # a seedless piece within `attach` pixels joins a seeded superpixel of its own class
        cls2 = np.zeros((40, 50), np.int64)
        cls2[:, 20:22] = 1  # divides class 0 into a seeded left part and ...
        cls2[:, 22:] = 0
        cls2[0:2, 0:2] = 3
        sp2 = class_superpixels(cls2, np.zeros((40, 50)), cell=10, compactness=0.0, attach=3)
        self.assertEqual(len(np.unique(sp2[cls2 == 3])), 1)

    def test_merge_small_pieces(self):
        cls = np.zeros((10, 10), np.int64)
        cls[5:, :] = 1
        cls[1, 1] = 2
        cls[:, 9] = -1
        out = merge_small_pieces(cls, 4)
        self.assertEqual(out[1, 1], 0)
        self.assertTrue((out[:, 9] == -1).all())

    @parameterized.expand([((16, 16), 4), ((33, 20), 5), ((64, 48), 8)])
    def test_cost_and_latent_match_plain_loops(self, shape, n):
        rng = np.random.default_rng(shape[0])
        labels = rng.integers(0, n, shape)
        lat = torch.nn.functional.interpolate(torch.as_tensor(labels, dtype=torch.float32)[None, None],
                                              scale_factor=0.25, mode="nearest")[0, 0].numpy()  # fmt: skip
        np.testing.assert_array_equal(latent_labels(labels), lat)
        flat = lat.ravel()
        cost = sum(int((flat == a).sum()) ** 2 for a in np.unique(flat)) / flat.size**2
        self.assertAlmostEqual(region_attention_cost(labels), cost)
        self.assertAlmostEqual(region_attention_cost(np.zeros(shape)), 1.0)

    def test_purity_and_largest_fraction(self):
        classes = np.array([[0, 0, 1, 1], [0, 1, 1, -1]])
        labels = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
        # region 0 is class 0 by majority (3 of 4): the class-1 pixel in it is impure; -1 is ignored
        self.assertAlmostEqual(class_purity(classes, labels), 6 / 7)
        self.assertAlmostEqual(largest_fraction(labels, np.ones((2, 4), bool)), 0.5)
        self.assertAlmostEqual(largest_fraction(labels, np.zeros((2, 4), bool)), 0.0)


if __name__ == "__main__":
    unittest.main()
