# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Ignite handlers for the RAT bundles: an iteration budget, image panels and restoration metrics as CSV (the
checkpoint saver and resume loader live in ``rat_monai.engines.checkpoints`` and are re-exported here).

All three follow MONAI's handler protocol (``attach(engine)``), so bundle configs list them in ``train#handlers`` or
``validate#handlers`` like MONAI's own handlers.
"""

from __future__ import annotations

import csv
import logging
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.data import decollate_batch
from monai.metrics import PSNRMetric, SSIMMetric
from monai.utils import IgniteInfo, min_version, optional_import

from rat_monai.engines.checkpoints import ResumableCheckpointSaver, ResumeCheckpointLoader, make_saves_atomic
from rat_monai.engines.panels import render_panel, save_png

if TYPE_CHECKING:
    from ignite.engine import Engine, Events
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")
    Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")

__all__ = [
    "ImagePanelHandler",
    "IterationLimitHandler",
    "RestorationMetricsWriter",
    "ResumableCheckpointSaver",
    "ResumeCheckpointLoader",
    "make_saves_atomic",
]

def _samples(data: Any) -> list[dict]:
    """``engine.state.output`` / ``engine.state.batch`` as a list of per-sample dicts (decollated or not)."""
    if data is None:
        return []
    if isinstance(data, Mapping):
        return list(decollate_batch(dict(data), detach=True))
    if isinstance(data, Sequence):
        return [d for d in data if isinstance(d, Mapping)]
    return []


def _split_input(sample: Mapping, batch_sample: Mapping | None, image_key: str, pred_key: str, region_key: str):
    """Return (lq, regions or None) from a sample whose image may carry the region map as its last channel."""
    image = sample[image_key]
    pred = sample.get(pred_key)
    if pred is not None and image.shape[0] == pred.shape[0] + 1:  # stacked by PrepareBatchStackRegions
        return image[:-1], image[-1:]
    regions = None
    for src in (sample, batch_sample or {}):
        if region_key in src:
            regions = src[region_key]
            break
    return image, regions


def _meta_value(batch_sample: Mapping | None, image_key: str, names: Sequence[str], default: Any = None) -> Any:
    """First of ``names`` found in the sample dict itself or in its image's MetaTensor meta."""
    if not batch_sample:
        return default
    meta = getattr(batch_sample.get(image_key), "meta", None) or {}
    for name in names:
        for src in (batch_sample, meta, batch_sample.get(f"{image_key}_meta_dict") or {}):
            if name in src and src[name] is not None:
                value = src[name]
                if isinstance(value, torch.Tensor):
                    value = value.item() if value.numel() == 1 else value.tolist()
                return value
    return default


class IterationLimitHandler:
    """Stop training after ``max_iterations`` iterations in total (counting iterations restored by a resume).

    MONAI's trainers count epochs; the paper's budget is in iterations (200K at batch 8). The bundles therefore set
    ``max_epochs`` to enough epochs for the budget and attach this handler, which calls ``engine.terminate()`` once
    ``engine.state.iteration >= max_iterations`` (Ignite then fires ``COMPLETED``, so final checkpoints are written).
    A lower ``max_epochs`` override (e.g. ``--train#trainer#max_epochs 2``, what MONAI Label sets) stops earlier.

    Args:
        max_iterations: total iteration budget, >= 1.
    """

    def __init__(self, max_iterations: int) -> None:
        if int(max_iterations) < 1:
            raise ValueError(f"max_iterations must be >= 1, got {max_iterations}.")
        self.max_iterations = int(max_iterations)
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if engine.state.iteration >= self.max_iterations and not engine.should_terminate:
            self.logger.info(f"reached the iteration budget ({engine.state.iteration} >= {self.max_iterations}): stop.")
            engine.terminate()


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
            from torch.utils.tensorboard import SummaryWriter

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
        outputs, batches = _samples(engine.state.output), _samples(engine.state.batch)
        for i, out in enumerate(outputs[:1]):  # one example per chosen iteration: spread over the run
            if self.pred_key not in out or self.image_key not in out:
                continue
            batch = batches[i] if i < len(batches) else None
            lq, regions = _split_input(out, batch, self.image_key, self.pred_key, self.region_key)
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


