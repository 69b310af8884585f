# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Benchmark: memory and time of ``bi_wkv`` (O(T)) against the dense ``bi_wkv_reference`` (O(T^2)) on CPU.

For every sequence length ``T`` a fresh Python subprocess builds random ``w, u, k, v`` (``k, v: [B, T, C]``), runs
forward + backward once, and reports the wall time and the extra peak resident memory above the process's resident
size just before the call (``ru_maxrss`` minus the current RSS from ``/proc/self/statm``). For ``bi_wkv`` the memory
per token must not grow with ``T`` (linear memory, no ``T x T`` tensor): the script records the per-token figure at the
largest ``T`` divided by the one at the smallest ``T`` and the growth exponent (least-squares slope of log memory
against log ``T``; 1 = linear, 2 = quadratic), and fails (exit code 1) when the ratio exceeds ``--max-ratio`` or the
exponent exceeds 1.2. RSS figures include allocator effects (freed buffers are reused), so small ``T`` carry a fixed
overhead and the per-token figure tends to fall with ``T``. The dense reference is run at a few small ``T`` for
contrast (its memory grows with ``T^2``).

Usage::

    python benchmarks/bi_wkv.py                      # T = 1024 ... 16384 (B=8, C=64); reference T = 512 ... 2048
    python benchmarks/bi_wkv.py --lengths 1024 4096 --threads 1

Writes ``benchmarks/results/bi_wkv.json`` and ``benchmarks/results/bi_wkv.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
from _memory import current_rss_mib, peak_rss_mib  # noqa: E402




def worker(impl: str, length: int, batch: int, channels: int, threads: int) -> dict:
    """One forward + backward in this process; returns time and extra peak memory."""
    import torch

    from rat_monai.networks.blocks.bi_wkv import bi_wkv, bi_wkv_reference

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    w = (torch.randn(channels, generator=g) / length).requires_grad_(True)
    u = (torch.randn(channels, generator=g) / length).requires_grad_(True)
    k = (torch.randn(batch, length, channels, generator=g) * 5).requires_grad_(True)
    v = torch.randn(batch, length, channels, generator=g).requires_grad_(True)
    fn = bi_wkv if impl == "bi_wkv" else bi_wkv_reference
    # warm the allocator and kernels on a tiny input so the measurement is the call itself
    fn(w[:1] * 0, u[:1] * 0, k[:1, :8, :1].detach(), v[:1, :8, :1].detach())
    base = max(current_rss_mib(), 0.0)
    start = time.perf_counter()
    out = fn(w, u, k, v)
    forward_s = time.perf_counter() - start
    out.square().sum().backward()
    total_s = time.perf_counter() - start
    extra = peak_rss_mib() - base
    return {
        "impl": impl,
        "T": length,
        "B": batch,
        "C": channels,
        "forward_s": forward_s,
        "forward_backward_s": total_s,
        "extra_peak_mib": extra,
        "input_mib": 2 * batch * length * channels * 4 / 2**20,
    }


def run_one(impl: str, length: int, batch: int, channels: int, threads: int, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", impl, "--lengths", str(length), "--batch", str(batch)]
    cmd += ["--channels", str(channels), "--threads", str(threads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"impl": impl, "T": length, "B": batch, "C": channels, "error": f"timeout after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no stderr"]
        return {"impl": impl, "T": length, "B": batch, "C": channels, "error": tail[0]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    parser.add_argument("--reference-lengths", type=int, nargs="*", default=[512, 1024, 2048])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--reference-channels", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="1: on a shared CPU 2 threads ran up to 25x slower")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--max-ratio", type=float, default=2.0, help="largest/smallest memory per token allowed")
    parser.add_argument("--worker", choices=["bi_wkv", "reference"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, args.lengths[0], args.batch, args.channels, args.threads)))
        return 0

    rows = []
    for length in args.lengths:
        rows.append(run_one("bi_wkv", length, args.batch, args.channels, args.threads, args.timeout))
        print(json.dumps(rows[-1]), flush=True)
    for length in args.reference_lengths:
        rows.append(run_one("reference", length, 1, args.reference_channels, args.threads, args.timeout))
        print(json.dumps(rows[-1]), flush=True)

    linear = [r for r in rows if r["impl"] == "bi_wkv" and "error" not in r]
    per_token = [r["extra_peak_mib"] / (r["T"] * r["B"] * r["C"]) * 2**20 for r in linear]
    for r, b in zip(linear, per_token):
        r["extra_bytes_per_token_channel"] = b
    ratio = per_token[-1] / per_token[0] if per_token else float("nan")
    spread = max(per_token) / min(per_token) if per_token else float("nan")

    def exponent(rs: list) -> float:
        if len(rs) < 2:
            return float("nan")
        xs = [math.log(r["T"]) for r in rs]
        ys = [math.log(max(r["extra_peak_mib"], 1e-3)) for r in rs]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)

    slope = exponent(linear)
    slope_ref = exponent([r for r in rows if r["impl"] == "reference" and "error" not in r])
    summary = {
        "per_token_memory_ratio_largest_over_smallest_T": ratio,
        "per_token_memory_ratio_max_over_min": spread,
        "memory_growth_exponent_bi_wkv": slope,
        "memory_growth_exponent_reference": slope_ref,
        "max_ratio_allowed": args.max_ratio,
        "linear_memory": bool(per_token) and ratio <= args.max_ratio and slope <= 1.2,
        "threads": args.threads,
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs".strip(),
        "python": platform.python_version(),
        "note": "CPU shared with other jobs while measured: times are inflated; memory is the RSS growth of the call",
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "bi_wkv.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=2) + "\n")

    lines = [
        "# bi_wkv memory and time (CPU)",
        "",
        f"forward + backward once per fresh subprocess, {args.threads} threads; extra peak RSS above the RSS before "
        "the call. The machine was shared with other jobs: times are inflated.",
        "",
        "| impl | T | B | C | forward s | fwd+bwd s | extra peak MiB | bytes / (token x channel) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['impl']} | {r['T']} | {r['B']} | {r['C']} | {r['error']} | | | |")
            continue
        per = r["extra_peak_mib"] / (r["T"] * r["B"] * r["C"]) * 2**20
        lines.append(
            f"| {r['impl']} | {r['T']} | {r['B']} | {r['C']} | {r['forward_s']:.3f} | {r['forward_backward_s']:.3f} "
            f"| {r['extra_peak_mib']:.1f} | {per:.0f} |"
        )
    lines += [
        "",
        f"bi_wkv memory per token at the largest T / at the smallest T = {ratio:.2f} (allowed {args.max_ratio}; "
        f"max/min over all T {spread:.2f}); growth exponent of peak memory in T: bi_wkv {slope:.2f}, dense reference "
        f"{slope_ref:.2f} (1 = linear, 2 = quadratic): {'linear in T' if summary['linear_memory'] else 'NOT linear'}.",
        "",
    ]
    (RESULTS_DIR / "bi_wkv.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if summary["linear_memory"] else 1


if __name__ == "__main__":
    sys.exit(main())
