# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""rat_monai.simulation: paired low-dose / full-dose PET and CT data (``rat-monai simulate``).

- :mod:`.phantom`: anthropomorphic torso phantoms (SUV, HU and 511 keV attenuation maps);
- :mod:`.projectors` / :mod:`.reconstruction`: 2D parallel-beam projectors; ramp filter, FBP and OSEM;
- :mod:`.pet` / :mod:`.ct`: one phantom imaged at full and at reduced dose, reconstructed alike;
- :mod:`.dataset`: a data set of phantom pairs (NIfTI, DICOM, ``datalist.json``, ``simulation.json``);
- :mod:`.from_scans`: pairs made from real full-dose scans (projection-domain noise insertion / count thinning);
- :mod:`.dicom_export` and :mod:`.output`: the series headers made up for phantoms, and what every data set writes;
- :mod:`.cli`: the ``rat-monai simulate`` subcommand.
"""

from __future__ import annotations

from .ct import simulate_ct_pair
from .dataset import simulate_dataset
from .defaults import DEFAULT_DOSE_REDUCTION, DEFAULT_SHAPE
from .from_scans import simulate_from_scans
from .pet import pet_counts_and_osem, simulate_pet_pair
from .phantom import TISSUES, Phantom, make_phantom
from .projectors import ParallelProjector, clear_projector_cache, forward_project_interp
from .reconstruction import fbp, fbp_blockwise, osem, ramp_filter

__all__ = [
    "DEFAULT_DOSE_REDUCTION",
    "DEFAULT_SHAPE",
    "TISSUES",
    "ParallelProjector",
    "Phantom",
    "clear_projector_cache",
    "fbp",
    "fbp_blockwise",
    "forward_project_interp",
    "make_phantom",
    "osem",
    "pet_counts_and_osem",
    "ramp_filter",
    "simulate_ct_pair",
    "simulate_dataset",
    "simulate_from_scans",
    "simulate_pet_pair",
]
