"""The decoder forward pass in NumPy: the golden reference for the WebGPU kernels.

One pre-norm decoder covers every architecture we run (``architectures.py`` maps MLC's tensor
names onto the names read here): Llama, SmolLM2, Mistral and Qwen2 (fused q/k/v with optional
bias), Qwen3 (RMSNorm over each q and k head), Phi-3 (LongRoPE; partial rotary), Gemma 2 (GeGLU,
norms on the attention and MLP outputs too, scaled embeddings, attention and final logit
soft-capping), Gemma 3 (Gemma 2's block with q/k head norms, no soft-caps, sliding-window
layers with their own RoPE base between full-attention layers). RMSNorm, RoPE in HF's
``rotate_half`` layout (Llama 3, linear and LongRoPE frequency scaling), grouped-query attention
over a KV cache (causal, or within a sliding window), gated MLP, tied or untied lm_head. Everything
is f32 (the KV cache may hold f16: ``KVCache``) and written top to bottom (llama2.c style) so a
kernel author can read one step and compare buffers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from py_worker.kernels import DEFAULT_CONTEXT_WINDOW, DEFAULT_RMS_NORM_EPS
from py_worker.reference.architectures import model_config

Array = Any  # numpy.ndarray (numpy is untyped for mypy here)


@dataclass(frozen=True)
class LlamaConfig:
    """Architecture numbers from ``mlc-chat-config.json``'s ``model_config`` (MLC's keys)."""

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
    model_type: str = "llama"
    rope_scaling: dict[str, Any] | None = field(default=None, hash=False)
    """``{"rope_type": "llama3", factor, low_freq_factor, …}`` or LongRoPE's (Phi-3)."""
    partial_rotary_factor: float = 1.0
    """Share of each head's dims that RoPE turns (Phi-4-mini: 0.75); the rest pass through."""
    context_window_size: int = 0
    hidden_act: str = "silu"
    """``silu`` (SwiGLU) or ``gelu_tanh`` (Gemma's GeGLU)."""
    embed_scale: float = 1.0
    """Gemma multiplies the embeddings by sqrt(hidden_size)."""
    attn_scale: float | None = None
    """Score scale; None is 1/sqrt(head_dim) (Gemma 2: 1/sqrt(query_pre_attn_scalar))."""
    attn_softcap: float | None = None
    """Gemma 2: scores become tanh(s / cap) * cap before the mask."""
    final_softcap: float | None = None
    """Gemma 2: logits become tanh(l / cap) * cap."""
    sliding_window: int = 0
    """Gemma 3: a sliding layer's query at position p sees keys p - sliding_window < j <= p."""
    sliding_layers: tuple[int, ...] = ()
    """Gemma 3: the layers that attend within ``sliding_window`` (the others see every key)."""
    rope_local_theta: float | None = None
    """Gemma 3: the RoPE base of the sliding layers (no frequency scaling there)."""

    @classmethod
    def from_chat_config(cls, config: Mapping[str, Any]) -> LlamaConfig:
        mc = model_config(config)
        model_type = str(config.get("model_type", "llama"))
        hidden, heads = int(mc["hidden_size"]), int(mc["num_attention_heads"])
        gemma = model_type.startswith("gemma")
        layers = int(mc["num_hidden_layers"])
        window, pattern = sliding_layers(model_type, mc)
        softcap = mc.get("attn_logit_softcapping")
        final_softcap = mc.get("final_logit_softcapping")
        pre_attn = mc.get("query_pre_attn_scalar")
        return cls(
            hidden_size=hidden,
            intermediate_size=int(mc["intermediate_size"]),
            num_attention_heads=heads,
            num_key_value_heads=int(mc.get("num_key_value_heads") or heads),
            head_dim=int(mc.get("head_dim") or hidden // heads),
            num_hidden_layers=layers,
            vocab_size=int(mc.get("vocab_size", config.get("vocab_size", 0))),
            rms_norm_eps=float(mc.get("rms_norm_eps", DEFAULT_RMS_NORM_EPS)),
            rope_theta=float(mc.get("rope_theta") or mc.get("position_embedding_base") or 10000.0),
            tie_word_embeddings=gemma or bool(mc.get("tie_word_embeddings", False)),
            rope_interleaved=bool(mc.get("rope_interleaved", False)),
            model_type=model_type,
            rope_scaling=dict(mc["rope_scaling"]) if mc.get("rope_scaling") else None,
            partial_rotary_factor=float(mc.get("partial_rotary_factor") or 1.0),
            context_window_size=context_window(config),
            hidden_act="gelu_tanh" if gemma else "silu",
            embed_scale=math.sqrt(hidden) if gemma else 1.0,
            attn_scale=float(pre_attn) ** -0.5 if pre_attn else None,
            attn_softcap=float(softcap) if softcap else None,
            final_softcap=float(final_softcap) if final_softcap else None,
            sliding_window=window,
            sliding_layers=tuple(i for i in range(layers) if pattern and (i + 1) % pattern),
            rope_local_theta=float(mc.get("rope_local_base_freq") or 10000.0) if window else None,
        )

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)


