# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Bi-WKV: the bidirectional, exponentially decaying global attention of Vision-RWKV / Restore-RWKV.

For one channel, with ``w`` and ``u`` as passed (the networks pass their parameters divided by ``T``)::

    wkv_t = (sum_{i != t} exp(-(|t-i|-1) * w + k_i) * v_i + exp(u + k_t) * v_t)
          / (sum_{i != t} exp(-(|t-i|-1) * w + k_i)       + exp(u + k_t))

``bi_wkv`` computes it in pure PyTorch with O(T) time and memory (no ``T x T`` tensor): a forward and a backward
decayed prefix sum, each done in chunks of ``L ~ sqrt(T)`` tokens. Inside a chunk the prefix sums are one ``cumsum``
taken relative to the chunk's largest exponent. The states at the ``n = T / L`` chunk starts come from an ``n x n``
lower-triangular weight matrix per channel with an exact per-row maximum (``n^2 ~ T`` entries, so still linear); when
a huge ``|w|`` forces so many short chunks that ``n^2`` would exceed ``O(T)``, a sequential scan over chunks with a
running-maximum offset is used instead. Every partial sum is carried as an (offset, scaled value) pair, so nothing
overflows for any ``k`` (tested with ``|k|`` up to 80). ``L`` is capped so that ``L * max|w| <= 8``, which bounds the
dynamic range inside a chunk: a term can underflow only when it is below ``exp(-70)`` times another term of the same
row's denominator. Autograd runs through the whole formulation (the stabilising offsets are detached, which is exact
because the result does not depend on them); saved tensors stay linear in ``T``. ``bi_wkv_reference`` is the naive
O(T^2) softmax form used in tests.

Precision: in float64 the result and all gradients match the dense reference to 1e-8. In float32 the output and the
gradients for ``u``, ``k``, ``v`` match to 1e-4; the gradient for ``w`` sums distance-weighted terms (distances up to
``T``) that cancel between numerator and denominator, which an O(T) scan cannot pair up the way the dense softmax
does, so it carries an absolute error of about ``1e-6 * T * max|dL/dy| * max|v|`` (visible only where the true
gradient is near zero). Lower-precision inputs (bfloat16, float16) are computed in float32 internally.

Shapes: ``k``, ``v``: ``[B, T, C]``; ``w``, ``u``: ``[C]``. The output has the shape and dtype of ``v``; bfloat16 and
float16 inputs are computed in float32 internally.
"""

from __future__ import annotations

import math

import torch
from torch.utils.checkpoint import checkpoint

__all__ = ["bi_wkv", "bi_wkv_reference"]

# the largest value of chunk_size * max|w| allowed: bounds exp() arguments inside a chunk to about +-2 * 8
_MAX_CHUNK_DECAY = 8.0


def _check(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if k.ndim != 3 or k.shape != v.shape:
        raise ValueError(
            f"k and v must both be [B, T, C] with the same shape, got {tuple(k.shape)} and {tuple(v.shape)}."
        )
    channels = k.shape[-1]
    if w.shape != (channels,) or u.shape != (channels,):
        raise ValueError(
            f"w and u must be [C] = [{channels}] (one decay and one bonus per channel, already divided by T), "
            f"got {tuple(w.shape)} and {tuple(u.shape)}."
        )
    if k.shape[1] < 1:
        raise ValueError(f"the sequence must have at least one token, got T={k.shape[1]}.")


def bi_wkv_reference(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Naive O(T^2) Bi-WKV (a softmax over a dense ``[B, C, T, T]`` score tensor); for tests only.

    Args:
        w: decay per channel ``[C]`` (already divided by ``T``).
        u: bonus of the current token per channel ``[C]`` (already divided by ``T``).
        k: keys ``[B, T, C]``.
        v: values ``[B, T, C]``.

    Returns:
        ``[B, T, C]``, dtype of ``v``.
    """
    _check(w, u, k, v)
    length = k.shape[1]
    dtype = torch.promote_types(v.dtype, torch.float32)
    pos = torch.arange(length, device=k.device, dtype=dtype)
    dist = (pos[:, None] - pos[None, :]).abs()  # [T, T]
    eye = torch.eye(length, device=k.device, dtype=torch.bool)
    score = -(dist - 1) * w.to(dtype)[:, None, None]  # [C, T, T]
    score = torch.where(eye, u.to(dtype)[:, None, None], score)
    score = score.unsqueeze(0) + k.to(dtype).transpose(1, 2).unsqueeze(2)  # [B, C, T(t), T(i)]
    out = torch.softmax(score, dim=-1) @ v.to(dtype).transpose(1, 2).unsqueeze(-1)  # [B, C, T, 1]
    return out.squeeze(-1).transpose(1, 2).to(v.dtype)


