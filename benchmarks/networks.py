# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Benchmark: RAT (width 64, packed region attention) vs Restore-RWKV (default config) on CPU.

For every (size, model, mode) a fresh Python subprocess builds the network (seed 0), runs it on one ``size x size``
single-channel image and reports the parameter count, the wall time of one call and the process's extra peak
resident memory above the RSS after building the model and the inputs (``ru_maxrss`` minus ``/proc/self/statm``).
Modes: ``forward`` (eval mode, no grad; Restore-RWKV runs its fused Omni-Shift) and ``train`` (train mode, forward +
backward of a mean-square loss). RAT gets a seeded region map of ~40 regions (Voronoi cells inside a body disc, air
outside); Restore-RWKV ignores regions. Each subprocess runs under an address-space limit (``RLIMIT_AS``) and a
wall-clock timeout, and the whole run under a time budget: a configuration that fails, times out or does not fit
into the budget is recorded as such instead of stopping the run.

Usage::

    python benchmarks/networks.py                                   # 128, 256, 512; both models; both modes
    python benchmarks/networks.py --sizes 128 --modes forward --timeout 120

Writes ``benchmarks/results/networks.json`` and ``benchmarks/results/networks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
from _memory import current_rss_mib, peak_rss_mib  # noqa: E402
MODELS = ("rat", "restore_rwkv")


from region_attention import region_map  # noqa: E402  the attention benchmark's seeded ~40-region map




def build(model: str):
    from rat_monai.networks.nets import RAT, RestoreRWKV

    if model == "rat":
        return RAT(width=64, region_attention="packed")
    return RestoreRWKV()


def worker(model: str, size: int, mode: str, threads: int) -> dict:
    """Measure one configuration in this process."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = build(model)
    params = sum(p.numel() for p in net.parameters())
    x = torch.randn(1, 1, size, size)
    regions = region_map(size)[None]
    base = current_rss_mib()
    start = time.perf_counter()
    if mode == "forward":
        net.eval()
        with torch.no_grad():
            out = net(x, regions)
    else:
        net.train()
        out = net(x, regions)
        out.square().mean().backward()
    seconds = time.perf_counter() - start
    return {
        "model": model,
        "size": size,
        "mode": mode,
        "params": params,
        "seconds": seconds,
        "extra_peak_mib": peak_rss_mib() - base,
        "output_shape": list(out.shape),
    }


def run_one(model: str, size: int, mode: str, threads: int, timeout: float, mem_limit_gib: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--models", model, "--sizes", str(size), "--modes", mode]
    cmd += ["--threads", str(threads)]
    limit = int(mem_limit_gib * 2**30)

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    head = {"model": model, "size": size, "mode": mode, "mem_limit_gib": mem_limit_gib}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=limit_memory)
    except subprocess.TimeoutExpired:
        return {**head, "error": f"timeout after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"])[0]
        if "can't allocate memory" in tail or "MemoryError" in tail:
            tail = f"out of memory (address-space limit {mem_limit_gib:g} GiB)"
        return {**head, "error": tail[:200]}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "mem_limit_gib": mem_limit_gib}


def _ordered(rows: list) -> list:
    return sorted(rows, key=lambda r: (r["size"], MODELS.index(r["model"]), r["mode"]))


def write_results(rows: list, args: argparse.Namespace) -> str:
    meta = {
        "threads": args.threads,
        "timeout_s": args.timeout,
        "budget_s": args.budget,
        "mem_limit_gib": args.mem_limit_gib,
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "note": "CPU shared with several other jobs (load average 5-10 on 2 cores) while measured: times are "
        "inflated, compare models only within this table; one timed call per configuration (no warm-up).",
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "networks.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    params = {r["model"]: r["params"] for r in rows if "params" in r}
    lines = [
        "# RAT vs Restore-RWKV on CPU",
        "",
        f"One image [1, 1, S, S], one timed call per fresh subprocess, {args.threads} thread(s), an address-space "
        f"limit per run (last column), timeout {args.timeout:.0f} s. RAT: width 64, packed region attention, ~40 "
        "regions. Restore-RWKV: dim 48, blocks (4, 6, 6, 8), 4 refinement blocks, recurrence 2. "
        "forward = eval + no grad; train = forward + backward. Extra peak MiB = peak RSS above the RSS after "
        "building model and inputs. **The CPU was shared with other jobs while this ran: times are inflated.**",
        "",
        "| model | params | size | mode | seconds | extra peak MiB | memory limit GiB |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        p = f"{params[r['model']] / 1e6:.2f} M" if r["model"] in params else "?"
        limit = r.get("mem_limit_gib", args.mem_limit_gib)
        if "error" in r and "can't allocate memory" in r["error"]:
            r = {**r, "error": f"out of memory (address-space limit {limit:g} GiB)"}
        head = f"| {r['model']} | {p} | {r['size']} | {r['mode']} |"
        if "error" in r:
            lines.append(f"{head} {r['error']} | | {limit:g} |")
        else:
            lines.append(f"{head} {r['seconds']:.2f} | {r['extra_peak_mib']:.0f} | {limit:g} |")
    text = "\n".join(lines) + "\n"
    (RESULTS_DIR / "networks.md").write_text(text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--modes", nargs="+", choices=["forward", "train"], default=["forward", "train"])
    parser.add_argument("--threads", type=int, default=1, help="1: on a shared CPU 2 threads ran up to 25x slower")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per configuration")
    parser.add_argument("--budget", type=float, default=3600.0, help="seconds for the whole run")
    parser.add_argument("--mem-limit-gib", type=float, default=8.0)
    parser.add_argument("--merge", action="store_true", help="keep earlier rows of the results file not re-measured")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args.models[0], args.sizes[0], args.modes[0], args.threads)))
        return 0

    rows: list = []
    kept: list = []
    if args.merge and (RESULTS_DIR / "networks.json").exists():
        planned = {(m, s, mode) for s in args.sizes for m in args.models for mode in args.modes}
        earlier = json.loads((RESULTS_DIR / "networks.json").read_text())["rows"]
        kept = [r for r in earlier if (r["model"], r["size"], r["mode"]) not in planned]
    start = time.perf_counter()
    for size in args.sizes:
        for model in args.models:
            for mode in args.modes:
                left = args.budget - (time.perf_counter() - start)
                if left < 10:
                    rows.append({"model": model, "size": size, "mode": mode, "error": "skipped: time budget spent"})
                else:
                    rows.append(run_one(model, size, mode, args.threads, min(args.timeout, left), args.mem_limit_gib))
                print(json.dumps(rows[-1]), flush=True)
                write_results(_ordered(kept + rows), args)  # keep partial results if the run is interrupted
    print(write_results(_ordered(kept + rows), args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
