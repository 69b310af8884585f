# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Process memory readings shared by the benchmark scripts (Linux): current and peak resident set size in MiB."""

from __future__ import annotations

import os
import resource

__all__ = ["current_rss_mib", "peak_rss_mib"]


def current_rss_mib() -> float:
    """Resident set size of this process now (``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (``ru_maxrss``, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
