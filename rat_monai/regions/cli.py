# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""``rat-monai regions SCAN --out DIR``: PNG overlays of region maps on slices of a scan.

Lets a user see what SAM (or the offline partitioner) produces before training on it. The scan is read with
:func:`rat_monai.data.load_volume` (DICOM series folder or NIfTI) in real units; the maps are computed exactly as
the transforms compute them (same window, same settings, same cache), on ``vol[0, :, :, z]``, and shown in the
DICOM display orientation (``vol[0, :, :, z].T``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rat_monai.data import load_volume
from rat_monai.data.modality import short_modality
from rat_monai.visualize import save_png

from .cache import RegionCache, cached_partition
from .factory import get_partitioner
from .overlay import render_overlay

__all__ = ["add_arguments", "run", "pick_slices"]

logger = logging.getLogger(__name__)


def pick_slices(depth: int, slices: str | None, count: int = 5) -> list[int]:
    """Slice indices: ``"a,b,c"`` (negative counts from the end) or ``count`` evenly spaced interior slices."""
    if depth < 1:
        raise ValueError("the scan has no slices.")
    if slices:
        try:
            picked = [int(s) for s in slices.replace(" ", "").split(",") if s]
        except ValueError as e:
            raise ValueError(f"--slices must be comma-separated integers, got {slices!r}.") from e
        bad = [z for z in picked if not -depth <= z < depth]
        if bad:
            raise ValueError(f"--slices {bad} out of range: the scan has {depth} slices (0..{depth - 1}).")
        return sorted({z % depth for z in picked})
    if count < 1:
        raise ValueError(f"--num-slices must be >= 1, got {count}.")
    n = min(count, depth)
    return sorted({int(round(v)) for v in np.linspace(0, depth - 1, n + 2)[1:-1]} or {depth // 2})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scan", help="DICOM series folder or NIfTI file")
    parser.add_argument("--out", required=True, help="folder for the PNG overlays (created if needed)")
    parser.add_argument("--method", default="auto",
                        help="auto, sam, tissue, felzenszwalb, slic or intensity (default: auto)")  # fmt: skip
    parser.add_argument("--sam-checkpoint", default=None, help="SAM checkpoint (.pth) for --method sam/auto")
    parser.add_argument("--model-type", default="vit_b", help="SAM backbone of the checkpoint (default: vit_b)")
    parser.add_argument("--modality", default=None, help="ct or pet (default: from the scan's metadata)")
    parser.add_argument("--series-uid", default=None, help="SeriesInstanceUID when the folder holds several series")
    parser.add_argument("--slices", default=None, help="comma-separated slice indices (default: a few evenly spaced)")
    parser.add_argument("--num-slices", type=int, default=5, help="how many slices by default (default: 5)")
    parser.add_argument("--window", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                        help="fixed intensity window in real units (HU / SUV)")  # fmt: skip
    parser.add_argument("--points-per-side", type=int, default=None, help="SAM point grid per side (default: 32)")
    parser.add_argument("--skip-background", action="store_true", help="SAM: no prompts in air (faster)")
    parser.add_argument("--bf16", action="store_true", help="SAM: bfloat16 autocast (faster)")
    parser.add_argument("--device", default=None, help="SAM device, e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--cache-dir", default=None, help="region cache folder (default: no cache)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing PNGs in --out")
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        choices=("units", "tilt", "gaps"),
        metavar="CHECK",
        help="load the scan although a check fails; repeatable. CHECK: units (NIfTI values contradict their units), "
        "tilt (gantry-tilted series), gaps (missing slices)",
    )


def _modality(meta: dict[str, Any], given: str | None) -> str | None:
    return given or short_modality(meta.get("modality"), strict=False)


def run(args: argparse.Namespace) -> int:
    scan = Path(args.scan)
    if not scan.exists():
        raise FileNotFoundError(f"scan not found: {scan}")
    allow = set(getattr(args, "allow", None) or [])
    vol = load_volume(
        scan,
        series_uid=args.series_uid,
        modality=args.modality if scan.is_file() else None,
        allow_gaps="gaps" in allow,
        allow_tilt="tilt" in allow,
        check_units="units" not in allow,
    )
    meta = dict(getattr(vol, "meta", {}) or {})
    data = np.asarray(vol.detach().cpu().numpy() if hasattr(vol, "detach") else vol, dtype=np.float32)
    if data.ndim != 4 or data.shape[0] != 1:
        raise ValueError(f"{scan}: expected one channel [1, X, Y, Z], got shape {data.shape}.")
    zs = pick_slices(data.shape[-1], args.slices, args.num_slices)
    out = Path(args.out)
    targets = {z: out / f"regions_z{z:04d}.png" for z in zs}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not args.overwrite:
        raise FileExistsError(f"{len(existing)} PNG(s) already exist in {out} (e.g. {existing[0]}); pass --overwrite.")
    modality = _modality(meta, args.modality)
    kwargs: dict[str, Any] = {}
    if args.window:
        kwargs["window"] = tuple(args.window)
    method = str(args.method).lower()
    if method in ("sam", "auto") and (args.sam_checkpoint or method == "sam"):
        kwargs.update(model_type=args.model_type, skip_background=args.skip_background)
        if args.points_per_side:
            kwargs["points_per_side"] = args.points_per_side
        if args.bf16:
            kwargs["dtype"] = torch.bfloat16
        if args.device:
            kwargs["device"] = args.device
    part = get_partitioner(method, sam_checkpoint=args.sam_checkpoint, modality=modality, **kwargs)
    cache = RegionCache(args.cache_dir) if args.cache_dir else None
    slices = np.stack([data[0, :, :, z] for z in zs])
    desc = f"regions ({part.method})"
    labels, _ = cached_partition(part, slices, cache=cache, batch_size=2, progress=True, desc=desc)
    out.mkdir(parents=True, exist_ok=True)
    window = getattr(part, "window")
    summary = {"scan": str(scan), "method": part.method, "settings": part.cache_key(), "slices": {}}
    for i, z in enumerate(zs):
        picture = render_overlay(window(slices[i]).T, labels[i].T)
        save_png(picture, targets[z])
        summary["slices"][str(z)] = {"png": targets[z].name, "num_regions": int(labels[i].max()) + 1}
        logger.info("slice %d: %d regions -> %s", z, int(labels[i].max()) + 1, targets[z])
    (out / "regions.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"wrote {len(zs)} overlay(s) to {out} ({part.method}; regions per slice: "
          f"{', '.join(str(int(l.max()) + 1) for l in labels)})")  # fmt: skip
    return 0
