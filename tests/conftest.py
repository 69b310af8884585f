# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Shared test helpers.

``shared_data(...)`` returns a path under ``../shared/data`` (beside the repository). When that folder is absent
the test is skipped with the reason, except under CI (``CI=true``), where its absence is a failure: CI always runs
with ``../shared`` beside the clone, so a missing folder there means the test would silently check nothing.

``shipped_weights(bundle)`` (fixture) returns a bundle's shipped ``models/model.pt`` with the same rule, except that a
bundle that ships weights (or whose model.pt git tracks) fails without it everywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
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
def real_ct_test_dir() -> Path:
    """The CT bundle's held-out test patient (CRLM-CT-1006)."""
    return shared_data("real", "ct_crlm1006", "CRLM-CT-1006", "image")


@pytest.fixture
def meta_schema_path() -> Path:
    return shared_data("monai", "meta_schema_20240725.json")


@pytest.fixture
def dicom_subset(tmp_path):
    """``dicom_subset(series, start, count)`` copies slices ``start : start + count`` of a DICOM series folder, in z
    order along the slice normal, to a new folder under ``tmp_path`` (so the input folder is the test's own)."""
    import pydicom

    def copy(series: Path, start: int, count: int) -> Path:
        files = sorted(Path(series).glob("*.dcm"))
        heads = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
        normal = np.cross(*np.asarray(heads[0].ImageOrientationPatient, float).reshape(2, 3))
        order = np.argsort([float(np.dot(normal, np.asarray(h.ImagePositionPatient, float))) for h in heads])
        dst = tmp_path / f"{Path(series).name}_{start}_{count}"
        dst.mkdir()
        for i in order[start : start + count]:
            shutil.copy2(files[i], dst / files[i].name)
        return dst

    return copy


# bundles that must ship trained weights; any other bundle's models/model.pt is required once git tracks it
SHIPS_WEIGHTS = ("rat_pet",)


@pytest.fixture
def shipped_weights():
    """``shipped_weights(bundle)`` -> ``bundles/<bundle>/models/model.pt``, the trained weights the bundle ships.

    Required (a failure when absent) for the bundles in ``SHIPS_WEIGHTS``, for a bundle whose model.pt git tracks, and
    for every bundle under CI (``CI=true``); otherwise a bundle without weights yet is skipped with the reason.
    """

    def get(bundle: str) -> Path:
        path = REPO_ROOT / "bundles" / bundle / "models" / "model.pt"
        if path.is_file():
            return path
        rel = path.relative_to(REPO_ROOT).as_posix()
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", rel], cwd=REPO_ROOT,
                                 capture_output=True).returncode == 0  # fmt: skip
        msg = f"{rel}: no shipped weights (train the bundle and commit models/model.pt, see its docs/README.md)"
        if bundle in SHIPS_WEIGHTS or tracked or under_ci():
            pytest.fail(msg + (" -- CI=true requires it" if under_ci() else ""))
        pytest.skip(msg)

    return get
