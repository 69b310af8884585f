# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""``rat-monai evaluate``: the results table of the bundles (methods x metrics on held-out patients).

Example (the rat_pet table; the ablation rows are the same bundle with an override file and their own weights)::

    rat-monai evaluate --datalist data/pet/datalist.json --modality pet \\
        --network RAT bundles/rat_pet bundles/rat_pet/models/model.pt \\
        --network L1 bundles/rat_pet bundles/rat_pet/models/ablations/l1/model.pt \\
        --override L1 bundles/rat_pet/configs/ablations/l1.json \\
        --classical gaussian nlm bm3d --out benchmarks/results --name rat_pet
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

__all__ = ["add_arguments", "run"]

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``rat-monai evaluate``."""
    from .methods import CLASSICAL_GRIDS
    from rat_monai.visualize import CT_WIDE_WINDOW

    parser.add_argument("--datalist", required=True, help="datalist.json with 'test' (held-out) and 'validation'")
    parser.add_argument("--modality", required=True, choices=("pet", "ct"), help="modality of the datalist")
    parser.add_argument("--network", nargs=3, action="append", default=[], metavar=("NAME", "BUNDLE", "CHECKPOINT"),
                        help="a trained bundle network (repeatable), e.g. RAT bundles/rat_pet models/model.pt")
    parser.add_argument("--override", nargs=2, action="append", default=[], metavar=("NAME", "FILE"),
                        help="config override file for network NAME, merged over inference.json (repeatable, "
                             "in order), e.g. L1 bundles/rat_pet/configs/ablations/l1.json")
    parser.add_argument("--classical", nargs="*", default=None, choices=tuple(CLASSICAL_GRIDS),
                        help="classical denoisers tuned on the validation split (default: gaussian nlm, plus bm3d "
                             "when the bm3d package is installed)")
    parser.add_argument("--no-input-row", action="store_true", help="leave out the low-dose input row 'LQ'")
    parser.add_argument("--reference", default=None,
                        help="method the differences are taken against (default RAT, else the first network)")
    parser.add_argument("--test-split", default="test", help="datalist key of the held-out patients (default test)")
    parser.add_argument("--tune-split", default="validation", help="datalist key for tuning (default validation)")
    parser.add_argument("--tune-slices", type=int, default=24, help="validation slices used for tuning (default 24)")
    parser.add_argument("--ct-window", type=float, nargs=2, default=list(CT_WIDE_WINDOW), metavar=("LO", "HI"),
                        help="HU window of the CT metrics (default -1000 1000)")
    parser.add_argument("--region-method", default=None,
                        help="partitioner of the region PSNR (default: the reference network's)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--max-volumes", type=int, default=None, help="only the first N volumes per split")
    parser.add_argument("--device", default=None, help="torch device of the networks (default: the bundle's)")
    parser.add_argument("--batch-size", type=int, default=None, help="slices per network call (default: bundle's)")
    parser.add_argument("--out", required=True, help="folder of evaluation_<name>.json / .md")
    parser.add_argument("--name", default=None, help="result name (default: the first network's bundle folder)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``rat-monai evaluate`` with parsed ``args``; prints the two result paths and the findings."""
    from .methods import NetworkMethod, bm3d_available
    from .report import findings, write_report
    from .runner import evaluate

    names = [n for n, _, _ in args.network]
    unknown = sorted({n for n, _ in args.override} - set(names))
    if unknown:
        raise ValueError(f"--override names {unknown} match no --network (networks: {names}).")
    if args.tune_slices < 1 or args.bootstrap < 1:
        raise ValueError("--tune-slices and --bootstrap must be >= 1.")
    classical = args.classical
    if classical is None:
        classical = ["gaussian", "nlm"] + (["bm3d"] if bm3d_available() else [])
        if not bm3d_available():
            logger.warning("BM3D row skipped: the bm3d package is not installed (pip install 'rat-monai[eval]').")
    networks = []
    for name, bundle, ckpt in args.network:
        if not (Path(bundle) / "configs" / "inference.json").is_file():
            raise FileNotFoundError(f"--network {name}: {bundle} is not a bundle folder (no configs/inference.json).")
        files = [f for n, f in args.override if n == name]
        networks.append(NetworkMethod(name, bundle, ckpt, files, device=args.device, batch_size=args.batch_size))
    result = evaluate(
        args.datalist,
        args.modality,
        networks=networks,
        classical=classical,
        include_input=not args.no_input_row,
        reference=args.reference,
        test_split=args.test_split,
        tune_split=args.tune_split,
        tune_slices=args.tune_slices,
        ct_window=args.ct_window,
        region_method=args.region_method,
        n_boot=args.bootstrap,
        seed=args.seed,
        max_volumes=args.max_volumes,
        progress=not args.no_progress,
    )
    name = args.name or (Path(args.network[0][1]).resolve().name if args.network else f"{args.modality}_baselines")
    js, md = write_report(result, args.out, name)
    print(js)
    print(md)
    found = findings(result)
    print(f"differences against {result['reference']} whose 95 % interval excludes 0: {len(found)}")
    for f in found:
        print(f"  {f}")
    return 0
