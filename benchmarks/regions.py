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
    python benchmarks/regions.py --offline             # offline partitioners on the real CT / PET (regions_offline.*)
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


# ---------------------------------------------------------------- offline partitioners (issue 13)
CT_SERIES = {"CRLM-CT-1004": "ct_crlm1004/CRLM-CT-1004/image", "CRLM-CT-1006": "ct_crlm1006/CRLM-CT-1006/image",
             "LIDC-IDRI-0314": "ct_lidc0314/LIDC-IDRI-0314/image"}  # fmt: skip
PET_SERIES = "pet_fdg_sts001/STS_001/FDG_PET"


def _load(rel: str) -> np.ndarray:
    import warnings

    from rat_monai.data import load_volume

    shared = Path(os.environ.get("RAT_MONAI_SHARED", ROOT.parent / "shared"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(load_volume(shared / "data/real" / rel)[0].numpy(), np.float32)


def _reference_body(hu: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    lab, _ = ndi.label(hu > -500)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return ndi.binary_fill_holes(lab == sizes.argmax())


def offline(args: argparse.Namespace) -> int:
    """Old default (felzenszwalb) vs the anatomical 'tissue' partitioner on real CT and PET slices, one thread."""
    import torch
    from scipy import ndimage as ndi

    from rat_monai.regions import class_purity, get_partitioner, hu_classes, largest_fraction, region_attention_cost

    torch.set_num_threads(1)
    rows = []
    for modality, series in [("ct", s) for s in CT_SERIES] + [("pet", "STS_001 FDG PET")]:
        vol = _load(CT_SERIES[series] if modality == "ct" else PET_SERIES)
        depth = vol.shape[-1]
        if modality == "ct":
            zs = [int(round(v)) for v in np.linspace(0, depth - 1, args.slices + 2)[1:-1]]
        else:  # bladder (SUVmax), the head end, and evenly spaced trunk slices
            peak = vol.reshape(-1, depth).max(0)
            zs = sorted({int(peak.argmax()), depth - 1 if peak[-1] > peak[0] else 0,
                         *[int(round(v)) for v in np.linspace(0, depth - 1, args.slices + 2)[1:-1]]})  # fmt: skip
        parts = {"felzenszwalb (old default)": get_partitioner("felzenszwalb", modality=modality),
                 "tissue (new default)": get_partitioner("tissue", modality=modality)}  # fmt: skip
        for z in zs:
            img = vol[..., z]
            if modality == "ct":
                body, classes = _reference_body(img), hu_classes(img)
            else:
                smooth = ndi.gaussian_filter(img, 1.0)
                body = ndi.binary_fill_holes(smooth > 0.1)
                tissue, air = smooth > 0.3, smooth < 0.03
            for name, part in parts.items():
                part(img[None])  # warm-up (imports)
                t0 = time.perf_counter()
                for _ in range(args.repeats):
                    labels = part(img[None])[0]
                dt = (time.perf_counter() - t0) / args.repeats
                r = {"modality": modality, "series": series, "slice": z, "shape": list(img.shape),
                     "partitioner": name, "regions": int(labels.max()) + 1, "seconds": dt,
                     "largest_in_body": largest_fraction(labels, body),
                     "attention_cost": region_attention_cost(labels)}  # fmt: skip
                if modality == "ct":
                    r["purity"] = class_purity(classes, labels, body)
                else:
                    n = labels.max() + 1
                    n_in, n_out = np.bincount(labels[tissue], minlength=n), np.bincount(labels[air], minlength=n)
                    mixed = np.minimum(n_in, n_out) > np.maximum(0.02 * (n_in + n_out), 4)
                    r["regions_with_body_and_air"] = int(mixed.sum())
                    core = np.unique(labels[img > 0.5 * img.max()])
                    r["hot_core_regions_median_suv_min"] = float(min(np.median(img[labels == q]) for q in core))
                    r["hot_core_suv"] = float(img.max())
                rows.append(r)
                print(json.dumps(r), flush=True)
    load = os.getloadavg()
    summary = {}
    for name in parts:
        for modality in ("ct", "pet"):
            sel = [r for r in rows if r["partitioner"] == name and r["modality"] == modality]
            keys = ["seconds", "regions", "largest_in_body", "attention_cost"]
            keys += ["purity"] if modality == "ct" else []
            summary[f"{modality} | {name}"] = {
                k: {"mean": float(np.mean([r[k] for r in sel])), "std": float(np.std([r[k] for r in sel])),
                    "min": float(np.min([r[k] for r in sel])), "max": float(np.max([r[k] for r in sel]))}
                for k in keys
            }  # fmt: skip
    notes = [f"One thread (torch.set_num_threads(1); numpy/scipy/scikit-image run single-threaded), {args.repeats} "
             f"repeats per slice, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min) at the end, "
             "on the shared 2-core machine with other jobs running."]  # fmt: skip
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"notes": notes, "summary": summary, "slices": rows}, indent=2))
    out.with_suffix(".md").write_text(_offline_markdown(rows, summary, notes))
    return 0


