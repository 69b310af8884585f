# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""The bundles' standard single-input inference path (``preprocessing`` -> ``inferer`` -> ``postprocessing``, what
MONAI Label's ``BundleInferTask`` runs) must restore a NIfTI volume exactly like the whole-scan ``ScanRestorer``."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from parameterized import parameterized

from rat_monai.evaluation import read_overrides
from rat_monai.inference import ScanRestorer

REPO = Path(__file__).resolve().parents[2]

# untrained: the authors' random start (rat_ct starts from the identity, which could not tell the paths apart)
TINY = {"width": 8, "network_def#middle_blocks": 1, "batch_size": 4, "zero_init_residual": False}
# bundle, a value range in real units (SUV / HU) for the synthetic volume, override files merged over inference.json,
# tiny network settings
CASES = [
    ("rat_pet", (0.0, 8.0), (), TINY),
    ("rat_ct", (-1000.0, 1200.0), (), TINY),
    # use_regions=false (a network without region input): both paths leave the region map out
    ("rat_pet", (0.0, 8.0), ("restore_rwkv.json",), {"width": 4, "batch_size": 4}),
]


def _volume(lo: float, hi: float, shape=(40, 36, 5)) -> np.ndarray:
    rng = np.random.default_rng(0)
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    body = (x**2 + y**2 < 0.7).astype(np.float32)
    organ = ((x - 0.2) ** 2 + y**2 < 0.1).astype(np.float32)
    vol = np.stack([lo + (hi - lo) * (0.3 * body + 0.5 * organ) for _ in range(shape[2])], axis=-1)
    return (vol + rng.normal(0, 0.02 * (hi - lo), vol.shape) * body[..., None]).astype(np.float32)


@pytest.mark.parametrize("bundle,value_range,override_files,tiny", CASES)
def test_standard_path_equals_scan_restorer(bundle, value_range, override_files, tiny, tmp_path):
    torch.set_num_threads(1)
    root = REPO / "bundles" / bundle
    affine = np.diag([1.5, 1.5, 3.0, 1.0])
    affine[:3, 3] = (-30.0, 12.0, 7.5)
    nifti = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(_volume(*value_range), affine), str(nifti))

    base = root / "configs" / "inference.json"
    overrides = [root / "configs" / f for f in override_files]
    parser = ConfigParser()
    with warnings.catch_warnings():  # "+train" of an override file has nothing to merge into in inference.json
        warnings.filterwarnings("ignore", message=r".*is not in target dict - copying instead")
        parser.read_config([str(base), *map(str, overrides)])
    parser.update({"bundle_root": str(root), "device": "cpu", **tiny})
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def").eval()
    ckpt = tmp_path / "model.pt"
    torch.save(net.state_dict(), ckpt)

    # the MONAI Label path: preprocessing -> SliceInferer -> postprocessing
    data = parser.get_parsed_content("preprocessing")({"image": str(nifti)})
    use_regions = parser.get_parsed_content("use_regions")
    assert data["image"].shape[0] == 1 + use_regions, "the region map is the last channel exactly when used"
    with torch.no_grad():
        pred = parser.get_parsed_content("inferer")(data["image"][None], net)[0]
    data["pred"] = pred
    out = parser.get_parsed_content("postprocessing")(data)["pred"]
    assert tuple(out.shape[1:]) == nib.load(str(nifti)).shape

    # the whole-scan path
    ids = {**read_overrides(overrides, base), **tiny}
    ids.pop("checkpoint", None)  # the file saved above
    restorer = ScanRestorer.from_bundle(root, checkpoint=ckpt, device="cpu", **ids)
    assert restorer.use_regions == use_regions
    report = restorer.run(nifti, tmp_path / "out", format="nifti")
    assert report is not None
    restored = nib.load(str(tmp_path / "out" / "restored.nii.gz"))
    np.testing.assert_allclose(restored.affine, affine, atol=1e-5)
    expected = np.asarray(restored.dataobj, dtype=np.float32)
    got = out[0].detach().cpu().numpy()
    assert not np.allclose(got, _volume(*value_range)), "the network must change the image"
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * (value_range[1] - value_range[0]))


@parameterized.expand([("rat_pet",), ("rat_ct",)])
def test_inferer_has_no_resampling(bundle):
    # MONAI Label 0.8.5 + monai 1.6.1 crash in Spacingd on NIfTI requests: native geometry is kept instead
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / bundle / "configs" / "inference.json"))
    names = [t["_target_"] if isinstance(t, dict) else t for t in parser["preprocessing"]["transforms"]]
    assert not any("Spacing" in str(n) or "Resample" in str(n) for n in names), names
