# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import pytest

from rat_monai.data.modality import normalize_modality, short_modality


@pytest.mark.parametrize(
    "spelling, code, short",
    [("pet", "PT", "pet"), ("PT", "PT", "pet"), (" PET ", "PT", "pet"), ("ct", "CT", "ct"), ("CT", "CT", "ct"),
     ("mri", "MR", None), ("nm", "NM", None)],
)  # fmt: skip
def test_spellings(spelling, code, short):
    assert normalize_modality(spelling) == code
    assert short_modality(spelling, strict=False) == short


def test_ill_arg():
    assert normalize_modality(None) is None
    with pytest.raises(ValueError, match="string"):
        normalize_modality("")
    with pytest.raises(ValueError, match="'pet' or 'ct'"):
        short_modality("mr")
    with pytest.raises(ValueError, match="'pet' or 'ct'"):
        short_modality(None)
