# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""``rat-monai evaluate`` end to end on a tiny simulated PET set and a tiny untrained RAT of the rat_pet bundle.

Checks the table has every row and column, and that the LQ row equals an independent computation (nibabel + numpy)
of the same protocol (slices with > 1 % of full-dose pixels above 0.1 SUV; data range = full-dose SUVmax).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from rat_monai.cli import main
from rat_monai.evaluation import bm3d_available
from rat_monai.simulation import simulate_dataset

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "rat_pet"
TINY = {
    "width": 8,
    "network_def#enc_blocks": [1, 1],
    "network_def#dec_blocks": [1, 1],
    "network_def#middle_blocks": 1,
    "network_def#layers_per_block": 1,
    "region_method": "felzenszwalb",
}


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    datalist = simulate_dataset(
        root / "sim", "pet", subjects=3, seed=3, shape=(32, 32, 4), formats=("nifti",), progress=False,
        iterations=2, subsets=4, preview=False,
    )  # fmt: skip
    override = root / "tiny.json"
    override.write_text(json.dumps(TINY))
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.json"))
    parser.update(TINY)
    torch.manual_seed(0)
    ckpt = root / "tiny_rat.pt"
    torch.save(parser.get_parsed_content("network_def").state_dict(), ckpt)
    return root, datalist, override, ckpt


def _independent_lq(datalist: Path) -> tuple[list[float], float]:
    """Per-slice and per-volume PSNR of the low-dose input of the test split, from the NIfTI files directly."""
    entry = json.loads(datalist.read_text())["test"][0]
    low = np.asarray(nib.load(datalist.parent / entry["image"]).dataobj, np.float64)
    full = np.asarray(nib.load(datalist.parent / entry["label"]).dataobj, np.float64)
    keep = [z for z in range(full.shape[2]) if (full[..., z] > 0.1).mean() > 0.01]
    peak = full[..., keep].max()
    per_slice = [10 * math.log10(peak**2 / np.mean((low[..., z] - full[..., z]) ** 2)) for z in keep]
    volume = 10 * math.log10(peak**2 / np.mean((low[..., keep] - full[..., keep]) ** 2))
    return per_slice, volume


def test_evaluate_end_to_end(tiny_setup, capsys):
    root, datalist, override, ckpt = tiny_setup
    classical = ["gaussian", "nlm"] + (["bm3d"] if bm3d_available() else [])
    out = root / "results"
    args = ["evaluate", "--datalist", str(datalist), "--modality", "pet",
            "--network", "RAT", str(BUNDLE), str(ckpt), "--override", "RAT", str(override),
            "--classical", *classical, "--tune-slices", "2", "--bootstrap", "200", "--device", "cpu",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "evaluation_rat_pet.json" in printed and "interval excludes 0" in printed
    result = json.loads((out / "evaluation_rat_pet.json").read_text())
    md = (out / "evaluation_rat_pet.md").read_text()

    rows = ["LQ", "Gaussian", "NLM"] + (["BM3D"] if bm3d_available() else []) + ["RAT"]
    metrics = ["psnr", "ssim", "region_psnr", "suvmax_bias_pct", "suvmean_bias_pct"]
    assert result["reference"] == "RAT" and result["metrics"] == metrics
    for level in ("slice", "volume"):
        assert list(result["summary"][level]) == rows
        for name in rows:
            assert set(result["summary"][level][name]) == set(metrics)
            has_diff = all("vs_reference" in result["summary"][level][name][m] for m in metrics)
            assert has_diff is (name != "RAT")
    header = "| method | n | PSNR (dB) | SSIM | region PSNR (dB) | SUVmax bias (%) | SUVmean bias (%) |"
    assert md.count(header) == 2
    for name in rows:
        assert f"\n| {name} | " in md
    assert "SUVmax of the volume" in md and set(result["tuning"]) == set(classical)

    # the LQ row equals an independent computation of the same protocol
    per_slice, volume = _independent_lq(Path(datalist))
    lq = result["per_slice"]["LQ"]
    assert [r["psnr"] for r in lq] == pytest.approx(per_slice, abs=1e-4)
    assert result["per_volume"]["LQ"][0]["psnr"] == pytest.approx(volume, abs=1e-4)
    assert result["summary"]["slice"]["LQ"]["psnr"]["mean"] == pytest.approx(np.mean(per_slice), abs=1e-4)
    # every method scored the same slices; the differences are paired on them
    n = len(per_slice)
    assert all(len(result["per_slice"][name]) == n for name in rows)
    diff = result["summary"]["slice"]["LQ"]["psnr"]["vs_reference"]
    rat = [r["psnr"] for r in result["per_slice"]["RAT"]]
    assert diff["mean_diff"] == pytest.approx(np.mean(per_slice) - np.mean(rat), abs=1e-4)


def test_evaluate_bad_input(tiny_setup, capsys):
    root, datalist, override, ckpt = tiny_setup
    base = ["evaluate", "--datalist", str(datalist), "--modality", "pet", "--out", str(root / "bad"), "--no-progress"]
    assert main(base + ["--override", "X", str(override)]) == 1
    assert "match no --network" in capsys.readouterr().err
    assert main(base + ["--network", "RAT", str(root), str(ckpt)]) == 1
    assert "not a bundle folder" in capsys.readouterr().err
    assert main(base + ["--network", "RAT", str(BUNDLE), str(root / "missing.pt")]) == 1
    assert "checkpoint of network 'RAT' not found" in capsys.readouterr().err
    assert main(base + ["--classical", "gaussian", "--test-split", "nope"]) == 1
    assert "no 'nope' entries" in capsys.readouterr().err
