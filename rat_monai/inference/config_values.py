# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""User values into a bundle config as plain values, never as MONAI config syntax.

``ConfigParser`` reads a string that starts with ``$`` as Python to evaluate, ``@id`` as a reference and ``%`` as a
macro, also inside lists and dicts. A value a user typed (``--checkpoint '$__import__("os").system(...)'``, a path
with an ``@``) must stay the string it is. :func:`set_plain` therefore stores each value in a list the parser sees as
a global and sets the config id to the expression ``$_rat_user_values[i]``, which evaluates to the object itself:
its content is never parsed. Values wrapped in :class:`Plain` (what ``rat-monai infer`` does with every
``--override``) and the explicit arguments of ``ScanRestorer.from_bundle`` (``checkpoint``, ``device``, ...) take
this path; other keyword overrides of the Python API keep the config syntax (e.g. a ``_target_`` component).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

__all__ = ["USER_VALUES", "Plain", "has_component", "make_parser", "set_plain", "set_user_values"]

#: the global name under which the parser sees the user's values
USER_VALUES = "_rat_user_values"


class Plain:
    """A value to set in a bundle config as is: never evaluated (``$``), resolved (``@``) or expanded (``%``)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Plain({self.value!r})"


def has_component(value: Any) -> bool:
    """True when ``value`` holds a config component (a dict with ``_target_``) at any depth."""
    if isinstance(value, dict):
        return "_target_" in value or any(has_component(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_component(v) for v in value)
    return False


def make_parser(config: str | Path) -> Any:
    """A ``ConfigParser`` that reads ``config`` and can take plain user values (:func:`set_plain`)."""
    parser = ConfigParser(globals={USER_VALUES: []})
    parser.read_config(str(config))
    return parser


def set_plain(parser: Any, key: str, value: Any) -> None:
    """``parser[key] = value`` without MONAI interpreting ``$``/``@``/``%`` anywhere inside ``value``."""
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, (str, list, tuple, dict)):
        values = parser.globals[USER_VALUES]
        values.append(value)
        parser[key] = f"${USER_VALUES}[{len(values) - 1}]"
    else:
        parser[key] = value


def _known(parser: Any, key: str) -> bool:
    try:
        parser[key]
    except (KeyError, IndexError, ValueError, TypeError):
        return False
    return True


def _new_component_arg(parser: Any, key: str) -> bool:
    """``id#arg`` where ``id`` is a config component (a dict with ``_target_``): a keyword argument it can take.

    MONAI's own ``monai.bundle run --network_def#arg value`` adds such a key; a misspelt argument then fails when the
    component is built (a TypeError naming it), so nothing is silently ignored.
    """
    parent, sep, arg = key.rpartition("#")
    if not sep or not arg.isidentifier() or not _known(parser, parent):
        return False
    node = parser[parent]
    return isinstance(node, dict) and "_target_" in node


def set_user_values(parser: Any, values: Mapping[str, Any], target_cls: type, target_id: str = "restorer") -> None:
    """Set each ``key: value``: a config id, or else an argument of ``target_cls`` (the object built at
    ``target_id``, set as ``target_id#key``). :class:`Plain` values are set with :func:`set_plain`, others as config
    content.

    Raises:
        ValueError: a key that is neither, naming it and the closest config ids.
    """
    params = set(inspect.signature(target_cls.__init__).parameters) - {"self"}
    ids = [k for k in parser.get() if isinstance(k, str)] if isinstance(parser.get(), dict) else []
    for key, value in values.items():
        setter = set_plain if isinstance(value, Plain) else parser.__setitem__
        value = value.value if isinstance(value, Plain) else value
        if _known(parser, key) or _new_component_arg(parser, key):
            setter(parser, key, value) if setter is set_plain else setter(key, value)
        elif key in params:
            setter(parser, f"{target_id}#{key}", value) if setter is set_plain else setter(f"{target_id}#{key}", value)
        else:
            close = difflib.get_close_matches(key.split("#")[0], ids + sorted(params), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"unknown override {key!r}: the bundle config has no such id and {target_cls.__name__} no such "
                f"argument.{hint} Nested ids use '#', e.g. network_def#middle_blocks."
            )
