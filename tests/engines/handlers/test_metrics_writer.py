# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import csv
import math
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch

from rat_monai.engines import RestorationMetricsWriter
from tests.engines.handlers._engine_outputs import fake_evaluator, make_samples


class TestRestorationMetricsWriter(unittest.TestCase):
    def test_csv(self):
        samples, batches = make_samples(n=5)
        with tempfile.TemporaryDirectory() as tmp:
            evaluator = fake_evaluator(samples, batches)
            writer = RestorationMetricsWriter(output_dir=tmp, data_range=1.0)
            writer.attach(evaluator)
            evaluator.run(range(5))
            with open(Path(tmp) / "metrics_per_slice.csv") as f:
                rows = list(csv.DictReader(f))
            self.assertEqual(len(rows), 5)
            for row, s in zip(rows, samples):
                mse = float(torch.mean((s["pred"] - s["label"]) ** 2))
                self.assertAlmostEqual(float(row["psnr"]), 10 * math.log10(1.0 / mse), places=3)
                mse_in = float(torch.mean((s["image"][:1] - s["label"]) ** 2))
                self.assertAlmostEqual(float(row["psnr_input"]), 10 * math.log10(1.0 / mse_in), places=3)
                self.assertGreater(float(row["psnr"]), float(row["psnr_input"]))  # pred has half the noise
            self.assertEqual([int(r["slice_index"]) for r in rows], list(range(5)))
            with open(Path(tmp) / "metrics_per_volume.csv") as f:
                vols = {r["volume"]: r for r in csv.DictReader(f)}
            self.assertEqual(set(vols), {"a.nii", "b.nii"})
            self.assertEqual(int(vols["a.nii"]["slices"]), 3)
            mse_a = np.mean([float(torch.mean((samples[i]["pred"] - samples[i]["label"]) ** 2)) for i in (0, 2, 4)])
            self.assertAlmostEqual(float(vols["a.nii"]["psnr"]), 10 * math.log10(1.0 / mse_a), places=3)
            mean, std = writer.summary["slice"]["psnr"]
            self.assertAlmostEqual(mean, np.mean([float(r["psnr"]) for r in rows]), places=4)
            self.assertIn("±", (Path(tmp) / "metrics_summary.md").read_text())
            self.assertTrue((Path(tmp) / "metrics_summary.csv").is_file())

    def test_ill_arg(self):
        with self.assertRaises(ValueError):
            RestorationMetricsWriter(output_dir=".", data_range=0)

if __name__ == "__main__":
    unittest.main()
