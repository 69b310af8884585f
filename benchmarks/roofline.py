# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Benchmark: RAT (paper width 64) against this machine's matmul roofline, fp32 and bf16, forward and training.

Every configuration runs in a fresh subprocess (its own peak RSS) that first measures the machine's matmul rate
(``--matmul-n``^3, fp32 and bf16, best of 3) and then times the network, so each ratio compares two figures taken
seconds apart in one process: on a shared CPU, read the ratios, not the seconds.

- ``forward``: ``RAT(width=64)`` with seeded fan-in random weights (so every branch is active), one image with the
  seeded ~40-region map of ``benchmarks/region_attention.py``, eval + no grad; ``layout`` ``nhwc`` (fast path) or
  ``nchw`` (reference); ``bf16`` = the network's ``amp=True``. Model FLOPs = ``torch.utils.flop_counter`` on the
  forward (convolutions, linears) minus what it attributes to attention kernels, plus the attention FLOPs counted
  exactly: region attention ``4 * C * sum(region_size**2)`` per layer on the latent map (what within-region
  attention needs, not the padded work the packed path executes) and window attention ``4 * C * N * window**2``.
  roofline time = model FLOPs / matmul rate of the same dtype; ``ratio`` = time / roofline time. bf16 rows also
  give ``psnr_vs_fp32`` (dB, peak = range of the fp32 output of the same network) and ``vs_fp32`` (time ratio,
  when the fp32 row of the same size and layout is in the results).
- ``train``: forward + backward + Adam step at ``batch x size^2`` with/without ``gradient_checkpointing`` and in
  fp32 or bf16 autocast; time of the last of ``--train-steps`` steps and the process's peak RSS (``ru_maxrss``).
- ``profile``: self CPU time of one forward per op category (matmul, convolution, attention, norm, elementwise,
  gather/copy, other), both layouts: where the time goes.
