# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import json

from rat_monai.cli import main
from rat_monai.data.datalist import load_datalist


def test_cli(tmp_path):
    out = tmp_path / "cli"
    args = ["simulate", "pet", "--out", str(out), "--subjects", "2", "--shape", "32", "32", "8", "--no-preview",
            "--no-progress", "--formats", "nifti", "--iterations", "2", "--subsets", "4"]
    assert main(args) == 0
    assert len(load_datalist(out / "datalist.json", "validation")) == 1
    assert main(args) == 1  # not empty, no --overwrite
    assert main(args + ["--overwrite"]) == 0
    summary = json.loads((out / "simulation.json").read_text())
    assert summary["iterations"] == 2 and summary["subsets"] == 4 and summary["shape"] == [32, 32, 8]
