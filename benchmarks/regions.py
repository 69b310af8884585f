# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Benchmark: SAM region maps per 512x512 slice, stock ``SamAutomaticMaskGenerator`` vs ``SamRegionGenerator``.

Times the image encoder, the mask decoder (prompt encoder + decoder + mask upsampling + filtering) and the
partition step, at 16x16 and 32x32 point grids, for the stock generator, ours with the defaults, and ours with each
speed-up (``skip_background``, bf16 autocast, both). Each configuration runs in its own subprocess on one slice; the
peak resident memory of that process is recorded. Partitions are compared with the adjusted Rand index against ours
with the defaults at the same grid (and ours-default against stock: identical is expected).

Without a SAM checkpoint (``--checkpoint``) the ViT-B weights are random (seed 0, the same in every subprocess).
Random SAM masks are noise (stability score 0 everywhere), so the stability threshold is set to 0 and the predicted-IoU
threshold to a level that keeps a few hundred masks: timings are meaningful, the partitions are not anatomical.

Usage::

    python benchmarks/regions.py                       # all configurations, results in benchmarks/results/
    python benchmarks/regions.py --configs stock-16 ours-16 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
from _memory import peak_rss_mib  # noqa: E402
CONFIGS = {
    # name: (kind, points_per_side, skip_background, bf16)
    "stock-16": ("stock", 16, False, False),
    "ours-16": ("ours", 16, False, False),
    "ours-16-skipbg": ("ours", 16, True, False),
    "ours-16-bf16": ("ours", 16, False, True),
    "ours-16-skipbg-bf16": ("ours", 16, True, True),
    "stock-32": ("stock", 32, False, False),
    "ours-32": ("ours", 32, False, False),
    "ours-32-skipbg-bf16": ("ours", 32, True, True),
    "ours-32-skipbg": ("ours", 32, True, False),
    "ours-32-bf16": ("ours", 32, False, True),
}


