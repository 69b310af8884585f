# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Score methods on the held-out patients of a datalist: per-slice and per-volume metrics, summaries, bootstrap.

Protocol (:func:`evaluate`):

1. classical denoisers are tuned on (up to ``tune_slices`` evenly spaced slices of) the VALIDATION split, by the mean
   slice PSNR with the evaluation's own data range;
2. every method restores every kept slice of every TEST volume (air-only slices are dropped exactly as training does,
   :func:`rat_monai.data.slicing.keep_slices`); the region map used by the region-wise PSNR is the one the reference
   network (and its focal region loss) sees, from its bundle's partitioner, computed once per volume on the low-dose
   slices in real units (or ``region_method`` when the reference is not a region network);
3. mean ± std per method over slices and over volumes, and a seeded paired bootstrap 95 % interval of each method's
   difference against the reference method (method minus reference).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from rat_monai.visualize import CT_WIDE_WINDOW

from .methods import IdentityMethod, Method, NetworkMethod, classical_method, stabilizer_for, tune
from .metrics import metric_settings, slice_metrics, volume_metrics
from .statistics import mean_std, paired_bootstrap

__all__ = ["load_split", "evaluate", "volume_data_range", "METRICS"]

logger = logging.getLogger(__name__)

#: metric name -> (label, higher is better); PET adds the two bias metrics
METRICS: dict[str, tuple[str, bool]] = {
    "psnr": ("PSNR (dB)", True),
    "ssim": ("SSIM", True),
    "region_psnr": ("region PSNR (dB)", True),
    "suvmax_bias_pct": ("SUVmax bias (%)", False),
    "suvmean_bias_pct": ("SUVmean bias (%)", False),
}


def load_split(
    datalist: str | os.PathLike, split: str, modality: str, max_volumes: int | None = None
) -> list[dict[str, Any]]:
    """The volumes of one datalist split in real units: ``[{"name", "low" [Z, H, W], "full", "slices"}]``.

    Only the slices training would keep (more than 1 % of the full-dose pixels above the air threshold) are returned;
    ``slices`` holds their indices in the volume.

    Raises:
        ValueError: the split is empty or missing, or a pair differs in shape.
    """
    from rat_monai.data import load_datalist, load_volume
    from rat_monai.data.slicing import DEFAULT_AIR_THRESHOLD, keep_slices

    try:
        splits = json.loads(Path(datalist).read_text(encoding="utf-8"))
    except OSError as e:
        raise FileNotFoundError(f"cannot read the datalist {datalist}: {e}") from e
    except ValueError as e:
        raise ValueError(f"datalist {datalist} is not valid JSON: {e}") from e
    if not isinstance(splits, dict) or not splits.get(split):
        found = sorted(k for k, v in splits.items() if isinstance(v, list)) if isinstance(splits, dict) else []
        raise ValueError(
            f"datalist {datalist} has no {split!r} entries (lists found: {found}); the evaluation needs held-out "
            "patients in the test split and tuning patients in the validation split."
        )
    items = load_datalist(datalist, split)
    if max_volumes is not None:
        items = items[: int(max_volumes)]
    out = []
    for item in items:
        units = item.get("units", "auto")
        vols = {}
        for key in ("image", "label"):
            v = load_volume(item[key], units=units if units in ("suv", "hu") else "auto", modality=modality)
            vols[key] = v[0].detach().cpu().numpy().astype(np.float32)
        if vols["image"].shape != vols["label"].shape:
            raise ValueError(f"{item['image']} and {item['label']} differ in shape; resample one onto the other.")
        keep = keep_slices(vols["label"][None], DEFAULT_AIR_THRESHOLD[modality])
        name = str(item.get("subject") or Path(str(item["image"])).name)
        out.append(
            {
                "name": name,
                "low": np.ascontiguousarray(np.moveaxis(vols["image"], -1, 0)[keep]),
                "full": np.ascontiguousarray(np.moveaxis(vols["label"], -1, 0)[keep]),
                "slices": [int(k) for k in keep],
            }
        )
    return out