class RestorationMetricsWriter:
    """Per-slice and per-volume PSNR / SSIM as CSV, plus the paper's mean ± std table, for an evaluator run.

    On every iteration it scores each sample's prediction AND its input (the identity baseline) against the label
    with MONAI's ``PSNRMetric`` / ``SSIMMetric`` (float data, fixed ``data_range``). When the run completes it writes
    into ``output_dir``:

    - ``metrics_per_slice.csv``: volume, slice_index, psnr, ssim, psnr_input, ssim_input (one row per slice);
    - ``metrics_per_volume.csv``: volume, slices, psnr (from the volume's mean squared error over its slices),
      ssim (mean over its slices), and the same for the input;
    - ``metrics_summary.csv`` and ``metrics_summary.md``: mean ± std over slices and over volumes.

    The volume of a slice is the sample's ``source_image`` (PairedSliceDataset) or ``filename_or_obj`` meta entry.

    Args:
        output_dir: folder for the files.
        data_range: value range of the data for PSNR / SSIM, in the units the network sees (normalised).
            Defaults to 1.0.
        spatial_dims: 2 for slices. Defaults to 2.
        image_key, label_key, pred_key: keys in the engine output. Defaults to image / label / pred.
    """

    def __init__(
        self,
        output_dir: str | Path,
        data_range: float = 1.0,
        spatial_dims: int = 2,
        image_key: str = "image",
        label_key: str = "label",
        pred_key: str = "pred",
    ) -> None:
        if data_range <= 0:
            raise ValueError(f"data_range must be > 0, got {data_range}.")
        self.output_dir = Path(output_dir)
        self.data_range = float(data_range)
        self.spatial_dims = spatial_dims
        self.image_key, self.label_key, self.pred_key = image_key, label_key, pred_key
        self.psnr = PSNRMetric(max_val=self.data_range, reduction="none")
        self.ssim = SSIMMetric(spatial_dims=spatial_dims, data_range=self.data_range, reduction="none")
        self.rows: list[dict] = []
        self._mse: dict[str, list[float]] = {}
        self.summary: dict[str, dict[str, tuple[float, float]]] = {}
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, engine: Engine) -> None:
        self.rows, self._mse = [], {}

    def _score(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
        x, y = x[None].float(), y[None].float()
        mse = float(torch.mean((x - y) ** 2))
        return float(self.psnr(x, y).mean()), float(self.ssim(x, y).mean()), mse

    def _collect(self, engine: Engine) -> None:
        outputs, batches = _samples(engine.state.output), _samples(engine.state.batch)
        for i, out in enumerate(outputs):
            batch = batches[i] if i < len(batches) else None
            label = out.get(self.label_key)
            if label is None or self.pred_key not in out:
                continue
            pred = torch.as_tensor(out[self.pred_key]).detach().cpu()
            label = torch.as_tensor(label).detach().cpu()
            lq, _ = _split_input(out, batch, self.image_key, self.pred_key, "regions")
            lq = torch.as_tensor(lq).detach().cpu()
            volume = str(_meta_value(batch, self.image_key, ("source_image", "filename_or_obj"), "unknown"))
            slice_index = _meta_value(batch, self.image_key, ("slice_index",), len(self.rows))
            psnr, ssim, mse = self._score(pred, label)
            psnr_in, ssim_in, mse_in = self._score(lq, label)
            self.rows.append(
                OrderedDict(
                    volume=volume,
                    slice_index=int(slice_index),
                    psnr=psnr,
                    ssim=ssim,
                    psnr_input=psnr_in,
                    ssim_input=ssim_in,
                    _mse=mse,
                    _mse_input=mse_in,
                )
            )

    def _psnr_from_mse(self, mse: float) -> float:
        return float("inf") if mse <= 0 else 10.0 * math.log10(self.data_range**2 / mse)

    def volume_rows(self) -> list[dict]:
        """Per-volume aggregates of the collected slices (PSNR from the volume's mean squared error)."""
        volumes: dict[str, list[dict]] = OrderedDict()
        for r in self.rows:
            volumes.setdefault(r["volume"], []).append(r)
        out = []
        for name, rows in volumes.items():
            out.append(
                OrderedDict(
                    volume=name,
                    slices=len(rows),
                    psnr=self._psnr_from_mse(float(np.mean([r["_mse"] for r in rows]))),
                    ssim=float(np.mean([r["ssim"] for r in rows])),
                    psnr_input=self._psnr_from_mse(float(np.mean([r["_mse_input"] for r in rows]))),
                    ssim_input=float(np.mean([r["ssim_input"] for r in rows])),
                )
            )
        return out

    @staticmethod
    def _write_csv(path: Path, rows: list[dict]) -> None:
        fields = [k for k in rows[0] if not k.startswith("_")]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            for r in rows:
                writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items() if k in fields})

    def _completed(self, engine: Engine) -> None:
        if not self.rows:
            self.logger.warning("RestorationMetricsWriter: the run produced no scored samples; no CSV written.")
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        volumes = self.volume_rows()
        self._write_csv(self.output_dir / "metrics_per_slice.csv", self.rows)
        self._write_csv(self.output_dir / "metrics_per_volume.csv", volumes)
        self.summary = {}
        for level, rows in (("slice", self.rows), ("volume", volumes)):
            for metric in ("psnr", "ssim", "psnr_input", "ssim_input"):
                vals = np.asarray([r[metric] for r in rows], dtype=np.float64)
                self.summary.setdefault(level, {})[metric] = (float(vals.mean()), float(vals.std()))
        with open(self.output_dir / "metrics_summary.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["level", "n", "metric", "mean", "std"])
            for level, metrics in self.summary.items():
                n = len(self.rows) if level == "slice" else len(volumes)
                for metric, (mean, std) in metrics.items():
                    writer.writerow([level, n, metric, f"{mean:.6f}", f"{std:.6f}"])
        lines = [
            "| over | n | PSNR (dB) | SSIM | input PSNR (dB) | input SSIM |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for level, m in self.summary.items():
            n = len(self.rows) if level == "slice" else len(volumes)
            lines.append(
                f"| {level}s | {n} | {m['psnr'][0]:.4f} ± {m['psnr'][1]:.4f} | {m['ssim'][0]:.4f} ± {m['ssim'][1]:.4f}"
                f" | {m['psnr_input'][0]:.4f} ± {m['psnr_input'][1]:.4f}"
                f" | {m['ssim_input'][0]:.4f} ± {m['ssim_input'][1]:.4f} |"
            )
        table = "\n".join(lines) + "\n"
        (self.output_dir / "metrics_summary.md").write_text(
            f"Restoration metrics (data_range={self.data_range}, normalised units)\n\n" + table
        )
        self.logger.info(f"evaluation metrics (mean ± std) written to {self.output_dir}:\n{table}")
