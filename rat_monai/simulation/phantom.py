# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Anthropomorphic 3D torso phantoms (lower thorax + upper abdomen) for the PET / CT simulator.

A phantom is a label map of tissues painted as ellipsoids / elliptic cylinders in millimetres, plus small spherical
lesions, with per-subject random variation of body size, organ positions and sizes, uptake and density. From the
labels come three co-registered maps: PET uptake in SUV, CT density in HU and the 511 keV linear attenuation
coefficient (per mm) used to attenuate the PET projections.

Array layout follows the DICOM convention of :func:`rat_monai.data.load_volume`: ``[X, Y, Z]`` with X = image column
(DICOM LPS +x, towards the patient's left), Y = image row (LPS +y, posterior), Z = slice (LPS +z, superior), so the
liver (patient's right) is at low X and the spine at high Y. Millimetre coordinates are centred on the volume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["TISSUES", "Phantom", "make_phantom"]

# name: (label, SUV, HU, mu at 511 keV in 1/mm)
TISSUES: dict[str, tuple[int, float, float, float]] = {
    "air": (0, 0.0, -1000.0, 0.0),
    "fat": (1, 0.35, -100.0, 0.0090),
    "muscle": (2, 0.8, 50.0, 0.0099),
    "lung": (3, 0.35, -840.0, 0.0026),
    "heart": (4, 3.0, 150.0, 0.0100),
    "liver": (5, 2.3, 95.0, 0.0100),
    "spleen": (6, 1.9, 105.0, 0.0100),
    "kidney": (7, 3.5, 160.0, 0.0100),
    "stomach": (8, 1.6, 15.0, 0.0097),
    "gas": (9, 0.1, -950.0, 0.0003),
    "aorta": (10, 1.6, 200.0, 0.0100),
    "bone": (11, 1.5, 450.0, 0.0140),
    "cortical": (12, 1.0, 1000.0, 0.0170),
    "canal": (13, 0.6, 25.0, 0.0098),
    "lesion": (14, 6.0, 40.0, 0.0100),
}


@dataclass
class Phantom:
    """One subject's phantom; every array is ``[X, Y, Z]``.

    Attributes:
        labels: tissue labels (int16, see :data:`TISSUES`).
        suv: PET uptake in SUV (float32).
        hu: CT density in HU (float32).
        mu511: 511 keV attenuation in 1/mm (float32).
        body: body mask (bool).
        spacing: voxel size in mm.
    """

    labels: np.ndarray
    suv: np.ndarray
    hu: np.ndarray
    mu511: np.ndarray
    body: np.ndarray
    spacing: tuple[float, float, float]


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: Sequence[float]) -> np.ndarray:
    """Zero-mean, unit-std low-frequency noise."""
    n = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=sigma_vox, mode="wrap")
    return (n - n.mean()) / max(float(n.std()), 1e-6)