def volume_data_range(full: np.ndarray, modality: str, ct_window: Sequence[float] = CT_WIDE_WINDOW) -> float:
    """The PSNR/SSIM data range of one test volume: the CT window's width, or the full-dose SUVmax for PET."""
    if modality == "ct":
        return float(ct_window[1]) - float(ct_window[0])
    dr = float(np.max(full))
    if dr <= 0:
        raise ValueError("a PET test volume has no positive full-dose value; cannot set the SUV data range.")
    return dr


def _tune_classical(
    denoisers: Sequence[str],
    val: list[dict],
    modality: str,
    ct_window: Sequence[float],
    tune_slices: int,
) -> tuple[list[Method], dict]:
    """Tuned classical methods and the tuning record."""
    from .metrics import prepare_pair, psnr

    if not denoisers:
        return [], {}
    low = np.concatenate([v["low"] for v in val])
    full = np.concatenate([v["full"] for v in val])
    ranges = np.concatenate([[volume_data_range(v["full"], modality, ct_window)] * len(v["low"]) for v in val])
    pick = np.unique(np.linspace(0, len(low) - 1, min(int(tune_slices), len(low))).round().astype(int))
    low, full, ranges = low[pick], full[pick], ranges[pick]

    def score(restored: np.ndarray, ref: np.ndarray) -> float:
        vals = [psnr(*prepare_pair(restored[k], ref[k], modality, ct_window), ranges[k]) for k in range(len(ref))]
        return float(np.mean(vals))

    methods, record = [], {}
    for d in denoisers:
        stabilize = stabilizer_for(d, modality)
        best, scores = tune(d, low, full, score, stabilize=stabilize)
        methods.append(classical_method(d, best, stabilize=stabilize))
        record[d] = {"best": best, "validation_slices": int(len(low)), "mean_psnr_by_strength": scores}
        if stabilize:
            record[d]["stabilize"] = stabilize
    return methods, record


def _metric_regions(reference: Method | None, modality: str, region_method: str | None) -> Any:
    """The partitioner of the region-wise PSNR: the reference network's, else ``region_method`` (default auto)."""
    if isinstance(reference, NetworkMethod) and reference.restorer.use_regions and region_method is None:
        return reference.restorer.partitioner
    from rat_monai.regions import get_partitioner

    return get_partitioner(region_method or "auto", modality=modality)


