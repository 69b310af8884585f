# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Restore-RWKV through the rat_pet / rat_ct bundles: ``configs/restore_rwkv.json`` merged on top of the bundle configs.

The override swaps ``network_def`` for :class:`~rat_monai.networks.nets.RestoreRWKV`, trains it with plain L1, drops the
region-map stage from the train/validate transforms (``+train`` merge: replaces the two transform lists, keeps the rest
of the ``train`` section), sets ``use_regions`` false (prepare batch and ``ScanRestorer``) and keeps its checkpoints in
``models/restore_rwkv`` so the bundle's RAT weights are never overwritten.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.data import list_data_collate

from rat_monai.networks.nets import RestoreRWKV
from rat_monai.transforms import RegionPartitiond

BUNDLES_DIR = Path(__file__).resolve().parents[2] / "bundles"
MODALITIES = ("pet", "ct")
# config combinations the override must be valid on (it is always merged last)
COMBOS = (("train",), ("train", "evaluate"), ("train", "multi_gpu_train"), ("inference",))
# a tiny Restore-RWKV: the network keys inference must share with training
TINY_NET = {"width": 8, "network_def#num_blocks": [1, 1, 1, 1], "network_def#num_refinement_blocks": 1}
TINY_RUN = {"patch_size": 32, "batch_size": 2, "num_workers": 0, "progress": False, "log_interval": 1}


