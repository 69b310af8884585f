# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Region attention (R-MSA, RAT paper Eqs. 2-4): multi-head self-attention restricted to tokens of the same region.

Two implementations compute the same function:

- ``"dense"`` -- the reference: a boolean ``[B, 1, N, N]`` same-region mask (a broadcast label-equality comparison)
  passed to :func:`torch.nn.functional.scaled_dot_product_attention`. Cross-region pairs get ``-inf`` logits, so it
  is exact within-region attention (the published ``-1000`` additive mask is only exact while logits stay far below
  1000). Memory is O(N^2) per head: at a 512x512 slice (16,384 latent tokens) one float32 score matrix is 1 GiB.
- ``"packed"`` (default) -- never builds an ``N x N`` tensor. Tokens are sorted by (batch item, region); the regions
  ("segments") are grouped into buckets by size (``DEFAULT_BUCKETS_PER_OCTAVE`` = 4 geometric buckets per factor of
  two, so a bucket's sizes differ by at most ~19 % and padding wastes little score work); each bucket runs as one
  padded ``[n_segments, heads, S, d]`` attention with a key-padding mask, with the queries of large buckets
  processed in chunks so that one score block holds at most ``score_budget`` elements; the outputs are written
  back to the original token order (padding queries go to a scratch row). The Python loops run over size buckets
  (at most ``4 * log2(N) + 1``) and query chunks, never over regions. Both paths support autograd and
  ``torch.jit.script``. :func:`packed_score_work` reports the padding overhead of a region map.

Memory: the packed path's largest temporaries are the gathered q/k/v (at most twice the token count, from bucket
padding) and one score block of at most ``score_budget`` elements (when SDPA falls back to its math kernel; fused
kernels, e.g. PyTorch's CPU flash kernel, do not even materialise that). The dense path always builds the
``[B, 1, N, N]`` mask (256 MiB as bool at 512x512, plus any float copy the kernel makes) and, with the math kernel,
``[B, heads, N, N]`` scores; its compute is O(N^2) regardless of the regions, while packed costs O(sum of squared
region sizes).
"""

from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .nhwc import conv1x1_nhwc

__all__ = [
    "region_attention",
    "RegionSelfAttention",
    "packed_score_work",
    "REGION_ATTENTION_IMPLS",
    "DEFAULT_SCORE_BUDGET",
    "DEFAULT_BUCKETS_PER_OCTAVE",
]

#: Valid values of ``impl`` / ``region_attention``.
REGION_ATTENTION_IMPLS = ("packed", "dense")
#: Default maximum number of elements of one attention score block in the packed path (2**25 float32 = 128 MiB).
DEFAULT_SCORE_BUDGET = 2**25
#: Default size buckets per factor of two of the packed path: a bucket's region sizes differ by at most 2**(1/4)
#: (about 19 %), so padding wastes at most ~41 % of a bucket's score work instead of 300 % with octave buckets.
DEFAULT_BUCKETS_PER_OCTAVE = 4
# segments up to this many tokens share one size bucket (fewer attention calls; their padding is negligible)
_SMALL_SEGMENT = 32


def _dense_region_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, regions: torch.Tensor, scale: Optional[float]
) -> torch.Tensor:
    """Reference: boolean same-region mask ``[B, 1, N, N]`` and one SDPA call."""
    mask = (regions.unsqueeze(2) == regions.unsqueeze(1)).unsqueeze(1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def _size_buckets(counts: torch.Tensor, buckets_per_octave: int, small: int = _SMALL_SEGMENT) -> torch.Tensor:
    """Bucket index of each segment size: ``ceil(buckets_per_octave * log2(max(count, 32)))`` computed exactly in
    integers (bucketize against the rounded-up boundaries ``ceil(2 ** (i / buckets_per_octave))``), so a bucket's
    sizes differ by at most a factor ``2 ** (1 / buckets_per_octave)`` (rounded up). Segments of up to
    ``small`` tokens share one bucket: their padding costs little, another attention call costs more."""
    i = torch.arange(0, 63 * buckets_per_octave, device=counts.device, dtype=torch.float64)
    bounds = torch.unique(torch.ceil(torch.pow(2.0, i / buckets_per_octave)).to(torch.int64))
    return torch.bucketize(counts.clamp(min=small), bounds)


def packed_score_work(regions: torch.Tensor, buckets_per_octave: int = DEFAULT_BUCKETS_PER_OCTAVE) -> tuple[int, int]:
    """Score elements per head of the packed path for a region map ``[B, N]`` (any integer labels).

    Returns:
        ``(exact, padded)``: the sum of squared region sizes (what within-region attention needs) and what the
        packed path computes (per bucket: segments x padded size squared). ``padded / exact`` is the waste.
    """
    key = torch.unique(regions.reshape(regions.shape[0], -1).to(torch.int64), dim=None, return_inverse=True)[1]
    key = key.reshape(regions.shape[0], -1) + torch.arange(regions.shape[0]).unsqueeze(1) * (int(key.max()) + 1)
    counts = torch.unique(key, return_counts=True)[1]
    level = _size_buckets(counts, buckets_per_octave)
    padded = 0
    for lv in torch.unique(level).tolist():
        sizes = counts[level == lv]
        padded += int(sizes.numel()) * int(sizes.max()) ** 2
    return int((counts**2).sum()), padded


def _packed_tokens(
    tokens: torch.Tensor,
    heads: int,
    d: int,
    regions: torch.Tensor,
    scale: Optional[float],
    score_budget: int = DEFAULT_SCORE_BUDGET,
    buckets_per_octave: int = DEFAULT_BUCKETS_PER_OCTAVE,
) -> torch.Tensor:
    """Packed region attention on token-major ``tokens [B*N, heads * (2 * d + dv)]`` (q, k, v concatenated per
    token in (q/k/v, head, channel) order, e.g. the output of a fused qkv projection) and ``regions [B, N]``;
    returns ``[B*N, heads, dv]``. One row gather per bucket serves q, k and v."""
    b, n = regions.shape
    h = heads
    dv = tokens.shape[1] // h - 2 * d
    device = tokens.device
    # segment id per token: (batch item, region), relabelled densely; labels may be any integers
    flat = regions.reshape(-1).to(torch.int64)
    _, dense_label = torch.unique(flat, sorted=True, return_inverse=True)
    num_labels = int(dense_label.max().item()) + 1
    batch_index = torch.arange(b, device=device, dtype=torch.int64).repeat_interleave(n)
    key = batch_index * num_labels + dense_label
    _, seg_of_token, counts = torch.unique(key, sorted=True, return_inverse=True, return_counts=True)
    order = torch.argsort(seg_of_token, stable=True)  # token indices (into B*N), grouped by segment
    starts = torch.cumsum(counts, 0) - counts
    level = _size_buckets(counts, buckets_per_octave)
    levels = torch.unique(level, sorted=True)

    # one extra row (index B*N) receives the outputs of padding queries and is dropped at the end
    out = tokens.new_zeros(b * n + 1, h, dv)
    for li in range(levels.numel()):
        segs = torch.nonzero(level == levels[li]).squeeze(1)
        seg_counts = counts[segs]
        seg_starts = starts[segs]
        s = int(seg_counts.max().item())
        ns = segs.numel()
        ar = torch.arange(s, device=device, dtype=torch.int64)
        valid = ar.unsqueeze(0) < seg_counts.unsqueeze(1)  # [ns, s]
        pos = seg_starts.unsqueeze(1) + ar.unsqueeze(0)
        pos = torch.where(valid, pos, seg_starts.unsqueeze(1))  # padding repeats a real token of the segment
        tok = order[pos]  # [ns, s]
        rows = tokens.index_select(0, tok.reshape(-1)).view(ns, s, -1)
        qs = rows[:, :, : h * d].view(ns, s, h, d).transpose(1, 2)  # [ns, h, s, d]
        ks = rows[:, :, h * d : 2 * h * d].view(ns, s, h, d).transpose(1, 2)
        vs = rows[:, :, 2 * h * d :].view(ns, s, h, dv).transpose(1, 2)
        mask: Optional[torch.Tensor] = None
        dest = tok
        if not bool(valid.all()):
            mask = valid.view(ns, 1, 1, s)  # key padding mask; every row keeps >= 1 real key
            dest = torch.where(valid, tok, torch.full_like(tok, b * n))
        chunk = max(1, score_budget // max(1, ns * h * s))
        if chunk >= s:
            o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, scale=scale)
        else:
            parts: List[torch.Tensor] = []
            for c0 in range(0, s, chunk):
                q_chunk = qs[:, :, c0 : c0 + chunk]
                parts.append(F.scaled_dot_product_attention(q_chunk, ks, vs, attn_mask=mask, scale=scale))
            o = torch.cat(parts, dim=2)
        out.index_copy_(0, dest.reshape(-1), o.transpose(1, 2).reshape(ns * s, h, dv).to(out.dtype))
    return out[: b * n]


def _packed_region_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    regions: torch.Tensor,
    scale: Optional[float],
    score_budget: int = DEFAULT_SCORE_BUDGET,
    buckets_per_octave: int = DEFAULT_BUCKETS_PER_OCTAVE,
) -> torch.Tensor:
    """Exact within-region attention without an ``N x N`` tensor (see the module docstring)."""
    b, h, n, d = q.shape
    dv = v.shape[-1]
    # token-major [B*N, heads * (2d + dv)]: one copy, as the transposes needed anyway
    qf = q.transpose(1, 2).reshape(b * n, h * d)
    kf = k.transpose(1, 2).reshape(b * n, h * d)
    tokens = torch.cat([qf, kf, v.transpose(1, 2).reshape(b * n, h * dv)], dim=1)
    out = _packed_tokens(tokens, h, d, regions, scale, score_budget, buckets_per_octave)
    return out.reshape(b, n, h, dv).transpose(1, 2)


def _region_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    regions: torch.Tensor,
    scale: Optional[float],
    impl: str,
    score_budget: int = DEFAULT_SCORE_BUDGET,
) -> torch.Tensor:
    """Scriptable dispatcher without argument checks (used by the modules, which validate at construction)."""
    if impl == "dense":
        return _dense_region_attention(q, k, v, regions, scale)
    return _packed_region_attention(q, k, v, regions, scale, score_budget)


def region_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    regions: torch.Tensor,
    scale: float | None = None,
    impl: str = "packed",
    score_budget: int = DEFAULT_SCORE_BUDGET,
) -> torch.Tensor:
    """Multi-head attention where token i attends to token j only when ``regions[b, i] == regions[b, j]``.

    ``softmax(scale * q k^T) v`` per head, restricted to each region (exact: cross-region weights are exactly 0).

    Args:
        q: queries ``[B, heads, N, d]``.
        k: keys ``[B, heads, N, d]``.
        v: values ``[B, heads, N, dv]``.
        regions: integer region labels ``[B, N]``; any integers (non-contiguous and negative are fine). Each batch
            item has its own map.
        scale: logit scale. Defaults to None, meaning ``d ** -0.5`` (SDPA's default); RAT passes
            ``num_heads ** -0.5`` (see :class:`RegionSelfAttention`).
        impl: ``"packed"`` (memory-light, default) or ``"dense"`` (the boolean-mask reference).
        score_budget: packed only: maximum number of elements of one score block; larger regions are processed in
            query chunks. Defaults to ``DEFAULT_SCORE_BUDGET`` (2**25).

    Returns:
        ``[B, heads, N, dv]``, in the dtype of ``q``.

    Raises:
        ValueError: when ``impl`` is unknown, shapes disagree, or ``regions`` is not an integer tensor.
    """
    if impl not in REGION_ATTENTION_IMPLS:
        raise ValueError(f"impl must be one of {REGION_ATTENTION_IMPLS}, got {impl!r}.")
    if q.ndim != 4 or k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"q, k, v must be [B, heads, N, d] with matching B, heads, N (and d for q/k); got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}."
        )
    if regions.shape != (q.shape[0], q.shape[2]):
        raise ValueError(f"regions must be [B, N] = {(q.shape[0], q.shape[2])}, got {tuple(regions.shape)}.")
    if regions.is_floating_point() or regions.is_complex() or regions.dtype == torch.bool:
        raise ValueError(f"regions must be an integer tensor of labels, got dtype {regions.dtype}.")
    if score_budget < 1:
        raise ValueError(f"score_budget must be a positive integer, got {score_budget}.")
    if q.shape[2] == 0 or q.shape[0] == 0:
        return q.new_zeros(q.shape[:3] + (v.shape[-1],))
    return _region_attention(q, k, v, regions, scale, impl, score_budget)


class RegionSelfAttention(nn.Module):
    """R-MSA on a ``[B, C, H, W]`` map with a ``[B, H, W]`` region map (the RAT authors' ``ra`` module).

    ``qkv`` is a 1x1 convolution C -> 3C whose output channels are ordered (q/k/v, head, head channel), i.e. channel
    ``s * C + head * (C // heads) + c``; ``proj`` is the 1x1 output convolution. Tokens are the pixels in row-major
    order. The logit scale defaults to the published ``num_heads ** -0.5`` (the paper calls the normaliser "the head
    number"; the authors' code uses exactly this), not the usual ``head_dim ** -0.5``; keep it for weight parity.

    Args:
        channels: number of channels C (divisible by ``num_heads``).
        num_heads: number of heads. Defaults to 8.
        attn_scale: logit scale. Defaults to None, meaning ``num_heads ** -0.5``.
        impl: ``"packed"`` or ``"dense"``, see :func:`region_attention`. Defaults to "packed".
        score_budget: see :func:`region_attention`. Defaults to ``DEFAULT_SCORE_BUDGET``.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int = 8,
        attn_scale: float | None = None,
        impl: str = "packed",
        score_budget: int = DEFAULT_SCORE_BUDGET,
    ) -> None:
        super().__init__()
        if num_heads < 1 or channels % num_heads:
            raise ValueError(f"channels ({channels}) should be divisible by num_heads ({num_heads}).")
        if impl not in REGION_ATTENTION_IMPLS:
            raise ValueError(f"region attention impl must be one of {REGION_ATTENTION_IMPLS}, got {impl!r}.")
        if score_budget < 1:
            raise ValueError(f"score_budget must be a positive integer, got {score_budget}.")
        self.num_heads = num_heads
        self.scale = float(num_heads**-0.5 if attn_scale is None else attn_scale)
        self.impl = impl
        self.score_budget = int(score_budget)
        self.qkv = nn.Conv2d(channels, channels * 3, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``[B, C, H, W]``.
            regions: integer labels ``[B, H, W]`` at the resolution of ``x``.
        """
        b, c, hh, ww = x.shape
        qkv = self.qkv(x).reshape(b, 3, self.num_heads, c // self.num_heads, hh * ww).transpose(3, 4)
        q, k, v = qkv.unbind(1)  # [B, heads, N, d]
        o = _region_attention(q, k, v, regions.reshape(b, hh * ww), self.scale, self.impl, self.score_budget)
        return self.proj(o.transpose(2, 3).reshape(b, c, hh, ww))

    def forward_nhwc(self, x: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """The same on channels-last ``x [B, H, W, C]`` -> ``[B, H, W, C]``: the qkv projection is one matrix
        product whose token-major output feeds the packed attention without transposes."""
        b, hh, ww, c = x.shape
        n = hh * ww
        qkv = conv1x1_nhwc(x, self.qkv.weight, self.qkv.bias).reshape(b * n, 3, self.num_heads, c // self.num_heads)
        labels = regions.reshape(b, n)
        if self.impl == "dense":
            q, k, v = qkv.reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
            o = _dense_region_attention(q, k, v, labels, self.scale).transpose(1, 2)
        else:
            heads, d = self.num_heads, c // self.num_heads
            o = _packed_tokens(qkv.reshape(b * n, 3 * c), heads, d, labels, self.scale, self.score_budget)
        return conv1x1_nhwc(o.reshape(b, hh, ww, c), self.proj.weight, self.proj.bias)
