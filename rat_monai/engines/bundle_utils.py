# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Small helpers the bundle configs call through ``$`` expressions: the data step of ``initialize`` (a simulated
dataset on the first run), iteration budget, a datalist split, command-line switches read as booleans, the
validation metrics' window, and which handlers run on which rank (finding a checkpoint to resume from is
``rat_monai.engines.handlers.checkpoint``)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.handlers import ProgressBar
from monai.handlers import (
    CheckpointSaver,
    MetricsSaver,
    StatsHandler,
    TensorBoardImageHandler,
    TensorBoardStatsHandler,
)

from rat_monai.data import load_datalist, normalize_units
from rat_monai.data.modality import normalize_modality
from rat_monai.simulation import simulate_dataset
from rat_monai.engines.handlers import ImagePanelHandler, RestorationMetricsWriter
from rat_monai.engines.handlers.utils import input_and_regions
from rat_monai.visualize import CT_WIDE_WINDOW

__all__ = [
    "as_flag",
    "metric_data_range",
    "metric_window",
    "windowed_pairs",
    "datalist_split",
    "ensure_dataset",
    "epochs_for_iterations",
    "handlers_for_rank",
    "iteration_budget",
]

logger = logging.getLogger(__name__)


def _rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _barrier() -> None:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def ensure_dataset(
    dataset_dir: str | Path,
    modality: str = "pet",
    datalist: str | Path | None = None,
    subjects: int = 6,
    seed: int = 0,
    shape: Sequence[int] | None = None,
    **simulate_kwargs: Any,
) -> str:
    """The bundles' data step (``initialize`` of ``train.json``): simulate a small paired dataset into ``dataset_dir``
    when the run's datalist is ``dataset_dir/datalist.json`` and it does not exist yet; return the datalist path.

    This is what lets ``python -m monai.bundle run training --config_file bundles/rat_pet/configs/train.json`` work
    on a fresh clone with no data: the first run writes simulated low-dose / full-dose scans (see
    :func:`rat_monai.simulation.simulate_dataset`) and a Decathlon-style datalist, and says so in the log; later
    runs find the datalist and reuse it. A datalist given elsewhere (``--datalist FILE``) is the user's: nothing is
    simulated, and reading it reports any problem (:func:`datalist_split`). Under ``torch.distributed`` rank 0
    simulates while the others wait.

    Args:
        dataset_dir: the dataset folder (the bundle's ``dataset_dir``).
        modality: ``"pet"`` or ``"ct"``. Defaults to ``"pet"``.
        datalist: the datalist the run reads (the bundle's ``datalist`` id). Defaults to None:
            ``dataset_dir/datalist.json``.
        subjects: simulated subjects (split into training / validation / test); 0 simulates nothing (e.g. when a
            MONAI Label task sets the data ids itself). Defaults to 6.
        seed: simulation seed. Defaults to 0.
        shape: simulated volume shape ``(X, Y, Z)``. Defaults to the simulator's default for the modality.
        simulate_kwargs: further arguments for ``simulate_dataset``.

    Returns:
        the datalist path (``datalist``, or ``dataset_dir/datalist.json``).

    Raises:
        FileExistsError: when ``dataset_dir`` holds files but no datalist (we never simulate into user data).
    """
    folder = Path(dataset_dir)
    default = folder / "datalist.json"
    path = default if datalist is None else Path(datalist)
    if path.is_file() or path.absolute() != default.absolute() or int(subjects) < 1:
        return str(path)
    if _rank() == 0:
        if folder.is_dir() and any(folder.iterdir()):
            raise FileExistsError(
                f"dataset_dir {folder} holds files but no datalist.json: build one with `rat-monai datalist "
                f"{folder}` or point the bundle's `datalist` id at your datalist JSON (an empty or missing "
                "dataset_dir gets a simulated dataset instead)."
            )
        logger.warning(
            f"no datalist at {path.absolute()}: simulating a small paired {modality.upper()} dataset there first "
            f"({subjects} subjects, seed {seed}, shape {tuple(shape) if shape else 'default'}). To train on your own "
            "scans, override --dataset_dir (a folder with datalist.json) or --datalist."
        )
        simulate_dataset(
            folder, modality=modality, subjects=subjects, seed=seed, shape=shape, progress=True, **simulate_kwargs
        )
        logger.info(f"simulated dataset ready: {path}")
    _barrier()
    if not path.is_file():
        raise FileNotFoundError(f"datalist {path} does not exist after the dataset preparation step.")
    return str(path)


def epochs_for_iterations(max_iterations: int, epoch_length: int) -> int:
    """Smallest number of epochs of ``epoch_length`` iterations that covers ``max_iterations``.

    Raises:
        ValueError: when the epoch is empty (no training samples) or ``max_iterations`` < 1.
    """
    if epoch_length < 1:
        raise ValueError(
            f"the training data loader is empty (epoch_length={epoch_length}): check the datalist's 'training' split "
            "and the air threshold of the slice dataset."
        )
    if max_iterations < 1:
        raise ValueError(f"max_iterations must be >= 1, got {max_iterations}.")
    return max(1, math.ceil(max_iterations / epoch_length))


def iteration_budget(max_iterations: int, max_epochs: int, epoch_length: int) -> int:
    """Iterations the trainer will actually run: the smaller of ``max_iterations`` and ``max_epochs`` epochs.

    Used as the cosine schedule's ``T_max`` so the learning rate reaches its floor at the end of the run, whichever
    limit (iteration budget or a ``max_epochs`` override) ends it.
    """
    return max(1, min(int(max_iterations), int(max_epochs) * int(epoch_length)))