SLIDING_PATTERN = 6
"""Gemma 3: every 6th layer (5, 11, …) attends to every key, the others within the window
(transformers' default ``sliding_window_pattern``; a config's own value wins)."""


def sliding_layers(model_type: str, mc: Mapping[str, Any]) -> tuple[int, int]:
    """(window, pattern) of an architecture with per-layer sliding windows (Gemma 3), else (0, 0).

    Layer i slides when ``(i + 1) % pattern`` is not 0, as in transformers and MLC. The window is
    ``sliding_window`` (HF's key, in MLC's text config or its kwargs) or ``sliding_window_size``.
    """
    if not model_type.startswith("gemma3"):
        return 0, 0
    sizes = (mc.get("sliding_window"), mc.get("sliding_window_size"))
    window = next((int(w) for w in sizes if w and int(w) > 0), 0)
    return window, int(mc.get("sliding_window_pattern") or SLIDING_PATTERN) if window else 0


def context_window(config: Mapping[str, Any]) -> int:
    """KV capacity: the chat config's window (the model's own when MLC wrote -1), within any sliding window.

    A sliding window (Mistral's ``sliding_window_size``, Gemma 2's ``sliding_window``) caps the
    cache at the window, as MLC does for Gemma 2: inside it, windowed and full attention agree.
    Gemma 3 is not capped: its sliding layers attend within the window (``sliding_layers``), its
    other layers to the whole cache.
    """
    mc = model_config(config)
    window = int(config.get("context_window_size") or -1)
    if window <= 0:
        window = int(mc.get("context_window_size") or -1)
    if str(config.get("model_type", "")).startswith("gemma3"):
        return window if window > 0 else DEFAULT_CONTEXT_WINDOW
    sliding = [int(s) for s in (mc.get("sliding_window"), mc.get("sliding_window_size")) if s and int(s) > 0]
    if sliding:
        window = min(sliding[0], window) if window > 0 else sliding[0]
    return window if window > 0 else DEFAULT_CONTEXT_WINDOW


class KVCache:
    """Keys and values of every layer for positions ``[0, length)``; rewind just moves ``length``.

    ``f16``: K and V are rounded to float16 as they are stored (the WGSL cache on an adapter with
    shader-f16) and widened back to f32 where attention reads them; all arithmetic stays f32.
    """

    def __init__(self, cfg: LlamaConfig, capacity: int, f16: bool = False) -> None:
        shape = (cfg.num_hidden_layers, capacity, cfg.num_key_value_heads, cfg.head_dim)
        dtype = np.float16 if f16 else np.float32
        self.k = np.zeros(shape, dtype=dtype)
        self.v = np.zeros(shape, dtype=dtype)
        self.capacity = capacity
        self.length = 0


def rms_norm(x: Array, weight: Array, eps: float) -> Array:
    """``x / sqrt(mean(x²) + eps) * weight`` over the last axis (HF LlamaRMSNorm, in f32).

    Gemma's ``(1 + w)`` needs nothing here: MLC's converter stores ``1 + w`` already.
    """
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.float32(eps)) * weight


