# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Modality names: the one table of how users spell a modality, and the two forms the package uses.

- the DICOM ``Modality`` code (``"PT"``, ``"CT"``, ``"MR"``, ...): what ``load_volume`` records in
  ``meta["modality"]`` and what :func:`normalize_modality` returns;
- the short name of a modality a network restores (``"pet"``, ``"ct"``): what bundles, ``ScanRestorer`` and the
  region partitioners take, returned by :func:`short_modality`.
"""

from __future__ import annotations

__all__ = ["MODALITY_ALIASES", "SHORT_NAMES", "normalize_modality", "short_modality"]

#: user spellings (lower case) -> DICOM Modality code; any other spelling is taken as a code in upper case
MODALITY_ALIASES = {"pet": "PT", "pt": "PT", "ct": "CT", "mr": "MR", "mri": "MR"}
#: DICOM Modality code -> short name, for the modalities rat-monai restores
SHORT_NAMES = {"PT": "pet", "CT": "ct"}


def normalize_modality(modality: str | None) -> str | None:
    """Map user spellings ("pet", "PT", "ct", ...) to the DICOM Modality code ("PT", "CT", ...); ``None`` stays.

    Raises:
        ValueError: ``modality`` is not a non-empty string (or None).
    """
    if modality is None:
        return None
    if not isinstance(modality, str) or not modality.strip():
        raise ValueError(f"modality must be a string such as 'pet' or 'ct' (or None), got {modality!r}.")
    key = modality.strip().lower()
    return MODALITY_ALIASES.get(key, modality.strip().upper())


def short_modality(modality: str | None, strict: bool = True) -> str | None:
    """``"pet"`` or ``"ct"`` for any spelling of PET or CT ("pet", "PT", "PET", "ct", "CT", ...).

    Args:
        modality: the spelling.
        strict: raise for any other (or no) modality. Defaults to True; False returns None instead.

    Raises:
        ValueError: with ``strict``, for any other modality (or None), naming the valid ones.
    """
    code = normalize_modality(modality) if isinstance(modality, str) and modality.strip() else None
    if code not in SHORT_NAMES:
        if strict:
            raise ValueError(f"modality must be 'pet' or 'ct' (or 'PT'/'CT'), got {modality!r}.")
        return None
    return SHORT_NAMES[code]
