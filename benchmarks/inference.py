# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Benchmark: whole-scan restoration (``ScanRestorer``) on the real CT and PET series, seconds per slice per stage.

Each configuration runs ``ScanRestorer.from_bundle(...).run(...)`` in its own subprocess on the whole series (CT:
41 slices of 512x512 from ../shared/data/real/ct_crlm1004; PET: 267 slices of 128x128 from
../shared/data/real/pet_fdg_sts001), writing DICOM + NIfTI + PNG + report into a temporary folder, then times the
region stage again with the filled region cache (what a re-run pays). Recorded per stage (load, regions, network,
write): seconds and seconds per slice (wall and CPU), plus the peak resident memory of the process. The network is
the bundle's ``network_def`` (StackedRegionRAT, full depth) with UNTRAINED weights (seed 0) and ``--width`` (default
64, the paper's): the time does not depend on the weights. Region maps use the bundle's ``region_method`` ("auto":
the offline tissue partitioner without a SAM checkpoint; --region-method picks another).

Usage::

    python benchmarks/inference.py                            # ct and pet, width 64, results in benchmarks/results/
    python benchmarks/inference.py --configs pet --width 16 --batch-size 8 --threads 2
    python benchmarks/inference.py --width 64 --slices 8 --tag w64   # network cost at full width on 8 slices
    python benchmarks/inference.py --bf16 --tag bf16                 # bfloat16 autocast (the bundle's amp=true)
    python benchmarks/inference.py --layout nchw --tag nchw          # the reference NCHW path ("before" issue 14)
    python benchmarks/inference.py --configs ct --slices 8 --region-method felzenszwalb --tag ct_felzenszwalb
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RAT_MONAI_SHARED", ROOT.parent / "shared")) / "data" / "real"
CONFIGS = {
    # name: (bundle, series folder)
    "ct": ("rat_ct", SHARED / "ct_crlm1004" / "CRLM-CT-1004" / "image"),
    "pet": ("rat_pet", SHARED / "pet_fdg_sts001" / "STS_001" / "FDG_PET"),
}
STAGES = ("load", "regions", "network", "write")