def rope_inv_freq(cfg: LlamaConfig) -> tuple[Array, float]:
    """Per-pair frequencies (float64, ``[rotary_dim / 2]``) and the cos/sin gain.

    Llama 3 scaling slows the low frequencies by ``factor`` with a smooth ramp between
    ``low_freq_factor`` and ``high_freq_factor`` (HF's ``_compute_llama3_parameters``, MLC's
    ``rope_freq_llama3``). LongRoPE (Phi-3) divides pair i by ``short_factor[i]`` while the
    window stays within ``original_max_position_embeddings`` (else ``long_factor``) and scales
    cos/sin by sqrt(1 + ln(s) / ln(original)), s = max_position_embeddings / original.
    """
    rot = cfg.rotary_dim
    inv = 1.0 / (cfg.rope_theta ** (np.arange(0, rot, 2, dtype=np.float64) / rot))
    rs = cfg.rope_scaling or {}
    kind = rs.get("rope_type") or rs.get("type")
    if kind == "llama3":
        factor, low, high = float(rs["factor"]), float(rs["low_freq_factor"]), float(rs["high_freq_factor"])
        old = float(rs["original_max_position_embeddings"])
        smooth = np.clip(old / (2 * math.pi) * inv / (high - low) - low / (high - low), 0.0, 1.0)
        return (1.0 - smooth) * inv / factor + smooth * inv, 1.0
    if kind == "linear":  # positions divided by factor (Gemma 3 4B+'s global layers)
        return inv / float(rs["factor"]), 1.0
    if kind in ("longrope", "su"):
        original = float(rs["original_max_position_embeddings"])
        longest = float(rs["max_position_embeddings"])
        ext = rs["long_factor"] if cfg.context_window_size > original else rs["short_factor"]
        scale = longest / original
        gain = math.sqrt(1 + math.log(scale) / math.log(original)) if scale > 1.0 else 1.0
        return inv / np.asarray(ext, dtype=np.float64), gain
    if kind not in (None, "default"):
        raise ValueError(f"RoPE scaling {kind!r} is not implemented")
    return inv, 1.0


def rope_cos_sin(positions: Array, cfg: LlamaConfig) -> tuple[Array, Array]:
    """cos/sin ``[T, rotary_dim]`` with the frequencies repeated for both halves (HF layout)."""
    inv_freq, gain = rope_inv_freq(cfg)
    angles = positions.astype(np.float64)[:, None] * inv_freq[None, :]
    angles = np.concatenate([angles, angles], axis=-1)
    return (np.cos(angles) * gain).astype(np.float32), (np.sin(angles) * gain).astype(np.float32)


def apply_rope(x: Array, cos: Array, sin: Array, interleaved: bool = False) -> Array:
    """``x * cos + rotate_half(x) * sin`` on the first ``cos.shape[-1]`` dims of ``[T, heads, head_dim]``.

    ``interleaved``: pair i is (2i, 2i+1) instead of (i, i + d/2), with the same frequencies
    (ggml's layout); it is the same rotation applied to a permutation of the head's dims.
    Dims past the rotary ones (partial rotary) pass through unchanged.
    """
    rot = cos.shape[-1]
    if rot < x.shape[-1]:
        return np.concatenate([apply_rope(x[..., :rot], cos, sin, interleaved), x[..., rot:]], axis=-1)
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


def gelu_tanh(x: Array) -> Array:
    """GELU, tanh approximation (PyTorch's ``gelu(approximate="tanh")``, Gemma's activation)."""
    c = np.float32(math.sqrt(2.0 / math.pi))
    return np.float32(0.5) * x * (np.float32(1.0) + np.tanh(c * (x + np.float32(0.044715) * x * x * x)))


def softcap(x: Array, cap: float | None) -> Array:
    """``tanh(x / cap) * cap`` (Gemma 2), or x when there is no cap."""
    return x if cap is None else np.tanh(x / np.float32(cap)) * np.float32(cap)


