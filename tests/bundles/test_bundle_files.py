# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Static checks of the bundles: Model Zoo layout, JSON style, ids users override, metadata vs schema and
installed versions, network input/output, and agreement between training and inference settings."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from importlib import metadata as importlib_metadata
from pathlib import Path

import monai
import numpy
import pytest
import torch
from monai.bundle import verify_metadata, verify_net_in_out

REPO = Path(__file__).resolve().parents[2]
BUNDLES = ["rat_pet", "rat_ct"]
SCHEMA = REPO / "schemas" / "meta_schema_20240725.json"
SCHEMA_MD5 = "06954cad2cc5d3784e72077ac76f0fc8"  # the hash MONAI's own tests expect for this schema
SCHEMA_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
LAYOUT = [
    "configs/metadata.json",
    "configs/train.json",
    "configs/evaluate.json",
    "configs/inference.json",
    "configs/multi_gpu_train.json",
    "configs/logging.conf",
    "docs/README.md",
    "LICENSE",
]
README_SECTIONS = [
    "Overview",
    "Data",
    "Training",
    "Input/Output",
    "Performance",
    "Bundle Commands",
    "References",
    "License",
]
TOP_LEVEL_IDS = [
    "bundle_root",
    "dataset_dir",
    "datalist",
    "output_dir",
    "device",
    "max_iterations",
    "val_interval",
    "batch_size",
    "patch_size",
    "width",
    "region_method",
    "sam_checkpoint",
]
# settings that must be identical in train.json and inference.json (else inference runs a different model/regions)
SHARED_IDS = ["network_def", "width", "modality", "normalization", "region_method", "sam_checkpoint", "region_kwargs"]
TINY_NET = {"width": 8, "network_def#middle_blocks": 1, "network_def#layers_per_block": 1}


def _json(bundle: str, name: str) -> dict:
    return json.loads((REPO / "bundles" / bundle / "configs" / f"{name}.json").read_text())


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_layout_and_style(bundle):
    root = REPO / "bundles" / bundle
    for rel in LAYOUT:
        assert (root / rel).is_file(), f"{bundle}: missing {rel}"
    for path in root.rglob("*"):
        if path.is_file():
            assert path.stat().st_size < 1_000_000, f"{path} is over 1 MB"
    tracked = subprocess.run(
        ["git", "ls-files", f"bundles/{bundle}/models"], cwd=REPO, capture_output=True, text=True
    ).stdout.split()
    assert all(Path(t).name == ".gitkeep" for t in tracked), f"weights committed: {tracked}"
    for path in sorted((root / "configs").glob("*.json")):
        text = path.read_text()
        assert text == json.dumps(json.loads(text), indent=4, ensure_ascii=False) + "\n", f"{path}: not indent-4 JSON"
        assert not re.search(r"[ \t]+\n", text), f"{path}: trailing whitespace"
        for s in _strings(json.loads(text)):
            assert not re.match(r"^(/|[A-Za-z]:\\)", s), f"{path}: absolute path {s!r}"
            assert "/work/" not in s and "/home/" not in s, f"{path}: machine-specific path {s!r}"
    readme = (root / "docs" / "README.md").read_text()
    headings = re.findall(r"^## (.+)$", readme, flags=re.M)
    assert headings == README_SECTIONS


@pytest.mark.parametrize("bundle", BUNDLES)
def test_ids_and_paths(bundle):
    train = _json(bundle, "train")
    for key in TOP_LEVEL_IDS:
        assert key in train, f"{bundle}/train.json lacks the top-level id {key!r}"
    assert train["bundle_root"] == "."
    for key in ("ckpt_dir", "output_dir", "dataset_dir", "region_cache_dir"):
        assert "@bundle_root" in train[key] or "@output_dir" in train[key], f"{key} does not derive from bundle_root"
    assert "run" in train and "training" in train
    # multi_gpu_train.json only overrides ids that exist in train.json (or adds samplers)
    for key in _json(bundle, "multi_gpu_train"):
        head = key.split("#")[0]
        assert head in train or head in ("initialize", "run", "finalize"), key
    # the handler MONAI Label looks for by name
    assert any(h["_target_"] == "ValidationHandler" for h in train["train"]["handlers"])
    infer = _json(bundle, "inference")
    for key in SHARED_IDS:
        assert infer.get(key) == train.get(key), f"{bundle}: {key} differs between train.json and inference.json"


def test_bundles_differ_only_in_modality_settings():
    pet, ct = _json("rat_pet", "train"), _json("rat_ct", "train")
    assert set(pet) == set(ct)
    differing = sorted(k for k in pet if pet[k] != ct[k])
    assert differing == ["modality", "normalization", "patch_size"]
    assert (pet["modality"], pet["patch_size"], ct["modality"], ct["patch_size"]) == ("pet", 192, "ct", 256)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata(bundle, meta_schema_path):
    assert hashlib.md5(SCHEMA.read_bytes()).hexdigest() == hashlib.md5(meta_schema_path.read_bytes()).hexdigest()
    assert hashlib.md5(SCHEMA.read_bytes()).hexdigest() == SCHEMA_MD5
    meta_file = REPO / "bundles" / bundle / "configs" / "metadata.json"
    verify_metadata(meta_file=str(meta_file), filepath=str(SCHEMA), hash_val=SCHEMA_MD5)  # raises on failure
    meta = json.loads(meta_file.read_text())
    assert meta["schema"] == SCHEMA_URL
    assert meta["version"] in meta["changelog"]
    assert meta["monai_version"] == monai.__version__
    assert meta["pytorch_version"] == torch.__version__.split("+")[0]
    assert meta["numpy_version"] == numpy.__version__
    for package, version in meta["required_packages_version"].items():
        assert importlib_metadata.version(package) == version, f"{package}: metadata {version}"
    fmt = meta["network_data_format"]
    assert list(fmt["inputs"]) == ["image"] and list(fmt["outputs"]) == ["pred"]
    image = fmt["inputs"]["image"]
    assert image["num_channels"] == 2 and set(image["channel_def"]) == {"0", "1"}
    assert "region" in image["channel_def"]["1"]
    assert fmt["outputs"]["pred"]["num_channels"] == 1
    for key in ("intended_use", "data_source", "license"):
        assert meta.get(key), f"{bundle}: metadata lacks {key}"


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize("config", ["train", "inference"])
def test_verify_net_in_out(bundle, config):
    configs = REPO / "bundles" / bundle / "configs"
    # raises on a wrong channel count or dtype; the network takes ONE tensor (image + region channel)
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(configs / "metadata.json"),
        config_file=str(configs / f"{config}.json"),
        device="cpu",
        n=2,
        any=20,
        **TINY_NET,
    )
