# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Estimate the total training time from the first iterations, and warn when a CPU run would take too long."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch
from ignite.engine import Engine, Events

__all__ = ["TrainingTimeEstimate", "DEFAULT_CHEAPER_OPTION"]

DEFAULT_CHEAPER_OPTION = (
    "train the bundle's default CPU configuration (configs/train.json without configs/paper.json), lower "
    "max_iterations / width / patch_size, or run configs/paper.json on a GPU"
)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600.0:.1f} h" if seconds >= 3600 else f"{seconds / 60.0:.1f} min"


class TrainingTimeEstimate:
    """Ignite handler: times iterations ``skip + 1 .. skip + measure`` of this run, multiplies the mean time per
    iteration by the iterations left, logs the estimate, and logs a WARNING (with the cheaper option) when the run is
    on a CPU and the estimate exceeds ``warn_hours``.

    The first ``skip`` iterations are not timed (allocator warm-up, first-batch caching). The estimate covers training
    iterations only, not validation runs. When resuming, the iterations left are counted from the resumed iteration.

    Args:
        max_iterations: total iterations of the run (the bundles' ``max_iterations``). Defaults to None: the engine's
            ``max_epochs * epoch_length``.
        device: the training device; the warning is for CPU runs (on a GPU the estimate is logged at INFO). Defaults to
            None (CPU).
        warn_hours: warning threshold in hours. Defaults to 12.
        skip: iterations not timed. Defaults to 2.
        measure: iterations timed. Defaults to 5.
        cheaper_option: what the warning suggests. Defaults to :data:`DEFAULT_CHEAPER_OPTION`.
        clock: monotonic time in seconds (injectable for tests). Defaults to ``time.perf_counter``.

    Attributes:
        seconds_per_iteration, estimate_seconds: set once measured (None before).
        warned: True when the warning was logged.

    Raises:
        ValueError: for ``warn_hours <= 0``, ``skip < 0`` or ``measure < 1``.
    """

    def __init__(
        self,
        max_iterations: int | None = None,
        device: str | torch.device | None = None,
        warn_hours: float = 12.0,
        skip: int = 2,
        measure: int = 5,
        cheaper_option: str = DEFAULT_CHEAPER_OPTION,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if warn_hours <= 0 or skip < 0 or measure < 1:
            raise ValueError(f"need warn_hours > 0, skip >= 0, measure >= 1; got {warn_hours}, {skip}, {measure}.")
        self.max_iterations = None if max_iterations is None else int(max_iterations)
        self.on_cpu = torch.device(device if device is not None else "cpu").type == "cpu"
        self.warn_hours = float(warn_hours)
        self.skip, self.measure = int(skip), int(measure)
        self.cheaper_option = cheaper_option
        self.clock = clock
        self.seconds_per_iteration: float | None = None
        self.estimate_seconds: float | None = None
        self.warned = False
        self.logger = logging.getLogger(__name__)
        self._start_iteration: int | None = None
        self._t0: float | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)

    def _total(self, engine: Engine) -> int | None:
        if self.max_iterations is not None:
            return self.max_iterations
        epochs, length = engine.state.max_epochs, engine.state.epoch_length
        return None if epochs is None or length is None else int(epochs) * int(length)

    def _started(self, engine: Engine) -> None:
        self._start_iteration, self._t0 = int(engine.state.iteration), None
        self.seconds_per_iteration = self.estimate_seconds = None
        if self.skip == 0:
            self._t0 = self.clock()

    def _iteration_completed(self, engine: Engine) -> None:
        if self._start_iteration is None or self.estimate_seconds is not None:
            return
        done = int(engine.state.iteration) - self._start_iteration
        if done == self.skip:
            self._t0 = self.clock()
        elif done == self.skip + self.measure and self._t0 is not None:
            self.seconds_per_iteration = (self.clock() - self._t0) / self.measure
            total = self._total(engine)
            if total is None:
                return
            left = max(total - int(engine.state.iteration), 0)
            self.estimate_seconds = self.seconds_per_iteration * left
            self._report(total, left)

    def _report(self, total: int, left: int) -> None:
        est = float(self.estimate_seconds or 0.0)
        msg = (
            f"training time estimate: {self.seconds_per_iteration:.3f} s/iteration x {left} iterations left "
            f"(of {total}) = {_hours(est)} on {'CPU' if self.on_cpu else 'the accelerator'} (validation not counted)"
        )
        if self.on_cpu and est > self.warn_hours * 3600.0:
            self.warned = True
            self.logger.warning(
                f"{msg}: this CPU run would take more than {self.warn_hours:g} h. "
                f"Cheaper option: {self.cheaper_option}."
            )
        else:
            self.logger.info(msg)