def _subset(series: Path, count: int, dst: Path) -> Path:
    """Copy ``count`` contiguous slices from the middle of ``series`` (in position order) into ``dst``."""
    import shutil

    import numpy as np
    import pydicom

    files = sorted(series.glob("*.dcm"))
    heads = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    normal = np.cross(*np.asarray(heads[0].ImageOrientationPatient, float).reshape(2, 3))
    order = np.argsort([float(np.dot(normal, np.asarray(h.ImagePositionPatient, float))) for h in heads])
    start = max(0, (len(files) - count) // 2)
    dst.mkdir(parents=True)
    for i in order[start : start + count]:
        shutil.copy2(files[i], dst / files[i].name)
    return dst


def _child(
    name: str,
    width: int,
    batch_size: int,
    threads: int,
    device: str,
    slices: int,
    amp: bool = False,
    layout: str = "nhwc",
    region_method: str | None = None,
) -> dict:
    import warnings

    import torch

    torch.set_num_threads(threads)
    warnings.simplefilter("ignore")
    from rat_monai.inference import ScanRestorer

    bundle, series = CONFIGS[name]
    overrides = {"network_def#layout": layout} if layout != "nhwc" else {}  # nhwc: RAT's default, no config id
    if region_method:
        overrides["region_method"] = region_method
    restorer = ScanRestorer.from_bundle(
        ROOT / "bundles" / bundle,
        untrained=True,  # weights of the requested width (the time does not depend on them), not the shipped model.pt
        width=width,
        batch_size=batch_size,
        device=device,
        progress=False,
        amp=amp,
        **overrides,
    )
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as tmp:
        if slices > 0:
            series = _subset(series, slices, Path(tmp) / "input")
        first = restorer.run(series, Path(tmp) / "out", format="both")
        # a re-run finds every region map in the cache: time that stage alone (the network would cost the same again)
        import numpy as np

        volume = restorer.load(series)
        slices = np.ascontiguousarray(np.moveaxis(volume[0].numpy(), -1, 0))
        t0 = time.perf_counter()
        _, stats = restorer.compute_regions(slices, Path(tmp) / "out.regions_cache")
        rerun = {"regions_seconds": time.perf_counter() - t0, "hits": stats["hits"]}
    return {"first": first, "rerun": rerun, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _run_config(name: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--width",
        str(args.width),
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
        "--slices",
        str(args.slices),
        "--layout",
        args.layout,
    ] + (["--bf16"] if args.bf16 else []) + (["--region-method", args.region_method] if args.region_method else [])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"config": name, "error": proc.stderr.strip().splitlines()[-1:] or ["failed"], "wall_s": wall}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    first, rerun = res["first"], res["rerun"]
    n = first["num_slices"]
    row = {
        "config": name,
        "slices": n,
        "shape": first["shape"],
        "width": args.width,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "device": args.device,
        "region_method": first["regions"]["method"],
        "stages": {s: first["timings"]["stages"][s] for s in STAGES},
        "total_s": first["timings"]["total_seconds"],
        "rerun_regions_s": round(rerun["regions_seconds"], 3),
        "rerun_region_cache_hits": rerun["hits"],
        "peak_rss_mb": round(res["peak_rss_mb"], 1),
        "subprocess_wall_s": round(wall, 1),
    }
    return row


def _markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Whole-scan inference (ScanRestorer) on the real series (CPU)",
        "",
        f"Network: bundle `network_def` (StackedRegionRAT, full depth), UNTRAINED, width {meta['width']}; batch size "
        f"{meta['batch_size']}; {meta['threads']} threads; device {meta['device']}; slices: {meta['slices']}; "
        f"{meta.get('precision', 'fp32')}, layout {meta.get('layout', 'nchw (before issue 14)')}. "
        f"Regions: {meta.get('region_method', 'bundle default')} (the bundle default 'auto' is the offline "
        "partitioner without a SAM checkpoint: felzenszwalb before issue 13, tissue after). Output: DICOM series + "
        "NIfTI + PNG + report. One run per "
        "series in its own process, then its region stage again with the filled cache.",
        f"Machine: {meta['machine']}. {meta['note']}",
        "",
        "Per stage: wall seconds per slice / CPU seconds per slice (this process, all threads; less sensitive to the "
        "load from other jobs than wall time).",
        "",
        "| series | slices | load s/slice | regions s/slice | network s/slice | write s/slice | total wall s | "
        "regions re-run from cache s (hits) | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['config']} | error: {r['error']} | | | | | | | | |")
            continue
        st = r["stages"]
        shape = "x".join(str(s) for s in r["shape"][:2])
        per = [f"{st[k]['seconds_per_slice']:.3f} / {st[k]['cpu_seconds'] / max(r['slices'], 1):.3f}" for k in STAGES]
        lines.append(
            f"| {r['config']} ({shape}) | {r['slices']} | {' | '.join(per)} | {r['total_s']:.1f} | "
            f"{r['rerun_regions_s']:.2f} ({r['rerun_region_cache_hits']}) | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--slices", type=int, default=0, help="only this many middle slices (0: the whole series)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the network (bundle id amp)")
    parser.add_argument("--layout", default="nhwc", choices=["nhwc", "nchw"], help="RAT layout (nchw: reference)")
    parser.add_argument("--region-method", default=None, help="partitioner instead of the bundle's (e.g. felzenszwalb)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--tag", default="", help="suffix of the result files, e.g. 'w64' -> inference_w64.json")
    parser.add_argument("--note", default="")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(
            json.dumps(
                _child(
                    args.child, args.width, args.batch_size, args.threads, args.device, args.slices, args.bf16,
                    args.layout, args.region_method,
                ),
                default=str,
            )
        )
        return
    rows = []
    for name in args.configs:
        print(f"running {name} ...", flush=True)
        rows.append(_run_config(name, args))
        print(json.dumps(rows[-1]), flush=True)
    meta = {
        "width": args.width,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "device": args.device,
        "slices": args.slices or "all",
        "precision": "bf16 autocast" if args.bf16 else "fp32",
        "layout": args.layout,
        "region_method": args.region_method or "bundle default",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "note": args.note,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "inference" + (f"_{args.tag}" if args.tag else "")
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=4) + "\n")
    (out / f"{stem}.md").write_text(_markdown(rows, meta))
    print(_markdown(rows, meta))


if __name__ == "__main__":
    main()
