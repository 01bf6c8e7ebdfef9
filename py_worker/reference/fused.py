"""NumPy twins of the fused decode GEMVs of the "gpu" kernel set (js_glue/kernels/wgsl/gemv_*.js).

Each is the composition of the reference steps that its kernel folds into one dispatch, for one
token (``x`` is a vector): what the separate kernels computed one after another. Every ``w``
may be a ``Q4F16`` (f16math.py): the twin of the same kernel with ``f16Math``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from py_worker.reference.llama import apply_rope, gelu_tanh, rms_norm, silu

Array = Any  # numpy.ndarray (numpy is untyped for mypy here)


def linear(x: Array, w: Array, bias: Array | None = None, y: Array | None = None) -> Array:
    """``w @ x`` (+ bias) (+ y: an accumulating GEMV adds into what its output held); ``w`` is W
    [N, K], or a ``Q4F16`` for the GEMV with f16 arithmetic in its groups (f16math.py)."""
    out = w @ x
    if bias is not None:
        out = out + bias
    return out if y is None else y + out


def norm_linear(x: Array, norm: Array, eps: float, w: Array, bias: Array | None = None) -> Array:
    """gemv_norm.js: the linear over ``rms_norm(x) * norm``."""
    return linear(rms_norm(x, norm, eps), w, bias)


def rope_kv_linear(
    x: Array,
    norm: Array,
    eps: float,
    w: Array,
    bias: Array | None,
    heads: int,
    kv_heads: int,
    cos_sin: Array,
    interleaved: bool,
    k_cache: Array,
    v_cache: Array,
    pos: int,
) -> Array:
    """gemv_rope_kv.js: q|k|v = norm_linear, then RoPE on q and k at ``pos`` and the KV append.

    ``w`` [(heads + 2 kv_heads) * head_dim, K]; ``cos_sin`` [head_dim / 2, 2]: the RoPE table's
    row for ``pos``; ``k_cache``, ``v_cache`` [ctx, kv_heads, head_dim] get row ``pos`` (in
    place). Returns the rotated q [heads * head_dim].
    """
    qkv = norm_linear(x, norm, eps, w, bias)
    hd = qkv.shape[0] // (heads + 2 * kv_heads)
    cos = np.concatenate([cos_sin[:, 0], cos_sin[:, 0]])[None, :]
    sin = np.concatenate([cos_sin[:, 1], cos_sin[:, 1]])[None, :]
    q = qkv[: heads * hd].reshape(1, heads, hd)
    k = qkv[heads * hd : (heads + kv_heads) * hd].reshape(1, kv_heads, hd)
    k_cache[pos] = apply_rope(k, cos, sin, interleaved)[0]
    v_cache[pos] = qkv[(heads + kv_heads) * hd :].reshape(kv_heads, hd)
    return apply_rope(q, cos, sin, interleaved).reshape(-1)


def merge_partials(partials: Array, chunks: int) -> Array:
    """attentionCombine's merge: ``partials`` [heads, S, 2 + head_dim] of (max, sum, weighted V)
    per 64-key chunk, the first ``chunks`` of them in use -> attention output [heads * head_dim]."""
    used = partials[:, :chunks]
    m, s, o = used[:, :, 0], used[:, :, 1], used[:, :, 2:]
    c = np.exp(m - m.max(axis=1, keepdims=True))
    return ((o * c[:, :, None]).sum(axis=1) / (s * c).sum(axis=1)[:, None]).reshape(-1)


def merge_linear(partials: Array, chunks: int, w: Array, bias: Array | None, y: Array | None = None) -> Array:
    """gemv_merge.js: o_proj over the merged attention output."""
    return linear(merge_partials(partials, chunks), w, bias, y)


def glu_linear(gate_up: Array, act: str, w: Array, y: Array | None = None) -> Array:
    """gemv_glu.js: down over ``act(gate) * up`` (``gate_up``: gate, then up; ``silu`` or ``gelu_tanh``)."""
    gate, up = np.split(gate_up, 2)
    return linear((gelu_tanh if act == "gelu_tanh" else silu)(gate) * up, w, y=y)
