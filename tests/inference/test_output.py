# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""The output folder appears whole or not at all (atomic_output_dir), and stale partial folders are removed."""

from __future__ import annotations

import json

import pytest

from rat_monai.inference.output import atomic_output_dir, clean_stale_partials
from rat_monai.inference.safety import OUTPUT_MARK


def test_atomic_output_dir_moves_into_place(tmp_path):
    out = tmp_path / "parent" / "out"
    with atomic_output_dir(out) as tmp:
        assert tmp.parent == out.parent and tmp.name.startswith(".out.rat-partial-")
        (tmp / "a.txt").write_text("a")
        assert not out.exists()
    assert (out / "a.txt").read_text() == "a"
    assert [p.name for p in out.parent.iterdir()] == ["out"]


def test_atomic_output_dir_leaves_nothing_on_error(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"), atomic_output_dir(out) as tmp:
        (tmp / "a.txt").write_text("a")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_dir_replaces_an_earlier_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text(json.dumps({OUTPUT_MARK: "infer"}))
    with atomic_output_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the replaced folder is gone too


def test_clean_stale_partials(tmp_path):
    stale = tmp_path / ".out.rat-partial-999999999-deadbeef"  # a process that no longer exists
    stale.mkdir()
    other = tmp_path / ".other.rat-partial-999999999-deadbeef"
    other.mkdir()
    clean_stale_partials(tmp_path / "out")
    assert not stale.exists() and other.exists()
