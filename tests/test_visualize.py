# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""The one label-colour scheme and the shared picture helpers of rat_monai.visualize."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rat_monai.visualize import CT_SOFT_TISSUE_WINDOW, display_window, grey_rgb, label_colors, save_png, to_2d


def test_label_colors_stable_and_distinct():
    colours = label_colors(np.array([[1, 1, 2]]))
    assert colours.shape == (1, 3, 3) and colours.dtype == np.uint8
    assert np.array_equal(colours[0, 0], colours[0, 1])  # same label -> same colour
    assert not np.array_equal(colours[0, 0], colours[0, 2])  # different labels -> (here) different colours
    # the same label has the same colour in every picture, whatever the array type or the other labels
    np.testing.assert_array_equal(label_colors(torch.tensor([2.0, 7.0]))[0], colours[0, 2])
    assert colours.min() >= 64  # away from black


def test_grey_rgb_and_to_2d(tmp_path):
    grey = grey_rgb(np.array([[0.0, 5.0, 10.0]]), 0.0, 10.0)
    np.testing.assert_array_equal(grey[0, :, 0], [0, 128, 255])
    assert grey.shape == (1, 3, 3)
    assert to_2d(torch.zeros(1, 1, 4, 5)).shape == (4, 5)
    with pytest.raises(ValueError, match="single 2D slice"):
        to_2d(np.zeros((2, 4, 5)))
    path = save_png(grey, tmp_path / "sub" / "g.png")
    assert np.array_equal(np.asarray(Image.open(path)), grey)


def test_display_window():
    # CT: the soft-tissue window whatever the image; PET: 0 .. 99.5th percentile of the image, inverted grey
    assert display_window(np.full((4, 4), 3000.0), "ct") == (*CT_SOFT_TISSUE_WINDOW, "gray")
    lo, hi, cmap = display_window(np.arange(1001, dtype=np.float32), "pet")
    assert (lo, cmap) == (0.0, "gray_r") and hi == pytest.approx(995.0)
    assert display_window(np.zeros((4, 4)), "pet")[1] == 1.0  # an empty slice still gets a window
