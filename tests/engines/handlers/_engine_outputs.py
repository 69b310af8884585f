# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Fake evaluator outputs for the handler tests: decollated per-sample dicts as a MONAI evaluator leaves them."""

from __future__ import annotations

import torch
from ignite.engine import Engine
from monai.data import MetaTensor


def fake_evaluator(samples: list[dict], batches: list[dict]) -> Engine:
    """An engine whose output / batch look like a decollated MONAI evaluator's (lists of per-sample dicts)."""

    def step(engine, i):
        engine.state.batch = [batches[i]]
        return [samples[i]]

    return Engine(step)


def make_samples(n=5, size=16, volumes=("a.nii", "b.nii"), noise=0.05):
    g = torch.Generator().manual_seed(1)
    samples, batches = [], []
    for i in range(n):
        label = torch.rand(1, size, size, generator=g)
        lq = label + noise * torch.randn(1, size, size, generator=g)
        pred = label + 0.5 * noise * torch.randn(1, size, size, generator=g)
        regions = torch.randint(0, 4, (1, size, size), generator=g).float()
        meta = {"source_image": volumes[i % len(volumes)], "slice_index": i}
        samples.append({"image": torch.cat([lq, regions]), "label": label, "pred": pred})
        batches.append({"image": MetaTensor(lq, meta=meta), "label": label})
    return samples, batches