def _offline_markdown(rows: list[dict], summary: dict, notes: list[str]) -> str:
    lines = ["# Offline region maps on real CT and PET: old default (felzenszwalb) vs the anatomical 'tissue' maps", "",
             *notes, "",
             "Targets (issue 13): CT tissue purity >= 0.95 (air/lung < -500, fat -150..-30, soft -30..150, "
             "bone > 300 HU; pixels between the ranges ignored; body = largest HU > -500 component, holes filled), "
             "no region over "
             "25 % of the body, region-attention cost (sum of squared region sizes / N^2 at the latent, top-left pixel "
             "of each 4x4 cell) <= 0.15, <= 1 s per 512x512 slice on one core; PET: no region in both clear tissue "
             "(SUV > 0.3) and clear air (< 0.03), the hottest structure's regions are hot (median SUV).", "",
             "## Summary (mean ± std, [min, max] over slices)", "",
             "| modality | partitioner | s / slice | regions | largest region / body | attention cost | purity |",
             "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for key, s in summary.items():
        mod, name = key.split(" | ")
        cell = lambda k, f: f"{s[k]['mean']:{f}} ± {s[k]['std']:{f}} [{s[k]['min']:{f}}, {s[k]['max']:{f}}]"  # noqa
        lines.append(f"| {mod} | {name} | {cell('seconds', '.3f')} | {cell('regions', '.0f')} | "
                     f"{cell('largest_in_body', '.3f')} | {cell('attention_cost', '.3f')} | "
                     f"{cell('purity', '.3f') if 'purity' in s else ''} |")  # fmt: skip
    lines += ["", "## Per slice", "",
              "| series | slice | partitioner | regions | s | largest / body | cost | purity | PET: mixed body/air "
              "regions | PET: hot core SUVmax / min median SUV of its regions |", "| --- " * 10 + "|"]  # fmt: skip
    for r in rows:
        pet = " | "
        if r["modality"] == "pet":
            hot = f"{r['hot_core_suv']:.1f} / {r['hot_core_regions_median_suv_min']:.2f}"
            pet = f"{r['regions_with_body_and_air']} | {hot}"
        lines.append(f"| {r['series']} | {r['slice']} | {r['partitioner']} | {r['regions']} | {r['seconds']:.3f} | "
                     f"{r['largest_in_body']:.3f} | {r['attention_cost']:.4f} | "
                     f"{r['purity']:.4f} | " if "purity" in r else
                     f"| {r['series']} | {r['slice']} | {r['partitioner']} | {r['regions']} | {r['seconds']:.3f} | "
                     f"{r['largest_in_body']:.3f} | {r['attention_cost']:.4f} | | ")  # fmt: skip
        lines[-1] += f"{pet} |"
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
    p.add_argument("--offline", action="store_true",
                   help="benchmark the offline partitioners (felzenszwalb vs tissue) on the real CT / PET, not SAM")
    p.add_argument("--slices", type=int, default=5, help="--offline: evenly spaced slices per series (default: 5)")
    p.add_argument("--repeats", type=int, default=3, help="--offline: timed runs per slice (default: 3)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.pred_iou_thresh is None:
        args.pred_iou_thresh = 0.88 if args.checkpoint else 0.045
    if args.stability_thresh is None:
        args.stability_thresh = 0.95 if args.checkpoint else 0.0
    if args.offline:
        if args.out == str(ROOT / "benchmarks" / "results" / "regions"):
            args.out = str(ROOT / "benchmarks" / "results" / "regions_offline")
        return offline(args)
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