def evaluate(
    datalist: str | os.PathLike,
    modality: str,
    networks: Sequence[NetworkMethod] = (),
    classical: Sequence[str] = ("gaussian", "nlm"),
    include_input: bool = True,
    reference: str | None = None,
    test_split: str = "test",
    tune_split: str = "validation",
    tune_slices: int = 24,
    ct_window: Sequence[float] = CT_WIDE_WINDOW,
    region_method: str | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    max_volumes: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the protocol of the module docstring; returns the result dict written by :mod:`.report`.

    Args:
        datalist: Decathlon-style datalist with ``test_split`` (held-out patients) and ``tune_split``.
        modality: ``"pet"`` or ``"ct"``.
        networks: built :class:`NetworkMethod` s (names must be unique).
        classical: classical denoisers to tune and run (``"gaussian"``, ``"nlm"``, ``"bm3d"``).
        include_input: add the low-dose input row ``"LQ"``. Defaults to True.
        reference: the method the differences are taken against. Defaults to ``"RAT"`` when present, else the first
            network, else ``"LQ"``.
        tune_slices: at most this many evenly spaced validation slices for tuning. Defaults to 24.
        ct_window: HU window of the CT metrics. Defaults to [-1000, 1000].
        region_method: partitioner of the region-wise PSNR; None takes the reference network's. Defaults to None.
        n_boot, seed: bootstrap resamples and seed. Defaults to 2000 and 0.
        max_volumes: evaluate only the first volumes of each split (quick looks). Defaults to None (all).
        progress: tqdm bar over slices. Defaults to True.
    """
    modality = str(modality).lower()
    if modality not in ("pet", "ct"):
        raise ValueError(f"modality must be 'pet' or 'ct', got {modality!r}.")
    for net in networks:
        if net.modality != modality:
            raise ValueError(f"network {net.name!r} ({net.bundle}) is a {net.modality} bundle, not {modality}.")
    tuned, tuning = [], {}
    if classical:
        val = load_split(datalist, tune_split, modality, max_volumes)
        tuned, tuning = _tune_classical(classical, val, modality, ct_window, tune_slices)
    methods: list[Method] = ([IdentityMethod("LQ")] if include_input else []) + tuned + list(networks)
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be unique, got {names}.")
    if not methods:
        raise ValueError("no method to evaluate: give networks, classical denoisers or keep the LQ input row.")
    if reference is None:
        reference = "RAT" if "RAT" in names else (networks[0].name if networks else names[0])
    if reference not in names:
        raise ValueError(f"reference method {reference!r} is not among the methods {names}.")
    ref_method = methods[names.index(reference)]
    partitioner = _metric_regions(ref_method, modality, region_method)
    test = load_split(datalist, test_split, modality, max_volumes)
    rows: dict[str, list[dict]] = {m.name: [] for m in methods}
    vol_rows: dict[str, list[dict]] = {m.name: [] for m in methods}
    total = sum(len(v["low"]) for v in test) * len(methods)
    with tqdm(total=total, desc="evaluate", unit="slice", disable=not progress) as bar:
        for vol in test:
            low, full = vol["low"], vol["full"]
            dr = volume_data_range(full, modality, ct_window)
            regions = np.asarray(partitioner(low), np.int32)
            for m in methods:
                if isinstance(m, NetworkMethod):
                    same = m.restorer.use_regions and m.restorer.partitioner.cache_key() == partitioner.cache_key()
                    pred = m.restore(low, regions if same else m.regions(low))
                else:
                    pred = m(low)
                srows = []
                for k in range(len(low)):
                    s = slice_metrics(pred[k], full[k], regions[k], modality, dr, ct_window)
                    srows.append({"volume": vol["name"], "slice_index": vol["slices"][k], **s})
                    bar.update(1)
                rows[m.name].extend(srows)
                vol_rows[m.name].append(
                    {"volume": vol["name"], "slices": len(low), **volume_metrics(pred, full, modality, dr, srows)}
                )
    metrics = [k for k in METRICS if k in rows[names[0]][0]] if rows[names[0]] else []
    summary: dict[str, Any] = {}
    for level, table in (("slice", rows), ("volume", vol_rows)):
        summary[level] = {}
        for name in names:
            entry = {}
            for k in metrics:
                mean, std, n = mean_std([r[k] for r in table[name]])
                entry[k] = {"mean": mean, "std": std, "n": n}
                if name != reference:
                    entry[k]["vs_reference"] = paired_bootstrap(
                        [r[k] for r in table[name]], [r[k] for r in table[reference]], n_boot=n_boot, seed=seed
                    )
            summary[level][name] = entry
    return {
        "modality": modality,
        "datalist": str(datalist),
        "test_split": test_split,
        "tune_split": tune_split,
        "test_volumes": [v["name"] for v in test],
        "test_slices": int(sum(len(v["low"]) for v in test)),
        "reference": reference,
        "metric_settings": {
            **metric_settings(modality, ct_window),
            "region_map": {"method": getattr(partitioner, "method", None), **partitioner.cache_key()},
            "region_psnr_rule": "mean over the regions (inside the body) of the per-region PSNR",
        },
        "bootstrap": {"n_boot": int(n_boot), "confidence": 0.95, "seed": int(seed), "difference": "method - reference"},
        "metrics": metrics,
        "methods": [m.describe() for m in methods],
        "tuning": tuning,
        "summary": summary,
        "per_slice": rows,
        "per_volume": vol_rows,
    }
