# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Load weights saved from the RAT authors' published model into :class:`~rat_monai.networks.nets.RAT`."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

__all__ = ["convert_official_rat_state_dict"]

# (pattern on the authors' key, replacement giving our key); the first match wins. Indices are kept, so the
# mapping works for any width, number of levels, blocks and layers.
_NAF = r"(conv[1-5]\.(?:weight|bias)|norm[12]\.(?:weight|bias)|beta|gamma)"
_RULES: tuple[tuple[re.Pattern, str], ...] = tuple(
    (re.compile(p), r)
    for p, r in (
        (r"^intro\.(weight|bias)$", r"conv_in.\1"),
        (r"^ending\.(weight|bias)$", r"conv_out.\1"),
        (rf"^(encoders|decoders)\.(\d+)\.(\d+)\.{_NAF}$", r"\1.\2.\3.\4"),
        (r"^(encoders|decoders)\.(\d+)\.(\d+)\.sca\.1\.(weight|bias)$", r"\1.\2.\3.sca_conv.\4"),
        (r"^downs\.(\d+)\.(weight|bias)$", r"downs.\1.\2"),
        (r"^ups\.(\d+)\.0\.weight$", r"ups.\1.0.weight"),
        (r"^middle_blks\.(\d+)\.conv\.(weight|bias)$", r"middle.\1.conv.\2"),
        (r"^middle_blks\.(\d+)\.layers\.(\d+)\.norm_ra\.(weight|bias)$", r"middle.\1.layers.\2.norm_region.\3"),
        (
            r"^middle_blks\.(\d+)\.layers\.(\d+)\.norm_ra_mlp\.(weight|bias)$",
            r"middle.\1.layers.\2.norm_region_mlp.\3",
        ),
        (r"^middle_blks\.(\d+)\.layers\.(\d+)\.norm_wa\.(weight|bias)$", r"middle.\1.layers.\2.norm_window.\3"),
        (
            r"^middle_blks\.(\d+)\.layers\.(\d+)\.norm_wa_mlp\.(weight|bias)$",
            r"middle.\1.layers.\2.norm_window_mlp.\3",
        ),
        (r"^middle_blks\.(\d+)\.layers\.(\d+)\.ra\.qkv\.(weight|bias)$", r"middle.\1.layers.\2.region_attn.qkv.\3"),
        (
            r"^middle_blks\.(\d+)\.layers\.(\d+)\.ra\.project_out\.(weight|bias)$",
            r"middle.\1.layers.\2.region_attn.proj.\3",
        ),
        (r"^middle_blks\.(\d+)\.layers\.(\d+)\.wa\.qkv\.(weight|bias)$", r"middle.\1.layers.\2.window_attn.qkv.\3"),
        (
            r"^middle_blks\.(\d+)\.layers\.(\d+)\.wa\.proj_out\.(weight|bias)$",
            r"middle.\1.layers.\2.window_attn.proj.\3",
        ),
        (
            r"^middle_blks\.(\d+)\.layers\.(\d+)\.mlp_ra\.(fc[12])\.(weight|bias)$",
            r"middle.\1.layers.\2.mlp_region.\3.\4",
        ),
        (
            r"^middle_blks\.(\d+)\.layers\.(\d+)\.mlp_wa\.(fc[12])\.(weight|bias)$",
            r"middle.\1.layers.\2.mlp_window.\3.\4",
        ),
        (r"^middle_blks\.(\d+)\.layers\.(\d+)\.lambda_ra$", r"middle.\1.layers.\2.scale_region"),
        (r"^middle_blks\.(\d+)\.layers\.(\d+)\.lambda_wa$", r"middle.\1.layers.\2.scale_window"),
    )
)
_WRAPPER_KEYS = ("state_dict", "params", "model", "net")


def convert_official_rat_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a state dict saved from the authors' published RAT (``Model_RAT.RAT``) onto :class:`RAT`'s keys.

    ``RAT(...).load_state_dict(convert_official_rat_state_dict(sd))`` then reproduces the published model's outputs
    (for the same configuration: pass the authors' width, block counts and heads to :class:`RAT`; the mapping itself
    works for any of them). Key renames: ``intro``/``ending`` -> ``conv_in``/``conv_out``, ``sca.1`` -> ``sca_conv``,
    ``middle_blks.K`` -> ``middle.K``, ``norm_ra``/``norm_ra_mlp``/``norm_wa``/``norm_wa_mlp`` ->
    ``norm_region``/``norm_region_mlp``/``norm_window``/``norm_window_mlp``, ``ra.qkv``/``ra.project_out`` ->
    ``region_attn.qkv``/``region_attn.proj``, ``wa.qkv``/``wa.proj_out`` -> ``window_attn.qkv``/``window_attn.proj``,
    ``mlp_ra``/``mlp_wa`` -> ``mlp_region``/``mlp_window``, ``lambda_ra``/``lambda_wa`` ->
    ``scale_region``/``scale_window``.

    Channel orders: both published attentions order the 3C qkv outputs as (q/k/v, head, head channel), i.e. channel
    ``s * C + head * (C // heads) + c`` (``ra``: split in three then ``b (head c) h w``; ``wa``: ``view(3, heads,
    head_dim)``). Ours use exactly that order, so tensors are copied unchanged (``clone``d, never shared); the tests
    check it against a re-implementation of the authors' modules.

    A ``module.`` prefix (``DataParallel``) is stripped, and a checkpoint dict that wraps the state dict under one of
    ``state_dict``/``params``/``model``/``net`` is unwrapped.

    Args:
        state_dict: the authors' state dict (e.g. ``torch.load(path, map_location="cpu")``).

    Returns:
        a new state dict with our keys.

    Raises:
        ValueError: when a key is not part of the published layout, or two keys map to the same target.
        TypeError: when ``state_dict`` is not a mapping of names to tensors.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of parameter names to tensors, got {type(state_dict).__name__}.")
    for wrapper in _WRAPPER_KEYS:
        if wrapper in state_dict and isinstance(state_dict[wrapper], Mapping):
            state_dict = state_dict[wrapper]
            break
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state_dict[{key!r}] is a {type(value).__name__}, expected a tensor.")
        name = key[len("module.") :] if key.startswith("module.") else key
        for pattern, replacement in _RULES:
            if pattern.match(name):
                new = pattern.sub(replacement, name)
                break
        else:
            unknown.append(key)
            continue
        if new in converted:
            raise ValueError(f"two keys of the state dict map to {new!r} (the second is {key!r}).")
        converted[new] = value.detach().clone()
    if unknown:
        shown = ", ".join(repr(k) for k in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        raise ValueError(
            f"{len(unknown)} key(s) are not part of the published RAT checkpoint layout: {shown}. Pass the state dict "
            "of the authors' Model_RAT.RAT (see method-notes 'The authors' checkpoint layout'); for rat-monai's own "
            "checkpoints use RAT.load_state_dict directly."
        )
    return converted
