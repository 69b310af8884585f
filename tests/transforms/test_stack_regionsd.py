# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""StackRegions(d): the region map as the last channel of one unbatched item, as ``stack_regions`` does for batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import ConcatItemsd

from rat_monai.networks.region_channel import split_regions, stack_regions
from rat_monai.transforms import StackRegions, StackRegionsd, StackRegionsD, StackRegionsDict

# (name, image [C, *spatial], regions): 2D / 3D items, region map with or without its channel axis
CASES = [
    ("2d", torch.rand(1, 6, 5), torch.randint(0, 4, (1, 6, 5), dtype=torch.int32)),
    ("3d_volume", torch.rand(1, 6, 5, 3), torch.randint(0, 9, (1, 6, 5, 3), dtype=torch.int32)),
    ("no_channel_axis", torch.rand(2, 4, 4), torch.randint(0, 3, (4, 4))),
]


@pytest.mark.parametrize("name, image, regions", CASES)
def test_array_matches_stack_regions(name, image, regions):
    out = StackRegions()(image, regions)
    expected = stack_regions(image[None], regions.reshape(1, 1, *image.shape[1:]))[0]
    torch.testing.assert_close(out, expected)
    assert out.shape == (image.shape[0] + 1, *image.shape[1:]) and out.dtype == image.dtype
    back_image, back_regions = split_regions(out[None])
    torch.testing.assert_close(back_image[0], image)
    assert torch.equal(back_regions[0, 0], regions.reshape(image.shape[1:]).long())
    # numpy in, numpy out
    np_out = StackRegions()(image.numpy(), regions.numpy())
    assert isinstance(np_out, np.ndarray)
    np.testing.assert_allclose(np_out, expected.numpy())


def test_dict_keeps_metadata_and_equals_concat_items():
    """What the bundles' MONAI Label path used before (ConcatItemsd), with the image's metadata kept."""
    affine = torch.diag(torch.tensor([1.5, 1.5, 3.0, 1.0], dtype=torch.float64))
    image = MetaTensor(torch.rand(1, 6, 5, 3), affine=affine, meta={"filename_or_obj": "scan.nii.gz"})
    regions = MetaTensor(torch.randint(0, 9, (1, 6, 5, 3), dtype=torch.int32), affine=affine)
    assert StackRegionsD is StackRegionsDict is StackRegionsd
    out = StackRegionsd()({"image": image, "regions": regions})
    concat = ConcatItemsd(["image", "regions"], name="image", dim=0)({"image": image, "regions": regions})
    torch.testing.assert_close(out["image"].as_tensor(), concat["image"].as_tensor())
    assert isinstance(out["image"], MetaTensor) and out["image"].meta["filename_or_obj"] == "scan.nii.gz"
    torch.testing.assert_close(out["image"].affine, affine)
    assert out["regions"] is regions


def test_ill_arg():
    with pytest.raises(KeyError, match="RegionPartition"):
        StackRegionsd()({"image": torch.rand(1, 4, 4)})
    assert "regions" not in StackRegionsd(keys="absent", allow_missing_keys=True)({"image": torch.rand(1, 4, 4)})
    with pytest.raises(ValueError, match="matching the image"):
        StackRegions()(torch.rand(1, 4, 4), torch.zeros(1, 5, 4))
    with pytest.raises(ValueError, match="below"):
        StackRegions()(torch.rand(1, 2, 2), torch.full((1, 2, 2), 2**24))
