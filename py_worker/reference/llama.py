"""The Llama-family decoder forward pass in NumPy: the golden reference for the WebGPU kernels.

Covers Llama, SmolLM2 and Qwen2 (fused q/k/v with optional bias): RMSNorm, RoPE in HF's
``rotate_half`` layout, grouped-query attention over a KV cache, SwiGLU MLP, tied or untied
lm_head. Everything is f32 and written top to bottom (llama2.c style) so a kernel author can
read one step and compare buffers. Weights use MLC's tensor names (docs/CONTRACTS.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

Array = Any  # numpy.ndarray (numpy is untyped for mypy here)


@dataclass(frozen=True)
class LlamaConfig:
    """Architecture numbers from ``mlc-chat-config.json``'s ``model_config``."""

    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    num_hidden_layers: int
    vocab_size: int
    rms_norm_eps: float
    rope_theta: float
    tie_word_embeddings: bool
    rope_interleaved: bool = False
    """RoPE pairs (2i, 2i+1) as ggml does for llama-architecture GGUFs, not (i, i + d/2)."""

    @classmethod
    def from_chat_config(cls, config: Mapping[str, Any]) -> LlamaConfig:
        mc = config["model_config"]
        heads = int(mc["num_attention_heads"])
        return cls(
            hidden_size=int(mc["hidden_size"]),
            intermediate_size=int(mc["intermediate_size"]),
            num_attention_heads=heads,
            num_key_value_heads=int(mc.get("num_key_value_heads", heads)),
            head_dim=int(mc.get("head_dim") or int(mc["hidden_size"]) // heads),
            num_hidden_layers=int(mc["num_hidden_layers"]),
            vocab_size=int(mc.get("vocab_size", config.get("vocab_size", 0))),
            rms_norm_eps=float(mc.get("rms_norm_eps", 1e-5)),
            rope_theta=float(mc.get("rope_theta", mc.get("position_embedding_base", 10000.0))),
            tie_word_embeddings=bool(mc.get("tie_word_embeddings", False)),
            rope_interleaved=bool(mc.get("rope_interleaved", False)),
        )


class KVCache:
    """Keys and values of every layer for positions ``[0, length)``; rewind just moves ``length``."""

    def __init__(self, cfg: LlamaConfig, capacity: int) -> None:
        shape = (cfg.num_hidden_layers, capacity, cfg.num_key_value_heads, cfg.head_dim)
        self.k = np.zeros(shape, dtype=np.float32)
        self.v = np.zeros(shape, dtype=np.float32)
        self.capacity = capacity
        self.length = 0


def rms_norm(x: Array, weight: Array, eps: float) -> Array:
    """``x / sqrt(mean(x²) + eps) * weight`` over the last axis (HF LlamaRMSNorm, in f32)."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.float32(eps)) * weight


def rope_cos_sin(positions: Array, head_dim: int, theta: float) -> tuple[Array, Array]:
    """cos/sin ``[T, head_dim]`` with the frequencies repeated for both halves (HF layout)."""
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    angles = positions.astype(np.float64)[:, None] * inv_freq[None, :]
    angles = np.concatenate([angles, angles], axis=-1)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def apply_rope(x: Array, cos: Array, sin: Array, interleaved: bool = False) -> Array:
    """``x * cos + rotate_half(x) * sin`` for ``x`` of shape ``[T, heads, head_dim]``.

    ``interleaved``: pair i is (2i, 2i+1) instead of (i, i + d/2), with the same frequencies
    (ggml's layout); it is the same rotation applied to a permutation of the head's dims.
    """
    if interleaved:
        d = x.shape[-1]
        order = np.concatenate([np.arange(0, d, 2), np.arange(1, d, 2)])  # interleaved -> halves
        back = np.argsort(order)
        return apply_rope(x[..., order], cos, sin)[..., back]
    half = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos[:, None, :] + rotated * sin[:, None, :]


def silu(x: Array) -> Array:
    return x / (np.float32(1.0) + np.exp(-x))


def softmax(x: Array, axis: int = -1) -> Array:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class LlamaModel:
    """Weights (f32, by MLC name) plus the forward pass that appends tokens to a ``KVCache``."""

    def __init__(self, weights: Mapping[str, Array], cfg: LlamaConfig) -> None:
        self.w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        self.cfg = cfg
        head = "model.embed_tokens.weight" if cfg.tie_word_embeddings else "lm_head.weight"
        self.lm_head = self.w[head]

    def forward(self, ids: list[int], cache: KVCache) -> Array:
        """Run ``ids`` at positions ``cache.length…``, store their K/V, return the last logits."""
        cfg, w = self.cfg, self.w
        start, n = cache.length, len(ids)
        if start + n > cache.capacity:
            raise ValueError(f"KV cache full: {start} + {n} > {cache.capacity}")
        hd, n_heads, n_kv = cfg.head_dim, cfg.num_attention_heads, cfg.num_key_value_heads
        group = n_heads // n_kv
        cos, sin = rope_cos_sin(np.arange(start, start + n), hd, cfg.rope_theta)
        # Query row t sits at position start + t and sees key positions 0..start + t.
        causal = np.arange(start + n)[None, :] <= (start + np.arange(n))[:, None]

        x = w["model.embed_tokens.weight"][np.asarray(ids, dtype=np.int64)]  # [T, hidden]
        for layer in range(cfg.num_hidden_layers):
            p = f"model.layers.{layer}."

            # Attention block: x += o_proj(attention(rope(q), rope(k), v)).
            xn = rms_norm(x, w[p + "input_layernorm.weight"], cfg.rms_norm_eps)
            qkv = xn @ w[p + "self_attn.qkv_proj.weight"].T
            if p + "self_attn.qkv_proj.bias" in w:
                qkv = qkv + w[p + "self_attn.qkv_proj.bias"]
            q = qkv[:, : n_heads * hd].reshape(n, n_heads, hd)
            k = qkv[:, n_heads * hd : (n_heads + n_kv) * hd].reshape(n, n_kv, hd)
            v = qkv[:, (n_heads + n_kv) * hd :].reshape(n, n_kv, hd)
            q = apply_rope(q, cos, sin, cfg.rope_interleaved)
            k = apply_rope(k, cos, sin, cfg.rope_interleaved)
            cache.k[layer, start : start + n] = k
            cache.v[layer, start : start + n] = v
            keys = cache.k[layer, : start + n]  # [S, kv_heads, hd]
            values = cache.v[layer, : start + n]
            out = np.empty((n, n_heads, hd), dtype=np.float32)
            for h in range(n_heads):
                kv_head = h // group  # GQA: `group` query heads share one K/V head
                scores = (q[:, h, :] @ keys[:, kv_head, :].T) / np.float32(np.sqrt(hd))  # [T, S]
                scores = np.where(causal, scores, np.float32(-np.inf))
                out[:, h, :] = softmax(scores) @ values[:, kv_head, :]
            x = x + out.reshape(n, n_heads * hd) @ w[p + "self_attn.o_proj.weight"].T

            # MLP block: x += down(silu(gate) * up).
            xn = rms_norm(x, w[p + "post_attention_layernorm.weight"], cfg.rms_norm_eps)
            gate_up = xn @ w[p + "mlp.gate_up_proj.weight"].T
            gate, up = gate_up[:, : cfg.intermediate_size], gate_up[:, cfg.intermediate_size :]
            x = x + (silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T

        cache.length = start + n
        last = rms_norm(x[-1:], w["model.norm.weight"], cfg.rms_norm_eps)
        return (last @ self.lm_head.T)[0].astype(np.float32)
