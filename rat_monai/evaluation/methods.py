# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""The methods compared by ``rat-monai evaluate``: the low-dose input, classical denoisers, bundle networks.

Every method maps low-dose slices ``[Z, H, W]`` in real units (SUV / HU) to restored slices in the same units.

Classical denoisers work on each slice rescaled to ``[0, 1]`` by its own min / max (so one parameter grid fits PET
and CT) and have one free strength parameter tuned on the VALIDATION split (:func:`tune`):

- ``gaussian``: ``scipy.ndimage.gaussian_filter``, sigma in pixels;
- ``nlm``: scikit-image ``denoise_nl_means`` (fast mode, 5x5 patches, 6-pixel search distance), ``h`` = factor x the
  slice's noise sigma (Immerkaer's estimate, :func:`noise_sigma`);
- ``bm3d``: the ``bm3d`` package (optional extra ``rat-monai[eval]``; free for non-commercial use only), white-noise
  ``sigma_psd`` = factor x the noise sigma.

On PET, NLM and BM3D (which assume noise of one level everywhere) run on the square root of the SUV image and the
result is squared back (``stabilize="sqrt"``, a variance-stabilising transform for count-like noise whose variance
grows with the activity); the Gaussian filter runs on the SUV image itself.

Networks are bundle folders + checkpoints, built and run by :class:`rat_monai.inference.ScanRestorer` (the same
region maps, normalisation and batching as ``rat-monai infer``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rat_monai.data.modality import normalize_modality

__all__ = [
    "CLASSICAL_GRIDS",
    "Method",
    "IdentityMethod",
    "ClassicalMethod",
    "NetworkMethod",
    "bm3d_available",
    "noise_sigma",
    "classical_method",
    "stabilizer_for",
    "read_overrides",
    "tune",
]

logger = logging.getLogger(__name__)

#: the strength grid searched on the validation split for each classical denoiser
CLASSICAL_GRIDS: dict[str, tuple[float, ...]] = {
    "gaussian": (0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0),
    # the noise sigma is Immerkaer's pixel-to-pixel estimate: it sees only the white part of the noise, and the noise
    # of reconstructed PET is spatially correlated (and near zero in the air), so the best factor on PET is 10-40x
    # (first grid, up to 2: NLM and BM3D sat at its edge, almost the identity); CT's best stays near 1
    "nlm": (0.4, 0.6, 0.8, 1.0, 1.3, 1.6, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0),
    "bm3d": (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0),
}
_PARAM_NAMES = {"gaussian": "sigma_px", "nlm": "h_over_sigma", "bm3d": "sigma_over_noise"}


def bm3d_available() -> bool:
    """True when the optional ``bm3d`` package is importable."""
    return importlib.util.find_spec("bm3d") is not None


def noise_sigma(x: np.ndarray) -> float:
    """Immerkaer's fast noise standard deviation estimate of a 2D image (Laplacian-difference kernel, mean |.|)."""
    from scipy.ndimage import convolve

    x = np.asarray(x, np.float64)
    if min(x.shape) < 3:
        return 0.0
    kernel = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
    conv = convolve(x, kernel, mode="nearest")[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2.0) * np.abs(conv).mean() / 6.0)


class Method:
    """A named restoration method: ``method(slices [Z, H, W]) -> [Z, H, W]`` (real units)."""

    kind = "base"

    def __init__(self, name: str) -> None:
        self.name = str(name)

    def __call__(self, slices: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind}


class IdentityMethod(Method):
    """The low-dose input itself (the row every restoration must beat)."""

    kind = "input"

    def __call__(self, slices: np.ndarray) -> np.ndarray:
        return np.asarray(slices, np.float32)


def _per_slice(fn: Callable[[np.ndarray], np.ndarray], slices: np.ndarray) -> np.ndarray:
    out = np.empty(np.shape(slices), np.float32)
    for k, s in enumerate(np.asarray(slices, np.float64)):
        lo, hi = float(s.min()), float(s.max())
        if hi <= lo:
            out[k] = s
            continue
        z = (s - lo) / (hi - lo)
        out[k] = fn(z) * (hi - lo) + lo
    return out


