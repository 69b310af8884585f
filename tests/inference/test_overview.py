# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rat_monai.inference import save_overview
from rat_monai.inference.overview import pick_overview_slices


def _volume(z: int = 20, signal: slice = slice(5, 15)) -> np.ndarray:
    vol = np.zeros((16, 12, z), np.float32)
    vol[4:12, 3:9, signal] = np.random.default_rng(0).uniform(1.0, 5.0, (8, 6, len(range(z)[signal])))
    return vol


@pytest.mark.parametrize("num", [0, 1, 3, 10, 50])
def test_pick_overview_slices(num):
    picks = pick_overview_slices(_volume(), num)
    assert picks == sorted(set(picks)) and len(picks) == min(num, 10)
    assert all(5 <= z < 15 for z in picks)  # only slices that hold signal


def test_pick_overview_slices_flat_volume():
    assert pick_overview_slices(np.zeros((4, 4, 7)), 3) == [1, 3, 5]


@pytest.mark.parametrize("modality, with_regions", [("ct", True), ("pet", False)])
def test_save_overview(tmp_path, modality, with_regions):
    vol = _volume()
    regions = (vol > 2).astype(np.int32) if with_regions else None
    path = save_overview(tmp_path / "o.png", vol, vol * 0.5, regions, modality=modality, num_slices=2, units="suv")
    with Image.open(path) as img:
        assert img.size == (256 * (3 if with_regions else 2), 256 * 2)  # 2 rows of 3.2-inch panels at 80 dpi
    with pytest.raises(ValueError, match="same shape"):
        save_overview(tmp_path / "x.png", vol, vol[..., :3], modality=modality)
