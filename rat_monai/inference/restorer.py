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

import json
import logging
import os
import resource
import shutil
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

import rat_monai
from rat_monai.data.normalization import clipped_mask, denormalize_units, normalize_units

from rat_monai.data.writers import DEFAULT_SERIES_SUFFIX, write_dicom_series, write_nifti
from .safety import OUTPUT_MARK, check_input, check_output_folder, check_writable, validate_allow

__all__ = ["ScanRestorer", "bundle_version", "FORMATS"]

logger = logging.getLogger(__name__)

FORMATS = ("dicom", "nifti", "both")
_MODALITIES = {"pet": "PT", "pt": "PT", "ct": "CT"}
_PARTIAL_TAG = ".rat-partial-"
_OLD_TAG = ".rat-replaced-"


def bundle_version(bundle_root: str | os.PathLike) -> str | None:
    """The ``version`` of ``<bundle_root>/configs/metadata.json``, or None when the file is absent or has none."""
    path = Path(bundle_root) / "configs" / "metadata.json"
    try:
        with open(path, encoding="utf-8") as f:
            version = json.load(f).get("version")
    except (OSError, ValueError, AttributeError):
        return None
    return None if version is None else str(version)


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(peak) / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


class ScanRestorer:
    """Restore a whole scan slice by slice with a region-guided network.

    Args:
        network: the network; with ``use_regions=True`` it takes ``[B, 2, H, W]`` (image, then the region labels as
            float in the last channel: ``StackedRegionRAT``), otherwise ``[B, 1, H, W]``.
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
        if str(modality).lower() not in _MODALITIES:
            raise ValueError(f"modality must be 'pet' or 'ct', got {modality!r}.")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if int(overview_slices) < 0:
            raise ValueError(f"overview_slices must be >= 0, got {overview_slices}.")
        self.modality = "ct" if str(modality).lower() == "ct" else "pet"
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
        self.untrained = self._load_checkpoint(network, self.checkpoint, allow_untrained)
        self.network = network.to(self.device).eval()
        self._partitioner: Any = None

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _load_checkpoint(network: torch.nn.Module, checkpoint: str | None, allow_untrained: bool) -> bool:
        """Load ``checkpoint`` into ``network``; returns True when the network stays untrained."""
        if checkpoint is None or not os.path.isfile(checkpoint):
            what = "no checkpoint was given" if checkpoint is None else f"checkpoint not found: {checkpoint}"
            if not allow_untrained:
                raise FileNotFoundError(
                    f"{what}. Train the bundle first (it writes models/model.pt), pass --checkpoint PATH, or pass "
                    "--allow-untrained (allow_untrained=True) to run an untrained network for testing."
                )
            logger.warning(
                "%s: running an UNTRAINED network (allow_untrained=True); the output is not a restoration.", what
            )
            return True
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for a bad file
            raise ValueError(f"cannot read the checkpoint {checkpoint}: {e}") from e
        if isinstance(state, Mapping):
            for key in ("network", "model", "state_dict"):
                if key in state and isinstance(state[key], Mapping):
                    state = state[key]
                    break
        if not isinstance(state, Mapping):
            raise ValueError(f"checkpoint {checkpoint} does not hold a state dict (found {type(state).__name__}).")
        try:
            network.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(
                f"checkpoint {checkpoint} does not fit the network (are the bundle's network settings, e.g. width, "
                f"the ones it was trained with?): {e}"
            ) from e
        return False

    @classmethod
    def from_bundle(
        cls,
        bundle_dir: str | os.PathLike,
        checkpoint: str | os.PathLike | None = None,
        sam_checkpoint: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        batch_size: int | None = None,
        config_file: str = "configs/inference.json",
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
            overrides: any other config ids (e.g. ``allow_untrained=True``, ``width=8``, or
                ``**{"network_def#middle_blocks": 1}``) or ScanRestorer arguments (e.g. ``allow=["units"]``), as config
                content; wrap a value in ``rat_monai.inference.config_values.Plain`` to set it as is (never evaluated).
                ``checkpoint``, ``sam_checkpoint``, ``device`` and ``batch_size`` are always set as is.

        Raises:
            FileNotFoundError: if the bundle or its config is missing.
            ValueError: an override that is neither a config id nor a ScanRestorer argument (named), or a modality
                that differs from the bundle's metadata.json.
        """
        from .config_values import Plain, make_parser, set_plain, set_user_values
        from .safety import bundle_modality

        root = Path(bundle_dir)
        config = root / config_file
        if not config.is_file():
            raise FileNotFoundError(f"bundle config not found: {config} (is {root} a rat-monai bundle folder?)")
        parser = make_parser(config)
        set_plain(parser, "bundle_root", str(root))
        given = {"checkpoint": checkpoint, "sam_checkpoint": sam_checkpoint, "device": device, "batch_size": batch_size}
        given = {k: Plain(str(v) if isinstance(v, torch.device) else v) for k, v in given.items() if v is not None}
        twice = sorted(set(given) & set(overrides))
        if twice:
            raise ValueError(f"{', '.join(twice)} given both as an option and as an override; give each once.")
        set_user_values(parser, {**given, **overrides}, cls)  # plain values: a leading "$" or "@" is not code
        if "model_version" not in overrides and "model_version" in parser:
            set_plain(parser, "model_version", bundle_version(root))
        trained_on, allowed = bundle_modality(root), overrides.get("allow")
        configured = _MODALITIES.get(str(parser.get_parsed_content("modality")).lower())
        allowed = validate_allow(getattr(allowed, "value", allowed))
        if trained_on and configured != trained_on and "modality" not in allowed:
            raise ValueError(
                f"{root}: modality {parser['modality']!r} does not match the modality the bundle was trained on "
                f"({trained_on} in configs/metadata.json) (check 'modality'); pass --allow modality to proceed."
            )
        if "seed" in parser:
            torch.manual_seed(int(parser.get_parsed_content("seed")))
        try:
            restorer = parser.get_parsed_content("restorer")
        except RuntimeError as e:  # monai.bundle wraps constructor errors: surface the user-facing cause
            cause = e.__cause__
            while isinstance(cause, RuntimeError) and cause.__cause__ is not None:
                cause = cause.__cause__
            if isinstance(cause, (FileNotFoundError, FileExistsError, ValueError)):
                raise cause from None
            raise
        if not isinstance(restorer, ScanRestorer):
            raise ValueError(f"{config}: the id 'restorer' must build a ScanRestorer, got {type(restorer).__name__}.")
        return restorer

    # ------------------------------------------------------------------ helpers
    @property
    def partitioner(self) -> Any:
        if self._partitioner is None:
            from rat_monai.regions import get_partitioner

            self._partitioner = get_partitioner(
                self.region_method, sam_checkpoint=self.sam_checkpoint, modality=self.modality, **self.region_kwargs
            )
        return self._partitioner

    @staticmethod
    def _check_paths(src: Path, out: Path, overwrite: bool, cache_dir: Path) -> None:
        if not src.exists():
            raise FileNotFoundError(f"input not found: {src} (give a DICOM series folder or a .nii/.nii.gz file).")
        src_r, out_r, cache_r = src.resolve(), out.resolve(), cache_dir.resolve()
        if out_r == src_r or _is_within(src_r, out_r):
            raise ValueError(f"output {out} is (or contains) the input {src}; choose an output folder elsewhere.")
        if src_r.is_dir() and _is_within(out_r, src_r):
            raise ValueError(f"output {out} lies inside the input folder {src}; never write into the input folder.")
        if src_r.is_dir() and _is_within(cache_r, src_r):
            raise ValueError(f"region cache {cache_dir} lies inside the input folder {src}; pick another cache_dir.")
        check_output_folder(out, overwrite)
        check_writable(cache_dir, "region cache folder")
        parent = out_r.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not os.access(parent, os.W_OK):
            raise ValueError(f"cannot write the output {out}: {parent} is not writable; choose another output folder.")

    @staticmethod
    def _clean_stale_partials(out: Path) -> None:
        """Remove temporary folders of earlier runs into ``out`` that were killed (their process is gone)."""
        for tag in (_PARTIAL_TAG, _OLD_TAG):
            for p in out.parent.glob(f".{out.name}{tag}*"):
                try:
                    pid = int(p.name[len(f".{out.name}{tag}") :].split("-")[0])
                except ValueError:
                    continue
                if not _pid_alive(pid):
                    logger.info("removing %s left by an interrupted run (process %d)", p, pid)
                    shutil.rmtree(p, ignore_errors=True)

    # ------------------------------------------------------------------ stages
    def load(self, src: str | os.PathLike) -> Any:
        """Stage 1: the input as a real-unit ``MetaTensor [1, X, Y, Z]`` (see ``rat_monai.data.load_volume``)."""
        from rat_monai.data import load_volume

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
        from rat_monai.regions import RegionCache

        part = self.partitioner
        settings = part.cache_key()
        cache = RegionCache(cache_dir) if cache_dir is not None else None
        out = np.zeros(slices.shape, np.int32)
        keys: list[str | None] = [None] * len(slices)
        todo: list[int] = []
        for i, s in enumerate(slices):
            hit = None
            if cache is not None:
                keys[i] = cache.key(s, settings)
                hit = cache.get(keys[i])
            if hit is not None and hit.shape == s.shape:
                out[i] = hit
            else:
                todo.append(i)
        with tqdm(total=len(slices), desc="regions", unit="slice", disable=not self.progress) as bar:
            bar.update(len(slices) - len(todo))
            for start in range(0, len(todo), self.batch_size):
                idx = todo[start : start + self.batch_size]
                res = np.asarray(part(slices[idx]), dtype=np.int32)
                for j, i in enumerate(idx):
                    out[i] = res[j]
                    if cache is not None:
                        cache.put(keys[i], res[j])  # type: ignore[arg-type]
                bar.update(len(idx))
        stats = {
            "hits": len(slices) - len(todo),
            "misses": len(todo),
            "cache_dir": None if cache_dir is None else str(cache_dir),
            "method": getattr(part, "method", type(part).__name__),
            "settings": {k: v for k, v in settings.items()},
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
                    r = torch.from_numpy(np.ascontiguousarray(regions[start:stop]).astype(np.float32))[:, None]
                    x = torch.cat([x, r], dim=1)
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
        self._check_paths(src, out, overwrite, cache)
        self._clean_stale_partials(out)
        timings: dict[str, float] = {}
        cpu_times: dict[str, float] = {}  # CPU seconds of this process (all threads) per stage
        t_start = time.perf_counter()

        # 1. load
        t0, c0 = time.perf_counter(), time.process_time()
        with tqdm(total=1, desc="load", unit="scan", disable=not self.progress) as bar:
            volume = self.load(src)
            bar.update(1)
        meta = dict(volume.meta)
        dicom_files = list(meta.get("dicom_files") or [])
        is_dicom = len(dicom_files) > 0
        if fmt == "dicom" and not is_dicom:
            raise ValueError(f"format 'dicom' needs a DICOM series input, {src} is not one; use --format nifti.")
        real = volume[0].detach().cpu().numpy().astype(np.float32, copy=False)  # [X, Y, Z]
        affine = np.asarray(volume.affine.detach().cpu(), dtype=np.float64)
        del volume
        slices = np.ascontiguousarray(np.moveaxis(real, -1, 0))  # [Z, X, Y]: slice z is volume[..., z]
        timings["load"] = time.perf_counter() - t0
        cpu_times["load"] = time.process_time() - c0

        # 2. regions (real units, cached)
        t0, c0 = time.perf_counter(), time.process_time()
        regions, region_stats = (None, {"hits": 0, "misses": 0, "cache_dir": None, "method": None, "settings": {}})
        if self.use_regions:
            regions, region_stats = self.compute_regions(slices, cache)
        timings["regions"] = time.perf_counter() - t0
        cpu_times["regions"] = time.process_time() - c0

        # 3. network (normalised units)
        t0, c0 = time.perf_counter(), time.process_time()
        restored_norm = self.restore_slices(self._normalize(slices), regions)
        timings["network"] = time.perf_counter() - t0
        cpu_times["network"] = time.process_time() - c0

        # 4. inverse normalisation + writing into a temporary folder, moved into place at the end
        t0, c0 = time.perf_counter(), time.process_time()
        restored_real = self._denormalize(restored_norm)  # [Z, X, Y] in load units (SUV / HU / as stored)
        outside = self._outside_clip_range(slices)
        if outside is not None:  # e.g. CT padding outside the field of view (-3024 HU): nothing to restore there
            restored_real[outside] = slices[outside]
        restored_xyz = np.ascontiguousarray(np.moveaxis(restored_real, 0, -1))
        del restored_norm, restored_real
        units_in = meta.get("units")
        suv_factor = meta.get("suv_factor")
        units_out, to_stored = units_in, restored_xyz
        if units_in == "suv" and suv_factor:
            to_stored = (restored_xyz / np.float32(suv_factor)).astype(np.float32)  # SUV -> Bq/ml as the source stores
            units_out = "bqml"
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"cannot create the output's parent folder {out.parent}: {e}") from e
        tmp = out.parent / f".{out.name}{_PARTIAL_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        files: dict[str, Any] = {}
        try:
            try:
                tmp.mkdir()
            except PermissionError as e:
                raise ValueError(f"cannot write into {out.parent} (permission denied); choose another output.") from e
            series_uid = None
            if is_dicom and fmt in ("dicom", "both"):
                from pydicom.uid import generate_uid

                series_uid = generate_uid()
                written = write_dicom_series(
                    to_stored,
                    dicom_files,
                    tmp / "dicom",
                    series_description_suffix=DEFAULT_SERIES_SUFFIX,
                    derivation_description=self._derivation(),
                    series_instance_uid=series_uid,
                    progress=self.progress,
                )
                files["dicom"] = str(out / "dicom")
                files["dicom_slices"] = len(written)
            if fmt in ("nifti", "both"):
                write_nifti(
                    to_stored,
                    affine,
                    tmp / "restored.nii.gz",
                    modality="CT" if self.modality == "ct" else "PT",
                    units=units_out or ("hu" if self.modality == "ct" else "suv"),  # None: the assumed units
                    description="rat-monai restored",
                    suv_factor=suv_factor if units_out == "bqml" else None,
                )
                files["nifti"] = str(out / "restored.nii.gz")
                files["nifti_units"] = str(out / "restored.json")
            if self.overview_slices > 0:
                from .overview import save_overview

                save_overview(
                    tmp / "overview.png",
                    real,
                    restored_xyz,
                    None if regions is None else np.moveaxis(regions, 0, -1),
                    modality=self.modality,
                    num_slices=self.overview_slices,
                    units=str(units_in),
                )
                files["overview"] = str(out / "overview.png")
            timings["write"] = time.perf_counter() - t0
            cpu_times["write"] = time.process_time() - c0
            report = self._report(
                src,
                out,
                fmt,
                meta,
                real.shape,
                units_in,
                units_out,
                series_uid,
                region_stats,
                timings,
                cpu_times,
                files,
                t_start,
            )
            files["report"] = str(out / "report.json")
            with open(tmp / "report.json", "w", encoding="utf-8") as f:
                json.dump(report, f, indent=4, default=str)
                f.write("\n")
            self._move_into_place(tmp, out, overwrite)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
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

    def _move_into_place(self, tmp: Path, out: Path, overwrite: bool) -> None:
        if out.exists():
            check_output_folder(out, overwrite)  # (again: it may have appeared or changed during the run)
            old = out.parent / f".{out.name}{_OLD_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)

    def _report(
        self,
        src: Path,
        out: Path,
        fmt: str,
        meta: Mapping[str, Any],
        shape: tuple[int, ...],
        units_in: Any,
        units_out: Any,
        series_uid: str | None,
        region_stats: Mapping[str, Any],
        timings: Mapping[str, float],
        cpu_times: Mapping[str, float],
        files: Mapping[str, Any],
        t_start: float,
    ) -> dict:
        n = int(shape[-1])
        stages = {
            k: {
                "seconds": round(v, 4),
                "seconds_per_slice": round(v / max(n, 1), 5),
                "cpu_seconds": round(cpu_times.get(k, float("nan")), 4),
            }
            for k, v in timings.items()
        }
        peak = {"rss_mb": round(_peak_rss_mb(), 1)}
        if self.device.type == "cuda":
            peak["cuda_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        spacing = meta.get("spacing")
        return {
            OUTPUT_MARK: "infer",  # lets a later --overwrite replace this folder
            "rat_monai_version": rat_monai.__version__,
            "model_version": self.model_version,
            "untrained": self.untrained,
            "input": str(src),
            "output": str(out),
            "format": fmt,
            "modality": self.modality,
            "input_modality": meta.get("modality"),
            "units_in": units_in,
            "units_out": units_out,
            "suv_factor": meta.get("suv_factor"),
            "num_slices": n,
            "shape": [int(s) for s in shape],
            "spacing": None if spacing is None else [float(s) for s in spacing],
            "study_instance_uid": meta.get("study_instance_uid"),
            "input_series_instance_uid": meta.get("series_instance_uid"),
            "output_series_instance_uid": series_uid,
            "settings": {
                "batch_size": self.batch_size,
                "device": str(self.device),
                "use_regions": self.use_regions,
                "region_method": self.region_method,
                "sam_checkpoint": self.sam_checkpoint,
                "region_kwargs": dict(self.region_kwargs),
                "normalization": dict(self.normalization),
                "checkpoint": self.checkpoint,
                "units": self.units,
                "series_uid": self.series_uid,
                "allow": sorted(self.allow),
            },
            "safety": dict(self.safety),
            "regions": dict(region_stats),
            "timings": {"stages": stages, "total_seconds": round(time.perf_counter() - t_start, 4)},
            "peak_memory": peak,
            "files": dict(files),
        }
