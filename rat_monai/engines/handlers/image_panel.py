# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Image panels for training and evaluation: LQ | restored | HQ | region map, one row per example, as PNG and in
TensorBoard."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.utils import optional_import

from rat_monai.engines.handlers.utils import input_and_regions, samples_of
from rat_monai.visualize import PET_PERCENTILES, grey_rgb, label_colors, save_png, to_2d

# TensorBoard is optional: only a handler given a log_dir and no summary_writer creates a writer
SummaryWriter, _ = optional_import("torch.utils.tensorboard", name="SummaryWriter")

__all__ = ["ImagePanelHandler", "render_panel"]

_SEP = 2  # pixels of dark grey between tiles


def render_panel(
    rows: Sequence[Sequence[np.ndarray | torch.Tensor]], window: tuple[float, float] | None = None
) -> np.ndarray:
    """Render rows of ``(lq, restored, hq[, regions])`` slices into one RGB image.

    The three intensity images of a row share one grey window (by default from the HQ slice: its minimum to its 99.5th
    percentile), so differences in noise are visible; the optional fourth tile is the region map in hashed colours.
    Tiles of different sizes are padded to the largest.

    Args:
        rows: one sequence per example: ``lq, restored, hq`` and optionally ``regions``; each ``[H, W]`` or
            ``[1, H, W]`` (tensor or array).
        window: fixed ``(low, high)`` grey window for all rows, in the images' units. Defaults to per-row from HQ.

    Returns:
        uint8 ``[H_total, W_total, 3]``.
    """
    if len(rows) == 0:
        raise ValueError("render_panel needs at least one row of (lq, restored, hq[, regions]).")
    tiles_per_row = []
    for row in rows:
        if len(row) not in (3, 4):
            raise ValueError(f"each panel row is (lq, restored, hq[, regions]), got {len(row)} items.")
        lq, pred, hq = (to_2d(t) for t in row[:3])
        lo, hi = window if window is not None else (float(hq.min()), float(np.percentile(hq, PET_PERCENTILES[1])))
        if hi <= lo:
            hi = lo + 1.0
        tiles = [grey_rgb(lq, lo, hi), grey_rgb(pred, lo, hi), grey_rgb(hq, lo, hi)]
        if len(row) == 4:
            tiles.append(label_colors(to_2d(row[3])))
        tiles_per_row.append(tiles)
    th = max(t.shape[0] for tiles in tiles_per_row for t in tiles)
    tw = max(t.shape[1] for tiles in tiles_per_row for t in tiles)
    ncol = max(len(tiles) for tiles in tiles_per_row)
    out = np.full((len(rows) * (th + _SEP) - _SEP, ncol * (tw + _SEP) - _SEP, 3), 40, dtype=np.uint8)
    for r, tiles in enumerate(tiles_per_row):
        for c, tile in enumerate(tiles):
            y, x = r * (th + _SEP), c * (tw + _SEP)
            out[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    return out


class ImagePanelHandler:
    """Save LQ | restored | HQ | region map panels as PNG and to TensorBoard.

    Two ways to attach it:

    - in ``validate#handlers`` / an evaluation run (``evaluator=None``): it collects up to ``max_images`` examples
      spread evenly over the run (by iteration) and writes one panel when the run completes, with step =
      the engine's epoch;
    - in ``train#handlers`` with ``evaluator=@validate#evaluator``: it collects from the evaluator and writes after
      each validation with step = the TRAINER's iteration, and also logs the evaluator's metrics to TensorBoard at
      that step (MONAI's evaluator only knows the trainer's epoch, and validation here runs every N iterations).

    Args:
        output_dir: folder for the PNG files (None: no PNG).
        log_dir: TensorBoard log folder (a ``SummaryWriter`` is created lazily); ignored with ``summary_writer``.
        summary_writer: an existing ``SummaryWriter``. Defaults to None.
        evaluator: the engine to collect from when attached to a trainer. Defaults to None (collect from the engine
            this handler is attached to).
        max_images: examples per panel. Defaults to 4.
        tag: TensorBoard tag and PNG file prefix. Defaults to ``"panel"``.
        log_metrics: with ``evaluator``, also write the evaluator's scalar metrics to TensorBoard. Defaults to True.
        image_key, label_key, pred_key, region_key: keys in the engine output / batch. The region map is taken
            from the input's last channel when the input has one channel more than the prediction (stacked), else
            from ``region_key``.
    """

    def __init__(
        self,
        output_dir: str | Path | None = None,
        log_dir: str | Path | None = None,
        summary_writer: Any = None,
        evaluator: Engine | None = None,
        max_images: int = 4,
        tag: str = "panel",
        log_metrics: bool = True,
        image_key: str = "image",
        label_key: str = "label",
        pred_key: str = "pred",
        region_key: str = "regions",
    ) -> None:
        if max_images < 1:
            raise ValueError(f"max_images must be >= 1, got {max_images}.")
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.log_dir = log_dir
        self._writer = summary_writer
        self.evaluator = evaluator
        self.max_images = max_images
        self.tag = tag
        self.log_metrics = log_metrics
        self.image_key, self.label_key, self.pred_key, self.region_key = image_key, label_key, pred_key, region_key
        self.logger = logging.getLogger(__name__)
        self._owner: Engine | None = None
        self._rows: list[tuple] = []
        self._wanted: set[int] = set()
        self._count = 0
        self.last_png: Path | None = None

    @property
    def writer(self) -> Any:
        if self._writer is None and self.log_dir is not None:
            self._writer = SummaryWriter(log_dir=str(self.log_dir))
        return self._writer

    def attach(self, engine: Engine) -> None:
        source = self.evaluator if self.evaluator is not None else engine
        self._owner = engine
        source.add_event_handler(Events.STARTED, self._started)
        source.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        source.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, engine: Engine) -> None:
        self._rows = []
        self._count = 0
        n = engine.state.epoch_length or self.max_images
        self._wanted = {int(i) for i in np.round(np.linspace(1, n, min(n, self.max_images)))}

    def _collect(self, engine: Engine) -> None:
        # count iterations of this run ourselves: MONAI's evaluator restarts its iteration count at every run but
        # sets its epoch to the trainer's, so state.iteration/epoch cannot locate the iteration within the run
        self._count += 1
        if self._count not in self._wanted:
            return
        outputs, batches = samples_of(engine.state.output), samples_of(engine.state.batch)
        for i, out in enumerate(outputs[:1]):  # one example per chosen iteration: spread over the run
            if self.pred_key not in out or self.image_key not in out:
                continue
            batch = batches[i] if i < len(batches) else None
            lq, regions = input_and_regions(out, batch, self.image_key, self.pred_key, self.region_key)
            hq = out.get(self.label_key)
            if hq is None and batch is not None:
                hq = batch.get(self.label_key)
            if hq is None or hq.shape[0] != out[self.pred_key].shape[0]:
                hq = out[self.pred_key] * float("nan")  # no target (inference): blank tile
            row = [lq[:1], out[self.pred_key][:1], hq[:1]] + ([regions] if regions is not None else [])
            self._rows.append(tuple(r.detach().cpu() for r in row))

    def _completed(self, engine: Engine) -> None:
        step = self._owner.state.iteration if self.evaluator is not None else engine.state.epoch
        writer = self.writer
        if self.evaluator is not None and self.log_metrics and writer is not None:
            for name, value in engine.state.metrics.items():
                if isinstance(value, (int, float)) or (isinstance(value, torch.Tensor) and value.numel() == 1):
                    writer.add_scalar(name, float(value), step)
        if not self._rows:
            return
        rows = [tuple(torch.nan_to_num(r).numpy() for r in row) for row in self._rows[: self.max_images]]
        panel = render_panel(rows)
        if self.output_dir is not None:
            self.last_png = save_png(panel, self.output_dir / f"{self.tag}_{step:07d}.png")
            self.logger.info(f"saved image panel (LQ | restored | HQ | regions): {self.last_png}")
        if writer is not None:
            writer.add_image(self.tag, panel, step, dataformats="HWC")
            writer.flush()
