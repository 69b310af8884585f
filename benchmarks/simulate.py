# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Wall time of ``rat-monai simulate {ct,pet} --from SCAN`` on the real series in ../shared/data/real.

The issue's target: the whole 51-slice 512x512 CT ``ct_crlm1006`` in minutes, not hours, on 2 cores. Each case is
one run of :func:`rat_monai.simulation.simulate_from_scans` (DICOM + NIfTI written, figures, preview), timed
end to end (load, noise / OSEM, writing), with the 1-minute load average before and after and the peak RSS.

Usage::

    python benchmarks/simulate.py                 # CT CRLM-1006 (dose 4); results in benchmarks/results/simulate.*
    python benchmarks/simulate.py --pet           # also the whole-body PET STS_001 (dose 12, 267 slices)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks._memory import peak_rss_mib  # noqa: E402
from rat_monai.data import load_volume  # noqa: E402
from rat_monai.simulation import simulate_from_scans  # noqa: E402

REAL = Path(os.environ.get("RAT_MONAI_SHARED", ROOT.parent / "shared")) / "data" / "real"
CASES = {
    "ct_crlm1006": ("ct", REAL / "ct_crlm1006" / "CRLM-CT-1006" / "image", 4.0),
    "pet_sts001": ("pet", REAL / "pet_fdg_sts001" / "STS_001" / "FDG_PET", 12.0),
}


def _load() -> float:
    return os.getloadavg()[0]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pet", action="store_true", help="also time the whole-body PET")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "simulate"))
    args = p.parse_args()
    results = []
    for name in ["ct_crlm1006"] + (["pet_sts001"] if args.pet else []):
        modality, src, d = CASES[name]
        with tempfile.TemporaryDirectory() as td:
            load0, t0 = _load(), time.perf_counter()
            dl = simulate_from_scans([src], Path(td) / "out", modality, dose_reduction=d, seed=0, progress=False)
            wall = time.perf_counter() - t0
            sim = json.loads((dl.parent / "simulation.json").read_text())
        fig = sim["subjects_figures"][0]
        shape = list(load_volume(src, units="stored").shape[1:])
        results.append({"case": name, "modality": modality, "shape": shape, "dose_reduction": d, "wall_s": round(wall, 1),
                        "per_slice_s": round(wall / shape[2], 3), "load_before": round(load0, 2),
                        "load_after": round(_load(), 2), "peak_rss_mib": round(peak_rss_mib()),
                        "figures": {k: v for k, v in fig.items() if k not in ("source",)}})
        print(json.dumps(results[-1]))
    env = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "numpy": np.__version__,
           "python": platform.python_version(), "machine": platform.machine()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"env": env, "results": results}, indent=2) + "\n")
    lines = ["# simulate --from SCAN: wall time on the real series", "",
             f"{env['cpus']} CPUs (shared with other jobs: see the load columns), numpy {env['numpy']}. One run per "
             "case (end to end: load, noise insertion / OSEM, DICOM + NIfTI, figures, preview).", "",
             "| case | shape | dose reduction | wall (s) | s / slice | load before / after | peak RSS (MiB) | "
             "PSNR LQ vs HQ (dB) | SSIM |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        f = r["figures"]
        lines.append(f"| {r['case']} | {'x'.join(map(str, r['shape']))} | {r['dose_reduction']:g} | {r['wall_s']} | "
                     f"{r['per_slice_s']} | {r['load_before']} / {r['load_after']} | {r['peak_rss_mib']} | "
                     f"{f['psnr_low_vs_full_body_db']} | {f['ssim_low_vs_full']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