class BundleUserError(SystemExit):
    """A bundle run stopped by a user error (bad datalist, ...): ``monai.bundle run`` prints the message and exits 1.

    It derives from ``SystemExit`` on purpose: ``monai.bundle``'s ``ConfigExpression`` wraps every ``Exception`` of a
    ``$`` expression in a ``RuntimeError`` and the command line then shows a long traceback around the one line the
    user needs; a ``SystemExit`` passes through unchanged, and Python prints its message without a traceback.
    """

    def __init__(self, message: str) -> None:
        super().__init__(f"error: {message}")
        self.message = message


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def as_flag(value: Any, name: str) -> bool:
    """A bundle switch (``amp``, ``resume``, ``progress``, ...) as a bool, whatever the command line made of it.

    ``python -m monai.bundle run ... --amp false`` hands the config the *string* ``'false'``, which Python reads as
    true (only the literals ``False``/``True`` become booleans), so every use of a switch goes through this.

    Raises:
        BundleUserError: ``value`` is neither a bool, 0/1, nor one of true/false, yes/no, on/off (any case).
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise BundleUserError(f"bundle setting '{name}' must be true or false, got {value!r}; e.g. --{name} false.")


def metric_window(modality: str, normalization: dict | None = None) -> tuple[float, float] | None:
    """The window the validation metrics clip to, in normalised units: for CT the evaluation's HU window
    (:data:`rat_monai.visualize.CT_WIDE_WINDOW`, -1000..1000 HU) through ``normalization``, so that air outside the
    field of view (-3024 HU) or metal cannot dominate the PSNR that picks the checkpoint; None for PET (SUV is scored
    unclipped, as in the evaluation)."""
    if normalize_modality(modality) != "CT":
        return None
    low, high = (float(v) for v in normalize_units(torch.tensor(CT_WIDE_WINDOW, dtype=torch.float64), "ct",
                                                   **(normalization or {})))  # fmt: skip
    return low, high


def metric_data_range(modality: str, normalization: dict | None = None) -> float:
    """PSNR/SSIM data range of the validation metrics in normalised units: the width of :func:`metric_window` for CT
    (2000 HU, as the evaluation), 1.0 for PET (SUV 10 with the default ``suv_scale``)."""
    window = metric_window(modality, normalization)
    return 1.0 if window is None else window[1] - window[0]


def windowed_pairs(window: Sequence[float] | None, score_input: bool = False):
    """An ignite ``output_transform``: ``(preds, labels)`` of a batch's output, both clipped to ``window``.

    ``score_input=True`` scores the low-dose input instead of the prediction (the identity baseline), without the
    region map stacked onto it (:func:`~rat_monai.engines.handlers.utils.input_and_regions`).
    """

    def clip(x: torch.Tensor) -> torch.Tensor:
        return x if window is None else x.clamp(window[0], window[1])

    def transform(output: Any) -> tuple[list, list]:
        items = output if isinstance(output, list) else [output]
        preds = [input_and_regions(d, None, "image", "pred", "regions")[0] if score_input else d["pred"] for d in items]
        return [clip(p) for p in preds], [clip(d["label"]) for d in items]

    return transform


def datalist_split(datalist: str | Path, key: str = "training") -> list[dict]:
    """``rat_monai.data.load_datalist(datalist, key)`` for bundle configs: a bad datalist stops the run cleanly.

    A missing file, malformed JSON, a missing or empty ``key`` or a missing image raise :class:`BundleUserError`
    with the loader's message (which names the file and the key), so ``monai.bundle run`` prints it and exits 1
    without a traceback.
    """
    try:
        items = load_datalist(datalist, key)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        raise BundleUserError(text if str(datalist) in text else f"datalist {datalist} ({key!r}): {text}") from None
    for i, item in enumerate(items):
        for k in ("image", "label"):
            value = item.get(k) if isinstance(item, dict) else None
            if isinstance(value, str) and not Path(value).exists():
                raise BundleUserError(
                    f"datalist {datalist}: {key}[{i}][{k!r}] = {value} does not exist; fix the path (relative paths "
                    "are taken from the datalist's folder) or rebuild the datalist with 'rat-monai datalist FOLDER'."
                )
    return items


# handlers that write files or logs; on ranks > 0 of a distributed run they are dropped (subclasses included, e.g.
# ResumableCheckpointSaver is a CheckpointSaver)
_RANK_ZERO_ONLY = (
    CheckpointSaver,
    TensorBoardStatsHandler,
    TensorBoardImageHandler,
    StatsHandler,
    MetricsSaver,
    ImagePanelHandler,
    RestorationMetricsWriter,
    ProgressBar,
)


def handlers_for_rank(handlers: Sequence[Any] | None, rank: int | None = None) -> list[Any] | None:
    """The handlers a process of a distributed run should attach: all on rank 0, no writers/loggers elsewhere.

    Everything that takes part in collective work (validation, LR schedule, iteration limit, checkpoint loading)
    stays on every rank; checkpoint savers (``ResumableCheckpointSaver`` included), TensorBoard, stats logging,
    panels, CSV writers and progress bars run on rank 0 only.

    Args:
        handlers: the configured handler objects.
        rank: the process rank. Defaults to ``torch.distributed.get_rank()`` (0 when not distributed).
    """
    if handlers is None:
        return None
    rank = _rank() if rank is None else rank
    if rank == 0:
        return list(handlers)
    return [h for h in handlers if not isinstance(h, _RANK_ZERO_ONLY)]