def _choose_chunk(length: int, w: torch.Tensor, chunk_size: int | None) -> int:
    """Chunk length: about sqrt(T) (16..1024), capped so that ``chunk * max|w| <= 8``."""
    if chunk_size is None:
        chunk = 2 ** round(math.log2(max(length, 1)) / 2)
        chunk = min(max(chunk, 16), 1024)
    else:
        chunk = int(chunk_size)
    max_w = float(w.detach().abs().max()) if w.numel() else 0.0
    if max_w > 0:
        chunk = min(chunk, max(1, int(_MAX_CHUNK_DECAY / max_w)))
    return max(1, min(chunk, length))


def _inter_chunk_dense(mu: torch.Tensor, total: torch.Tensor, step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunk-start states from an ``[n, n]`` lower-triangular weight matrix per channel (exact per-row maxima).

    With ``n ~ sqrt(T)`` chunks the matrix has ``~T`` entries per channel, so memory stays linear in ``T``.

    Args:
        mu: log-scale of each chunk's total ``[B, n, C]``.
        total: chunk totals ``[P, B, n, C]``.
        step: decay over one chunk ``L * w`` ``[C]``.

    Returns:
        ``(offset [B, n, C], value [P, B, n, C])`` of the state at each chunk start (state 0 is empty).
    """
    n_chunks = mu.shape[1]
    pos = torch.arange(n_chunks, device=mu.device, dtype=mu.dtype)
    gap = (pos[:, None] - 1 - pos[None, :]).clamp_min(0)  # [n(c), n(c')]
    causal = pos[None, :] < pos[:, None]
    score = mu.transpose(1, 2).unsqueeze(2) - gap * step[:, None, None]  # [B, C, n(c), n(c')]
    score = torch.where(causal, score, torch.full_like(score, -math.inf))
    top = score.detach().amax(-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # chunk 0 has an empty state
    weight = torch.exp(score - top)  # [B, C, n, n]
    value = torch.matmul(weight, total.permute(1, 3, 2, 0)).permute(3, 0, 2, 1)  # [P, B, n, C]
    return top.squeeze(-1).transpose(1, 2), value


def _inter_chunk_loop(mu: torch.Tensor, total: torch.Tensor, step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Same as :func:`_inter_chunk_dense` with a sequential scan over chunks and a running-max offset.

    Used when there are so many chunks (very large ``|w|`` forces short chunks) that ``n^2`` would exceed ``O(T)``.
    """
    s = (mu[:, 0] - step).detach() - 1000.0  # empty initial state (value 0): any offset below the real ones
    state = torch.zeros_like(total[:, :, 0])
    offsets, states = [], []
    for c in range(mu.shape[1]):
        offsets.append(s)
        states.append(state)
        s_new = torch.maximum(s - step, mu[:, c]).detach()
        state = state * torch.exp(s - step - s_new) + total[:, :, c] * torch.exp(mu[:, c] - s_new)
        s = s_new
    return torch.stack(offsets, 1), torch.stack(states, 2)


def _decayed_prefix(a: torch.Tensor, x: torch.Tensor, w: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exclusive decayed prefix sums ``F_t = sum_{i<t} exp(a_i - (t-1-i) * w) * x_i`` in offset form.

    Args:
        a: log-weights ``[B, T, C]`` (float32).
        x: values ``[P, B, T, C]`` (float32; ``P`` value sets sharing the weights, leading so broadcasts are cheap).
        w: decay ``[C]``.
        chunk: chunk length ``L``.

    Returns:
        ``(offset [B, T, C], value [P, B, T, C])`` with ``F_t = exp(offset_t) * value_t``.
    """
    batch, length, channels = a.shape
    n_chunks = -(-length // chunk)
    pad = n_chunks * chunk - length
    if pad:
        # padded tokens carry zero value; their log-weight is the sequence minimum so they never set a chunk offset
        # more than chunk * |w| above the real tokens
        a = torch.cat([a, a.detach().amin(1, keepdim=True).expand(batch, pad, channels)], dim=1)
        x = torch.cat([x, x.new_zeros(x.shape[0], batch, pad, channels)], dim=2)
    a = a.reshape(batch, n_chunks, chunk, channels)
    x = x.reshape(-1, batch, n_chunks, chunk, channels)
    idx = torch.arange(chunk, device=a.device, dtype=a.dtype)[:, None]  # [L, 1]

    # intra-chunk: cumsum relative to the chunk maximum of e_j = a_j + j * w
    e = a + idx * w
    m = e.detach().amax(2, keepdim=True)  # [B, n, 1, C]
    p = torch.cumsum(torch.exp(e - m) * x, dim=3)  # [P, B, n, L, C]
    p_excl = torch.cat([torch.zeros_like(p[:, :, :, :1]), p[:, :, :, :-1]], dim=3)
    # row j of a chunk: intra part exp(m + w - j * w) * p_excl_j

    # inter-chunk: the state at the start of chunk c is sum_{c' < c} exp(mu_c' - (c - 1 - c') * L * w) * total_c'
    total = p[:, :, :, -1]  # [P, B, n, C]
    mu = m[:, :, 0] - (chunk - 1) * w  # [B, n, C]
    if n_chunks * n_chunks <= max(4 * length, 4096):
        off_state, val_state = _inter_chunk_dense(mu, total, chunk * w)
    else:
        off_state, val_state = _inter_chunk_loop(mu, total, chunk * w)
    # row j of chunk c: inter part exp(s_c - j * w) * state_c

    # both parts share the row factor exp(-j * w): one offset per chunk, so the rescaling factors are per chunk
    off_intra = m + w  # [B, n, 1, C]
    off_inter = off_state.unsqueeze(2)  # [B, n, 1, C]
    top = torch.maximum(off_intra, off_inter).detach()
    value = p_excl * torch.exp(off_intra - top) + val_state.unsqueeze(3) * torch.exp(off_inter - top)
    offset = top - idx * w  # [B, n, L, C]
    offset = offset.reshape(batch, n_chunks * chunk, channels)[:, :length]
    value = value.reshape(-1, batch, n_chunks * chunk, channels)[:, :, :length]
    return offset, value


def _bi_wkv(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk: int) -> torch.Tensor:
    """The O(T) computation (see :func:`bi_wkv`); inputs already in the compute dtype."""
    x = torch.stack([v, torch.ones_like(v)])  # [2, B, T, C]: numerator and denominator share every weight

    off_f, val_f = _decayed_prefix(k, x, w, chunk)
    off_b, val_b = _decayed_prefix(k.flip(1), x.flip(2), w, chunk)
    off_b, val_b = off_b.flip(1), val_b.flip(2)
    self_exp = u + k

    top = torch.maximum(torch.maximum(off_f, off_b), self_exp).detach()
    total = val_f * torch.exp(off_f - top) + val_b * torch.exp(off_b - top) + x * torch.exp(self_exp - top)
    return total[0] / total[1]


def bi_wkv(
    w: torch.Tensor,
    u: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    chunk_size: int | None = None,
    recompute: bool = True,
) -> torch.Tensor:
    """Bi-WKV in O(T) time and memory, pure PyTorch (runs on any device), differentiable by autograd.

    Args:
        w: decay per channel ``[C]``, already divided by ``T`` (``w > 0`` decays with distance; any sign works).
        u: bonus of the current token per channel ``[C]``, already divided by ``T``.
        k: keys ``[B, T, C]``.
        v: values ``[B, T, C]``.
        chunk_size: tokens per chunk of the scan. Defaults to None: about ``sqrt(T)`` (16..1024). It is always capped
            so that ``chunk_size * max|w| <= 8`` (numerical safety), so very large decays give short chunks and a
            longer sequential inter-chunk scan.
        recompute: when autograd records the call, keep only the inputs and recompute the scan's intermediates
            during backward (``torch.utils.checkpoint``): the intermediates are ~40 tensors of the size of ``v``,
            which a deep network cannot afford to keep for every call (Restore-RWKV at 128x128 needed more than
            8 GiB without it). Costs one extra forward per backward. Defaults to True.

    Returns:
        ``wkv`` ``[B, T, C]`` in the dtype of ``v`` (computed in float32 for lower-precision inputs).

    Raises:
        ValueError: when the shapes do not match ``k, v: [B, T, C]``, ``w, u: [C]``.
    """
    _check(w, u, k, v)
    out_dtype = v.dtype
    dtype = torch.promote_types(v.dtype, torch.float32)
    w, u, k, v = (t.to(dtype) for t in (w, u, k, v))
    chunk = _choose_chunk(k.shape[1], w, chunk_size)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (w, u, k, v))
    if recompute and needs_grad:
        out = checkpoint(_bi_wkv, w, u, k, v, chunk, use_reentrant=False)
    else:
        out = _bi_wkv(w, u, k, v, chunk)
    return out.to(out_dtype)
