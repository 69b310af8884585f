# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Loading what a restoration needs: the network weights (checkpoint) and the restorer of a bundle config."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from rat_monai.data.modality import normalize_modality

from .config_values import Plain, make_parser, set_plain, set_user_values
from .safety import bundle_modality, validate_allow

__all__ = ["bundle_version", "load_checkpoint", "restorer_from_bundle"]

logger = logging.getLogger(__name__)


def bundle_version(bundle_root: str | os.PathLike) -> str | None:
    """The ``version`` of ``<bundle_root>/configs/metadata.json``, or None when the file is absent or has none."""
    path = Path(bundle_root) / "configs" / "metadata.json"
    try:
        with open(path, encoding="utf-8") as f:
            version = json.load(f).get("version")
    except (OSError, ValueError, AttributeError):
        return None
    return None if version is None else str(version)


def load_checkpoint(network: torch.nn.Module, checkpoint: str | None, allow_untrained: bool) -> bool:
    """Load ``checkpoint`` into ``network``.

    Args:
        network: the network, changed in place.
        checkpoint: file with the network's state dict (``torch.save(net.state_dict())``; a dict holding it under
            ``"network"``, ``"model"`` or ``"state_dict"`` is accepted too), or None.
        allow_untrained: keep the network's initial weights when ``checkpoint`` is None or missing (with a warning).

    Returns:
        True when the network stays untrained.

    Raises:
        FileNotFoundError: no checkpoint (None or missing) and not ``allow_untrained``.
        ValueError: the file cannot be read, holds no state dict, or does not fit the network.
    """
    if checkpoint is None or not os.path.isfile(checkpoint):
        what = "no checkpoint was given" if checkpoint is None else f"checkpoint not found: {checkpoint}"
        if not allow_untrained:
            raise FileNotFoundError(
                f"{what}. Train the bundle first (it writes models/model.pt), pass --checkpoint PATH, or pass "
                "--allow-untrained (allow_untrained=True) to run an untrained network for testing."
            )
        logger.warning(
            "%s: running an UNTRAINED network (allow_untrained=True); the output is not a restoration.", what
        )
        return True
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise ValueError(f"cannot read the checkpoint {checkpoint}: {e}") from e
    if isinstance(state, Mapping):
        for key in ("network", "model", "state_dict"):
            if key in state and isinstance(state[key], Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping):
        raise ValueError(f"checkpoint {checkpoint} does not hold a state dict (found {type(state).__name__}).")
    try:
        network.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(
            f"checkpoint {checkpoint} does not fit the network (are the bundle's network settings, e.g. width, "
            f"the ones it was trained with?): {e}"
        ) from e
    return False


def restorer_from_bundle(
    restorer_cls: type,
    bundle_dir: str | os.PathLike,
    given: Mapping[str, Any],
    overrides: Mapping[str, Any],
    config_file: str = "configs/inference.json",
) -> Any:
    """Build the id ``restorer`` of a bundle config (what ``ScanRestorer.from_bundle`` does).

    Args:
        restorer_cls: the class the id must build (``ScanRestorer``); its arguments are valid overrides.
        bundle_dir: the bundle folder (``bundle_root``).
        given: config ids set as plain values, never evaluated (``checkpoint``, ``device``, ...; None values skipped).
        overrides: other config ids or ``restorer_cls`` arguments, as config content (see
            :func:`~rat_monai.inference.config_values.set_user_values`).
        config_file: config path relative to ``bundle_dir``. Defaults to ``"configs/inference.json"``.

    Raises:
        FileNotFoundError: the bundle or its config is missing.
        ValueError: an id given twice or unknown, a modality that differs from the bundle's metadata.json, or an id
            ``restorer`` that builds something else.
    """
    root = Path(bundle_dir)
    config = root / config_file
    if not config.is_file():
        raise FileNotFoundError(f"bundle config not found: {config} (is {root} a rat-monai bundle folder?)")
    parser = make_parser(config)
    set_plain(parser, "bundle_root", str(root))
    given = {k: Plain(str(v) if isinstance(v, torch.device) else v) for k, v in given.items() if v is not None}
    twice = sorted(set(given) & set(overrides))
    if twice:
        raise ValueError(f"{', '.join(twice)} given both as an option and as an override; give each once.")
    set_user_values(parser, {**given, **overrides}, restorer_cls)  # plain values: a leading "$" or "@" is not code
    if "model_version" not in overrides and "model_version" in parser:
        set_plain(parser, "model_version", bundle_version(root))
    trained_on, allowed = bundle_modality(root), overrides.get("allow")
    configured = normalize_modality(str(parser.get_parsed_content("modality")))
    allowed = validate_allow(getattr(allowed, "value", allowed))
    if trained_on and configured != trained_on and "modality" not in allowed:
        raise ValueError(
            f"{root}: modality {parser['modality']!r} does not match the modality the bundle was trained on "
            f"({trained_on} in configs/metadata.json) (check 'modality'); pass --allow modality to proceed."
        )
    if "seed" in parser:
        torch.manual_seed(int(parser.get_parsed_content("seed")))
    try:
        restorer = parser.get_parsed_content("restorer")
    except RuntimeError as e:  # monai.bundle wraps constructor errors: surface the user-facing cause
        cause = e.__cause__
        while isinstance(cause, RuntimeError) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, (FileNotFoundError, FileExistsError, ValueError)):
            raise cause from None
        raise
    if not isinstance(restorer, restorer_cls):
        raise ValueError(
            f"{config}: the id 'restorer' must build a {restorer_cls.__name__}, got {type(restorer).__name__}."
        )
    return restorer
