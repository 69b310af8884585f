# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
from __future__ import annotations

import unittest

from ignite.engine import Engine, Events
from parameterized import parameterized

from rat_monai.engines import IterationLimitHandler


class TestIterationLimitHandler(unittest.TestCase):
    @parameterized.expand([(7, 5, 7), (10, 5, 10), (3, 100, 3)])
    def test_stops_at_budget(self, budget, epoch_length, expected):
        engine = Engine(lambda e, b: None)
        IterationLimitHandler(budget).attach(engine)
        engine.run(range(epoch_length), max_epochs=50)
        self.assertEqual(engine.state.iteration, expected)

    def test_already_past_budget(self):
        engine = Engine(lambda e, b: None)
        IterationLimitHandler(4).attach(engine)
        engine.add_event_handler(Events.STARTED, lambda e: setattr(e.state, "iteration", 0))
        engine.state.iteration = 9  # as a resumed checkpoint would leave it
        engine.run(range(5), max_epochs=3)
        self.assertEqual(engine.state.iteration, 4)

    def test_ill_arg(self):
        with self.assertRaises(ValueError):
            IterationLimitHandler(0)

if __name__ == "__main__":
    unittest.main()