def _slice() -> tuple[np.ndarray, str]:
    shared = Path(os.environ.get("RAT_MONAI_SHARED", ROOT.parent / "shared"))
    folder = shared / "data/real/ct_crlm1004/CRLM-CT-1004/image"
    files = sorted(folder.glob("*.dcm"))
    if files:
        import pydicom

        ds = pydicom.dcmread(files[len(files) // 2])
        hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        return hu, f"real CT {files[len(files) // 2].name} (CRLM-CT-1004), 512x512 HU"
    yy, xx = np.mgrid[:512, :512]
    hu = np.where(((yy - 256) / 180.0) ** 2 + ((xx - 256) / 220.0) ** 2 < 1, 40.0, -1000.0).astype(np.float32)
    return hu, "synthetic 512x512 ellipse phantom (../shared not found)"



def worker(name: str, out: Path, args: argparse.Namespace) -> None:
    import torch
    from segment_anything import SamAutomaticMaskGenerator, sam_model_registry

    from rat_monai.regions import SamRegionGenerator, partition_from_masks

    torch.set_num_threads(args.threads)
    kind, pps, skip, bf16 = CONFIGS[name]
    hu, source = _slice()
    torch.manual_seed(0)
    model = sam_model_registry["vit_b"](checkpoint=args.checkpoint).eval()
    base_rss = peak_rss_mib()
    ours = SamRegionGenerator(
        model, points_per_side=pps, pred_iou_thresh=args.pred_iou_thresh, stability_score_thresh=args.stability_thresh,
        skip_background=skip, dtype=torch.bfloat16 if bf16 else torch.float32, modality="ct",
    )  # fmt: skip
    res = {"config": name, "kind": kind, "points_per_side": pps, "skip_background": skip, "bf16": bf16,
           "slice": source, "threads": args.threads, "prompts": int(len(ours.point_grid(hu)))}  # fmt: skip
    t0, c0 = time.perf_counter(), time.process_time()
    if kind == "stock":
        gen = SamAutomaticMaskGenerator(
            model, points_per_side=pps, points_per_batch=64, pred_iou_thresh=args.pred_iou_thresh,
            stability_score_thresh=args.stability_thresh,
        )  # fmt: skip
        timers = {"encoder": 0.0, "decoder_net": 0.0}
        set_image, predict_torch = gen.predictor.set_image, gen.predictor.predict_torch

        def timed_set_image(*a, **k):
            t = time.perf_counter()
            set_image(*a, **k)
            timers["encoder"] += time.perf_counter() - t

        def timed_predict(*a, **k):
            t = time.perf_counter()
            r = predict_torch(*a, **k)
            timers["decoder_net"] += time.perf_counter() - t
            return r

        gen.predictor.set_image, gen.predictor.predict_torch = timed_set_image, timed_predict
        records = gen.generate(ours.to_rgb(hu))
        t1 = time.perf_counter()
        labels = partition_from_masks(records, hu.shape)
        t2 = time.perf_counter()
        res.update(
            encoder_s=timers["encoder"], decoder_s=t1 - t0 - timers["encoder"], decoder_net_s=timers["decoder_net"],
            mask_bookkeeping_s=t1 - t0 - timers["encoder"] - timers["decoder_net"], partition_s=t2 - t1,
            masks=len(records),
        )  # fmt: skip
    else:
        labels = ours(hu[None])[0]
        t2 = time.perf_counter()
        res.update(encoder_s=ours.timings["encoder"], decoder_s=ours.timings["decoder"],
                   partition_s=ours.timings["partition"])  # fmt: skip
    # CPU seconds of all threads: a load-independent figure (wall time on an idle CPU is about cpu_s / threads)
    res.update(cpu_s=time.process_time() - c0, total_s=t2 - t0, regions=int(labels.max()) + 1)
    res.update(peak_rss_mb=peak_rss_mib(), model_rss_mb=base_rss)
    np.savez_compressed(out.with_suffix(".npz"), labels=labels)
    out.write_text(json.dumps(res))


def _markdown(results: list[dict], notes: list[str]) -> str:
    lines = [
        "# Region maps: SAM ViT-B per 512x512 slice (CPU)",
        "",
        *notes,
        "",
        "| config | prompts | encoder s | decoder s | partition s | total s | masks | regions | ARI vs ours default | "
        "peak RSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        ari = r.get("ari_vs_ours_default")
        lines.append(
            f"| {r['config']} | {r['prompts']} | {r['encoder_s']:.1f} | {r['decoder_s']:.1f} | "
            f"{r['partition_s']:.3f} | "
            f"{r['total_s']:.1f} | {r.get('masks', '')} | {r['regions']} | {'' if ari is None else f'{ari:.4f}'} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    stock = [r for r in results if r["kind"] == "stock" and "decoder_net_s" in r]
    if stock:
        lines += ["", "Stock decoder time split: network + upsampling (`predict_torch`) vs mask bookkeeping "
                  "(filters, RLE, NMS, RLE decode):", ""]  # fmt: skip
        for r in stock:
            net, book = r["decoder_net_s"], r["mask_bookkeeping_s"]
            lines.append(f"- {r['config']}: {net:.1f} s network, {book:.1f} s bookkeeping")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--checkpoint", default=None, help="SAM ViT-B checkpoint (default: random weights)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pred-iou-thresh", type=float, default=None,
                   help="default: 0.88 with a checkpoint, 0.045 with random weights")  # fmt: skip
    p.add_argument("--stability-thresh", type=float, default=None, help="default: 0.95 with a checkpoint, 0 random")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "regions"))
    p.add_argument("--append", action="store_true", help="add to the results already in --out (same settings)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.pred_iou_thresh is None:
        args.pred_iou_thresh = 0.88 if args.checkpoint else 0.045
    if args.stability_thresh is None:
        args.stability_thresh = 0.95 if args.checkpoint else 0.0
    if args.worker:
        worker(args.worker, Path(args.worker_out), args)
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results, labels = [], {}
    if args.append and out.with_suffix(".json").is_file():
        previous = json.loads(out.with_suffix(".json").read_text())["results"]
        results = [r for r in previous if r["config"] not in args.configs]
        for r in results:
            if Path(r.get("labels_file", "")).is_file():
                labels[r["config"]] = np.load(r["labels_file"])["labels"]
    tmp = Path(tempfile.mkdtemp(prefix="bench-regions-"))
    for name in args.configs:
        wout = tmp / f"{name}.json"
        cmd = [sys.executable, __file__, "--worker", name, "--worker-out", str(wout), "--threads", str(args.threads),
               "--pred-iou-thresh", str(args.pred_iou_thresh), "--stability-thresh", str(args.stability_thresh)]
        if args.checkpoint:
            cmd += ["--checkpoint", args.checkpoint]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{name}: FAILED\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        r = json.loads(wout.read_text())
        r["labels_file"] = str(wout.with_suffix(".npz"))
        labels[name] = np.load(wout.with_suffix(".npz"))["labels"]
        results.append(r)
        print(f"{name}: total {r['total_s']:.1f} s (encoder {r['encoder_s']:.1f}, decoder {r['decoder_s']:.1f}), "
              f"{r['regions']} regions, peak {r['peak_rss_mb']:.0f} MB [wall {time.perf_counter() - t:.0f} s]",
              flush=True)  # fmt: skip
        from rat_monai.regions import adjusted_rand_index

        for rr in results:
            ref = labels.get(f"ours-{rr['points_per_side']}")
            if ref is not None:
                rr["ari_vs_ours_default"] = adjusted_rand_index(labels[rr["config"]], ref)
                rr["identical_to_ours_default"] = bool(np.array_equal(labels[rr["config"]], ref))
        notes = [
            f"Slice: {results[0]['slice']}. Threads: {args.threads}. Weights: "
            + (f"checkpoint {args.checkpoint}" if args.checkpoint else "RANDOM ViT-B (seed 0), no checkpoint available")
            + f"; pred_iou_thresh={args.pred_iou_thresh}, stability_score_thresh={args.stability_thresh}.",
            "One slice per configuration, each in its own process; timings taken on a SHARED 2-core CPU under load "
            "from other jobs, so they are inflated and noisy.",
        ]
        (out.with_suffix(".json")).write_text(json.dumps({"notes": notes, "results": results}, indent=2))
        (out.with_suffix(".md")).write_text(_markdown(results, notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
