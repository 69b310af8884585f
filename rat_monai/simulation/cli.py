# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""``rat-monai simulate {pet,ct}``: phantom pairs (:mod:`rat_monai.simulation.dataset`) or, with ``--from SCAN``,
pairs made from real full-dose scans (:mod:`rat_monai.simulation.from_scans`)."""

from __future__ import annotations

import argparse

from rat_monai.simulation.dataset import simulate_dataset
from rat_monai.simulation.from_scans import simulate_from_scans

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``rat-monai simulate``."""
    parser.add_argument("modality", choices=("pet", "ct"), help="which modality to simulate")
    parser.add_argument("--out", required=True, help="output folder (must be empty unless --overwrite)")
    parser.add_argument("--from", dest="sources", action="append", default=None, metavar="SCAN",
                        help="make the pairs from this real full-dose scan (DICOM series folder or NIfTI; repeat for "
                             "several) instead of phantoms: see rat_monai.simulation.from_scans")
    parser.add_argument("--ct", dest="ct", action="append", default=None, metavar="CT",
                        help="PET --from only: co-registered CT for the attenuation (one per --from, same order)")
    parser.add_argument("--i0", type=float, default=None,
                        help="CT --from only: full-dose photons per ray (default: from the mAs/kVp tags)")
    parser.add_argument("--subjects", type=int, default=None, help="number of phantom subjects (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), default=None,
                        help="volume shape (default 128 128 64 for PET, 256 256 32 for CT)")
    parser.add_argument("--dose-reduction", type=float, default=None, help="low-dose factor (default 12 PET, 4 CT)")
    parser.add_argument("--iterations", type=int, default=4, help="PET OSEM iterations (default 4)")
    parser.add_argument("--subsets", type=int, default=8, help="PET OSEM subsets (default 8)")
    parser.add_argument("--formats", nargs="+", choices=("dicom", "nifti"), default=["dicom", "nifti"],
                        help="what to write (default both)")
    parser.add_argument("--split", type=float, nargs=3, default=[0.7, 0.15, 0.15],
                        metavar=("TRAIN", "VAL", "TEST"), help="split fractions (default 0.7 0.15 0.15)")
    parser.add_argument("--no-preview", action="store_true", help="do not write the preview PNG")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--overwrite", action="store_true", help="allow a non-empty output folder")


def run(args: argparse.Namespace) -> int:
    """Run ``rat-monai simulate`` with parsed ``args``; prints the datalist path."""
    if args.sources:
        if args.subjects is not None or args.shape is not None:
            raise ValueError("--subjects and --shape are for phantoms; with --from the scans set both.")
        path = simulate_from_scans(
            args.sources, args.out, modality=args.modality, dose_reduction=args.dose_reduction, seed=args.seed,
            ct=args.ct, i0=args.i0, formats=args.formats, split=args.split, progress=not args.no_progress,
            preview=not args.no_preview, overwrite=args.overwrite, iterations=args.iterations, subsets=args.subsets,
        )
    else:
        if args.ct or args.i0 is not None:
            raise ValueError("--ct and --i0 go with --from SCAN (simulation from a real scan).")
        path = simulate_dataset(
            args.out, modality=args.modality, subjects=4 if args.subjects is None else args.subjects, seed=args.seed,
            shape=args.shape, dose_reduction=args.dose_reduction, formats=args.formats, split=args.split,
            progress=not args.no_progress, iterations=args.iterations, subsets=args.subsets,
            preview=not args.no_preview, overwrite=args.overwrite,
        )
    print(path)
    return 0
