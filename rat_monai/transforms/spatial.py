# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Paired training augmentations: the same random crop, 90-degree rotation and flips for image, label and regions.

Built only from MONAI dictionary transforms. One transform instance handles all keys, and MONAI dictionary
transforms draw their random parameters once per call for all keys, so image, label and region map stay aligned.
Nothing interpolates: rot90, flips and crops move whole pixels, so the integer region map is never blended
(equivalent to nearest neighbour).

Padding: MONAI's ``RandSpatialCropd`` does NOT pad a slice smaller than the patch (it returns a smaller crop), so a
``SpatialPadd`` (symmetric, constant) runs first: image and label are padded with ``pad_value`` (default 0: air in
SUV; for HU pass -1000 or pad after normalisation), the region map with ``region_pad_value`` (default -1, a label
distinct from real regions, so the padding is its own region).
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.transforms import Compose, RandFlipd, RandRotate90d, RandSpatialCropd, SpatialPadd

__all__ = ["DEFAULT_PATCH_SIZE", "paired_train_transforms"]

DEFAULT_PATCH_SIZE: dict[str, int] = {"pet": 192, "ct": 256}


def paired_train_transforms(
    keys: Sequence[str] = ("image", "label", "regions"),
    patch_size: int | Sequence[int] | None = None,
    modality: str = "pet",
    region_key: str | None = "regions",
    pad_value: float = 0.0,
    region_pad_value: int = -1,
    prob_rotate: float = 0.75,
    prob_flip: float = 0.5,
    crop: bool = True,
) -> Compose:
    """Random crop + rot90 + flips applied identically to all ``keys`` (missing keys allowed).

    Order: ``SpatialPadd`` to ``patch_size`` (only where smaller) -> ``RandSpatialCropd(patch_size)`` ->
    ``RandRotate90d(prob_rotate, max_k=3)`` -> ``RandFlipd`` on axis 0 -> ``RandFlipd`` on axis 1 (with rot90 this
    covers the 8 symmetries of the square).

    Args:
        keys: keys to augment together. Defaults to ("image", "label", "regions").
        patch_size: square size or ``(H, W)``. Defaults to 192 for PET, 256 for CT (the paper's patches).
        modality: "pet" or "ct" for the default patch size. Defaults to "pet".
        region_key: which of ``keys`` is the integer region map (padded with ``region_pad_value``), or None.
            Defaults to "regions".
        pad_value: constant for padding the other keys. Defaults to 0.0.
        region_pad_value: constant for padding the region map. Defaults to -1.
        prob_rotate: probability of a random 90/180/270-degree rotation. Defaults to 0.75.
        prob_flip: probability of each of the two flips. Defaults to 0.5.
        crop: add the pad + random crop steps. Defaults to True.

    Returns:
        a MONAI ``Compose`` of dictionary transforms.

    Examples::

        aug = paired_train_transforms(patch_size=64)
        out = aug({"image": img, "label": lab, "regions": reg})  # each [1, H, W] -> [1, 64, 64]
    """
    keys = tuple(keys)
    if not keys:
        raise ValueError("keys must name at least one key.")
    for name, p in (("prob_rotate", prob_rotate), ("prob_flip", prob_flip)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {p}.")
    if patch_size is None:
        m = str(modality).lower()
        if m not in DEFAULT_PATCH_SIZE:
            raise ValueError(f"no default patch size for modality {modality!r}: pass patch_size= or use 'pet'/'ct'.")
        patch_size = DEFAULT_PATCH_SIZE[m]
    size = (int(patch_size),) * 2 if isinstance(patch_size, (int, float)) else tuple(int(p) for p in patch_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"patch_size must be a positive int or (H, W), got {patch_size}.")
    region_keys = tuple(k for k in keys if region_key is not None and k == region_key)
    other_keys = tuple(k for k in keys if k not in region_keys)
    ts = []
    if crop:
        if other_keys:
            ts.append(SpatialPadd(other_keys, spatial_size=size, mode="constant", value=pad_value,
                                  allow_missing_keys=True))
        if region_keys:
            ts.append(SpatialPadd(region_keys, spatial_size=size, mode="constant", value=region_pad_value,
                                  allow_missing_keys=True))
        ts.append(RandSpatialCropd(keys, roi_size=size, random_size=False, allow_missing_keys=True))
    ts.append(RandRotate90d(keys, prob=prob_rotate, max_k=3, spatial_axes=(0, 1), allow_missing_keys=True))
    ts.append(RandFlipd(keys, prob=prob_flip, spatial_axis=0, allow_missing_keys=True))
    ts.append(RandFlipd(keys, prob=prob_flip, spatial_axis=1, allow_missing_keys=True))
    return Compose(ts)
