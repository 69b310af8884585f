# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""``rat-monai infer`` and the bundles' ``configs/inference.json`` (``monai.bundle``) on a few real PET slices.

The bundle's network is shrunk through ``--override`` (nested ids, plain values) to a tiny untrained RAT, so these
tests check the command-line and bundle plumbing in seconds; ``monai.bundle`` itself replaces the network by a 1x1
convolution component (config syntax, which the command line does not evaluate).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from rat_monai.cli import main
from rat_monai.inference.cli import parse_override
from rat_monai.regions import RegionCache

pytestmark = pytest.mark.filterwarnings("ignore::rat_monai.data.SliceSpacingWarning")

REPO = Path(__file__).resolve().parents[2]
CONV_NET = '{"_target_": "torch.nn.Conv2d", "in_channels": 2, "out_channels": 1, "kernel_size": 1}'
# the bundles ship weights for their DEFAULT network: a tiny untrained one must not load them (a missing checkpoint)
NO_WEIGHTS = str(REPO / "tests" / "no_such_checkpoint.pt")
TINY = ["--allow-untrained", "--no-progress", "--checkpoint", NO_WEIGHTS] + [
    a for o in ("width=8", "network_def#middle_blocks=1", "network_def#layers_per_block=1",
                "network_def#enc_blocks=[1,1]", "network_def#dec_blocks=[1,1]", "region_method=intensity")
    for a in ("--override", o)
]  # fmt: skip


def _sorted_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.dcm"))
    z = [float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in files]
    return [files[i] for i in np.argsort(z)]


@pytest.fixture
def pet4(real_pet_dir, tmp_path) -> Path:
    dst = tmp_path / "pet_in"
    dst.mkdir()
    for f in _sorted_files(real_pet_dir)[140:144]:
        shutil.copy2(f, dst / f.name)
    return dst


def _infer(*args: str) -> list[str]:
    return ["infer", "--bundle", str(REPO / "bundles" / "rat_pet"), *args]


def test_parse_override():
    assert parse_override("width=8") == ("width", 8)
    assert parse_override("network_def#region_attention=dense") == ("network_def#region_attention", "dense")
    assert parse_override('normalization={"suv_scale": 5}') == ("normalization", {"suv_scale": 5})
    with pytest.raises(ValueError, match="ID=VALUE"):
        parse_override("width")


def test_cli_infer(pet4, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_infer("--input", str(pet4), "--output", str(out), "--batch-size", "3", *TINY)) == 0
    assert "restored 4 slices" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    version = json.loads((REPO / "bundles" / "rat_pet" / "configs" / "metadata.json").read_text())["version"]
    assert report["settings"]["batch_size"] == 3 and report["model_version"] == version
    assert report["untrained"] is True and report["regions"]["misses"] == 4
    assert len(list((out / "dicom").glob("*.dcm"))) == 4 and (out / "restored.nii.gz").is_file()

    # an existing output is refused with one line on stderr (no traceback), and nothing is touched
    before = sorted(p.name for p in out.iterdir())
    assert main(_infer("--input", str(pet4), "--output", str(out), *TINY)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("rat-monai infer: error:") and "--overwrite" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == before

    # without a checkpoint and without --allow-untrained: a clear error
    missing = ["--checkpoint", str(tmp_path / "missing.pt")]
    assert main(_infer("--input", str(pet4), "--output", str(tmp_path / "o2"), "--no-progress", *missing)) == 1
    assert "--allow-untrained" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_monai_bundle_config_workflow(pet4, tmp_path):
    from monai.bundle import ConfigWorkflow

    bundle = REPO / "bundles" / "rat_pet"
    out = tmp_path / "restored"
    workflow = ConfigWorkflow(
        config_file=str(bundle / "configs" / "inference.json"),
        meta_file=str(bundle / "configs" / "metadata.json"),
        workflow_type="infer",
        bundle_root=str(bundle),
        input=str(pet4),
        output_dir=str(out),
        format="nifti",
        allow_untrained=True,
        checkpoint=NO_WEIGHTS,
        progress=False,
        network_def=json.loads(CONV_NET),
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    report = json.loads((out / "report.json").read_text())
    assert report["num_slices"] == 4 and report["format"] == "nifti"
    img = nib.load(out / "restored.nii.gz")
    assert img.shape == (128, 128, 4) and np.isfinite(np.asarray(img.dataobj)).all()


_SLOW_SCRIPT = """
import sys, time
import rat_monai.inference.restorer as r
original = r.ScanRestorer.restore_slices
def slow(self, *args, **kwargs):
    print("NETWORK_STAGE", flush=True)
    time.sleep(120)
    return original(self, *args, **kwargs)
r.ScanRestorer.restore_slices = slow
from rat_monai.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_cli_killed_in_network_stage_then_resumed(pet4, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "out.regions_cache"
    cmd = [sys.executable, "-c", _SLOW_SCRIPT, *_infer("--input", str(pet4), "--output", str(out), *TINY)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 240
        for line in proc.stdout:  # type: ignore[union-attr]
            if "NETWORK_STAGE" in line or time.monotonic() > deadline:
                break
        assert proc.poll() is None, "the CLI ended before the network stage"
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, rest
    assert "interrupted" in rest
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    assert len(RegionCache(cache)) == 4

    assert main(_infer("--input", str(pet4), "--output", str(out), *TINY)) == 0
    report = json.loads((out / "report.json").read_text())
    assert (report["regions"]["hits"], report["regions"]["misses"]) == (4, 0)


@pytest.mark.parametrize("bundle", ["rat_pet", "rat_ct"])
def test_inference_config_matches_training(bundle):
    """inference.json must build the network and the normalisation exactly as train.json does."""
    configs = REPO / "bundles" / bundle / "configs"
    infer = json.loads((configs / "inference.json").read_text())
    for key in ("bundle_root", "device", "network_def", "dataset_dir", "input", "output_dir", "format", "batch_size"):
        assert key in infer, key
    assert infer["checkpoint"] == "$@bundle_root + '/models/model.pt'" and infer["allow_untrained"] is False
    train_file = configs / "train.json"
    if not train_file.is_file():
        pytest.skip(f"{train_file} not written yet")
    train = json.loads(train_file.read_text())
    for key in ("modality", "width", "network_def", "normalization", "region_method", "region_kwargs", "use_regions"):
        assert infer[key] == train[key], key
