# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Shared test helpers.

``shared_data(...)`` returns a path under ``../shared/data`` (beside the repository). When that folder is absent
the test is skipped with the reason, except under CI (``CI=true``), where its absence is a failure: CI always runs
with ``../shared`` beside the clone, so a missing folder there means the test would silently check nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_ROOT = Path(os.environ.get("RAT_MONAI_SHARED", REPO_ROOT.parent / "shared"))

# Two cores: keep intra-op threads modest so tests behave the same everywhere.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def shared_data(*parts: str) -> Path:
    """Path to ``../shared/data/<parts>``; skip (or fail under CI) when it does not exist."""
    path = SHARED_ROOT.joinpath("data", *parts)
    if not path.exists():
        msg = f"shared test data not found: {path} (set RAT_MONAI_SHARED or place ../shared beside the repo)"
        if under_ci():
            pytest.fail(msg + " -- CI=true requires it")
        pytest.skip(msg)
    return path


@pytest.fixture
def real_pet_dir() -> Path:
    return shared_data("real", "pet_fdg_sts001", "STS_001", "FDG_PET")


@pytest.fixture
def real_ct_dir() -> Path:
    return shared_data("real", "ct_crlm1004", "CRLM-CT-1004", "image")


@pytest.fixture
def meta_schema_path() -> Path:
    return shared_data("monai", "meta_schema_20240725.json")
