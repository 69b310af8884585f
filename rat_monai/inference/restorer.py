# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Whole-scan restoration: a DICOM series or NIfTI scan in, the restored scan out (DICOM series + NIfTI + PNG + JSON).

Stages (each with a tqdm bar and a timing in the report):

1. **load** — ``rat_monai.data.load_volume`` (SUV for PET, HU for CT), slices in position order.
2. **regions** — the region map of every axial slice, computed on REAL-unit slices in batches and cached on disk
   (``RegionCache``) next to the output, so a re-run (e.g. after an interrupted network stage) skips it.
3. **network** — the normalised slices and their region maps go through the network in batches of ``batch_size``
   under ``torch.inference_mode()``; only one batch lives on the device at a time.
4. **write** — the inverse normalisation (back to SUV / HU, then Bq/ml for PET as the source stores it), the DICOM
   series derived slice by slice from the source files, a NIfTI with the input's affine, a PNG overview and
   ``report.json``.

Everything is written into a hidden temporary folder beside the output and renamed into place at the very end, so an
interrupted or failed run leaves no partial output (the region cache survives: it is written per slice, atomically).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

import rat_monai
from rat_monai.data import load_volume
from rat_monai.data.modality import short_modality
from rat_monai.data.normalization import clipped_mask, denormalize_units, normalize_units
from rat_monai.networks.region_channel import stack_regions
from rat_monai.regions import RegionCache, cached_partition, get_partitioner

from .config_values import Plain
from .loading import load_checkpoint, restorer_from_bundle
from .output import atomic_output_dir, check_output_paths, clean_stale_partials, write_outputs
from .report import StageTimer, build_report, write_report
from .safety import check_input, validate_allow

__all__ = ["ScanRestorer", "FORMATS"]

logger = logging.getLogger(__name__)

FORMATS = ("dicom", "nifti", "both")