def make_phantom(
    shape: Sequence[int],
    spacing: Sequence[float],
    rng: np.random.Generator | int | None = None,
    lesions: tuple[int, int] = (2, 5),
) -> Phantom:
    """Build a randomised torso phantom.

    Args:
        shape: ``(X, Y, Z)`` voxels.
        spacing: ``(dx, dy, dz)`` in mm. The torso is about 330 x 230 mm, so the in-plane field of view
            (``shape * spacing``) should be at least ~360 mm.
        rng: numpy Generator or seed. Defaults to a fresh unseeded generator.
        lesions: inclusive range of the number of lesions. Defaults to (2, 5).

    Returns:
        a :class:`Phantom`.

    Raises:
        ValueError: for a shape / spacing that is not three positive numbers.
    """
    shape = tuple(int(s) for s in shape)
    spacing = tuple(float(s) for s in spacing)
    if len(shape) != 3 or min(shape) < 1 or len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"shape and spacing must be three positive numbers each, got {shape} and {spacing}.")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    nx, ny, nz = shape
    x = ((np.arange(nx) - (nx - 1) / 2) * spacing[0]).astype(np.float32)[:, None, None]
    y = ((np.arange(ny) - (ny - 1) / 2) * spacing[1]).astype(np.float32)[None, :, None]
    z = ((np.arange(nz) - (nz - 1) / 2) * spacing[2]).astype(np.float32)[None, None, :]
    u = rng.uniform  # shorthand

    labels = np.zeros(shape, np.int16)

    def ell(cx, cy, cz, a, b, c):
        return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 + ((z - cz) / c) ** 2 <= 1.0

    def paint(mask, name):
        labels[np.broadcast_to(mask, shape)] = TISSUES[name][0]

    # body: elliptic cylinder, slightly tapering with z; fat shell, then muscle/soft tissue inside
    bw, bh = u(150, 180), u(100, 125)
    taper = 1.0 + u(-0.05, 0.05) * z / 100.0
    body = ((x / (bw * taper)) ** 2 + ((y - 5) / (bh * taper)) ** 2) <= 1.0
    body = np.broadcast_to(body, shape)
    paint(body, "fat")
    fat = u(10, 25)
    paint(((x / (bw * taper - fat)) ** 2 + ((y - 5) / (bh * taper - fat)) ** 2) <= 1.0, "muscle")
    # lungs above the diaphragm dome (z ~ 0), heart between them
    lz = u(-10, 10)
    for side in (-1, 1):
        paint(ell(side * u(68, 80), u(0, 10), lz + 110, u(58, 68), u(78, 90), 125), "lung")
    paint(ell(u(15, 30), u(-45, -30), lz + 55, u(45, 55), u(40, 48), u(50, 60)), "heart")
    # ribs in the thorax: small cortical ellipses along the inner body wall
    for ang in np.linspace(0.25 * np.pi, 1.75 * np.pi, 10):
        if abs(np.sin(ang)) > 0.98:  # leave the sternum / spine gap
            continue
        rx, ry = (bw - fat - 8) * np.cos(ang), 5 + (bh - fat - 8) * np.sin(ang)
        paint(ell(rx, ry, lz + 90, 7, 7, 130) & (z > lz - 40), "cortical")
    # abdomen: liver (patient's right = low x), spleen, kidneys, stomach with a gas bubble
    paint(ell(-u(45, 65), u(-5, 15), lz - 10, u(75, 90), u(70, 85), u(80, 95)), "liver")
    paint(ell(u(70, 85), u(25, 45), lz - 25, u(28, 36), u(38, 48), u(45, 55)), "spleen")
    for side in (-1, 1):
        paint(ell(side * u(50, 60), u(45, 60), lz - 80, u(22, 28), u(28, 34), u(50, 60)), "kidney")
    sx, sy, sz = u(30, 45), u(-35, -20), lz - 35
    paint(ell(sx, sy, sz, u(30, 40), u(22, 30), u(35, 45)), "stomach")
    paint(ell(sx + 5, sy - 12, sz + 10, 14, 9, 14), "gas")
    # aorta and spine run through the whole volume
    ay = u(5, 15)
    paint(((x - u(-15, -5)) / 12) ** 2 + ((y - ay) / 12) ** 2 <= 1.0, "aorta")
    vy = ay + u(28, 34)
    paint((x / 20) ** 2 + ((y - vy) / 17) ** 2 <= 1.0, "cortical")
    paint((x / 17) ** 2 + ((y - vy) / 14) ** 2 <= 1.0, "bone")
    paint((x / 8) ** 2 + ((y - vy - 26) / 8) ** 2 <= 1.0, "canal")
    paint(((np.abs(x) / 22) ** 2 + ((y - vy - 32) / 9) ** 2 <= 1.0) & ~((x / 8) ** 2 + ((y - vy - 26) / 8) ** 2 <= 1.0),
          "cortical")

    # per-subject tissue values
    suv = np.zeros(shape, np.float32)
    hu = np.full(shape, -1000.0, np.float32)
    mu = np.zeros(shape, np.float32)
    for name, (lab, s, h, m) in TISSUES.items():
        if name in ("air", "lesion"):
            continue
        sel = labels == lab
        if not sel.any():
            continue
        suv[sel] = s * u(0.8, 1.2) if name != "heart" else s * u(0.5, 2.0)
        hu[sel] = h + (u(-15, 15) if abs(h) < 300 else u(-60, 60))
        mu[sel] = m

    # lesions: small spheres in liver, lungs or soft tissue, hot on PET and slightly hypo/hyper-dense on CT
    hosts = [TISSUES[n][0] for n in ("liver", "lung", "muscle", "spleen")]
    n_les = int(rng.integers(lesions[0], lesions[1] + 1)) if lesions[1] > 0 else 0
    for _ in range(n_les):
        host = hosts[int(rng.integers(len(hosts)))]
        cand = np.argwhere(labels == host)
        if len(cand) == 0:
            continue
        c = cand[int(rng.integers(len(cand)))]
        r = u(4, 12)  # mm
        cx, cy, cz = ((c - (np.array(shape) - 1) / 2) * np.array(spacing)).tolist()
        sel = np.broadcast_to(ell(cx, cy, cz, r, r, r), shape) & (labels != 0)
        if not sel.any():
            sel = np.zeros(shape, bool)
            sel[tuple(c)] = True
        labels[sel] = TISSUES["lesion"][0]
        suv[sel] = u(4.0, 12.0)
        hu[sel] = hu[tuple(c)] + u(-40, 40) if host != TISSUES["lung"][0] else u(0, 60)
        mu[sel] = TISSUES["lesion"][3]

    # texture: low-frequency heterogeneity inside the body
    inside = labels != 0
    sig = [max(12.0 / sp, 1.0) for sp in spacing]
    tex = _smooth_noise(rng, shape, sig)
    suv = np.where(inside, suv * (1.0 + 0.08 * tex), 0.0).astype(np.float32)
    hu = np.where(inside, hu + 8.0 * tex, hu).astype(np.float32)
    return Phantom(labels=labels, suv=suv, hu=hu, mu511=mu, body=np.asarray(inside), spacing=spacing)  # type: ignore
