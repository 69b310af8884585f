# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""TrainingTimeEstimate: the estimate from the first timed iterations, and the CPU warning above the threshold.

A fake clock advances by a known number of seconds per iteration (no sleeping), so the estimate is exact.
"""

from __future__ import annotations

import logging

import pytest
from ignite.engine import Engine, Events

from rat_monai.engines import TrainingTimeEstimate


class FakeClock:
    """A clock the engine advances by ``step`` seconds per iteration (``first`` for iteration 1)."""

    def __init__(self, step: float, first: float | None = None) -> None:
        self.now, self.step, self.first = 1000.0, step, step if first is None else first

    def __call__(self) -> float:
        return self.now

    def tick(self, engine: Engine) -> None:
        self.now += self.first if engine.state.iteration == 1 else self.step


def _run(handler: TrainingTimeEstimate, clock: FakeClock, max_epochs: int, epoch_length: int) -> Engine:
    engine = Engine(lambda e, b: None)
    engine.add_event_handler(Events.ITERATION_COMPLETED, clock.tick)  # before the handler: the step has happened
    handler.attach(engine)
    engine.run(range(epoch_length), max_epochs=max_epochs)
    return engine


# (seconds per iteration, total iterations, device, warned?)
CASES = [
    (1.0, 50_000, "cpu", True),  # 13.9 h > 12 h on CPU
    (1.0, 40_000, "cpu", False),  # 11.1 h
    (1.0, 50_000, "cuda:0", False),  # long, but not on a CPU
]


@pytest.mark.parametrize("step, total, device, warned", CASES)
def test_estimate_and_warning(step, total, device, warned, caplog):
    clock = FakeClock(step, first=30.0)  # a slow first iteration must not enter the estimate (skip=2)
    handler = TrainingTimeEstimate(max_iterations=total, device=device, skip=2, measure=5, clock=clock)
    with caplog.at_level(logging.INFO, logger="rat_monai.engines.handlers.time_estimate"):
        _run(handler, clock, max_epochs=1, epoch_length=10)
    assert handler.seconds_per_iteration == pytest.approx(step)
    assert handler.estimate_seconds == pytest.approx(step * (total - 7))  # measured after iteration 2 + 5
    assert handler.warned is warned
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == int(warned)
    if warned:
        text = warnings[0].getMessage()
        assert "13.9 h" in text and "paper.json" in text and "CPU" in text


def test_total_from_engine_and_resume():
    # no max_iterations: max_epochs * epoch_length; the estimate counts the iterations left after the measurement
    clock = FakeClock(2.0)
    handler = TrainingTimeEstimate(skip=1, measure=3, clock=clock)
    _run(handler, clock, max_epochs=4, epoch_length=5)
    assert handler.estimate_seconds == pytest.approx(2.0 * (20 - 4))
    # a resumed run starts counting at its own first iteration
    clock = FakeClock(3.0)
    handler = TrainingTimeEstimate(max_iterations=100, skip=0, measure=2, clock=clock)
    engine = Engine(lambda e, b: None)
    engine.add_event_handler(Events.ITERATION_COMPLETED, clock.tick)
    handler.attach(engine)
    engine.load_state_dict({"iteration": 60, "epoch_length": 10, "max_epochs": 8})  # as a resumed checkpoint does
    engine.run(range(10))
    assert handler.seconds_per_iteration == pytest.approx(3.0)
    assert handler.estimate_seconds == pytest.approx(3.0 * (100 - 62))


def test_ill_arg():
    for kwargs in ({"warn_hours": 0}, {"skip": -1}, {"measure": 0}):
        with pytest.raises(ValueError):
            TrainingTimeEstimate(**kwargs)
