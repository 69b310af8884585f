# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""KILL test (issue 15 item 5): a ``monai.bundle run training`` process killed (SIGKILL) while it writes a
checkpoint, then ``--resume true`` continues from the last valid checkpoint.

The child process wraps ``torch.save`` so that the save of ``iteration=4`` writes a few bytes and then kills its own
process with SIGKILL, which is what an out-of-memory killer or a scheduler's hard kill does in the middle of a save.
Everything else is the bundle's own command line on a tiny network and a tiny dataset.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

BUNDLE = Path(__file__).resolve().parents[3] / "bundles" / "rat_pet"

TINY = [
    "--width", "8", "--network_def#middle_blocks", "1", "--network_def#layers_per_block", "1",
    "--network_def#enc_blocks", "[1,1]", "--network_def#dec_blocks", "[1,1]", "--batch_size", "4",
    "--num_workers", "0", "--progress", "false", "--patch_size", "32", "--val_interval", "2", "--max_iterations", "6",
    "--region_method", "intensity",
]  # fmt: skip

# the child: torch.save of iteration 4 writes a few bytes, then SIGKILLs its own process; then the bundle's CLI
KILLER = """
import os, runpy, signal, sys, torch
real_save = torch.save
def dying_save(obj, f, *args, **kwargs):
    if "iteration=4" in str(getattr(f, "name", f)):
        f.write(b"PK\\x03\\x04 half a checkpoint")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)
torch.save = dying_save
sys.argv = ["monai.bundle"] + sys.argv[1:]
runpy.run_module("monai.bundle", run_name="__main__")
"""


def _tiny_pet_dataset(folder: Path) -> None:
    """Three 32x32x3 PET pairs in SUV (a hot disc in a warm body), one per split, and their datalist."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    body = ((yy - 16) ** 2 + (xx - 16) ** 2 < 13**2) * 1.0 + ((yy - 12) ** 2 + (xx - 18) ** 2 < 9) * 4.0
    entries = []
    for s in range(3):
        full = np.repeat(body[..., None], 3, axis=-1).astype(np.float32)
        low = np.clip(full + rng.normal(0, 0.4, full.shape) * (full > 0), 0, None).astype(np.float32)
        for name, vol in (("low", low), ("full", full)):
            nib.save(nib.Nifti1Image(vol, np.diag([4.0, 4.0, 3.0, 1.0])), folder / f"s{s}_{name}.nii.gz")
        entries.append({"image": f"s{s}_low.nii.gz", "label": f"s{s}_full.nii.gz"})
    datalist = {"training": entries[:1], "validation": entries[1:2], "test": entries[2:]}
    (folder / "datalist.json").write_text(json.dumps(datalist))


def _bundle_args(root: Path, data: Path, *extra: str) -> list[str]:
    return [
        "run", "training", "--config_file", str(BUNDLE / "configs" / "train.json"), "--bundle_root", str(root),
        "--dataset_dir", str(data), *TINY, *extra,
    ]  # fmt: skip


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_killed_during_checkpoint_save_then_resume(tmp_path):
    data, root = tmp_path / "data", tmp_path / "bundle"
    data.mkdir()
    _tiny_pet_dataset(data)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, *_bundle_args(root, data)], env=env, capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    models = root / "models"
    # the kill hit the save of iteration 4: iteration 2 is still there and readable, no damaged =4.pt
    names = sorted(p.name for p in models.iterdir())
    assert "checkpoint_iteration=2.pt" in names and "checkpoint_iteration=4.pt" not in names, names
    assert torch.load(models / "checkpoint_iteration=2.pt", weights_only=True)["trainer"]["iteration"] == 2
    kept_mtime = (models / "checkpoint_iteration=2.pt").stat().st_mtime_ns
    assert (models / "model.pt").is_file()
    assert [n for n in names if n.startswith(".")]  # the half-written temporary of the killed save

    resumed = subprocess.run(
        [sys.executable, "-m", "monai.bundle", *_bundle_args(root, data, "--resume", "true")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # resumed from =2: a fresh start would have rewritten =2.pt and then deleted it after saving =4
    assert (models / "checkpoint_iteration=2.pt").stat().st_mtime_ns == kept_mtime
    final = models / "checkpoint_final_iteration=6.pt"
    ckpt = torch.load(final, weights_only=True)
    assert ckpt["trainer"]["iteration"] == 6
    assert "key_metric" in ckpt  # the best validation score travels with the resumable state
    assert not [p.name for p in models.iterdir() if p.name.startswith(".")]  # the stale temporary was removed
