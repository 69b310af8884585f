# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Static checks of the bundles: config layout, README sections, ids users override, the schema copy, and agreement
between training and inference settings. The Model Zoo rules (sizes, JSON style, paths, metadata, versions, imports,
properties, verify_net_in_out, ckpt_export) are in test_model_zoo_rules.py."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLES = ["rat_pet", "rat_ct"]
SCHEMA = REPO / "schemas" / "meta_schema_20240725.json"
SCHEMA_MD5 = "06954cad2cc5d3784e72077ac76f0fc8"  # the hash MONAI's own tests expect for this schema
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
    "seed",
]
# settings that must be identical in train.json and inference.json (else inference runs a different model/regions)
SHARED_IDS = ["network_def", "width", "modality", "normalization", "region_method", "sam_checkpoint", "region_kwargs"]
# settings of inference.json that both the bundle's own run (`restorer`, ScanRestorer) and the Model Zoo / MONAI Label
# path (preprocessing -> inferer -> postprocessing, evaluator) must take from the same id, so the two cannot drift
RESTORER_AND_ZOO_IDS = ["network_def", "modality", "normalization", "region_method", "sam_checkpoint", "region_kwargs",
                        "use_regions", "checkpoint", "batch_size", "device", "amp"]  # fmt: skip
ZOO_PATH = ["preprocessing", "inferer", "postprocessing", "handlers", "evaluator"]


def _json(bundle: str, name: str) -> dict:
    return json.loads((REPO / "bundles" / bundle / "configs" / f"{name}.json").read_text())


@pytest.mark.parametrize("bundle", BUNDLES)
def test_layout_and_style(bundle):
    root = REPO / "bundles" / bundle
    for rel in LAYOUT:
        assert (root / rel).is_file(), f"{bundle}: missing {rel}"
    tracked = subprocess.run(
        ["git", "ls-files", f"bundles/{bundle}/models"], cwd=REPO, capture_output=True, text=True
    ).stdout.split()
    # only the shipped weights (models/model.pt, its TorchScript export model.ts): no training checkpoints, no runs
    shipped = {f"bundles/{bundle}/models/{n}" for n in (".gitkeep", "model.pt", "model.ts")}
    assert set(tracked) <= shipped, f"files other than the shipped weights committed under models/: {tracked}"
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
    for name in ("train", "multi_gpu_train"):
        assert "$monai.utils.set_determinism(seed=@seed)" in _json(bundle, name)["initialize"], f"{name}: seed id unused"
    # multi_gpu_train.json only overrides ids that exist in train.json (or adds samplers)
    for key in _json(bundle, "multi_gpu_train"):
        head = key.split("#")[0]
        assert head in train or head in ("initialize", "run", "finalize"), key
    # the handler MONAI Label looks for by name
    assert any(h["_target_"] == "ValidationHandler" for h in train["train"]["handlers"])
    infer = _json(bundle, "inference")
    for key in SHARED_IDS:
        assert infer.get(key) == train.get(key), f"{bundle}: {key} differs between train.json and inference.json"


def _config_files(bundle: str) -> list[Path]:
    return sorted((REPO / "bundles" / bundle / "configs").rglob("*.json"))


@pytest.mark.parametrize("bundle", BUNDLES)
def test_transforms_are_components(bundle):
    """Transforms are `_target_` components (overridable by id, e.g. `train#deterministic_transforms#0#method`), never
    `$rat_monai.transforms.X(...)` expressions."""
    for path in _config_files(bundle):
        text = path.read_text()
        assert "$rat_monai.transforms." not in text, f"{path}: write the transform as a _target_ component"
        assert "ConcatItemsd" not in text, f"{path}: stack the region channel with rat_monai.transforms.StackRegionsd"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_data_step_is_explicit(bundle):
    """Parsing `datalist` has no side effect; the simulation of a first run is a step of `initialize`."""
    train, multi = _json(bundle, "train"), _json(bundle, "multi_gpu_train")
    assert "ensure_dataset" not in train["datalist"] and "@dataset_dir" in train["datalist"]
    for name, init in (("train", train["initialize"]), ("multi_gpu_train", multi["initialize"])):
        steps = [i for i, step in enumerate(init) if "ensure_dataset(" in step]
        assert len(steps) == 1 and "datalist=@datalist" in init[steps[0]], f"{name}.json: no data step in initialize"
    # distributed: the data step runs after the process group exists (rank 0 simulates, the others wait)
    position = {text: next(i for i, step in enumerate(multi["initialize"]) if text in step)
                for text in ("ensure_dataset(", "init_process_group")}  # fmt: skip
    assert position["ensure_dataset("] > position["init_process_group"]


@pytest.mark.parametrize("bundle", BUNDLES)
def test_restorer_and_zoo_path_share_ids(bundle):
    infer = _json(bundle, "inference")
    restorer, zoo = json.dumps(infer["restorer"]), json.dumps({k: infer[k] for k in ZOO_PATH})
    for key in RESTORER_AND_ZOO_IDS:
        assert f"@{key}" in restorer and f"@{key}" in zoo, f"{bundle}: {key} must reach both inference paths by id"


def test_runs_from_the_repository_root_are_ignored():
    """`bundle_root` is "." (Model Zoo): a run from the repository root writes dataset/, eval/, models/, restored/
    there, which git ignores; the shipped weights stay tracked."""
    for name in ("dataset/datalist.json", "eval/panels/a.png", "models/model.pt", "restored/restored.nii.gz"):
        assert subprocess.run(["git", "check-ignore", "-q", name], cwd=REPO).returncode == 0, f"{name} not ignored"
    for name in ("bundles/rat_pet/models/model.pt", "bundles/rat_pet/configs/train.json"):
        assert subprocess.run(["git", "check-ignore", "-q", name], cwd=REPO).returncode == 1, f"{name} ignored"


def test_bundles_differ_only_in_modality_settings():
    pet, ct = _json("rat_pet", "train"), _json("rat_ct", "train")
    assert set(pet) == set(ct)
    differing = sorted(k for k in pet if pet[k] != ct[k])
    # the CPU configurations of the shipped weights differ in their budget too (paper.json: the paper's settings)
    # CT starts from the identity (zero_init_residual): its ~15 HU noise is small against the normalised range
    assert differing == ["max_iterations", "modality", "normalization", "val_interval", "zero_init_residual"]
    assert (pet["modality"], pet["patch_size"], ct["modality"], ct["patch_size"]) == ("pet", 96, "ct", 96)


def test_schema_copy(meta_schema_path):
    """The repository's schema copy is the shared one, and the file MONAI's own tests pin by hash."""
    assert hashlib.md5(SCHEMA.read_bytes()).hexdigest() == hashlib.md5(meta_schema_path.read_bytes()).hexdigest()
    assert hashlib.md5(SCHEMA.read_bytes()).hexdigest() == SCHEMA_MD5
    for bundle in BUNDLES:  # the Model Zoo rules on metadata live in test_model_zoo_rules.py
        meta = _json(bundle, "metadata")
        assert meta["schema"].rsplit("/", 1)[-1] == SCHEMA.name
        for key in ("intended_use", "data_source", "license"):
            assert meta.get(key), f"{bundle}: metadata lacks {key}"
