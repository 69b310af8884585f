# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""SAM automatic mask generation turned into region partitions, fast enough for whole scans.

:class:`SamRegionGenerator` reproduces ``partition_from_masks(SamAutomaticMaskGenerator(sam, ...).generate(rgb))``
(single crop layer, no small-region post-processing, i.e. the stock defaults) while avoiding work whose result is
thrown away:

- each slice is encoded ONCE, and a batch of slices goes through the image encoder together;
- masks are filtered by the predicted IoU BEFORE they are upsampled to the slice size (the stock generator upsamples
  every candidate to 1024x1024 first, then discards most of them);
- kept masks are stored bit-packed instead of being run-length encoded and decoded again (SAM's RLE step takes
  minutes on noisy masks); the areas, boxes, NMS and the painting rule are the stock ones.

With the defaults the partition equals the stock one (tested). Two opt-in speed-ups change it slightly (measured in
``benchmarks/regions.py`` with the adjusted Rand index):

- ``skip_background=True``: no point prompts outside the body (air), where every prompt returns the same background;
- ``dtype=torch.bfloat16``: encoder and decoder under bf16 autocast.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator, sam_model_registry
from segment_anything.modeling import Sam
from segment_anything.utils.amg import batched_mask_to_box, build_point_grid, calculate_stability_score
from segment_anything.utils.transforms import ResizeLongestSide
from torchvision.ops.boxes import batched_nms

from .base import RegionPartitioner
from .partition import partition_from_masks
from .windowing import SliceWindow, foreground_mask

__all__ = ["SamRegionGenerator", "load_sam", "SAM_EMBED_DIMS", "file_sha256"]

# image-encoder width of each registered SAM backbone (to tell which backbone a checkpoint holds)
SAM_EMBED_DIMS: dict[str, int] = {"vit_b": 768, "vit_l": 1024, "vit_h": 1280, "default": 1280}
_PATCH_KEY = "image_encoder.patch_embed.proj.weight"
_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """sha256 of a file, memoised per (path, size, mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def _model_sha256(model: torch.nn.Module) -> str:
    """sha256 of a model's state dict (names and raw bytes of every parameter and buffer)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        # reshape(-1): a 0-d tensor (BatchNorm's int64 num_batches_tracked) cannot be viewed as bytes directly
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def load_sam(checkpoint: str | os.PathLike, model_type: str = "vit_b", device: str | torch.device = "cpu") -> Any:
    """Build a ``segment_anything`` SAM of ``model_type`` and load a local checkpoint into it.

    Args:
        checkpoint: path of the ``.pth`` state dict (as published by Meta, or saved with ``torch.save``).
        model_type: ``"vit_b"``, ``"vit_l"`` or ``"vit_h"``. Defaults to ``"vit_b"``.
        device: where to put the model. Defaults to ``"cpu"``.

    Raises:
        FileNotFoundError: the checkpoint does not exist.
        ValueError: unknown model type, unreadable file, or a checkpoint of another backbone / not a SAM state dict.
    """
    if model_type not in sam_model_registry:
        raise ValueError(f"unknown SAM model_type {model_type!r}; choose one of {sorted(sam_model_registry)}.")
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"SAM checkpoint not found: {path}. Download e.g. sam_vit_b_01ec64.pth from the segment-anything "
            "release page, or use an offline region method (method='felzenszwalb')."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors of all kinds
        raise ValueError(f"cannot read SAM checkpoint {path}: {e}") from e
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    elif isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or _PATCH_KEY not in state:
        raise ValueError(f"{path} is not a SAM state dict (no {_PATCH_KEY!r}); was it saved from another model?")
    width = int(state[_PATCH_KEY].shape[0])
    if width != SAM_EMBED_DIMS[model_type]:
        found = [k for k, v in SAM_EMBED_DIMS.items() if v == width and k != "default"]
        hint = f"it holds a {found[0]} model: pass model_type={found[0]!r}" if found else "not a stock SAM backbone"
        raise ValueError(
            f"SAM checkpoint {path} does not match model_type={model_type!r}: image encoder width {width}, "
            f"expected {SAM_EMBED_DIMS[model_type]}; {hint}."
        )
    model = sam_model_registry[model_type](checkpoint=None)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"SAM checkpoint {path} does not fit model_type={model_type!r}: {e}") from e
    return model.to(device).eval()


