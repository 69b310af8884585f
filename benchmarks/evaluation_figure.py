# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Picture next to the evidence table: one held-out slice as low dose, tuned classical denoiser, RAT and full dose.

Loads the first ``test`` volume of a datalist as ``rat-monai evaluate`` does (:func:`rat_monai.evaluation.load_split`),
restores its middle slice with the classical denoiser at the strength the evaluation tuned (``--strength``) and with
a bundle network, and writes a 1x4 PNG in the modality's display window (:func:`rat_monai.visualize.display_window`)
with each panel's slice PSNR against full dose, computed as the evaluation does (same data range and CT window).

Usage::

    python benchmarks/evaluation_figure.py --datalist data/pet_datalist.json --modality pet \
        --bundle bundles/rat_pet --denoiser bm3d --strength 32 --out bundles/rat_pet/docs/evidence.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rat_monai.evaluation import load_split, psnr, volume_data_range  # noqa: E402
from rat_monai.evaluation.methods import NetworkMethod, classical_method, stabilizer_for  # noqa: E402
from rat_monai.evaluation.metrics import prepare_pair  # noqa: E402
from rat_monai.visualize import display_window  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datalist", type=Path, required=True)
    parser.add_argument("--modality", choices=["pet", "ct"], required=True)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: <bundle>/models/model.pt")
    parser.add_argument("--denoiser", default="bm3d", choices=["gaussian", "nlm", "bm3d"])
    parser.add_argument("--strength", type=float, required=True, help="the tuned strength from the evaluation")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    vol = load_split(args.datalist, "test", args.modality, max_volumes=1)[0]
    k = len(vol["full"]) // 2
    low, full = vol["low"][k : k + 1], vol["full"][k]
    data_range = volume_data_range(vol["full"], args.modality)
    classical = classical_method(args.denoiser, args.strength, stabilize=stabilizer_for(args.denoiser, args.modality))
    network = NetworkMethod("RAT", args.bundle, args.checkpoint or args.bundle / "models" / "model.pt")
    panels = [("low dose", low[0]), (f"{classical.name} (tuned)", classical(low)[0]), ("RAT", network(low)[0])]
    titles = [f"{t}: {psnr(*prepare_pair(img, full, args.modality), data_range):.2f} dB" for t, img in panels]
    lo, hi, cmap = display_window(full, args.modality)
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4))
    for ax, title, img in zip(axes, titles + ["full dose"], [img for _, img in panels] + [full]):
        ax.imshow(img.T, cmap=cmap, vmin=lo, vmax=hi)  # [X, Y] slice: rows = Y
        ax.set_title(title, fontsize=11)
        ax.axis("off")
    fig.suptitle(f"{vol['name']} slice {vol['slices'][k]} (held out), PSNR against full dose", fontsize=12)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
