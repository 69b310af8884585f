# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""The ``rat-monai`` console script.

Each subcommand lives in the module that owns its logic; that module provides two functions:

- ``add_arguments(parser: argparse.ArgumentParser) -> None`` declares the subcommand's options;
- ``run(args: argparse.Namespace) -> int`` does the work and returns the exit code.

This file only dispatches, so that ``rat-monai --help`` stays fast (modules load lazily) and each
subcommand is tested where its code is.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

__all__ = ["SUBCOMMANDS", "main"]

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("rat_monai.simulation.cli", "simulate paired low-dose / full-dose PET or CT scans"),
    "datalist": ("rat_monai.data.datalist", "build a Decathlon-style datalist.json from a folder of paired scans"),
    "regions": ("rat_monai.regions.cli", "write PNG overlays of region maps for a scan"),
    "infer": ("rat_monai.inference.cli", "restore a whole DICOM series or NIfTI scan with a bundle"),
    "evaluate": ("rat_monai.evaluation.cli", "score restorations on held-out patients: metrics table with intervals"),
}


class UserError(Exception):
    """An error caused by the user's input: printed as one clear message, without a traceback."""


def _build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rat-monai", description="Region Attention Transformer tools for MONAI.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if a in SUBCOMMANDS), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:  # only import the module of the subcommand actually used
            importlib.import_module(module_name).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except (UserError, OSError, ValueError, SystemExit) as e:  # OSError: not found, exists, permission denied, ...
        if isinstance(e, SystemExit):  # e.g. BundleUserError: its message, exit 1
            if isinstance(e.code, int) or e.code is None:
                raise
            e = UserError(str(e.code).removeprefix("error: "))
        if args.verbose:
            raise
        print(f"rat-monai {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
