# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import pytest
import torch
from ignite.handlers import ProgressBar
from monai.handlers import CheckpointSaver, LrScheduleHandler, StatsHandler, ValidationHandler
from parameterized import parameterized

from rat_monai.engines import (
    ImagePanelHandler,
    IterationLimitHandler,
    BundleUserError,
    ResumableCheckpointSaver,
    as_flag,
    ensure_dataset,
    epochs_for_iterations,
    handlers_for_rank,
    iteration_budget,
    metric_data_range,
    metric_window,
    windowed_pairs,
)
from rat_monai.data import normalize_units

# (max_iterations, epoch_length, expected epochs)
EPOCH_CASES = [(1, 1, 1), (10, 3, 4), (9, 3, 3), (200000, 12345, 17), (5, 100, 1)]


class TestBudget(unittest.TestCase):
    @parameterized.expand(EPOCH_CASES)
    def test_epochs(self, iters, length, expected):
        self.assertEqual(epochs_for_iterations(iters, length), expected)
        self.assertGreaterEqual(expected * length, iters)

    def test_iteration_budget(self):
        self.assertEqual(iteration_budget(100, 3, 10), 30)  # a max_epochs override ends the run first
        self.assertEqual(iteration_budget(25, 3, 10), 25)

    def test_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "empty"):
            epochs_for_iterations(10, 0)
        with self.assertRaises(ValueError):
            epochs_for_iterations(0, 5)


class TestRanks(unittest.TestCase):
    def test_handlers_for_rank(self):
        opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.StepLR(opt, 1)
        keep = [LrScheduleHandler(sched), ValidationHandler(interval=1), IterationLimitHandler(3)]
        drop = [
            StatsHandler(),
            ResumableCheckpointSaver(save_dir=".", save_dict={"o": opt}),  # what train.json uses (a subclass)
            ImagePanelHandler(),
            ProgressBar(),
            CheckpointSaver(save_dir=".", save_dict={"o": opt}),
        ]
        handlers = keep[:1] + drop[:2] + keep[1:] + drop[2:]
        self.assertEqual(handlers_for_rank(handlers, rank=0), handlers)
        self.assertEqual(handlers_for_rank(handlers, rank=1), keep)
        self.assertIsNone(handlers_for_rank(None, rank=1))


class TestEnsureDataset(unittest.TestCase):
    def test_existing_datalist_is_used(self):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "datalist.json").write_text(json.dumps({"training": []}))
            self.assertEqual(ensure_dataset(tmp, "pet"), str(Path(tmp) / "datalist.json"))

    def test_refuses_user_folder_without_datalist(self):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "scan.nii.gz").write_bytes(b"")
            with self.assertRaisesRegex(FileExistsError, "rat-monai datalist"):
                ensure_dataset(tmp, "ct")
            self.assertEqual(sorted(p.name for p in Path(tmp).iterdir()), ["scan.nii.gz"])

    def test_user_datalist_or_no_subjects_simulates_nothing(self):
        with tempfile.TemporaryDirectory() as tmp:
            mine = Path(tmp) / "elsewhere" / "mine.json"  # --datalist FILE: the user's, even when missing
            self.assertEqual(ensure_dataset(Path(tmp) / "dataset", "pet", datalist=mine), str(mine))
            default = Path(tmp) / "dataset" / "datalist.json"
            self.assertEqual(ensure_dataset(Path(tmp) / "dataset", "pet", datalist=default, subjects=0), str(default))
            self.assertEqual(list(Path(tmp).iterdir()), [])

    # the simulating path runs in tests/bundles/conftest.py (session fixture), shared with the bundle tests


if __name__ == "__main__":
    unittest.main()


# a bad datalist, and what the message must name (issue 15 item 9)
BAD_DATALISTS = [
    ("missing_file", None, "does not exist"),
    ("malformed_json", '{"training": [', "not valid JSON"),
    ("wrong_key", '{"train": []}', "has no 'training' list"),
    ("missing_image", '{"training": [{"image": "nope_low.nii.gz", "label": "nope_full.nii.gz"}]}', "nope_low.nii.gz"),
]


def test_datalist_split_errors(tmp_path):
    from rat_monai.engines import BundleUserError, datalist_split

    for name, content, message in BAD_DATALISTS:
        path = tmp_path / f"{name}.json"
        if content is not None:
            path.write_text(content)
        with pytest.raises(BundleUserError, match=message) as info:
            datalist_split(path, "training")
        assert str(path) in str(info.value.code) and info.value.code.startswith("error: ")


def test_bad_datalist_in_monai_bundle_run_prints_one_message(tmp_path):
    """``python -m monai.bundle run training --datalist bad.json``: the message, exit 1, no traceback."""
    import os
    import subprocess
    import sys

    bad = tmp_path / "datalist.json"
    bad.write_text('{"training": [')
    train = Path(__file__).resolve().parents[2] / "bundles" / "rat_pet" / "configs" / "train.json"
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(train), "--bundle_root",
         str(tmp_path / "b"), "--datalist", str(bad), "--num_workers", "0"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"error: datalist {bad} is not valid JSON" in proc.stderr


def test_as_flag():
    for value, expected in ((True, True), (False, False), (1, True), (0, False), ("false", False), ("True", True),
                            (" yes ", True), ("OFF", False), ("0", False)):  # fmt: skip
        assert as_flag(value, "amp") is expected, value
    for bad in ("maybe", 2, None, 0.5):
        with pytest.raises(BundleUserError, match=r"'resume' must be true or false"):
            as_flag(bad, "resume")


def test_metric_window_matches_the_evaluation():
    """CT validation metrics clip to -1000..1000 HU in the network's units (whatever the normalisation) with the
    window width as data range: the trainer's PSNR is the evaluation's; PET is scored unclipped with range 1."""
    for norm in ({"hu_min": -1024.0, "hu_max": 3072.0, "clip": True}, {"hu_min": -1024.0, "hu_max": -524.0}):
        low, high = metric_window("ct", norm)
        assert low == pytest.approx(float(normalize_units(torch.tensor(-1000.0), "ct", **norm)))
        assert high == pytest.approx(float(normalize_units(torch.tensor(1000.0), "ct", **norm)))
        assert metric_data_range("ct", norm) == pytest.approx(high - low)
    assert metric_window("pet", {"suv_scale": 10.0}) is None and metric_data_range("PT") == 1.0
    norm = {"hu_min": -1024.0, "hu_max": -524.0, "clip": False}
    hu = torch.tensor([[[-3024.0, -1000.0, 40.0, 2500.0]]])
    label = normalize_units(hu, "ct", **norm)
    pred = normalize_units(hu + torch.tensor([[[500.0, 0.0, 10.0, 300.0]]]), "ct", **norm)
    out = [{"pred": pred, "label": label, "image": torch.cat([pred, torch.zeros_like(pred)])}]
    preds, labels = windowed_pairs(metric_window("ct", norm))(out)
    # outside the window (FOV air, metal) the errors vanish; inside, the 10 HU error stays
    torch.testing.assert_close((preds[0] - labels[0]) * 500.0, torch.tensor([[[0.0, 0.0, 10.0, 0.0]]]))
    inputs, _ = windowed_pairs(None, score_input=True)(out)  # the input without its stacked region map
    assert inputs[0].shape == pred.shape and torch.equal(inputs[0], pred)
