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
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from parameterized import parameterized
from PIL import Image

from rat_monai.engines import (
    ImagePanelHandler,
    IterationLimitHandler,
    RestorationMetricsWriter,
    ResumableCheckpointSaver,
    ResumeCheckpointLoader,
    find_latest_checkpoint,
    region_colors,
    render_panel,
)


def _fake_evaluator(samples: list[dict], batches: list[dict]) -> Engine:
    """An engine whose output / batch look like a decollated MONAI evaluator's (lists of per-sample dicts)."""

    def step(engine, i):
        engine.state.batch = [batches[i]]
        return [samples[i]]

    return Engine(step)


def _samples(n=5, size=16, volumes=("a.nii", "b.nii"), noise=0.05):
    g = torch.Generator().manual_seed(1)
    samples, batches = [], []
    for i in range(n):
        label = torch.rand(1, size, size, generator=g)
        lq = label + noise * torch.randn(1, size, size, generator=g)
        pred = label + 0.5 * noise * torch.randn(1, size, size, generator=g)
        regions = torch.randint(0, 4, (1, size, size), generator=g).float()
        meta = {"source_image": volumes[i % len(volumes)], "slice_index": i}
        samples.append({"image": torch.cat([lq, regions]), "label": label, "pred": pred})
        batches.append({"image": MetaTensor(lq, meta=meta), "label": label})
    return samples, batches


class TestIterationLimitHandler(unittest.TestCase):
    @parameterized.expand([(7, 5, 7), (10, 5, 10), (3, 100, 3)])
    def test_stops_at_budget(self, budget, epoch_length, expected):
        engine = Engine(lambda e, b: None)
        IterationLimitHandler(budget).attach(engine)
        engine.run(range(epoch_length), max_epochs=50)
        self.assertEqual(engine.state.iteration, expected)

    def test_already_past_budget(self):
        engine = Engine(lambda e, b: None)
        IterationLimitHandler(4).attach(engine)
        engine.add_event_handler(Events.STARTED, lambda e: setattr(e.state, "iteration", 0))
        engine.state.iteration = 9  # as a resumed checkpoint would leave it
        engine.run(range(5), max_epochs=3)
        self.assertEqual(engine.state.iteration, 4)

    def test_ill_arg(self):
        with self.assertRaises(ValueError):
            IterationLimitHandler(0)


class TestPanels(unittest.TestCase):
    def test_render(self):
        a = np.zeros((8, 6), np.float32)
        panel = render_panel([(a, a + 1, a + 2, np.arange(48).reshape(8, 6)), (a[:4], a[:4], a[:4])])
        self.assertEqual(panel.dtype, np.uint8)
        self.assertEqual(panel.shape, (8 * 2 + 2, 6 * 4 + 3 * 2, 3))
        # same label -> same colour, different labels -> (here) different colours
        colours = region_colors(np.array([[1, 1, 2]]))
        self.assertTrue(np.array_equal(colours[0, 0], colours[0, 1]))
        self.assertFalse(np.array_equal(colours[0, 0], colours[0, 2]))

    def test_ill_arg(self):
        with self.assertRaises(ValueError):
            render_panel([])
        with self.assertRaises(ValueError):
            render_panel([(np.zeros((2, 2)),)])
        with self.assertRaises(ValueError):
            render_panel([(np.zeros((2, 2, 2)),) * 3])
        with self.assertRaises(ValueError):
            ImagePanelHandler(max_images=0)

    def test_handler_on_evaluator_and_trainer(self):
        samples, batches = _samples(n=6)
        with tempfile.TemporaryDirectory() as tmp:
            # stand-alone on an evaluator: step = epoch, 3 examples spread over the run
            evaluator = _fake_evaluator(samples, batches)
            handler = ImagePanelHandler(output_dir=tmp, max_images=3, tag="test")
            handler.attach(evaluator)
            evaluator.run(range(6))
            self.assertEqual(handler.last_png.name, "test_0000001.png")
            img = np.asarray(Image.open(handler.last_png))
            self.assertEqual(img.shape, (3 * 16 + 2 * 2, 4 * 16 + 3 * 2, 3))
            # attached to a trainer that runs the evaluator: step = trainer iteration, metrics to TensorBoard
            evaluator = _fake_evaluator(samples, batches)
            evaluator.add_event_handler(Events.COMPLETED, lambda e: e.state.metrics.update(val_psnr=30.0))
            trainer = Engine(lambda e, b: None)
            trainer.add_event_handler(Events.ITERATION_COMPLETED(every=2), lambda e: evaluator.run(range(6)))
            handler = ImagePanelHandler(output_dir=tmp, log_dir=Path(tmp) / "tb", evaluator=evaluator, tag="val")
            handler.attach(trainer)
            trainer.run(range(4), max_epochs=1)
            self.assertTrue((Path(tmp) / "val_0000002.png").is_file())
            self.assertTrue((Path(tmp) / "val_0000004.png").is_file())
            self.assertTrue(any((Path(tmp) / "tb").iterdir()))