class SamRegionGenerator(RegionPartitioner):
    """Region partitions from SAM's automatic mask generation (the paper's region maps).

    Args:
        checkpoint: local SAM checkpoint path, or an already built ``segment_anything.modeling.Sam``. Defaults to None.
        model_type: backbone of the checkpoint (``"vit_b"``, ``"vit_l"``, ``"vit_h"``). Defaults to ``"vit_b"``.
        points_per_side: point grid per side (``points_per_side**2`` prompts per slice). Defaults to 32.
        points_per_batch: prompts per mask-decoder call. Defaults to 64.
        pred_iou_thresh: keep masks with predicted IoU above this. Defaults to 0.88 (stock).
        stability_score_thresh: keep masks with stability score at least this. Defaults to 0.95 (stock).
        stability_score_offset: logit offset of the stability score. Defaults to 1.0 (stock).
        box_nms_thresh: box IoU of the duplicate-removing NMS. Defaults to 0.7 (stock).
        skip_background: no prompts outside the body mask (speed-up; changes the partition slightly).
            Defaults to False.
        dtype: ``torch.float32`` (exact) or ``torch.bfloat16`` (autocast speed-up). Defaults to ``torch.float32``.
        device: device of the model. Defaults to None (the model's device, or CPU when loading a checkpoint).
        modality: ``"ct"``, ``"pet"`` or None: window defaults for the 8-bit RGB input. Defaults to None.
        window: fixed ``(lo, hi)`` window in real units. Defaults to None.
        percentiles: per-slice percentile window. Defaults to None.
        foreground_threshold: body threshold for ``skip_background`` on the windowed slice (0.25 for CT, else
            ``"otsu"``). Defaults to None.
        image_batch_size: slices per image-encoder call (ViT-B needs ~1 GiB per slice). Defaults to 2.
        model: alias of ``checkpoint`` for an already built ``Sam``. Defaults to None.
        multimask_output: ask the mask decoder for its three masks per prompt (stock SAM's automatic generation) or
            for one (``False``: single-mask SAM variants such as MedSAM-style fine-tunes). Defaults to True.

    Any ``segment_anything.modeling.Sam`` can be passed as ``model=`` (or ``checkpoint=``): a stock backbone with
    fine-tuned weights, or one assembled from ``ImageEncoderViT``, ``PromptEncoder`` and ``MaskDecoder`` with its own
    sizes. The input size is taken from the model (``model.image_encoder.img_size``), the cache key from the sha256
    of its state dict::

        from segment_anything import sam_model_registry

        sam = sam_model_registry["vit_b"](checkpoint=None)
        sam.load_state_dict(torch.load("medsam_vit_b.pth", map_location="cpu", weights_only=True))
        gen = SamRegionGenerator(model=sam, multimask_output=False, modality="ct")

    Raises:
        ValueError: bad settings, no checkpoint/model, or a checkpoint that does not match ``model_type``.
        FileNotFoundError: the checkpoint file does not exist.
    """

    method = "sam"

    def __init__(
        self,
        checkpoint: str | os.PathLike | torch.nn.Module | None = None,
        model_type: str = "vit_b",
        points_per_side: int = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        skip_background: bool = False,
        dtype: torch.dtype | str = torch.float32,
        device: str | torch.device | None = None,
        modality: str | None = None,
        window: tuple[float, float] | None = None,
        percentiles: tuple[float, float] | None = None,
        foreground_threshold: float | str | None = None,
        image_batch_size: int = 2,
        model: torch.nn.Module | None = None,
        multimask_output: bool = True,
    ) -> None:
        if model is not None and checkpoint is not None:
            raise ValueError("pass either checkpoint= (a path or a Sam) or model=, not both.")
        if isinstance(dtype, str):
            dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}.get(dtype.replace("torch.", ""), dtype)
        if dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"dtype must be torch.float32 or torch.bfloat16, got {dtype!r}.")
        if points_per_side < 1 or points_per_batch < 1 or image_batch_size < 1:
            raise ValueError(
                "points_per_side, points_per_batch and image_batch_size must be >= 1, got "
                f"{points_per_side}, {points_per_batch}, {image_batch_size}."
            )
        for name, v in (("pred_iou_thresh", pred_iou_thresh), ("stability_score_thresh", stability_score_thresh),
                        ("box_nms_thresh", box_nms_thresh)):  # fmt: skip
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}.")
        model = checkpoint if isinstance(checkpoint, torch.nn.Module) else model
        if model is not None:
            if not isinstance(model, Sam):
                raise ValueError(f"model must be a segment_anything Sam, got {type(model).__name__}.")
            self.checkpoint: str | None = None
            self.model = model if device is None else model.to(device)
            self.model_type = "custom"
            self._weights_sha256 = _model_sha256(self.model)
        elif checkpoint is not None:
            self.checkpoint = str(checkpoint)
            self.model = load_sam(checkpoint, model_type, "cpu" if device is None else device)
            self.model_type = model_type
            self._weights_sha256 = file_sha256(checkpoint)
        else:
            raise ValueError(
                "SamRegionGenerator needs checkpoint=PATH to a SAM .pth file (or a built Sam model); "
                "without one use an offline region method such as 'felzenszwalb'."
            )
        self.model.eval()
        self.device = self.model.device
        self.points_per_side = int(points_per_side)
        self.points_per_batch = int(points_per_batch)
        self.pred_iou_thresh = float(pred_iou_thresh)
        self.stability_score_thresh = float(stability_score_thresh)
        self.stability_score_offset = float(stability_score_offset)
        self.box_nms_thresh = float(box_nms_thresh)
        self.skip_background = bool(skip_background)
        self.dtype = dtype
        self.window = SliceWindow(modality=modality, window=window, percentiles=percentiles)
        if foreground_threshold is None:
            foreground_threshold = 0.25 if self.window.modality == "ct" and window is None else "otsu"
        self.foreground_threshold = foreground_threshold
        self.image_batch_size = int(image_batch_size)
        self.multimask_output = bool(multimask_output)
        self.transform = ResizeLongestSide(self.model.image_encoder.img_size)
        self.timings: dict[str, float] = {"encoder": 0.0, "decoder": 0.0, "partition": 0.0}

    # ------------------------------------------------------------------ settings
    def settings(self) -> dict[str, Any]:
        s: dict[str, Any] = {
            "weights_sha256": self._weights_sha256,
            "model_type": self.model_type,
            "points_per_side": self.points_per_side,
            "pred_iou_thresh": self.pred_iou_thresh,
            "stability_score_thresh": self.stability_score_thresh,
            "stability_score_offset": self.stability_score_offset,
            "box_nms_thresh": self.box_nms_thresh,
            "multimask_output": self.multimask_output,
            "skip_background": self.skip_background,
            "dtype": str(self.dtype).replace("torch.", ""),
            "window": self.window.settings(),
        }
        if self.skip_background:
            s["foreground_threshold"] = self.foreground_threshold
        return s

    def _autocast(self) -> Any:
        return torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=self.dtype == torch.bfloat16
        )

    # ------------------------------------------------------------------ pieces
    def to_rgb(self, img: np.ndarray) -> np.ndarray:
        """The 8-bit RGB image SAM sees for one slice in real units (``[H, W, 3]`` uint8)."""
        return self.window.to_rgb8(img)

    def point_grid(self, img: np.ndarray) -> np.ndarray:
        """Point prompts ``[P, 2]`` (x, y in pixels) for one slice: the stock grid, minus air if ``skip_background``."""
        h, w = img.shape[-2:]
        points = build_point_grid(self.points_per_side) * np.array([[w, h]])
        if self.skip_background:
            fg = foreground_mask(self.window(img), self.foreground_threshold)
            ij = np.clip(points.astype(np.int64), 0, [w - 1, h - 1])
            points = points[fg[ij[:, 1], ij[:, 0]]]
        return points

    @torch.no_grad()
    def encode(self, rgbs: list[np.ndarray]) -> tuple[torch.Tensor, tuple[int, int]]:
        """Image embeddings ``[B, C, h, w]`` of same-size 8-bit RGB slices, and the resized input size."""
        imgs = [torch.as_tensor(self.transform.apply_image(r), device=self.device).permute(2, 0, 1) for r in rgbs]
        x = torch.stack(imgs).contiguous()
        input_size = (int(x.shape[-2]), int(x.shape[-1]))
        feats = []
        for start in range(0, x.shape[0], self.image_batch_size):
            with self._autocast():
                feats.append(self.model.image_encoder(self.model.preprocess(x[start : start + self.image_batch_size])))
        return torch.cat(feats).float(), input_size

    @torch.no_grad()
    def masks_for_slice(
        self, features: torch.Tensor, points: np.ndarray, input_size: tuple[int, int], shape: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Kept masks of one slice, in the stock generator's output order.

        Args:
            features: image embedding ``[1, C, h, w]``.
            points: prompts ``[P, 2]`` in pixels (x, y).
            input_size: resized input size from :meth:`encode`.
            shape: ``(H, W)`` of the slice.

        Returns:
            bool masks ``[M, H, W]`` and their areas ``[M]``.
        """
        h, w = shape
        model = self.model
        pe = model.prompt_encoder.get_dense_pe()
        packed, boxes, scores = [], [], []
        for start in range(0, len(points), self.points_per_batch):
            pts = points[start : start + self.points_per_batch]
            coords = torch.as_tensor(self.transform.apply_coords(pts, shape), device=self.device)
            labels = torch.ones(coords.shape[0], dtype=torch.int, device=self.device)
            with self._autocast():
                sparse, dense = model.prompt_encoder(
                    points=(coords[:, None, :], labels[:, None]), boxes=None, masks=None
                )
                low_res, iou = model.mask_decoder(
                    image_embeddings=features, image_pe=pe, sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense, multimask_output=self.multimask_output,
                )  # fmt: skip
            low_res, iou = low_res.float().flatten(0, 1), iou.float().flatten(0, 1)
            if self.pred_iou_thresh > 0.0:  # filter BEFORE upsampling: same masks survive, far less work
                keep = iou > self.pred_iou_thresh
                low_res, iou = low_res[keep], iou[keep]
            if low_res.shape[0] == 0:
                continue
            logits = model.postprocess_masks(low_res[:, None], input_size, shape)[:, 0]
            stab = calculate_stability_score(logits, model.mask_threshold, self.stability_score_offset)
            if self.stability_score_thresh > 0.0:
                keep = stab >= self.stability_score_thresh
                logits, iou = logits[keep], iou[keep]
            if logits.shape[0] == 0:
                continue
            masks = logits > model.mask_threshold
            del logits
            boxes.append(batched_mask_to_box(masks))
            scores.append(iou)
            packed.append(np.packbits(masks.flatten(1).cpu().numpy(), axis=1))
        if not boxes:
            return np.zeros((0, h, w), bool), np.zeros(0, np.int64)
        all_boxes, all_scores = torch.cat(boxes), torch.cat(scores)
        order = batched_nms(
            all_boxes.float(), all_scores, torch.zeros(len(all_boxes), device=all_boxes.device), self.box_nms_thresh
        ).cpu().numpy()
        kept = np.unpackbits(np.concatenate(packed)[order], axis=1, count=h * w).astype(bool).reshape(-1, h, w)
        return kept, kept.sum(axis=(1, 2), dtype=np.int64)

    # ------------------------------------------------------------------ main entry
    def __call__(self, slices: np.ndarray) -> np.ndarray:
        """Partitions of ``slices [B, H, W]`` (real units) as int32 ``[B, H, W]``."""
        batch = self._as_batch(slices).astype(np.float32, copy=False)
        out = np.zeros(batch.shape, np.int32)
        if batch.shape[0] == 0:
            return out
        shape = (int(batch.shape[1]), int(batch.shape[2]))
        t0 = time.perf_counter()
        feats, input_size = self.encode([self.to_rgb(s) for s in batch])
        self.timings["encoder"] += time.perf_counter() - t0
        for i, s in enumerate(batch):
            t0 = time.perf_counter()
            masks, _ = self.masks_for_slice(feats[i : i + 1], self.point_grid(s), input_size, shape)
            t1 = time.perf_counter()
            out[i] = partition_from_masks(masks, shape)
            self.timings["decoder"] += t1 - t0
            self.timings["partition"] += time.perf_counter() - t1
        return out

    def reference(self, slices: np.ndarray, **generator_kwargs: Any) -> np.ndarray:
        """The stock path: ``partition_from_masks(SamAutomaticMaskGenerator(...).generate(rgb))`` per slice.

        Uses this generator's model, window, thresholds and ``multimask_output`` in float32 on the full point grid
        (the speed-ups do not apply). For tests and benchmarks; slow.
        """
        kwargs = dict(
            points_per_side=self.points_per_side, points_per_batch=self.points_per_batch,
            pred_iou_thresh=self.pred_iou_thresh, stability_score_thresh=self.stability_score_thresh,
            stability_score_offset=self.stability_score_offset, box_nms_thresh=self.box_nms_thresh,
        )  # fmt: skip
        kwargs.update(generator_kwargs)
        gen = SamAutomaticMaskGenerator(self.model, **kwargs)
        if not self.multimask_output:  # the stock generator hard-codes multimask_output=True: ask for one mask
            predict_torch = gen.predictor.predict_torch

            def single_mask(*args: Any, **kw: Any) -> Any:
                kw["multimask_output"] = False
                return predict_torch(*args, **kw)

            gen.predictor.predict_torch = single_mask  # type: ignore[method-assign]
        batch = self._as_batch(slices)
        return np.stack([partition_from_masks(gen.generate(self.to_rgb(s)), s.shape) for s in batch]).astype(np.int32)
