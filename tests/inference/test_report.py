# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import pytest

from rat_monai.inference.report import StageTimer, peak_rss_mb


def test_stage_timer():
    timer = StageTimer()
    with timer.stage("a"):
        sum(range(10000))
    with pytest.raises(ValueError), timer.stage("b"):
        raise ValueError("a failed stage is not recorded")
    assert list(timer.wall) == ["a"] and list(timer.cpu) == ["a"]
    assert 0.0 <= timer.wall["a"] <= timer.total()
    assert peak_rss_mb() > 1.0
