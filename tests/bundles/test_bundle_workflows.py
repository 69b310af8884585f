# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""End-to-end runs of the rat_pet / rat_ct bundles through ``monai.bundle`` on tiny simulated data.

train -> (checkpoint, validation PSNR vs the identity baseline) -> resume -> evaluate -> multi-process gloo run.
Each run uses the bundle's own configs; only sizes are overridden (tests/bundles/conftest.py).
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.metrics import PSNRMetric

from rat_monai.data import PairedSliceDataset, load_datalist
from rat_monai.engines import find_latest_checkpoint

BUNDLES_DIR = Path(__file__).resolve().parents[2] / "bundles"
# overrides that shape the network: inference must use the same ones as training
NETWORK_KEYS = ("width", "network_def#middle_blocks", "network_def#layers_per_block", "network_def#enc_blocks",
                "network_def#dec_blocks")  # fmt: skip


@pytest.fixture
def one_thread():
    """Tiny networks run fastest on one thread (and do not fight other processes for cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def overrides(tiny_overrides, patch_sizes):
    """``overrides(modality, bundle_root, dataset_dir, **extra)`` -> the tiny override dict for one run."""

    def make(modality: str, bundle_root: Path, dataset_dir: str, **extra) -> dict:
        ov = dict(tiny_overrides, bundle_root=str(bundle_root), dataset_dir=dataset_dir)
        ov.update(patch_size=patch_sizes[modality], **extra)
        return ov

    return make


def _configs(modality: str, *names: str) -> list[str]:
    return [str(BUNDLES_DIR / f"rat_{modality}" / "configs" / f"{n}.json") for n in names]


def _identity_psnr(workflow: ConfigWorkflow) -> float:
    """PSNR of the low-dose input itself on the validation split (what the restoration must beat), with the
    validation metric's window (CT: -1000..1000 HU) and data range."""
    metric = PSNRMetric(max_val=workflow.parser.get_parsed_content("data_range"))
    window = workflow.parser.get_parsed_content("metric_window")
    for sample in workflow.parser.get_parsed_content("validate#dataset"):
        image, label = sample["image"][None], sample["label"][None]
        if window is not None:
            image, label = image.clamp(*window), label.clamp(*window)
        metric(image, label)
    return float(metric.aggregate())


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["pet", "ct"])
def test_train_resume_evaluate(modality, tiny_datasets, overrides, tmp_path, one_thread):
    root = tmp_path / f"rat_{modality}"
    # -- train: 60 iterations, validation every 30
    train = ConfigWorkflow(
        config_file=_configs(modality, "train"),
        workflow_type="train",
        **overrides(modality, root, tiny_datasets[modality], max_iterations=60, val_interval=30),
    )
    train.initialize()
    assert train.check_properties() == []
    losses = []
    train.trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output[0]["loss"]))
    identity = _identity_psnr(train)
    train.run()
    train.finalize()
    assert train.trainer.state.iteration == 60
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.7 * first, f"loss did not decrease: first 10 mean {first:.4f}, last 10 mean {last:.4f}"
    evaluator = train.evaluator
    psnr = evaluator.state.best_metric
    assert psnr > identity, f"validation PSNR {psnr:.2f} dB does not beat the identity baseline {identity:.2f} dB"
    assert evaluator.state.metrics["val_psnr_input"] == pytest.approx(identity, abs=1e-3)  # logged baseline

    # best network: a plain state dict that loads into a fresh network_def
    model_pt = root / "models" / "model.pt"
    assert model_pt.is_file()
    parser = ConfigParser()
    parser.read_config(_configs(modality, "train"))
    parser.update(overrides(modality, root, tiny_datasets[modality]))
    net = parser.get_parsed_content("network_def")
    state = torch.load(model_pt, map_location="cpu", weights_only=True)
    net.load_state_dict(state)  # strict
    # resumable checkpoint with the trainer state, panels and TensorBoard logs
    latest = find_latest_checkpoint(root / "models")
    ckpt = torch.load(latest, map_location="cpu", weights_only=True)
    assert set(ckpt) == {"model", "optimizer", "lr_scheduler", "trainer", "key_metric"}
    assert ckpt["trainer"]["iteration"] == 60
    assert sorted(p.name for p in (root / "eval" / "panels").glob("val_panel_*.png")) == [
        "val_panel_0000030.png",
        "val_panel_0000060.png",
    ]
    assert list((root / "eval").glob("events.out.tfevents.*"))

    # -- resume: the iteration count continues from the latest checkpoint
    resume = ConfigWorkflow(
        config_file=_configs(modality, "train"),
        workflow_type="train",
        **overrides(modality, root, tiny_datasets[modality], max_iterations=66, val_interval=100, resume=True),
    )
    resume.initialize()
    seen = []
    resume.trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(e.state.iteration))
    resume.run()
    resume.finalize()
    assert seen == list(range(61, 67))
    assert torch.load(find_latest_checkpoint(root / "models"), weights_only=True)["trainer"]["iteration"] == 66

    # -- evaluate model.pt on the test split: per-slice CSV, per-volume CSV, mean ± std table, panels
    evaluate = ConfigWorkflow(
        config_file=_configs(modality, "train", "evaluate"),
        workflow_type=None,
        **overrides(modality, root, tiny_datasets[modality]),
    )
    evaluate.initialize()
    evaluate.run()
    evaluate.finalize()
    test_slices = len(evaluate.parser.get_parsed_content("validate#dataset"))
    out = root / "eval" / "test"
    with open(out / "metrics_per_slice.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == test_slices > 0
    assert {r["volume"] for r in rows} == {str(Path(r["volume"])) for r in rows}  # one source volume per row
    assert len({(r["volume"], r["slice_index"]) for r in rows}) == test_slices
    with open(out / "metrics_per_volume.csv") as f:
        assert len(list(csv.DictReader(f))) == 1  # one test subject
    assert "±" in (out / "metrics_summary.md").read_text()
    assert list(out.glob("test_panel_*.png"))

    # -- whole-scan inference with the trained model.pt through the bundle's inference.json
    datalist = json.loads((Path(tiny_datasets[modality]) / "datalist.json").read_text())
    scan = Path(tiny_datasets[modality]) / datalist["test"][0]["image"]
    infer_ov = {k: v for k, v in overrides(modality, root, tiny_datasets[modality]).items() if k in NETWORK_KEYS}
    infer = ConfigWorkflow(
        config_file=_configs(modality, "inference"),
        workflow_type=None,
        bundle_root=str(root),
        input=str(scan),
        output_dir=str(tmp_path / "restored"),
        format="nifti",
        progress=False,
        **infer_ov,
    )
    infer.initialize()
    infer.run()
    infer.finalize()
    restored, source = nib.load(tmp_path / "restored" / "restored.nii.gz"), nib.load(scan)
    assert restored.shape == source.shape
    np.testing.assert_allclose(restored.affine, source.affine, atol=1e-4)
    assert not np.allclose(restored.get_fdata(), source.get_fdata())


@pytest.mark.slow
def test_multi_process_gloo(tiny_datasets, overrides, tmp_path):
    """torchrun with 2 CPU processes: DistributedDataParallel over gloo, DistributedSampler, rank-0 writers."""
    root = tmp_path / "rat_pet"
    configs = "['{}','{}']".format(*_configs("pet", "train", "multi_gpu_train"))
    ov = overrides("pet", root, tiny_datasets["pet"], max_iterations=4, val_interval=2)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "monai.bundle", "run", "training", "--config_file", configs]
    for k, v in ov.items():
        cmd += [f"--{k}", str(v)]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert (root / "models" / "model.pt").is_file()
    ckpt = torch.load(find_latest_checkpoint(root / "models"), map_location="cpu", weights_only=True)
    assert ckpt["trainer"]["iteration"] == 4
    assert not any(k.startswith("module.") for k in ckpt["model"])  # DDP wrapper not saved
    # each of the 2 processes saw its half of the training slices (DistributedSampler, even_divisible)
    slices = len(PairedSliceDataset(load_datalist(Path(tiny_datasets["pet"]) / "datalist.json"), progress=False))
    assert slices > ov["batch_size"]  # so that one process alone would have needed more iterations per epoch
    assert ckpt["trainer"]["epoch_length"] == math.ceil(math.ceil(slices / 2) / ov["batch_size"])