class TestRestorationMetricsWriter(unittest.TestCase):
    def test_csv(self):
        samples, batches = _samples(n=5)
        with tempfile.TemporaryDirectory() as tmp:
            evaluator = _fake_evaluator(samples, batches)
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


class TestResume(unittest.TestCase):
    def _trainer(self, net, opt, sched):
        def step(engine, batch):
            opt.zero_grad()
            loss = net(batch).pow(2).mean()
            loss.backward()
            opt.step()
            return loss.item()

        engine = Engine(step)
        engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: sched.step())
        return engine

    def test_save_and_resume_continue_iterations(self):
        data = [torch.randn(4, 3) for _ in range(5)]
        with tempfile.TemporaryDirectory() as tmp:
            net = torch.nn.Linear(3, 1)
            opt = torch.optim.Adam(net.parameters(), lr=0.1)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20)
            trainer = self._trainer(net, opt, sched)
            saver = ResumableCheckpointSaver(
                save_dir=tmp,
                save_dict={"model": net, "optimizer": opt, "lr_scheduler": sched},
                save_interval=3,
                epoch_level=False,
                n_saved=1,
                save_final=True,
            )
            saver.attach(trainer)
            IterationLimitHandler(7).attach(trainer)
            trainer.run(data, max_epochs=10)
            self.assertEqual(trainer.state.iteration, 7)
            latest = find_latest_checkpoint(tmp)
            self.assertTrue(latest.endswith("final_iteration=7.pt"), latest)
            ckpt = torch.load(latest, map_location="cpu", weights_only=True)
            self.assertEqual(set(ckpt), {"model", "optimizer", "lr_scheduler", "trainer"})
            self.assertEqual(ckpt["trainer"]["iteration"], 7)

            net2 = torch.nn.Linear(3, 1)
            opt2 = torch.optim.Adam(net2.parameters(), lr=0.1)
            sched2 = torch.optim.lr_scheduler.CosineAnnealingLR(opt2, T_max=20)
            trainer2 = self._trainer(net2, opt2, sched2)
            seen = []
            loader = ResumeCheckpointLoader(tmp, {"model": net2, "optimizer": opt2, "lr_scheduler": sched2})
            loader.attach(trainer2)
            trainer2.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append(e.state.iteration))
            trainer2.add_event_handler(
                Events.STARTED, lambda e: self.assertEqual(sched2.last_epoch, sched.last_epoch)
            )
            IterationLimitHandler(12).attach(trainer2)
            trainer2.run(data, max_epochs=10)
            self.assertEqual(seen[0], 8)  # ITERATION_STARTED sees the count already incremented
            self.assertEqual(trainer2.state.iteration, 12)
            self.assertEqual(loader.loaded_path, latest)

    def test_disabled_and_missing(self):
        with tempfile.TemporaryDirectory() as tmp:
            engine = Engine(lambda e, b: None)
            ResumeCheckpointLoader(tmp, {"model": torch.nn.Linear(1, 1)}, enabled=False).attach(engine)
            with self.assertRaisesRegex(FileNotFoundError, "no checkpoint"):
                ResumeCheckpointLoader(tmp, {"model": torch.nn.Linear(1, 1)}).attach(engine)


if __name__ == "__main__":
    unittest.main()