class ClassicalMethod(Method):
    """A classical denoiser with one strength parameter (see the module docstring)."""

    kind = "classical"

    def __init__(self, name: str, denoiser: str, strength: float, stabilize: str | None = None) -> None:
        super().__init__(name)
        if denoiser not in CLASSICAL_GRIDS:
            raise ValueError(f"unknown denoiser {denoiser!r}; choose one of {', '.join(CLASSICAL_GRIDS)}.")
        if stabilize not in (None, "sqrt"):
            raise ValueError(f"stabilize must be None or 'sqrt', got {stabilize!r}.")
        self.stabilize = stabilize
        if denoiser == "bm3d" and not bm3d_available():
            raise ValueError("the 'bm3d' method needs the bm3d package: pip install 'rat-monai[eval]' (or bm3d).")
        self.denoiser, self.strength = denoiser, float(strength)

    def _one(self, z: np.ndarray) -> np.ndarray:
        if self.denoiser == "gaussian":
            from scipy.ndimage import gaussian_filter

            return gaussian_filter(z, self.strength, mode="nearest")
        sigma = noise_sigma(z)
        if sigma <= 0:
            return z
        if self.denoiser == "nlm":
            from skimage.restoration import denoise_nl_means

            return denoise_nl_means(
                z, h=self.strength * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True
            )
        import bm3d

        return np.asarray(bm3d.bm3d(z, sigma_psd=self.strength * sigma), np.float64)

    def __call__(self, slices: np.ndarray) -> np.ndarray:
        if self.stabilize == "sqrt":
            return np.square(_per_slice(self._one, np.sqrt(np.clip(slices, 0, None)))).astype(np.float32)
        return _per_slice(self._one, slices)

    def describe(self) -> dict[str, Any]:
        out = {**super().describe(), "denoiser": self.denoiser, _PARAM_NAMES[self.denoiser]: self.strength}
        return {**out, "stabilize": self.stabilize} if self.stabilize else out


def stabilizer_for(denoiser: str, modality: str) -> str | None:
    """The variance-stabilising transform of ``denoiser`` on ``modality``: ``"sqrt"`` for NLM/BM3D on PET."""
    return "sqrt" if denoiser in ("nlm", "bm3d") and normalize_modality(modality) == "PT" else None


def classical_method(
    denoiser: str, strength: float, name: str | None = None, stabilize: str | None = None
) -> ClassicalMethod:
    """A :class:`ClassicalMethod` named after the denoiser and its strength unless ``name`` is given."""
    names = {"gaussian": "Gaussian", "nlm": "NLM", "bm3d": "BM3D"}
    return ClassicalMethod(name or names.get(denoiser, denoiser), denoiser, strength, stabilize)


def tune(
    denoiser: str,
    low: np.ndarray,
    full: np.ndarray,
    score: Callable[[np.ndarray, np.ndarray], float],
    grid: Sequence[float] | None = None,
    stabilize: str | None = None,
) -> tuple[float, dict[float, float]]:
    """Pick the strength of ``denoiser`` that maximises ``score(restored, full)`` on validation slices.

    Args:
        denoiser: ``"gaussian"``, ``"nlm"`` or ``"bm3d"``.
        low, full: validation slices ``[Z, H, W]`` (real units).
        score: higher is better (the evaluation uses the mean slice PSNR with the evaluation's data range).
        grid: strengths to try. Defaults to ``CLASSICAL_GRIDS[denoiser]``.
        stabilize: variance-stabilising transform (see :class:`ClassicalMethod`). Defaults to None.

    Returns:
        ``(best strength, {strength: score})``.
    """
    grid = tuple(CLASSICAL_GRIDS[denoiser] if grid is None else grid)
    if not grid:
        raise ValueError(f"empty tuning grid for {denoiser}.")
    scores = {float(g): float(score(ClassicalMethod(denoiser, denoiser, g, stabilize)(low), full)) for g in grid}
    best = max(scores, key=lambda g: (scores[g], -g))
    edge = best in (min(grid), max(grid))
    logger.info(
        "tuned %s on %d validation slices: %s=%g (score %.4f)%s",
        denoiser,
        len(low),
        _PARAM_NAMES[denoiser],
        best,
        scores[best],
        " -- at the edge of the grid" if edge and len(grid) > 1 else "",
    )
    return best, scores


