# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Checkpoints that survive a crash (issue 15 item 5): atomic saves, old files removed only after the new one is
complete, resume skipping a damaged newest checkpoint, and the best key-metric value carried across a resume."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointSaver

from rat_monai.engines import ResumableCheckpointSaver, ResumeCheckpointLoader, checkpoints_newest_first


def _train(tmp: Path, iterations: int, save_interval: int = 2, n_saved: int = 1, **kwargs) -> torch.nn.Module:
    net = torch.nn.Linear(3, 1)
    trainer = Engine(lambda e, b: None)
    saver = ResumableCheckpointSaver(
        save_dir=str(tmp), save_dict={"model": net}, save_interval=save_interval, epoch_level=False, n_saved=n_saved,
        **kwargs,
    )  # fmt: skip
    saver.attach(trainer)
    trainer.run(range(iterations), max_epochs=1)
    return net


def test_crash_during_save_keeps_previous_checkpoint(tmp_path):
    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        if "iteration=4" in str(getattr(f, "name", f)):
            f.write(b"PK\x03\x04partial")  # a few bytes, then the "disk is full"
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    with mock.patch("torch.save", crashing_save), pytest.raises(OSError, match="No space"):
        _train(tmp_path, 6)
    # n_saved=1: ignite asked to delete =2 before writing =4; the delete waits for a complete =4, so =2 survives
    assert [p.name for p in checkpoints_newest_first(tmp_path)] == ["checkpoint_iteration=2.pt"]
    assert torch.load(tmp_path / "checkpoint_iteration=2.pt", weights_only=True)["trainer"]["iteration"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_iteration=2.pt"]  # no temporary left


def test_old_checkpoint_removed_after_new_one(tmp_path):
    _train(tmp_path, 6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_iteration=6.pt"]


def test_resume_skips_damaged_newest(tmp_path):
    _train(tmp_path, 6, n_saved=3)
    newest = tmp_path / "checkpoint_iteration=6.pt"
    newest.write_bytes(newest.read_bytes()[:100])  # truncated by a kill
    (tmp_path / "checkpoint_iteration=4.pt").write_bytes(b"")  # 0 bytes
    net = torch.nn.Linear(3, 1)
    engine = Engine(lambda e, b: None)
    loader = ResumeCheckpointLoader(tmp_path, {"model": net})
    with pytest.warns(UserWarning, match=r"skipping unreadable checkpoint .*iteration=6\.pt"):
        loader.attach(engine)
    assert loader.loaded_path == str(tmp_path / "checkpoint_iteration=2.pt")
    assert loader.skipped == [str(newest), str(tmp_path / "checkpoint_iteration=4.pt")]
    seen = []
    engine.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append(e.state.iteration))
    engine.run(range(5), max_epochs=1)
    assert seen[0] == 3  # continues after iteration 2


def test_resume_all_damaged_is_a_clear_error(tmp_path):
    (tmp_path / "checkpoint_iteration=2.pt").write_bytes(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(FileNotFoundError, match="no readable checkpoint.*--resume false"):
        ResumeCheckpointLoader(tmp_path, {"model": torch.nn.Linear(1, 1)}).attach(Engine(lambda e, b: None))


def _run_with_validation(ckpt_dir: Path, scores: list[float], resume: bool) -> tuple[CheckpointSaver, Engine]:
    """A trainer validating every iteration (score = the given value, network weight = the score), saving model.pt
    for the best score and a resumable checkpoint each iteration."""
    net = torch.nn.Linear(1, 1, bias=False)
    evaluator = Engine(lambda e, b: None)
    best_saver = CheckpointSaver(
        save_dir=str(ckpt_dir), save_dict={"model": net}, save_key_metric=True, key_metric_name="psnr",
        key_metric_filename="model.pt",
    )  # fmt: skip
    trainer = Engine(lambda e, b: None)
    if resume:
        ResumeCheckpointLoader(ckpt_dir, {"model": net}, key_metric_saver=best_saver).attach(trainer)

    def validate(engine: Engine) -> None:
        score = scores[engine.state.iteration - 1]
        with torch.no_grad():
            net.weight.fill_(score)
        evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: e.state.metrics.update(psnr=score))
        evaluator.run([0], max_epochs=1)
        evaluator.remove_event_handler(evaluator._event_handlers[Events.ITERATION_COMPLETED][-1][0],
                                       Events.ITERATION_COMPLETED)  # fmt: skip

    trainer.add_event_handler(Events.ITERATION_COMPLETED, validate)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: e.state.iteration >= len(scores) and e.terminate())
    best_saver.attach(evaluator)
    ResumableCheckpointSaver(
        save_dir=str(ckpt_dir), save_dict={"model": net}, save_interval=1, epoch_level=False, n_saved=1,
        key_metric_saver=best_saver,
    ).attach(trainer)  # fmt: skip
    trainer.run(range(10), max_epochs=1)
    assert trainer.state.iteration == len(scores)
    return best_saver, trainer


def _model_pt_weight(ckpt_dir: Path) -> float:
    return float(torch.load(ckpt_dir / "model.pt", weights_only=True)["weight"])


def test_best_metric_survives_resume(tmp_path):
    _run_with_validation(tmp_path, [30.0, 40.0], resume=False)
    assert _model_pt_weight(tmp_path) == 40.0
    ckpt = torch.load(tmp_path / "checkpoint_iteration=2.pt", weights_only=True)
    assert ckpt["key_metric"]["_saved"][0][0] == 40.0
    # resumed: iteration 3 scores 35 (worse than 40): model.pt must stay the better model
    _run_with_validation(tmp_path, [0.0, 0.0, 35.0], resume=True)
    assert _model_pt_weight(tmp_path) == 40.0
    # a better score after the resume does replace it
    _run_with_validation(tmp_path, [0.0, 0.0, 0.0, 45.0], resume=True)
    assert _model_pt_weight(tmp_path) == 45.0
    assert checkpoints_newest_first(tmp_path)[0].name == "checkpoint_iteration=4.pt"
    assert not list(tmp_path.glob(".*"))  # no temporary files
