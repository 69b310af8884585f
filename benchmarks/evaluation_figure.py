# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Picture next to the evidence table: one held-out slice as low dose, tuned classical denoiser, RAT and full dose.

Reads the first ``test`` pair of a Decathlon datalist (NIfTI, real units), restores one axial slice with the
classical denoiser at the strength ``rat-monai evaluate`` tuned (``--strength``) and with a bundle network, and
writes a 1x4 PNG in the modality's display window (:func:`rat_monai.visualize.display_window`) with each panel's
slice PSNR against full dose (data range as in the evaluation: the volume's SUVmax for PET, 2000 HU for CT).

Usage::

    python benchmarks/evaluation_figure.py --datalist data/pet_datalist.json --modality pet \
        --bundle bundles/rat_pet --denoiser bm3d --strength 32 --out bundles/rat_pet/docs/evidence.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from rat_monai.evaluation.methods import ClassicalMethod, NetworkMethod, stabilizer_for  # noqa: E402
from rat_monai.evaluation.metrics import psnr  # noqa: E402
from rat_monai.visualize import display_window  # noqa: E402


def _volume(path: Path) -> np.ndarray:
    """``[Z, H, W]`` axial slices of a NIfTI volume ``[X, Y, Z]`` (display orientation: rows = Y)."""
    return np.moveaxis(np.asarray(nib.load(str(path)).dataobj, np.float32), -1, 0).transpose(0, 2, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datalist", type=Path, required=True)
    parser.add_argument("--modality", choices=["pet", "ct"], required=True)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: <bundle>/models/model.pt")
    parser.add_argument("--denoiser", default="bm3d", choices=["gaussian", "nlm", "bm3d"])
    parser.add_argument("--strength", type=float, required=True, help="the tuned strength from the evaluation")
    parser.add_argument("--slice", type=int, default=None, help="default: the middle slice")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    entry = json.loads(args.datalist.read_text())["test"][0]
    root = args.datalist.parent
    low, full = (_volume(root / entry[k]) for k in ("image", "label"))
    k = len(full) // 2 if args.slice is None else args.slice
    if args.modality == "pet":
        data_range = float(full.max())
        ref, lq = full[k], low[k]
    else:
        data_range = 2000.0
        ref, lq = np.clip(full[k], -1000, 1000), low[k]
    names = {"gaussian": "Gaussian", "nlm": "NLM", "bm3d": "BM3D"}
    classical = ClassicalMethod(
        names[args.denoiser], args.denoiser, args.strength, stabilize=stabilizer_for(args.denoiser, args.modality)
    )
    network = NetworkMethod("RAT", args.bundle, args.checkpoint or args.bundle / "models" / "model.pt")
    panels = [("low dose", lq), (f"{classical.name} (tuned)", classical(lq[None])[0]), ("RAT", network(lq[None])[0])]
    lo, hi, cmap = display_window(ref, args.modality)
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4))
    for ax, (title, img) in zip(axes, panels + [("full dose", ref)]):
        shown = np.clip(img, -1000, 1000) if args.modality == "ct" else img
        label = title if title == "full dose" else f"{title}: {psnr(shown, ref, data_range):.2f} dB"
        ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi)
        ax.set_title(label, fontsize=11)
        ax.axis("off")
    fig.suptitle(f"{entry.get('subject', 'test')} slice {k} (held out), PSNR against full dose", fontsize=12)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