def softmax(x: Array, axis: int = -1) -> Array:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class LlamaModel:
    """Weights (f32, by the reference's names) plus the forward pass that appends tokens to a ``KVCache``."""

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
        eps = cfg.rms_norm_eps
        scale = np.float32(cfg.attn_scale if cfg.attn_scale is not None else 1.0 / math.sqrt(hd))
        act = gelu_tanh if cfg.hidden_act == "gelu_tanh" else silu
        positions = np.arange(start, start + n)
        cos, sin = rope_cos_sin(positions, cfg)
        # Query row t sits at position start + t and sees key positions 0..start + t.
        keys_at, queries_at = np.arange(start + n)[None, :], positions[:, None]
        causal = keys_at <= queries_at
        if cfg.sliding_layers:  # Gemma 3's sliding layers: their own RoPE base, a window of keys
            local = replace(cfg, rope_theta=cfg.rope_local_theta or cfg.rope_theta, rope_scaling=None)
            local_cos, local_sin = rope_cos_sin(positions, local)
            windowed = causal & (keys_at > queries_at - cfg.sliding_window)

        x = w["model.embed_tokens.weight"][np.asarray(ids, dtype=np.int64)]  # [T, hidden]
        if cfg.embed_scale != 1.0:
            x = x * np.float32(cfg.embed_scale)
        for layer in range(cfg.num_hidden_layers):
            p = f"model.layers.{layer}."

            # Attention block: x += [norm](o_proj(attention(rope(q), rope(k), v))).
            xn = rms_norm(x, w[p + "input_layernorm.weight"], eps)
            qkv = xn @ w[p + "self_attn.qkv_proj.weight"].T
            if p + "self_attn.qkv_proj.bias" in w:
                qkv = qkv + w[p + "self_attn.qkv_proj.bias"]
            q = qkv[:, : n_heads * hd].reshape(n, n_heads, hd)
            k = qkv[:, n_heads * hd : (n_heads + n_kv) * hd].reshape(n, n_kv, hd)
            v = qkv[:, (n_heads + n_kv) * hd :].reshape(n, n_kv, hd)
            if p + "self_attn.q_norm.weight" in w:  # Qwen3, Gemma 3: RMSNorm over each head, before RoPE
                q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps)
                k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
            sliding = layer in cfg.sliding_layers
            mask = windowed if sliding else causal
            c, s_ = (local_cos, local_sin) if sliding else (cos, sin)
            q = apply_rope(q, c, s_, cfg.rope_interleaved)
            k = apply_rope(k, c, s_, cfg.rope_interleaved)
            cache.k[layer, start : start + n] = k
            cache.v[layer, start : start + n] = v
            keys = np.asarray(cache.k[layer, : start + n], dtype=np.float32)  # [S, kv_heads, hd]
            values = np.asarray(cache.v[layer, : start + n], dtype=np.float32)
            out = np.empty((n, n_heads, hd), dtype=np.float32)
            for h in range(n_heads):
                kv_head = h // group  # GQA: `group` query heads share one K/V head
                scores = softcap((q[:, h, :] * scale) @ keys[:, kv_head, :].T, cfg.attn_softcap)  # [T, S]
                scores = np.where(mask, scores, np.float32(-np.inf))
                out[:, h, :] = softmax(scores) @ values[:, kv_head, :]
            attn = out.reshape(n, n_heads * hd) @ w[p + "self_attn.o_proj.weight"].T
            if p + "self_attn.o_proj.bias" in w:
                attn = attn + w[p + "self_attn.o_proj.bias"]
            if p + "attn_output_norm.weight" in w:  # Gemma 2 and 3
                attn = rms_norm(attn, w[p + "attn_output_norm.weight"], eps)
            x = x + attn

            # MLP block: x += [norm](down(act(gate) * up)).
            xn = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
            gate_up = xn @ w[p + "mlp.gate_up_proj.weight"].T
            gate, up = gate_up[:, : cfg.intermediate_size], gate_up[:, cfg.intermediate_size :]
            mlp = (act(gate) * up) @ w[p + "mlp.down_proj.weight"].T
            if p + "mlp_output_norm.weight" in w:  # Gemma 2 and 3
                mlp = rms_norm(mlp, w[p + "mlp_output_norm.weight"], eps)
            x = x + mlp

        cache.length = start + n
        last = rms_norm(x[-1:], w["model.norm.weight"], eps)
        return softcap(last @ self.lm_head.T, cfg.final_softcap)[0].astype(np.float32)
