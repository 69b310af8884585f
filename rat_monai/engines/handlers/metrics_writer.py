# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Restoration metrics of an evaluator run as CSV and Markdown: per slice, per volume, and the paper's mean ± std
table."""

from __future__ import annotations

import csv
import logging
import math
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.metrics import PSNRMetric, SSIMMetric

from rat_monai.engines.handlers.utils import input_and_regions, meta_value, samples_of

__all__ = ["RestorationMetricsWriter"]


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
        window: ``(low, high)`` in the same units: both images are clipped to it before scoring (CT: the
            evaluation's HU window, see :func:`rat_monai.engines.metric_window`). Defaults to None (no clipping).
    """

    def __init__(
        self,
        output_dir: str | Path,
        data_range: float = 1.0,
        spatial_dims: int = 2,
        image_key: str = "image",
        label_key: str = "label",
        pred_key: str = "pred",
        window: Sequence[float] | None = None,
    ) -> None:
        if data_range <= 0:
            raise ValueError(f"data_range must be > 0, got {data_range}.")
        self.output_dir = Path(output_dir)
        self.data_range = float(data_range)
        self.window = None if window is None else (float(window[0]), float(window[1]))
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
        if self.window is not None:
            x, y = x.clamp(*self.window), y.clamp(*self.window)
        mse = float(torch.mean((x - y) ** 2))
        return float(self.psnr(x, y).mean()), float(self.ssim(x, y).mean()), mse

    def _collect(self, engine: Engine) -> None:
        outputs, batches = samples_of(engine.state.output), samples_of(engine.state.batch)
        for i, out in enumerate(outputs):
            batch = batches[i] if i < len(batches) else None
            label = out.get(self.label_key)
            if label is None or self.pred_key not in out:
                continue
            pred = torch.as_tensor(out[self.pred_key]).detach().cpu()
            label = torch.as_tensor(label).detach().cpu()
            lq, _ = input_and_regions(out, batch, self.image_key, self.pred_key, "regions")
            lq = torch.as_tensor(lq).detach().cpu()
            volume = str(meta_value(batch, self.image_key, ("source_image", "filename_or_obj"), "unknown"))
            slice_index = meta_value(batch, self.image_key, ("slice_index",), len(self.rows))
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
