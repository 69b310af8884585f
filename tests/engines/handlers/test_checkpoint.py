# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Checkpoints that survive a crash (issue 15 item 5): atomic saves, old files removed only after the new one is
complete, resume skipping a damaged newest checkpoint, and the best key-metric value carried across a resume."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path
from unittest import mock

import pytest
import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointSaver

from rat_monai.engines import (
    IterationLimitHandler,
    ResumableCheckpointSaver,
    ResumeCheckpointLoader,
    checkpoints_newest_first,
    find_latest_checkpoint,
)


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


class TestFindLatest(unittest.TestCase):
    def test_find_latest(self):
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaisesRegex(FileNotFoundError, "resume"):
                find_latest_checkpoint(tmp)
            for name in ("checkpoint_iteration=40.pt", "checkpoint_final_iteration=45.pt", "model.pt", "x_iteration=9"):
                (Path(tmp) / name).write_bytes(b"")
            self.assertTrue(find_latest_checkpoint(tmp).endswith("checkpoint_final_iteration=45.pt"))
            (Path(tmp) / "checkpoint_iteration=100.pt").write_bytes(b"")
            self.assertTrue(find_latest_checkpoint(tmp).endswith("checkpoint_iteration=100.pt"))
        with self.assertRaises(FileNotFoundError):
            find_latest_checkpoint("/nonexistent/rat_monai/folder")


class TestResume(unittest.TestCase):
    def _trainer(self, net, opt, sched):
        def step(engine, batch):
            opt.zero_grad()
            loss = net(batch).pow(2).mean()
            loss.backward()
            opt.step()
            return loss.item()

        engine = Engine(step)
        engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: sched.step())
        return engine

    def test_save_and_resume_continue_iterations(self):
        data = [torch.randn(4, 3) for _ in range(5)]
        with tempfile.TemporaryDirectory() as tmp:
            net = torch.nn.Linear(3, 1)
            opt = torch.optim.Adam(net.parameters(), lr=0.1)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20)
            trainer = self._trainer(net, opt, sched)
            saver = ResumableCheckpointSaver(
                save_dir=tmp,
                save_dict={"model": net, "optimizer": opt, "lr_scheduler": sched},
                save_interval=3,
                epoch_level=False,
                n_saved=1,
                save_final=True,
            )
            saver.attach(trainer)
            IterationLimitHandler(7).attach(trainer)
            trainer.run(data, max_epochs=10)
            self.assertEqual(trainer.state.iteration, 7)
            latest = find_latest_checkpoint(tmp)
            self.assertTrue(latest.endswith("final_iteration=7.pt"), latest)
            ckpt = torch.load(latest, map_location="cpu", weights_only=True)
            self.assertEqual(set(ckpt), {"model", "optimizer", "lr_scheduler", "trainer"})
            self.assertEqual(ckpt["trainer"]["iteration"], 7)

            net2 = torch.nn.Linear(3, 1)
            opt2 = torch.optim.Adam(net2.parameters(), lr=0.1)
            sched2 = torch.optim.lr_scheduler.CosineAnnealingLR(opt2, T_max=20)
            trainer2 = self._trainer(net2, opt2, sched2)
            seen = []
            loader = ResumeCheckpointLoader(tmp, {"model": net2, "optimizer": opt2, "lr_scheduler": sched2})
            loader.attach(trainer2)
            trainer2.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append(e.state.iteration))
            trainer2.add_event_handler(
                Events.STARTED, lambda e: self.assertEqual(sched2.last_epoch, sched.last_epoch)
            )
            IterationLimitHandler(12).attach(trainer2)
            trainer2.run(data, max_epochs=10)
            self.assertEqual(seen[0], 8)  # ITERATION_STARTED sees the count already incremented
            self.assertEqual(trainer2.state.iteration, 12)
            self.assertEqual(loader.loaded_path, latest)

    def test_disabled_and_missing(self):
        with tempfile.TemporaryDirectory() as tmp:
            engine = Engine(lambda e, b: None)
            ResumeCheckpointLoader(tmp, {"model": torch.nn.Linear(1, 1)}, enabled=False).attach(engine)
            with self.assertRaisesRegex(FileNotFoundError, "no checkpoint"):
                ResumeCheckpointLoader(tmp, {"model": torch.nn.Linear(1, 1)}).attach(engine)