class ScanRestorer:
    """Restore a whole scan slice by slice with a region-guided network.

    Args:
        network: the network; with ``use_regions=True`` it takes ``[B, 2, H, W]`` (image, then the region labels as
            float in the last channel: ``StackedRegionRAT``, built with
            :func:`~rat_monai.networks.region_channel.stack_regions`), otherwise ``[B, 1, H, W]``.
        modality: ``"pet"`` or ``"ct"``: what the network was trained on; an input of another modality, a non-F-18
            or SPECT "PET", or values in other units are refused (``rat_monai.inference.safety``).
        normalization: keyword arguments of ``rat_monai.data.normalize_units`` / ``denormalize_units`` (the same
            dict the training config used). Defaults to None (the functions' defaults).
        region_method: region partitioner, see ``rat_monai.regions.get_partitioner``. Defaults to ``"auto"``.
        sam_checkpoint: SAM checkpoint for ``region_method`` ``"sam"``/``"auto"``. Defaults to None.
        region_kwargs: extra keyword arguments of the partitioner. Defaults to None.
        use_regions: stack the region map as the last input channel. Defaults to True.
        checkpoint: file with the network's state dict (``torch.save(net.state_dict())``; a dict holding it under
            ``"network"``, ``"model"`` or ``"state_dict"`` is accepted too). Defaults to None.
        allow_untrained: run with the network's initial weights when ``checkpoint`` is None or missing (a warning is
            logged and the report says so). Defaults to False: a missing checkpoint is an error.
        batch_size: slices per network (and partitioner) call; bounds the memory. Defaults to 8.
        device: torch device for the network. Defaults to ``"cpu"``.
        model_version: recorded in the DICOM DerivationDescription and the report. Defaults to None (``"unknown"``).
        units: passed to ``load_volume``: ``"auto"`` (SUV for PET, HU for CT) or ``"suv"``/``"bqml"``/``"hu"``.
            Defaults to ``"auto"``.
        series_uid: which series to restore when the input folder holds several. Defaults to None.
        overview_slices: how many slices the PNG overview shows. Defaults to 3.
        progress: show tqdm progress bars. Defaults to True.
        allow: checks to override (``"modality"``, ``"radionuclide"``, ``"acquisition"``, ``"units"``, ``"tilt"``,
            ``"gaps"``; recorded in the report). Defaults to None (every check on).
        amp: run the network under ``torch.autocast`` with bfloat16 on ``device`` (CPU or CUDA): about half the
            time on CPUs with AVX512-BF16/AMX, output within ~45 dB PSNR of float32. Defaults to False (float32).

    Example::

        restorer = ScanRestorer.from_bundle("bundles/rat_pet")
        report = restorer.run("scans/low_dose_pet", "restored/pet", format="both")
    """

    def __init__(
        self,
        network: torch.nn.Module,
        modality: str,
        normalization: Mapping[str, Any] | None = None,
        region_method: str = "auto",
        sam_checkpoint: str | os.PathLike | None = None,
        region_kwargs: Mapping[str, Any] | None = None,
        use_regions: bool = True,
        checkpoint: str | os.PathLike | None = None,
        allow_untrained: bool = False,
        batch_size: int = 8,
        device: str | torch.device = "cpu",
        model_version: str | None = None,
        units: str = "auto",
        series_uid: str | None = None,
        overview_slices: int = 3,
        progress: bool = True,
        amp: bool = False,
        allow: Any = None,
    ) -> None:
        if not isinstance(network, torch.nn.Module):
            raise ValueError(f"network must be a torch.nn.Module, got {type(network).__name__}.")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if int(overview_slices) < 0:
            raise ValueError(f"overview_slices must be >= 0, got {overview_slices}.")
        self.modality = short_modality(modality)
        self.normalization = dict(normalization or {})
        self.region_method = region_method
        self.sam_checkpoint = None if sam_checkpoint in (None, "") else str(sam_checkpoint)
        self.region_kwargs = dict(region_kwargs or {})
        self.use_regions = bool(use_regions)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.model_version = None if model_version is None else str(model_version)
        self.units = units
        self.series_uid = series_uid
        self.overview_slices = int(overview_slices)
        self.progress = bool(progress)
        self.amp = bool(amp)
        self.allow = validate_allow(allow)
        self.safety: dict[str, Any] = {}
        self.checkpoint = None if checkpoint in (None, "") else str(checkpoint)
        self.untrained = load_checkpoint(network, self.checkpoint, allow_untrained)
        self.network = network.to(self.device).eval()
        self._partitioner: Any = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_bundle(
        cls,
        bundle_dir: str | os.PathLike,
        checkpoint: str | os.PathLike | None = None,
        sam_checkpoint: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        batch_size: int | None = None,
        config_file: str = "configs/inference.json",
        untrained: bool = False,
        **overrides: Any,
    ) -> ScanRestorer:
        """Build the restorer of a bundle from its ``configs/inference.json`` (id ``restorer``).

        Args:
            bundle_dir: the bundle folder (``bundle_root``).
            checkpoint: network weights; overrides the config id ``checkpoint``. Defaults to None (the config's,
                ``<bundle>/models/model.pt``).
            sam_checkpoint: overrides ``sam_checkpoint``. Defaults to None.
            device: overrides ``device``. Defaults to None.
            batch_size: overrides ``batch_size``. Defaults to None.
            config_file: config path relative to ``bundle_dir``. Defaults to ``"configs/inference.json"``.
            untrained: load no checkpoint at all and keep the network's initial (seeded) weights, for tests and
                benchmarks: sets ``checkpoint`` to None and ``allow_untrained`` to True (the report says
                ``"untrained": true``). Defaults to False: the ``checkpoint`` is loaded, and a missing one is an error
                unless ``allow_untrained=True``, which then runs untrained too.
            overrides: any other config ids (e.g. ``allow_untrained=True``, ``width=8``, or
                ``**{"network_def#middle_blocks": 1}``) or ScanRestorer arguments (e.g. ``allow=["units"]``), as config
                content; wrap a value in ``rat_monai.inference.config_values.Plain`` to set it as is (never evaluated).
                ``checkpoint``, ``sam_checkpoint``, ``device`` and ``batch_size`` are always set as is.

        Raises:
            FileNotFoundError: if the bundle or its config is missing.
            ValueError: an override that is neither a config id nor a ScanRestorer argument (named), a modality
                that differs from the bundle's metadata.json, or ``untrained`` together with a checkpoint.
        """
        if untrained:
            if checkpoint is not None or "checkpoint" in overrides:
                raise ValueError("untrained=True loads no checkpoint: do not pass a checkpoint as well.")
            overrides = {**overrides, "checkpoint": Plain(None), "allow_untrained": True}
        given = {"checkpoint": checkpoint, "sam_checkpoint": sam_checkpoint, "device": device, "batch_size": batch_size}
        return restorer_from_bundle(cls, bundle_dir, given, overrides, config_file)

    # ------------------------------------------------------------------ helpers
    @property
    def partitioner(self) -> Any:
        if self._partitioner is None:
            self._partitioner = get_partitioner(
                self.region_method, sam_checkpoint=self.sam_checkpoint, modality=self.modality, **self.region_kwargs
            )
        return self._partitioner

    # ------------------------------------------------------------------ stages
    def load(self, src: str | os.PathLike) -> Any:
        """Stage 1: the input as a real-unit ``MetaTensor [1, X, Y, Z]`` (see ``rat_monai.data.load_volume``)."""
        src = Path(src)
        is_file = src.is_file()
        volume = load_volume(
            src,
            series_uid=self.series_uid,
            units=self.units,
            modality=self.modality if is_file else None,
            allow_gaps="gaps" in self.allow,
            allow_tilt="tilt" in self.allow,
            check_units="units" not in self.allow,
        )
        if volume.ndim != 4 or volume.shape[0] != 1:
            raise ValueError(f"{src}: expected a single-channel volume [1, X, Y, Z], got shape {tuple(volume.shape)}.")
        self.safety = check_input(volume.meta, src, self.modality, self.allow)
        return volume

    def compute_regions(
        self, slices: np.ndarray, cache_dir: str | os.PathLike | None = None
    ) -> tuple[np.ndarray, dict]:
        """Stage 2: region maps ``int32 [Z, H, W]`` of real-unit ``slices [Z, H, W]``, through the disk cache.

        Returns:
            ``(regions, stats)`` with ``stats`` = ``{"hits", "misses", "cache_dir", "method", "settings"}``.
        """
        part = self.partitioner
        cache = RegionCache(cache_dir) if cache_dir is not None else None
        out, counts = cached_partition(part, slices, cache, self.batch_size, progress=self.progress, desc="regions")
        stats = {
            **counts,
            "cache_dir": None if cache_dir is None else str(cache_dir),
            "method": getattr(part, "method", type(part).__name__),
            "settings": dict(part.cache_key()),
        }
        return out, stats

    @torch.inference_mode()
    def restore_slices(self, slices: np.ndarray, regions: np.ndarray | None) -> np.ndarray:
        """Stage 3: the network over normalised ``slices [Z, H, W]`` (+ ``regions [Z, H, W]``) in batches.

        Returns:
            float32 ``[Z, H, W]``, still normalised.
        """
        if self.use_regions and (regions is None or regions.shape != slices.shape):
            raise ValueError("use_regions=True needs a region map of the same shape as the slices.")
        out = np.empty(slices.shape, np.float32)
        with tqdm(total=len(slices), desc="network", unit="slice", disable=not self.progress) as bar:
            for start in range(0, len(slices), self.batch_size):
                stop = min(start + self.batch_size, len(slices))
                x = torch.from_numpy(np.ascontiguousarray(slices[start:stop], dtype=np.float32))[:, None]
                if self.use_regions:
                    x = stack_regions(x, torch.from_numpy(np.ascontiguousarray(regions[start:stop])))
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                    y = self.network(x.to(self.device))
                if isinstance(y, (tuple, list)):
                    y = y[0]
                if y.shape[0] != stop - start or y.shape[-2:] != x.shape[-2:]:
                    raise ValueError(f"the network returned shape {tuple(y.shape)} for input {tuple(x.shape)}.")
                out[start:stop] = y[:, 0].float().cpu().numpy()
                bar.update(stop - start)
        return out

    # ------------------------------------------------------------------ the whole pipeline
    def run(
        self,
        input: str | os.PathLike,
        output: str | os.PathLike,
        format: str = "both",
        overwrite: bool = False,
        cache_dir: str | os.PathLike | None = None,
    ) -> dict:
        """Restore the scan ``input`` into the folder ``output``.

        ``output`` receives ``dicom/`` (the derived series, DICOM inputs only), ``restored.nii.gz``, ``overview.png``
        and ``report.json``. It appears only when everything is written (temporary folder + rename).

        Args:
            input: a DICOM series folder or a ``.nii``/``.nii.gz`` file.
            output: the output folder (must not exist unless ``overwrite``; never inside the input folder).
            format: ``"dicom"``, ``"nifti"`` or ``"both"``. ``"both"`` writes DICOM only when the input is DICOM;
                ``"dicom"`` with a NIfTI input is an error. Defaults to ``"both"``.
            overwrite: replace an existing output folder. Defaults to False.
            cache_dir: region-map cache. Defaults to None: ``<output>.regions_cache`` beside the output.

        Returns:
            the report (also written as ``report.json``).

        Raises:
            FileNotFoundError: the input (or a source slice) is missing.
            FileExistsError: the output exists and ``overwrite`` is False.
            ValueError: bad arguments, unreadable input, wrong modality, or an output inside the input folder.
        """
        fmt = str(format).lower()
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}.")
        if input is None or str(input) == "":
            raise ValueError("no input scan given: pass --input SCAN (a DICOM series folder or a NIfTI file).")
        if output is None or str(output) == "":
            raise ValueError("no output folder given: pass --output OUT (--output_dir for monai.bundle run).")
        src, out = Path(input), Path(output)
        cache = Path(cache_dir) if cache_dir is not None else out.parent / f"{out.name}.regions_cache"
        check_output_paths(src, out, overwrite, cache)
        clean_stale_partials(out)
        timer = StageTimer()
        with timer.stage("load"):
            real, affine, meta = self._read(src, fmt)  # real units [X, Y, Z]
            slices = np.ascontiguousarray(np.moveaxis(real, -1, 0))  # [Z, X, Y]: slice z is volume[..., z]
        with timer.stage("regions"):  # real units, cached
            regions, region_stats = self.compute_regions(slices, cache) if self.use_regions else (None, _no_regions())
        with timer.stage("network"):  # normalised units
            restored_norm = self.restore_slices(self._normalize(slices), regions)
        with atomic_output_dir(out, overwrite) as tmp:  # moved into place at the end, removed on any error
            with timer.stage("write"):
                restored = self._to_real_units(restored_norm, slices)  # [X, Y, Z] in load units (SUV / HU / ...)
                del restored_norm
                files, series_uid, units_out = write_outputs(
                    tmp,
                    out,
                    fmt,
                    meta,
                    real,
                    restored,
                    regions,
                    affine,
                    modality=self.modality,
                    derivation=self._derivation(),
                    overview_slices=self.overview_slices,
                    progress=self.progress,
                )
            report = build_report(
                src=src,
                out=out,
                fmt=fmt,
                meta=meta,
                shape=real.shape,
                units_out=units_out,
                series_uid=series_uid,
                region_stats=region_stats,
                timer=timer,
                files=files,
                restorer=self,
            )
            write_report(tmp / "report.json", report)
        logger.info(
            "restored %s -> %s: %d slices in %.1f s (regions %d cached / %d computed)",
            src,
            out,
            real.shape[-1],
            report["timings"]["total_seconds"],
            region_stats["hits"],
            region_stats["misses"],
        )
        return report

    # ------------------------------------------------------------------ pieces of run
    def _read(self, src: Path, fmt: str) -> tuple[np.ndarray, np.ndarray, dict]:
        """Stage 1 for :meth:`run`: ``(real-unit volume float32 [X, Y, Z], affine float64 [4, 4], meta)``."""
        with tqdm(total=1, desc="load", unit="scan", disable=not self.progress) as bar:
            volume = self.load(src)
            bar.update(1)
        meta = dict(volume.meta)
        if fmt == "dicom" and not meta.get("dicom_files"):
            raise ValueError(f"format 'dicom' needs a DICOM series input, {src} is not one; use --format nifti.")
        real = volume[0].detach().cpu().numpy().astype(np.float32, copy=False)
        affine = np.asarray(volume.affine.detach().cpu(), dtype=np.float64)
        return real, affine, meta

    def _to_real_units(self, restored_norm: np.ndarray, slices: np.ndarray) -> np.ndarray:
        """Normalised ``[Z, X, Y]`` network output -> ``[X, Y, Z]`` in the input's units; voxels the normalisation
        clipped keep their input value."""
        restored = self._denormalize(restored_norm)
        outside = self._outside_clip_range(slices)
        if outside is not None:  # e.g. CT padding outside the field of view (-3024 HU): nothing to restore there
            restored[outside] = slices[outside]
        return np.ascontiguousarray(np.moveaxis(restored, 0, -1))

    def _normalize(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(normalize_units(x, self.modality, **self.normalization), dtype=np.float32)

    def _outside_clip_range(self, x: np.ndarray) -> np.ndarray | None:
        """Input voxels that ``clip=True`` normalisation clamps (the network never sees them): kept as they were.

        With the CT bundle's clip at [-1024, 3072] HU the out-of-field-of-view padding (-3024 HU on many scanners)
        and metal above 3072 HU pass through unchanged (the bundles' MONAI Label path does the same with
        ``RestoreClippedd``).
        """
        return clipped_mask(x, self.modality, **self.normalization)

    def _denormalize(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(denormalize_units(y, self.modality, **self.normalization), dtype=np.float32)

    def _derivation(self) -> str:
        version = self.model_version or "unknown"
        text = f"Restored by rat-monai {rat_monai.__version__} (Region Attention Transformer), model version {version}"
        return text + (" (UNTRAINED network)" if self.untrained else "")


def _no_regions() -> dict[str, Any]:
    """Region-stage statistics of a run without region maps (``use_regions=False``)."""
    return {"hits": 0, "misses": 0, "cache_dir": None, "method": None, "settings": {}}