def read_overrides(files: Sequence[str | os.PathLike], base: str | os.PathLike | None = None) -> dict[str, Any]:
    """Config ids of bundle override files (e.g. ``configs/restore_rwkv.json``, ``configs/ablations/l1.json``),
    later files winning, for :meth:`ScanRestorer.from_bundle`.

    A ``+id`` merge key whose ``id`` exists in the ``base`` config (the bundle's ``inference.json``) becomes one
    ``id#key`` entry per key of its dict, which is what MONAI's merge does; ``+id`` keys for sections the base lacks
    (e.g. ``+train`` over ``inference.json``) only concern training and are left out, and so are plain ids whose
    top-level id the base lacks (e.g. ``ckpt_dir`` of an ablation's training run).

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a file is not a JSON object, or a ``+id`` merge onto the base is not a dict.
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    if base is not None:
        parser.read_config(str(base))
    out: dict[str, Any] = {}
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise FileNotFoundError(f"override file not found: {path}.")
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ValueError(f"override file {path} is not valid JSON: {e}") from e
        if not isinstance(content, Mapping):
            raise ValueError(f"override file {path} must hold a JSON object of config ids, got {type(content)}.")
        for key, value in content.items():
            if not str(key).startswith("+"):
                top = str(key).split("#")[0]
                if base is None or top in parser or top in out:
                    out[key] = value
                continue
            target = str(key)[1:]
            if target not in parser and target not in out:
                continue
            if not isinstance(value, Mapping):
                raise ValueError(f"{path}: '{key}' merges into '{target}' and must be a JSON object of its keys.")
            out.update({f"{target}#{k}": v for k, v in value.items()})
    return out


class NetworkMethod(Method):
    """A bundle network through :class:`~rat_monai.inference.ScanRestorer` (region maps, normalisation, batches).

    Args:
        name: row name (e.g. ``"RAT"``).
        bundle: bundle folder (its ``configs/inference.json`` builds the restorer).
        checkpoint: the weights (a missing file is an error: evaluating an untrained network is meaningless).
        overrides: override files merged over ``inference.json`` in order (see :func:`read_overrides`).
        device: torch device. Defaults to None (the bundle's choice).
        batch_size: slices per network call. Defaults to None (the bundle's).
    """

    kind = "network"

    def __init__(
        self,
        name: str,
        bundle: str | os.PathLike,
        checkpoint: str | os.PathLike,
        overrides: Sequence[str | os.PathLike] = (),
        device: str | None = None,
        batch_size: int | None = None,
    ) -> None:
        from rat_monai.inference import ScanRestorer

        super().__init__(name)
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"checkpoint of network {name!r} not found: {checkpoint}.")
        self.bundle, self.checkpoint = str(bundle), str(checkpoint)
        self.overrides = [str(f) for f in overrides]
        ids = read_overrides(self.overrides, Path(bundle) / "configs" / "inference.json")
        ids.pop("checkpoint", None)
        self.restorer = ScanRestorer.from_bundle(
            bundle, checkpoint=checkpoint, device=device, batch_size=batch_size, progress=False, **ids
        )
        self.num_parameters = int(sum(p.numel() for p in self.restorer.network.parameters()))

    @property
    def modality(self) -> str:
        return self.restorer.modality

    def regions(self, slices: np.ndarray) -> np.ndarray | None:
        """The restorer's region maps of real-unit ``slices`` (None when the network takes no region map)."""
        if not self.restorer.use_regions:
            return None
        return self.restorer.compute_regions(np.asarray(slices, np.float32), None)[0]

    def restore(self, slices: np.ndarray, regions: np.ndarray | None) -> np.ndarray:
        from rat_monai.data import denormalize_units, normalize_units

        r = self.restorer
        x = np.asarray(normalize_units(np.asarray(slices, np.float32), r.modality, **r.normalization), np.float32)
        y = r.restore_slices(x, regions if r.use_regions else None)
        return np.asarray(denormalize_units(y, r.modality, **r.normalization), np.float32)

    def __call__(self, slices: np.ndarray) -> np.ndarray:
        return self.restore(slices, self.regions(slices))

    def describe(self) -> dict[str, Any]:
        r = self.restorer
        return {
            **super().describe(),
            "bundle": self.bundle,
            "checkpoint": self.checkpoint,
            "overrides": self.overrides,
            "parameters": self.num_parameters,
            "use_regions": r.use_regions,
            "region_method": getattr(r.partitioner, "method", r.region_method) if r.use_regions else None,
        }
