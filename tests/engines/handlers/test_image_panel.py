# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import numpy as np
from ignite.engine import Engine, Events
from PIL import Image

from rat_monai.engines import ImagePanelHandler, render_panel
from rat_monai.visualize import label_colors
from tests.engines.handlers._engine_outputs import fake_evaluator, make_samples


class TestPanels(unittest.TestCase):
    def test_render(self):
        a = np.zeros((8, 6), np.float32)
        panel = render_panel([(a, a + 1, a + 2, np.arange(48).reshape(8, 6)), (a[:4], a[:4], a[:4])])
        self.assertEqual(panel.dtype, np.uint8)
        self.assertEqual(panel.shape, (8 * 2 + 2, 6 * 4 + 3 * 2, 3))
        tile = panel[:8, 3 * (6 + 2) : 3 * (6 + 2) + 6]  # fourth tile of the first row: the region map's colours
        np.testing.assert_array_equal(tile, label_colors(np.arange(48).reshape(8, 6)))

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
        samples, batches = make_samples(n=6)
        with tempfile.TemporaryDirectory() as tmp:
            # stand-alone on an evaluator: step = epoch, 3 examples spread over the run
            evaluator = fake_evaluator(samples, batches)
            handler = ImagePanelHandler(output_dir=tmp, max_images=3, tag="test")
            handler.attach(evaluator)
            evaluator.run(range(6))
            self.assertEqual(handler.last_png.name, "test_0000001.png")
            img = np.asarray(Image.open(handler.last_png))
            self.assertEqual(img.shape, (3 * 16 + 2 * 2, 4 * 16 + 3 * 2, 3))
            # attached to a trainer that runs the evaluator: step = trainer iteration, metrics to TensorBoard
            evaluator = fake_evaluator(samples, batches)
            evaluator.add_event_handler(Events.COMPLETED, lambda e: e.state.metrics.update(val_psnr=30.0))
            trainer = Engine(lambda e, b: None)
            trainer.add_event_handler(Events.ITERATION_COMPLETED(every=2), lambda e: evaluator.run(range(6)))
            handler = ImagePanelHandler(output_dir=tmp, log_dir=Path(tmp) / "tb", evaluator=evaluator, tag="val")
            handler.attach(trainer)
            trainer.run(range(4), max_epochs=1)
            self.assertTrue((Path(tmp) / "val_0000002.png").is_file())
            self.assertTrue((Path(tmp) / "val_0000004.png").is_file())
            self.assertTrue(any((Path(tmp) / "tb").iterdir()))

if __name__ == "__main__":
    unittest.main()
