# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import json
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from parameterized import parameterized
from PIL import Image

from rat_monai.cli import main
from rat_monai.regions.cli import pick_slices
from rat_monai.regions.overlay import render_overlay


def _write_phantom(path: Path, shape=(40, 48, 6)) -> Path:
    x, y = np.mgrid[: shape[0], : shape[1]]
    vol = np.full(shape, -1000.0, np.float32)
    body = ((x - shape[0] / 2) / 14.0) ** 2 + ((y - shape[1] / 2) / 18.0) ** 2 < 1
    vol[body] = 40.0
    vol[(x - 20) ** 2 + (y - 18) ** 2 < 16] = 700.0
    vol += np.random.default_rng(0).normal(0, 5, shape).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(path))
    return path


# (depth, --slices, --num-slices, expected)
PICK_CASES = [
    (10, None, 3, [2, 4, 7]),
    (1, None, 5, [0]),
    (10, "0,-1,3", 5, [0, 3, 9]),
    (4, None, 9, [1, 2]),
]


class TestPickSlices(unittest.TestCase):
    @parameterized.expand(PICK_CASES)
    def test_pick(self, depth, slices, count, expected):
        picked = pick_slices(depth, slices, count)
        self.assertTrue(all(0 <= z < depth for z in picked))
        if slices:
            self.assertEqual(picked, expected)
        else:
            self.assertEqual(len(picked), len(set(picked)))
            self.assertLessEqual(len(picked), min(count, depth))

    def test_ill_arg(self):
        with self.assertRaises(ValueError):
            pick_slices(5, "7", 1)
        with self.assertRaises(ValueError):
            pick_slices(5, "a,b", 1)
        with self.assertRaises(ValueError):
            pick_slices(0, None, 1)
        with self.assertRaises(ValueError):
            render_overlay(np.zeros((4, 4)), np.zeros((4, 5)))


def test_render_overlay_marks_boundaries():
    lab = np.zeros((8, 10), int)
    lab[:, 5:] = 3
    pic = render_overlay(np.full((8, 10), 0.5), lab)
    assert pic.shape == (8, 20, 3) and pic.dtype == np.uint8
    np.testing.assert_array_equal(pic[:, :10], 128)  # left: the plain slice
    assert (pic[:, 10:][lab == 0] != pic[:, 10:][lab == 3][0]).any()  # two colours on the right
    assert (pic[:, 10:] == 255).all(axis=-1).any()  # white outline


def test_cli_nifti_overlays(tmp_path, capsys):
    scan = _write_phantom(tmp_path / "ct.nii.gz")
    out = tmp_path / "png"
    args = ["regions", str(scan), "--out", str(out), "--method", "felzenszwalb", "--modality", "ct"]
    args += ["--num-slices", "2"]
    assert main(args) == 0
    pngs = sorted(out.glob("regions_z*.png"))
    assert len(pngs) == 2
    pic = np.asarray(Image.open(pngs[0]))
    assert pic.shape == (48, 80, 3)  # display orientation: rows = Y, side by side: 2 * X
    summary = json.loads((out / "regions.json").read_text())
    assert summary["method"] == "felzenszwalb"
    assert all(v["num_regions"] >= 2 for v in summary["slices"].values())
    # refuses to overwrite, then overwrites when asked
    assert main(args) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--slices", "0,5", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert (out / "regions_z0005.png").is_file()
    assert main(["regions", str(tmp_path / "missing.nii.gz"), "--out", str(out)]) == 1
    assert main(args + ["--overwrite", "--slices", "99"]) == 1
    assert main(args + ["--overwrite", "--method", "watershed"]) == 1


def test_cli_real_ct(real_ct_dir, tmp_path):
    out = tmp_path / "png"
    assert main(["regions", str(real_ct_dir), "--out", str(out), "--method", "intensity", "--slices", "20"]) == 0
    pic = np.asarray(Image.open(out / "regions_z0020.png"))
    assert pic.shape == (512, 1024, 3)
    n = json.loads((out / "regions.json").read_text())["slices"]["20"]["num_regions"]
    assert 5 <= n <= 500
