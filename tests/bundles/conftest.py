# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Shared fixtures for the bundle tests: tiny simulated datasets (once per session) and tiny bundle overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from rat_monai.engines import ensure_dataset

BUNDLES_DIR = Path(__file__).resolve().parents[2] / "bundles"

# Tiny network and loader settings: the pipeline is the bundle's, only sizes change.
TINY_OVERRIDES = {
    "width": 8,
    "network_def#middle_blocks": 1,
    "network_def#layers_per_block": 1,
    "network_def#enc_blocks": [1, 1],
    "network_def#dec_blocks": [1, 1],
    "batch_size": 4,
    "num_workers": 0,
    "progress": False,
    "log_interval": 10,
    "learning_rate": 0.003,
}
PATCH_SIZE = {"pet": 32, "ct": 48}


@pytest.fixture
def tiny_overrides() -> dict:
    """Overrides shrinking a bundle run to test size (a fresh copy per test)."""
    return dict(TINY_OVERRIDES)


@pytest.fixture
def patch_sizes() -> dict[str, int]:
    return dict(PATCH_SIZE)


@pytest.fixture(scope="session")
def tiny_datasets(tmp_path_factory) -> dict[str, str]:
    """Simulated PET and CT sets of 3 subjects (one per split) at 64x64x8, via the bundles' first-run helper.

    A strong dose reduction (200x) makes the low-dose input clearly noisy, so a run of a few dozen iterations can
    show the restoration beating the identity baseline.
    """
    root = tmp_path_factory.mktemp("rat_bundle_data")
    out = {}
    for modality in ("pet", "ct"):
        datalist = ensure_dataset(
            root / modality, modality, subjects=3, seed=0, shape=(64, 64, 8), dose_reduction=200, preview=False
        )
        out[modality] = str(Path(datalist).parent)
    return out
