# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Tiny randomly initialised SAM models for the region tests."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch


def tiny_sam(seed: int = 2, img_size: int = 256) -> torch.nn.Module:
    """A ~80K-parameter SAM from ``segment_anything.modeling`` (32-dim encoder and decoder), random weights."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(seed)
    dim, patch = 32, 16
    emb = img_size // patch
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=img_size, patch_size=patch, embed_dim=dim, depth=1, num_heads=2, mlp_ratio=2.0,
            out_chans=dim, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True, window_size=4, global_attn_indexes=(0,),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=dim, image_embedding_size=(emb, emb), input_image_size=(img_size, img_size), mask_in_chans=4
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=64, num_heads=2),
            transformer_dim=dim, iou_head_depth=2, iou_head_hidden_dim=32,
        ),
    )  # fmt: skip
    return sam.eval()


def ct_like_slices(n: int = 2, h: int = 48, w: int = 56, seed: int = 0) -> np.ndarray:
    """CT-like slices in HU: air around an ellipse of tissue with a bright and a dark disc."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    out = []
    for i in range(n):
        img = np.full((h, w), -1000.0, np.float32)
        img[((yy - h / 2) / (0.35 * h)) ** 2 + ((xx - w / 2) / (0.4 * w)) ** 2 < 1] = 40.0
        img[(yy - h / 2) ** 2 + (xx - w / 3 - i) ** 2 < (0.1 * h) ** 2] = 600.0
        img[(yy - h / 2) ** 2 + (xx - 2 * w / 3) ** 2 < (0.12 * h) ** 2] = -800.0
        out.append(img + rng.normal(0, 20, img.shape).astype(np.float32))
    return np.stack(out)