@pytest.fixture
def one_thread():
    """Tiny networks run fastest on one thread (and do not fight other processes for cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _configs(modality: str, *names: str) -> list[str]:
    return [str(BUNDLES_DIR / f"rat_{modality}" / "configs" / f"{n}.json") for n in names]


def _parser(modality: str, combo: tuple[str, ...], **overrides) -> ConfigParser:
    parser = ConfigParser()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*'\+train'.*copying instead")  # inference.json has no `train`
        parser.read_config(_configs(modality, *combo, "restore_rwkv"))
    parser.update(overrides)
    return parser


def _without_regions(transforms: list) -> list:
    """The base transform list with the region-map stage removed: what the override must hold."""
    out = []
    for t in transforms:
        if "RegionPartitiond" in (t if isinstance(t, str) else t.get("_target_", "")):
            continue
        if isinstance(t, str):
            out.append(t)
            continue
        keys = [t["keys"]] if isinstance(t["keys"], str) else list(t["keys"])
        keys = [k for k in keys if k != "regions"]
        if keys:
            out.append(dict(t, keys=keys))
    return out


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("combo", COMBOS)
def test_override_parses(modality, combo, tmp_path):
    parser = _parser(modality, combo, bundle_root=str(tmp_path), allow_untrained=True, **TINY_NET)
    net = parser.get_parsed_content("network_def")
    assert isinstance(net, RestoreRWKV) and net.in_channels == 1
    assert parser.get_parsed_content("use_regions") is False
    if combo == ("inference",):
        restorer = parser.get_parsed_content("restorer")
        assert restorer.use_regions is False
        assert isinstance(restorer.network, RestoreRWKV)
        assert Path(parser.get_parsed_content("checkpoint")) == tmp_path / "models" / "restore_rwkv" / "model.pt"
        return
    assert isinstance(parser.get_parsed_content("loss"), torch.nn.L1Loss)
    assert parser.get_parsed_content("train#prepare_batch").use_regions is False
    for section in ("train", "validate"):
        transforms = parser.get_parsed_content(f"{section}#preprocessing").transforms
        assert transforms and not any(isinstance(t, RegionPartitiond) for t in transforms)
        assert all("regions" not in getattr(t, "keys", ()) for t in transforms)
    assert Path(parser.get_parsed_content("ckpt_dir")) == tmp_path / "models" / "restore_rwkv"
    if "evaluate" in combo:
        assert Path(parser.get_parsed_content("checkpoint")) == tmp_path / "models" / "restore_rwkv" / "model.pt"
    # the rest of the `train` section survives the `+train` merge
    assert parser["train#trainer"]["_target_"] == "SupervisedTrainer" and parser["train#handlers"]


@pytest.mark.parametrize("modality", MODALITIES)
def test_override_matches_base(modality):
    """Only ids of the bundle configs, and the transform lists are the base ones minus the region stage (no drift)."""
    override = json.loads(Path(_configs(modality, "restore_rwkv")[0]).read_text())
    bases = [json.loads(Path(p).read_text()) for p in _configs(modality, "train", "evaluate", "inference")]
    for key in override:
        if key.startswith("+"):
            assert set(override[key]) <= set(bases[0][key[1:]]), key
        else:
            assert any(key in b for b in bases), f"{key!r} is in no base config of rat_{modality}"
    train = bases[0]["train"]
    for name in ("deterministic_transforms", "random_transforms"):
        assert override["+train"][name] == _without_regions(train[name]), f"rat_{modality}: +train#{name} drifted"
    assert len(override["+train"]["deterministic_transforms"]) == len(train["deterministic_transforms"]) - 1


def test_ill_arg(tiny_datasets, tmp_path):
    """With the override the batches carry no region map: switching ``use_regions`` back on fails loudly."""
    parser = _parser(
        "pet", ("train",), bundle_root=str(tmp_path), dataset_dir=tiny_datasets["pet"], use_regions=True, **TINY_RUN
    )
    dataset = parser.get_parsed_content("validate#dataset")
    batch = list_data_collate([dataset[0]])
    assert "regions" not in batch
    with pytest.raises(KeyError, match="regions"):
        parser.get_parsed_content("validate#prepare_batch")(batch)
    with pytest.raises(KeyError, match="query key"):  # a `train#...` id cannot go on inference.json: hence `+train`
        ConfigParser().read_config(_configs("pet", "inference") + [_write(tmp_path / "bad.json", {"train#x": 1})])


def _write(path: Path, content: dict) -> str:
    path.write_text(json.dumps(content))
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("modality", MODALITIES)
def test_train_evaluate_infer(modality, tiny_datasets, tmp_path, one_thread, monkeypatch):
    root = tmp_path / f"rat_{modality}"
    dataset_dir = tiny_datasets[modality]
    # -- train 4 iterations through `python -m monai.bundle run training` with the override (validation every 2)
    configs = "['{}','{}']".format(*_configs(modality, "train", "restore_rwkv"))
    ov = dict(TINY_NET, **TINY_RUN, bundle_root=str(root), dataset_dir=dataset_dir)
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", configs]
    for k, v in dict(ov, max_iterations=4, val_interval=2).items():
        cmd += [f"--{k}", str(v)]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    losses = [float(x) for x in re.findall(r"Iter: \d+/\d+ -- train_loss: (\S+)", log)]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses), losses
    ckpt_dir = root / "models" / "restore_rwkv"
    assert (ckpt_dir / "model.pt").is_file() and not (root / "models" / "model.pt").exists()
    assert not (root / "eval" / "region_cache").exists()  # RegionPartitiond never ran
    state = torch.load(ckpt_dir / "model.pt", map_location="cpu", weights_only=True)
    _parser(modality, ("train",), **TINY_NET).get_parsed_content("network_def").load_state_dict(state)  # strict

    # -- evaluate model.pt on the test split with the same override: per-slice CSV
    evaluate = ConfigWorkflow(
        config_file=_configs(modality, "train", "evaluate", "restore_rwkv"),
        workflow_type=None,
        **ov,
    )
    evaluate.initialize()
    evaluate.run()
    evaluate.finalize()
    csv_path = root / "eval" / "test" / "metrics_per_slice.csv"
    rows = csv_path.read_text().strip().splitlines()
    assert len(rows) - 1 == len(evaluate.parser.get_parsed_content("validate#dataset")) > 0

    # -- whole-scan inference with the override: no region map is ever computed
    from rat_monai.inference import ScanRestorer

    def no_regions(*args, **kwargs):
        raise AssertionError("Restore-RWKV inference computed a region map")

    monkeypatch.setattr(ScanRestorer, "compute_regions", no_regions)
    monkeypatch.setattr("rat_monai.regions.get_partitioner", no_regions)
    datalist = json.loads((Path(dataset_dir) / "datalist.json").read_text())
    scan = Path(dataset_dir) / datalist["test"][0]["image"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*'\+train'.*copying instead")
        infer = ConfigWorkflow(
            config_file=_configs(modality, "inference", "restore_rwkv"),
            workflow_type=None,
            bundle_root=str(root),
            input=str(scan),
            output_dir=str(tmp_path / "restored"),
            format="nifti",
            progress=False,
            **copy.deepcopy(TINY_NET),
        )
    infer.initialize()
    infer.run()
    infer.finalize()
    restored, source = nib.load(tmp_path / "restored" / "restored.nii.gz"), nib.load(scan)
    assert restored.shape == source.shape
    assert not np.allclose(restored.get_fdata(), source.get_fdata())
    report = json.loads((tmp_path / "restored" / "report.json").read_text())
    assert report["regions"]["misses"] == 0 and report["regions"]["method"] is None
    assert not (tmp_path / "restored.regions_cache").exists()
