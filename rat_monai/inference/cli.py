# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""``rat-monai infer``: restore a whole DICOM series or NIfTI scan with a bundle.

Example::

    rat-monai infer --bundle bundles/rat_pet --input scans/low_dose_pet --output restored/pet
"""

from __future__ import annotations

import argparse
import json
import signal
from typing import Any

from rat_monai.cli import UserError

from .config_values import Plain, has_component
from .restorer import ScanRestorer
from .safety import ALLOW_CHOICES

__all__ = ["add_arguments", "run", "parse_override"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, help="bundle folder, e.g. bundles/rat_pet")
    parser.add_argument("--input", required=True, help="DICOM series folder or .nii/.nii.gz file")
    parser.add_argument("--output", required=True, help="output folder (created; must not exist unless --overwrite)")
    parser.add_argument("--format", default="both", choices=("dicom", "nifti", "both"), help="default: both")
    parser.add_argument("--checkpoint", default=None, help="network weights (default: <bundle>/models/model.pt)")
    parser.add_argument("--sam-checkpoint", default=None, help="SAM checkpoint for the region maps")
    parser.add_argument("--batch-size", type=int, default=None, help="slices per network call (default: bundle's)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: bundle's)")
    parser.add_argument("--cache-dir", default=None, help="region-map cache (default: OUTPUT.regions_cache)")
    parser.add_argument("--series-uid", default=None, help="series to restore when the folder holds several")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing output folder of an earlier rat-monai infer run"
    )
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        choices=ALLOW_CHOICES,
        metavar="CHECK",
        help="proceed although a safety check fails (recorded in report.json); repeatable. CHECK: modality (input "
        "modality differs from the bundle's), radionuclide (PET not F-18), acquisition (SPECT stored as PET), units "
        "(NIfTI values contradict their units), tilt (gantry-tilted series), gaps (missing slices)",
    )
    parser.add_argument(
        "--allow-untrained", action="store_true", help="run an untrained network when no checkpoint exists (testing)"
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="ID=VALUE",
        help="override a config id, e.g. --override width=8 (VALUE is parsed as JSON when it can be); repeatable",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument(
        "--bf16", action="store_true", help="bfloat16 autocast for the network (about 2x faster on CPUs with BF16)"
    )


def parse_override(text: str) -> tuple[str, Any]:
    """``"ID=VALUE"`` -> ``(ID, VALUE)`` with VALUE parsed as JSON when possible (``8``, ``true``, ``[1, 2]``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--override expects ID=VALUE (e.g. width=8), got {text!r}.")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = dict(parse_override(o) for o in args.override)
    components = [k for k, v in overrides.items() if has_component(v)]
    if components:
        raise UserError(
            f"--override {components[0]}=...: values on the command line are plain values, not config components "
            "(_target_); set nested ids instead (e.g. --override network_def#middle_blocks=1) or edit a copy of the "
            "bundle's configs."
        )
    overrides = {k: Plain(v) for k, v in overrides.items()}  # never evaluated: '$...' or '@...' stay text
    # options that are also config ids: one value each, through the option's own argument
    explicit = {"checkpoint": args.checkpoint, "sam_checkpoint": args.sam_checkpoint, "device": args.device,
                "batch_size": args.batch_size}  # fmt: skip
    for key in [k for k in overrides if k in explicit]:
        if explicit[key] is not None:
            raise UserError(f"--{key.replace('_', '-')} and --override {key}=... both given; give only one of them.")
        explicit[key] = overrides.pop(key).value
    if args.allow:
        overrides["allow"] = sorted(set(args.allow))
    if args.allow_untrained:
        overrides["allow_untrained"] = True
    if args.no_progress:
        overrides["progress"] = False
    if args.bf16:
        overrides["amp"] = True
    if args.series_uid is not None:
        overrides["series_uid"] = Plain(args.series_uid)
    # SIGTERM (e.g. a job scheduler) unwinds like Ctrl-C, so the temporary output folder is removed
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        restorer = ScanRestorer.from_bundle(args.bundle, **explicit, **overrides)
        report = restorer.run(
            args.input, args.output, format=args.format, overwrite=args.overwrite, cache_dir=args.cache_dir
        )
    except KeyboardInterrupt:
        print(f"rat-monai infer: interrupted; nothing was written to {args.output} (the region cache is kept).")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    stages = report["timings"]["stages"]
    summary = ", ".join(f"{k} {v['seconds']:.1f} s" for k, v in stages.items())
    print(f"restored {report['num_slices']} slices into {report['output']} ({summary})")
    return 0
