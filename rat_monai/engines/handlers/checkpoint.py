# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Checkpoints that survive a kill: atomic saves, resume from the newest readable checkpoint, the best key-metric
value carried across a resume, and finding the newest resumable checkpoint of a folder.

Both handlers follow MONAI's handler protocol (``attach(engine)``) and are listed in the bundles' ``train#handlers``.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ignite.distributed as idist
import torch
from ignite.handlers.checkpoint import BaseSaveHandler
from monai.handlers import CheckpointSaver
from monai.utils import IgniteInfo, min_version, optional_import

if TYPE_CHECKING:
    from ignite.engine import Engine, Events
    from ignite.handlers import Checkpoint
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")
    Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
    Checkpoint, _ = optional_import("ignite.handlers", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Checkpoint")

__all__ = [
    "KEY_METRIC_KEY",
    "ResumableCheckpointSaver",
    "ResumeCheckpointLoader",
    "checkpoints_newest_first",
    "find_latest_checkpoint",
    "make_saves_atomic",
]

#: key of the best key-metric value in a resumable checkpoint
KEY_METRIC_KEY = "key_metric"

_CKPT_RE = re.compile(r"iteration=(\d+)\.pt$")


def checkpoints_newest_first(ckpt_dir: str | Path, pattern: str = "checkpoint*iteration=*.pt") -> list[Path]:
    """The resumable checkpoints in ``ckpt_dir``, highest iteration first (newest file first on a tie).

    Matches the files MONAI's ``CheckpointSaver`` writes for interval and final saves (``checkpoint_iteration=N.pt``,
    ``checkpoint_final_iteration=N.pt``); the temporary files of an atomic save (``.checkpoint_...tmp-PID``) never
    match. Returns ``[]`` when there is none.
    """
    folder = Path(ckpt_dir)
    found = []
    for p in folder.glob(pattern) if folder.is_dir() else []:
        m = _CKPT_RE.search(p.name)
        if m:
            found.append((int(m.group(1)), p.stat().st_mtime, p))
    return [p for *_, p in sorted(found, reverse=True)]


def find_latest_checkpoint(ckpt_dir: str | Path, pattern: str = "checkpoint*iteration=*.pt") -> str:
    """Path of the resumable checkpoint with the highest iteration in ``ckpt_dir`` (see
    :func:`checkpoints_newest_first`; :class:`ResumeCheckpointLoader` also skips corrupt ones).

    Raises:
        FileNotFoundError: when no such file exists (names the folder and the pattern).
    """
    found = checkpoints_newest_first(ckpt_dir, pattern)
    if not found:
        raise FileNotFoundError(
            f"no checkpoint matching {pattern!r} in {ckpt_dir} to resume from: train first, or set --resume false."
        )
    return str(found[0])


class _AtomicSaveHandler(BaseSaveHandler):
    """Save handler of an ignite ``Checkpoint`` that never leaves a damaged or missing checkpoint behind.

    ignite's ``Checkpoint`` asks its handler to ``remove`` the old file BEFORE it writes the new one, and MONAI's
    ``CheckpointSaver`` writes in place (``atomic=False``): a process killed during a save lost both. Here the
    checkpoint is written to a hidden temporary file in the same folder (``.<name>.tmp-<pid>``), flushed to disk and
    renamed over the final name (atomic on POSIX and Windows), and the removals ignite asked for happen only after
    that, so at every instant the folder holds the previous or the new valid checkpoint. The file keeps the usual
    permissions (the reason MONAI turns ignite's own ``atomic`` mode off).

    Args:
        inner: the ``DiskSaver`` MONAI built (its ``dirname``, ``save_on_rank`` and fixed ``filename`` are used).
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.dirname = Path(inner.dirname)
        self._pending: list[str] = []

    def _final(self, filename: str) -> str:
        return getattr(self.inner, "filename", None) or filename

    def _is_saving_rank(self) -> bool:
        return idist.get_rank() == getattr(self.inner, "save_on_rank", 0)

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        if not self._is_saving_rank():
            return
        final = self.dirname / self._final(filename)
        tmp = self.dirname / f".{final.name}.tmp-{os.getpid()}"
        self.dirname.mkdir(parents=True, exist_ok=True)
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        for old in self._pending:
            if old != final.name:
                (self.dirname / old).unlink(missing_ok=True)
        self._pending = []

    def remove(self, filename: str) -> None:
        self._pending.append(self._final(filename))


def _remove_stale_temporaries(folder: Path) -> None:
    """Delete ``.<name>.tmp-<pid>`` files of saves whose process is gone (killed during a save)."""
    for p in folder.glob(".*.tmp-*") if folder.is_dir() else []:
        try:
            pid = int(p.name.rsplit(".tmp-", 1)[1])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            logging.getLogger(__name__).info(f"removing {p}, left by a save that was interrupted")
            p.unlink(missing_ok=True)
        except PermissionError:  # another user's live process
            continue


def make_saves_atomic(saver: CheckpointSaver) -> CheckpointSaver:
    """Make every checkpoint a MONAI ``CheckpointSaver`` writes atomic, removing old files only after the new one is
    in place (see :class:`_AtomicSaveHandler`); returns ``saver`` itself. Idempotent."""
    for name in ("_final_checkpoint", "_key_metric_checkpoint", "_interval_checkpoint"):
        ckpt = getattr(saver, name, None)
        if ckpt is not None and not isinstance(ckpt.save_handler, _AtomicSaveHandler):
            ckpt.save_handler = _AtomicSaveHandler(ckpt.save_handler)
    return saver


class _KeyMetricState:
    """The best key-metric value(s) of a ``CheckpointSaver`` as a checkpointable object (``state_dict`` /
    ``load_state_dict``): the ignite ``Checkpoint``'s ``saved`` list of ``(priority, filename)``."""

    def __init__(self, saver: CheckpointSaver) -> None:
        if getattr(saver, "_key_metric_checkpoint", None) is None:
            raise ValueError("key_metric_saver must be a CheckpointSaver with save_key_metric=True.")
        self.saver = saver

    def state_dict(self) -> dict:
        state = self.saver._key_metric_checkpoint.state_dict()  # {"_saved": [(priority, filename), ...]}
        return {k: [(float(p), str(f)) for p, f in v] for k, v in state.items()}

    def load_state_dict(self, state: Mapping) -> None:
        self.saver._key_metric_checkpoint.load_state_dict({k: [tuple(x) for x in v] for k, v in state.items()})


class ResumableCheckpointSaver(CheckpointSaver):
    """MONAI ``CheckpointSaver`` that also saves the engine it is attached to, under ``engine_key``, atomically.

    A resumable checkpoint needs the trainer's state (iteration, epoch), but a bundle config cannot put
    ``@train#trainer`` into a handler of that same trainer (circular reference). This saver adds the engine to
    ``save_dict`` when it is attached, so ``{"model": ..., "optimizer": ..., "lr_scheduler": ...}`` in the config
    becomes a full checkpoint ``{..., "trainer": <engine>}``.

    Every file is written atomically and an older checkpoint is deleted only once the newer one is complete
    (:func:`make_saves_atomic`), so a process killed during a save leaves the previous checkpoint intact.

    With ``key_metric_saver`` (the validator's ``CheckpointSaver(save_key_metric=True)`` that writes ``model.pt``),
    the best key-metric value so far is saved too, under ``"key_metric"``, and that saver's writes become atomic as
    well: :class:`ResumeCheckpointLoader` given the same saver restores the value, so after a resume a validation
    score worse than the one before the interruption does not replace the better ``model.pt``.

    Args:
        engine_key: key of the attached engine in the checkpoint. Defaults to ``"trainer"``.
        key_metric_saver: the validator's key-metric saver whose best value to save. Defaults to None.
        kwargs: as for ``monai.handlers.CheckpointSaver``.
    """

    def __init__(
        self, *args: Any, engine_key: str = "trainer", key_metric_saver: CheckpointSaver | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.engine_key = engine_key
        make_saves_atomic(self)
        if key_metric_saver is not None:
            make_saves_atomic(key_metric_saver)
            self.save_dict[KEY_METRIC_KEY] = _KeyMetricState(key_metric_saver)

    def attach(self, engine: Engine) -> None:
        # the ignite Checkpoint objects built in __init__ hold this same dict, so they save the engine too
        self.save_dict[self.engine_key] = engine
        _remove_stale_temporaries(Path(self.save_dir))
        super().attach(engine)


class ResumeCheckpointLoader:
    """Resume training from a full checkpoint: network, optimizer, LR scheduler AND the attached engine's state.

    Works like MONAI's ``CheckpointLoader`` (``weights_only`` load, the configured ``max_epochs`` kept) and, like
    :class:`ResumableCheckpointSaver`, adds the engine it is attached to under ``engine_key``, so the iteration
    count continues from the checkpoint. ``path`` may be a checkpoint file or a folder: then the checkpoints there
    are tried from the highest iteration down (:func:`checkpoints_newest_first`), and one that
    cannot be read (truncated by a kill or a full disk) is skipped with a warning naming it, so the newest VALID one
    is used. The choice is made when the handler is attached, i.e. when training starts.

    Args:
        path: checkpoint file or folder of checkpoints.
        load_dict: objects to restore, e.g. ``{"model": net, "optimizer": opt, "lr_scheduler": sched}``.
        enabled: False makes this handler do nothing (the bundles' ``resume`` flag). Defaults to True.
        engine_key: key of the attached engine in the checkpoint. Defaults to ``"trainer"``.
        map_location: ``torch.load`` map location (the bundle's device). Defaults to None.
        strict: strict state-dict loading. Defaults to True.
        key_metric_saver: the validator's key-metric saver; its best value is restored from the checkpoint's
            ``"key_metric"`` entry (a checkpoint without one is resumed with a warning). Defaults to None.

    Raises:
        FileNotFoundError: (when attached) no readable checkpoint at ``path`` (names the unreadable ones).
    """

    def __init__(
        self,
        path: str | Path,
        load_dict: dict,
        enabled: bool = True,
        engine_key: str = "trainer",
        map_location: Any = None,
        strict: bool = True,
        key_metric_saver: CheckpointSaver | None = None,
    ) -> None:
        self.path = Path(path)
        self.load_dict = dict(load_dict)
        self.enabled = bool(enabled)
        self.engine_key = engine_key
        self.map_location = str(map_location) if isinstance(map_location, torch.device) else map_location
        self.strict = strict
        self.key_metric = None if key_metric_saver is None else _KeyMetricState(key_metric_saver)
        self.loaded_path: str | None = None
        self.skipped: list[str] = []
        self._checkpoint: Mapping | None = None
        self.logger = logging.getLogger(__name__)

    def _read_newest_valid(self) -> tuple[str, Mapping]:
        candidates = checkpoints_newest_first(self.path) if self.path.is_dir() else [self.path]
        if not candidates or (not self.path.is_dir() and not self.path.is_file()):
            raise FileNotFoundError(
                f"no checkpoint to resume from at {self.path} (expected checkpoint_iteration=N.pt files): train "
                "first, or set --resume false."
            )
        for p in candidates:
            try:
                ckpt = torch.load(p, map_location=self.map_location, weights_only=True)
                if not isinstance(ckpt, Mapping):
                    raise ValueError(f"holds a {type(ckpt).__name__}, not a checkpoint dict")
            except Exception as e:  # noqa: BLE001 - torch raises many types for a damaged file
                msg = f"skipping unreadable checkpoint {p} ({type(e).__name__}: {e}); trying an older one."
                warnings.warn(msg, UserWarning, stacklevel=2)
                self.logger.warning(msg)
                self.skipped.append(str(p))
                continue
            return str(p), ckpt
        raise FileNotFoundError(
            f"no readable checkpoint to resume from in {self.path}: {', '.join(self.skipped)} are damaged. Delete "
            "them and resume from a copy, or set --resume false to start again."
        )

    def attach(self, engine: Engine) -> None:
        if not self.enabled:
            return
        self.loaded_path, self._checkpoint = self._read_newest_valid()
        self.logger.info(f"resuming training from {self.loaded_path}")
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        checkpoint = dict(self._checkpoint or {})
        self._checkpoint = None  # free the memory once loaded
        to_load = {**self.load_dict, self.engine_key: engine}
        if self.key_metric is not None:
            if KEY_METRIC_KEY in checkpoint:
                to_load[KEY_METRIC_KEY] = self.key_metric
            else:
                self.logger.warning(
                    f"{self.loaded_path} holds no best key-metric value (written by an older rat-monai): the next "
                    "validation after the resume replaces model.pt whatever its score."
                )
        prior_max_epochs = engine.state.max_epochs
        Checkpoint.load_objects(to_load=to_load, checkpoint=checkpoint, strict=self.strict)
        if prior_max_epochs is not None and engine.state.epoch > prior_max_epochs:
            raise ValueError(
                f"the checkpoint {self.loaded_path} is at epoch {engine.state.epoch}, beyond max_epochs "
                f"{prior_max_epochs}: raise max_iterations (or max_epochs) to train further."
            )
        engine.state.max_epochs = prior_max_epochs
        self.logger.info(f"restored all variables from {self.loaded_path}")
