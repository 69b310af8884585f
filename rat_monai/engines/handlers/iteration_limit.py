# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Stop training after an iteration budget (MONAI's trainers count epochs)."""

from __future__ import annotations

import logging

from ignite.engine import Engine, Events

__all__ = ["IterationLimitHandler"]


class IterationLimitHandler:
    """Stop training after ``max_iterations`` iterations in total (counting iterations restored by a resume).

    MONAI's trainers count epochs; the paper's budget is in iterations (200K at batch 8). The bundles therefore set
    ``max_epochs`` to enough epochs for the budget and attach this handler, which calls ``engine.terminate()`` once
    ``engine.state.iteration >= max_iterations`` (Ignite then fires ``COMPLETED``, so final checkpoints are written).
    A lower ``max_epochs`` override (e.g. ``--train#trainer#max_epochs 2``, what MONAI Label sets) stops earlier.

    Args:
        max_iterations: total iteration budget, >= 1.
    """

    def __init__(self, max_iterations: int) -> None:
        if int(max_iterations) < 1:
            raise ValueError(f"max_iterations must be >= 1, got {max_iterations}.")
        self.max_iterations = int(max_iterations)
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if engine.state.iteration >= self.max_iterations and not engine.should_terminate:
            self.logger.info(f"reached the iteration budget ({engine.state.iteration} >= {self.max_iterations}): stop.")
            engine.terminate()