- ``authors`` (only with ``--authors-code DIR``, a local clone of the authors' repository; never vendored): their
  ``Model_RAT.RAT()`` (published configuration) forward on the same image and map (as a ``[B, 1, H, W]`` float mask),
  time and peak RSS, and the speed-up of our fp32 forward of the same size.
- ``padding``: score work of the packed path on region maps (seeded 512^2 map and, when ``../shared`` has them,
  the default offline maps of real CT slices): power-of-two buckets vs the finer default buckets.

Results are merged by configuration id into ``benchmarks/results/roofline.{json,md}``, so subsets can be re-run.

Usage::

    python benchmarks/roofline.py                                    # 128 and 256: forward, profile, padding
    python benchmarks/roofline.py --parts forward --sizes 512        # the paper's 512^2 (needs ~4 GiB, minutes)
    python benchmarks/roofline.py --parts train --train 256:8:1:fp32 256:8:1:bf16 256:1:0:fp32 256:1:1:fp32
    python benchmarks/roofline.py --parts authors --sizes 256 512 --authors-code ~/src/Region-Attention-Transformer
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _memory import current_rss_mib, peak_rss_mib  # noqa: E402
from region_attention import region_map  # noqa: E402

CATEGORIES = {
    "matmul": ("addmm", "aten::mm", "bmm", "linear", "matmul"),
    "convolution": ("convolution", "conv2d"),
    "attention": ("attention",),
    "norm": ("layer_norm", "aten::mean", "aten::sub", "aten::pow", "aten::sqrt", "aten::div"),
    "gather/copy": ("index", "copy_", "aten::cat", "gather", "scatter", "clone", "contiguous"),
    "elementwise": ("aten::mul", "aten::add", "addcmul", "gelu", "aten::where"),
}


def matmul_rate(n: int, dtype_name: str, repeats: int = 3) -> float:
    """Best GFLOP/s of an ``n x n @ n x n`` matmul in ``dtype_name`` (``fp32``/``bf16``)."""
    import torch

    dtype = torch.float32 if dtype_name == "fp32" else torch.bfloat16
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def model_flops(net, x, regions) -> dict:
    """FLOPs of one forward: counted ops without attention + exact region/window attention FLOPs."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from rat_monai.networks.blocks.region_attention import packed_score_work

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x, regions)
    counts = counter.get_flop_counts()["Global"]
    # attention kernels (SDPA) and the W-MSA fast path's batched matmuls are replaced by the exact counts below
    attn_counted = sum(v for k, v in counts.items() if "attention" in str(k) or "bmm" in str(k))
    other = sum(counts.values()) - attn_counted
    latent = regions[:, :: net.down_factor, :: net.down_factor].reshape(regions.shape[0], -1)
    exact, padded = packed_score_work(latent)
    chan = net.middle[0].conv.in_channels
    layers = sum(len(b.layers) for b in net.middle)
    window = net.middle[0].layers[0].window_attn.window_size
    region_flops = 4 * chan * exact * layers
    window_flops = 4 * chan * latent.numel() * window**2 * layers
    return {
        "conv_linear_flops": other,
        "region_attention_flops": region_flops,
        "region_attention_padded_flops": 4 * chan * padded * layers,
        "window_attention_flops": window_flops,
        "model_flops": other + region_flops + window_flops,
    }


def _psnr(ref, out) -> float:
    import math

    mse = float((out.double() - ref.double()).pow(2).mean())
    peak = float(ref.max() - ref.min())
    return float("inf") if mse == 0 else 10 * math.log10(peak**2 / mse)


def worker(cfg: dict) -> dict:
    import torch

    from rat_monai.networks.nets import RAT
    from rat_monai.networks.utils import randomise_weights

    torch.set_num_threads(cfg["threads"])
    rates = {d: matmul_rate(cfg["matmul_n"], d) for d in ("fp32", "bf16")}
    torch.manual_seed(0)
    kind, size, layout = cfg["kind"], cfg["size"], cfg.get("layout", "nhwc")
    batch = cfg.get("batch", 1)
    if kind == "authors":
        sys.path.insert(0, str(Path(cfg["authors_code"]).expanduser()))
        from Model_RAT import RAT as AuthorsRAT  # the authors' published model, from the local copy

        net = randomise_weights(AuthorsRAT()).eval()
        x, mask = torch.randn(1, 1, size, size), region_map(size)[None, None].float()
        base = current_rss_mib()
        with torch.no_grad():
            t = time.perf_counter()
            net(x, mask)
            seconds = time.perf_counter() - t
        return {**cfg, "matmul_gflops": rates, "seconds": seconds, "extra_peak_mib": peak_rss_mib() - base,
                "peak_rss_gib": peak_rss_mib() / 1024, "load_before": os.getloadavg()[0],
                "load_after": os.getloadavg()[0]}
    net = randomise_weights(RAT(width=64, layout=layout, gradient_checkpointing=bool(cfg.get("ckpt", 0))))
    x = torch.randn(batch, 1, size, size)
    regions = region_map(size)[None].expand(batch, size, size).contiguous()
    res = {**cfg, "matmul_gflops": rates, "load_before": os.getloadavg()[0]}
    if kind == "profile":
        from torch.profiler import profile

        net.eval()
        with torch.no_grad():
            net(x, regions)
            with profile() as prof:
                t = time.perf_counter()
                net(x, regions)
                res["seconds"] = time.perf_counter() - t
        cats = dict.fromkeys(list(CATEGORIES) + ["other"], 0.0)
        for e in prof.key_averages():
            if e.key.startswith("aten::") and e.self_cpu_time_total > 0:
                cat = next((c for c, keys in CATEGORIES.items() if any(k in e.key for k in keys)), "other")
                cats[cat] += e.self_cpu_time_total / 1e6
        res["self_cpu_s"] = cats
    elif kind == "forward":
        net.eval()
        res.update(model_flops(net, x, regions))
        ref = None
        if cfg["dtype"] == "bf16":
            with torch.no_grad():
                ref = net(x, regions)
            net.amp = True
        base = current_rss_mib()
        times = []
        with torch.no_grad():
            for i in range(cfg["repeats"] + 1):
                t = time.perf_counter()
                out = net(x, regions)
                if i:  # the first call is a warm-up
                    times.append(time.perf_counter() - t)
        res["seconds"] = statistics.median(times)
        res["seconds_all"] = times
        res["extra_peak_mib"] = peak_rss_mib() - base
        res["roofline_s"] = res["model_flops"] / (rates[cfg["dtype"]] * 1e9)
        res["ratio"] = res["seconds"] / res["roofline_s"]
        res["achieved_gflops"] = res["model_flops"] / res["seconds"] / 1e9
        if ref is not None:
            res["psnr_vs_fp32"] = _psnr(ref, out)
    elif kind == "train":
        net.amp = cfg["dtype"] == "bf16"
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)
        target = torch.randn_like(x)
        times = []
        for _ in range(cfg["steps"]):
            t = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(net(x, regions), target).backward()
            opt.step()
            times.append(time.perf_counter() - t)
        res["seconds"] = times[-1]
        res["seconds_all"] = times
    res["peak_rss_gib"] = peak_rss_mib() / 1024
    res["load_after"] = os.getloadavg()[0]
    return res


def padding_rows() -> list[dict]:
    """Packed-path score work on the seeded map and on real CT slices' default offline maps (latent, 1/4)."""
    import torch

    from rat_monai.networks.blocks.region_attention import packed_score_work

    maps = {f"seeded {s}^2": region_map(s)[None] for s in (256, 512)}
    real = Path(os.environ.get("RAT_MONAI_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    ct = real / "data" / "real" / "ct_crlm1004" / "CRLM-CT-1004" / "image"
    if ct.is_dir():
        from rat_monai.data import load_volume
        from rat_monai.regions import get_partitioner

        vol = load_volume(str(ct))[0].permute(2, 1, 0).numpy()  # [Z, H, W] in HU
        part = get_partitioner("auto", modality="ct")
        for z in (vol.shape[0] // 4, vol.shape[0] // 2, 3 * vol.shape[0] // 4):
            maps[f"real CT crlm1004 slice {z} ({part.__class__.__name__})"] = torch.as_tensor(
                part(vol[z : z + 1]).astype("int64")
            )
    rows = []
    for name, m in maps.items():
        latent = m[:, ::4, ::4].reshape(1, -1)
        exact, pow2 = packed_score_work(latent, 1)
        _, fine = packed_score_work(latent, 4)
        rows.append(
            {
                "id": f"padding {name}",
                "kind": "padding",
                "map": name,
                "regions_latent": int(latent.unique().numel()),
                "exact": exact,
                "pow2_buckets_waste": pow2 / exact,
                "quarter_octave_waste": fine / exact,
            }
        )
    return rows


def _config_id(c: dict) -> str:
    if c["kind"] == "train":
        return f"train {c['size']} b{c['batch']} ckpt{c['ckpt']} {c['dtype']}"
    if c["kind"] == "authors":
        return f"authors {c['size']}"
    if c["kind"] == "profile":
        return f"profile {c['size']} {c['layout']}"
    return f"forward {c['size']} {c['layout']} {c['dtype']}"


def run_config(cfg: dict, timeout: float) -> dict:
    cfg = {**cfg, "id": _config_id(cfg)}
    print(f"running {cfg['id']} ...", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(cfg)], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {**cfg, "error": f"timeout after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {**cfg, "error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1][:300]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(v, spec: str) -> str:
    return "" if v is None else format(v, spec)


def markdown(rows: list[dict], meta: dict) -> str:
    by_id = {r["id"]: r for r in rows}
    out = [
        "# RAT vs this machine's matmul roofline",
        "",
        f"Machine: {meta['machine']}; torch {meta['torch']}. Each row is one subprocess that measured the matmul rate "
        "itself just before timing the network (columns GFLOP/s fp32/bf16), so each ratio is within one process. "
        "Load = 1-min load average before/after (2 cores: above ~2 means shared, inflated times). Width 64, seeded "
        "fan-in random weights, seeded ~40-region map. ratio = time / (model FLOPs / matmul rate of that dtype).",
        "",
        "## Forward (eval, no grad, batch 1)",
        "",
        "| size | layout | dtype | threads | seconds (median) | model GFLOP | of which region attn | roofline s | ratio | "
        "achieved GFLOP/s | matmul GFLOP/s fp32/bf16 | bf16/fp32 time | PSNR vs fp32 dB | load |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in sorted((r for r in rows if r["kind"] == "forward"), key=lambda r: (r["size"], r["layout"], r["dtype"])):
        if "error" in r:
            out.append(f"| {r['size']} | {r['layout']} | {r['dtype']} | {r['threads']} | {r['error']} |" + " |" * 9)
            continue
        fp32 = by_id.get(f"forward {r['size']} {r['layout']} fp32")
        rel = r["seconds"] / fp32["seconds"] if r["dtype"] == "bf16" and fp32 and "seconds" in fp32 else None
        rates = r["matmul_gflops"]
        out.append(
            f"| {r['size']} | {r['layout']} | {r['dtype']} | {r['threads']} | {r['seconds']:.3f} (spread "
            f"{min(r['seconds_all']):.3f}-{max(r['seconds_all']):.3f}) | {r['model_flops'] / 1e9:.1f} | "
            f"{r['region_attention_flops'] / 1e9:.1f} | {r['roofline_s']:.3f} | **{r['ratio']:.2f}** | "
            f"{r['achieved_gflops']:.0f} | {rates['fp32']:.0f}/{rates['bf16']:.0f} | {_fmt(rel, '.2f')} | "
            f"{_fmt(r.get('psnr_vs_fp32'), '.1f')} | {r['load_before']:.1f}/{r['load_after']:.1f} |"
        )
    out += [
        "",
        "## Training step (forward + backward + Adam)",
        "",
        "| size | batch | checkpointing | dtype | seconds (last step) | peak RSS GiB | matmul GFLOP/s fp32 | load |",
        "| ---: | ---: | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in sorted((r for r in rows if r["kind"] == "train"), key=lambda r: r["id"]):
        head = f"| {r['size']} | {r['batch']} | {'on' if r['ckpt'] else 'off'} | {r['dtype']} |"
        if "error" in r:
            out.append(f"{head} {r['error']} | | | |")
        else:
            out.append(
                f"{head} {r['seconds']:.2f} | {r['peak_rss_gib']:.2f} | {r['matmul_gflops']['fp32']:.0f} | "
                f"{r['load_before']:.1f}/{r['load_after']:.1f} |"
            )
    cats = list(CATEGORIES) + ["other"]
    out += [
        "",
        "## Where the forward time goes (profiler self CPU seconds per op category, one forward)",
        "",
        "| size | layout | wall s | " + " | ".join(cats) + " | load |",
        "| ---: | --- | ---: | " + " | ".join("---:" for _ in cats) + " | --- |",
    ]
    for r in sorted((r for r in rows if r["kind"] == "profile"), key=lambda r: r["id"]):
        if "error" in r:
            out.append(f"| {r['size']} | {r['layout']} | {r['error']} |")
            continue
        vals = " | ".join(f"{r['self_cpu_s'][c]:.3f}" for c in cats)
        out.append(f"| {r['size']} | {r['layout']} | {r['seconds']:.3f} | {vals} | {r['load_before']:.1f} |")
    authors = [r for r in rows if r["kind"] == "authors"]
    if authors:
        out += ["", "## The authors' published model (local copy, same image and map, one call)", "",
                "| size | authors s | authors peak RSS GiB | ours fp32 nhwc s | speed-up | load |",
                "| ---: | ---: | ---: | ---: | ---: | --- |"]
        for r in sorted(authors, key=lambda r: r["size"]):
            ours = by_id.get(f"forward {r['size']} nhwc fp32", {}).get("seconds")
            if "error" in r:
                out.append(f"| {r['size']} | {r['error']} | | | | |")
                continue
            speed = _fmt(r["seconds"] / ours if ours else None, ".1f")
            out.append(
                f"| {r['size']} | {r['seconds']:.1f} | {r['peak_rss_gib']:.2f} | {_fmt(ours, '.2f')} | {speed} | "
                f"{r['load_before']:.1f} |"
            )
    out += [
        "",
        "## Packed region attention: padding waste (executed / needed score work, latent map)",
        "",
        "| map | latent regions | power-of-two buckets (before) | 4 buckets per octave (now) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in (r for r in rows if r["kind"] == "padding"):
        out.append(
            f"| {r['map']} | {r['regions_latent']} | {r['pow2_buckets_waste']:.3f} | {r['quarter_octave_waste']:.3f} |"
        )
    if meta.get("note"):
        out += ["", meta["note"]]
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["forward", "profile", "padding"],
                        choices=["forward", "profile", "padding", "train", "authors"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="forward/profile image sizes")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--layouts", nargs="+", default=["nhwc", "nchw"], choices=["nhwc", "nchw"])
    parser.add_argument("--train", nargs="+", default=["128:2:0:fp32", "128:2:1:fp32", "128:2:0:bf16"],
                        metavar="SIZE:BATCH:CKPT:DTYPE", help="training configurations (CKPT 0/1)")
    parser.add_argument("--train-steps", type=int, default=2, help="steps per training config; the last is timed")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per config (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--matmul-n", type=int, default=4096)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--min-free-gib", type=float, default=16.0,
                        help="skip 512^2 forwards and batch>=4 training when less memory is available")
    parser.add_argument("--authors-code", default=None, help="local clone of the authors' repository (Model_RAT.py)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each configuration, wait up to this long for the 1-min load to drop below "
                        "--quiet-load (a shared machine)")
    parser.add_argument("--quiet-load", type=float, default=1.5)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--note", default="")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    def available_gib() -> float:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) for line in f}
        return info["MemAvailable"] / 2**20

    common = {"threads": args.threads, "matmul_n": args.matmul_n}
    configs = []
    if "forward" in args.parts:
        for size in args.sizes:
            for layout in args.layouts:
                for dtype in args.dtypes:
                    configs.append({**common, "kind": "forward", "size": size, "layout": layout, "dtype": dtype,
                                    "repeats": 1 if size >= 512 else args.repeats})
    if "profile" in args.parts:
        for size in (s for s in args.sizes if s <= 256):
            for layout in args.layouts:
                configs.append({**common, "kind": "profile", "size": size, "layout": layout})
    if "train" in args.parts:
        for spec in args.train:
            size, batch, ckpt, dtype = spec.split(":")
            configs.append({**common, "kind": "train", "size": int(size), "batch": int(batch), "ckpt": int(ckpt),
                            "dtype": dtype, "steps": args.train_steps})
    if "authors" in args.parts:
        if not args.authors_code or not (Path(args.authors_code).expanduser() / "Model_RAT.py").is_file():
            parser.error("--parts authors needs --authors-code DIR, a local copy holding Model_RAT.py")
        for size in args.sizes:
            configs.append({**common, "kind": "authors", "size": size, "authors_code": args.authors_code})
    path = args.out / "roofline.json"
    data = json.loads(path.read_text()) if path.is_file() else {"meta": {}, "rows": []}
    rows = {r["id"]: r for r in data["rows"]}
    new = padding_rows() if "padding" in args.parts else []
    for cfg in configs:
        big = cfg["size"] >= 512 or cfg["kind"] == "authors"
        big = big or (cfg["kind"] == "train" and cfg["batch"] * cfg["size"] ** 2 >= 4 * 256**2)
        if big and available_gib() < args.min_free_gib:
            print(f"skipping {_config_id(cfg)}: {available_gib():.1f} GiB available < --min-free-gib "
                  f"{args.min_free_gib}", file=sys.stderr)
            continue
        deadline = time.time() + args.wait_quiet
        while os.getloadavg()[0] >= args.quiet_load and time.time() < deadline:
            time.sleep(10)
        new.append(run_config(cfg, args.timeout))
        print(json.dumps({k: v for k, v in new[-1].items() if not isinstance(v, (dict, list))}), file=sys.stderr)
    for r in new:
        rows[r["id"]] = r
    import torch

    meta = {
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {args.threads} threads",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "note": args.note or data["meta"].get("note", ""),
        "updated": time.strftime("%Y-%m-%d %H:%M"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "rows": list(rows.values())}, indent=1) + "\n")
    text = markdown(list(rows.values()), meta)
    (args.out / "roofline.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
