"""Random-weight MLC model dirs of real model shapes (benchmarks) and of every architecture we run (tests).

    python -m tools.make_random_model --shape qwen2-0.5b --quantization q4f16_1 --out DIR
    python -m tools.make_random_model --shape tiny-qwen3 --quantization q0f16 --out DIR
    python -m tools.make_random_model --from-meta ../shared/mlc-libs/meta/<lib>.json --layers 2 --out DIR

Tensor names, shapes, dtypes and order are MLC's (``param_shapes``: py_worker/reference/
architectures.py); ``--from-meta`` takes them verbatim from the parameter list embedded in an MLC
model library (the first ``--layers`` layers of it). Speed and memory, not realism: quantised
tensors are drawn directly as random 4-bit words and scales (no f32 matrix, no quantiser pass)
and streamed to the shards one at a time. The tokenizer is the tiny model's byte-level one
(ids >= 512 decode to nothing); the model's vocab keeps the real size so the lm_head costs what
it costs in the real model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from py_worker.reference.architectures import naming
from py_worker.reference.weights import GROUP
from tools.make_tiny_model import TINY, LlamaShape, byte_level_tokenizer_json, param_shapes
from tools.make_tiny_model import chat_config as flat_chat_config
from tools.mlc_format import QUANTIZATIONS, write_model_dir

SHAPES: dict[str, LlamaShape] = {
    "tiny": TINY,
    "smollm2-135m": LlamaShape(
        model_type="llama",
        hidden_size=576,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        head_dim=64,
        intermediate_size=1536,
        vocab_size=49152,
        rope_theta=100000.0,
        tie_word_embeddings=True,
        context_window_size=8192,
        prefill_chunk_size=2048,
    ),
    "qwen2-0.5b": LlamaShape(
        model_type="qwen2",
        hidden_size=896,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        head_dim=64,
        intermediate_size=4864,
        vocab_size=151936,
        rope_theta=1000000.0,
        tie_word_embeddings=True,
        rms_norm_eps=1e-6,
        context_window_size=32768,
        prefill_chunk_size=2048,
    ),
    "llama-3.2-1b": LlamaShape(
        model_type="llama",
        hidden_size=2048,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        intermediate_size=8192,
        vocab_size=128256,
        rope_theta=500000.0,
        tie_word_embeddings=True,
        context_window_size=131072,
        prefill_chunk_size=2048,
    ),
    "gemma3-1b": LlamaShape(
        model_type="gemma3_text",
        hidden_size=1152,
        num_hidden_layers=26,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=256,
        intermediate_size=6912,
        vocab_size=262144,
        rope_theta=1000000.0,
        tie_word_embeddings=True,
        rms_norm_eps=1e-6,
        context_window_size=4096,
        prefill_chunk_size=1024,
        theta_key="position_embedding_base",
        extra={
            "hidden_activation": "gelu_pytorch_tanh",
            "query_pre_attn_scalar": 256,
            "sliding_window": 512,
            "sliding_window_pattern": 6,
            "rope_local_base_freq": 10000.0,
            "attention_bias": False,
        },
    ),
}

_LLAMA3_ROPE = {
    "factor": 32.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3",
}
"""Llama 3.2's RoPE scaling, as its mlc-chat-config.json carries it."""


def _longrope(rotary_dim: int) -> dict[str, Any]:
    """A Phi-3.5-style LongRoPE block with made-up factors (one per rotary pair, rising like Phi's)."""
    pairs = rotary_dim // 2
    return {
        "type": "longrope",
        "rope_type": "longrope",
        "short_factor": [round(1.0 + 0.05 * i, 4) for i in range(pairs)],
        "long_factor": [round(1.0 + 1.5 * i, 4) for i in range(pairs)],
        "max_position_embeddings": 131072,
        "original_max_position_embeddings": 4096,
    }


ZOO: dict[str, LlamaShape] = {
    # Small decoders of every architecture, with MLC's model_config keys, for the kernel tests.
    "tiny-llama3": LlamaShape(
        model_type="llama", hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, intermediate_size=256, vocab_size=512,
        rope_theta=500000.0, tie_word_embeddings=False, context_window_size=256, prefill_chunk_size=16,
        theta_key="position_embedding_base", extra={"rope_scaling": _LLAMA3_ROPE},
    ),
    "tiny-qwen2": LlamaShape(
        model_type="qwen2", hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, intermediate_size=256, vocab_size=512, rope_theta=1e6,
        rms_norm_eps=1e-6, tie_word_embeddings=True, context_window_size=256, prefill_chunk_size=16,
    ),
    "tiny-qwen3": LlamaShape(
        model_type="qwen3", hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=64, intermediate_size=256, vocab_size=512, rope_theta=1e6,
        rms_norm_eps=1e-6, tie_word_embeddings=True, context_window_size=256, prefill_chunk_size=16,
        extra={"attention_bias": False},
    ),
    "tiny-phi3": LlamaShape(
        model_type="phi3", hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, head_dim=32, intermediate_size=256, vocab_size=512, rope_theta=10000.0,
        tie_word_embeddings=False, context_window_size=256, prefill_chunk_size=16,
        theta_key="position_embedding_base",
        extra={"rope_scaling": _longrope(24), "partial_rotary_factor": 0.75,
               "max_position_embeddings": 131072, "original_max_position_embeddings": 4096},
    ),
    "tiny-gemma2": LlamaShape(
        model_type="gemma2", hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=48, intermediate_size=256, vocab_size=512, rope_theta=10000.0,
        rms_norm_eps=1e-6, tie_word_embeddings=True, context_window_size=256, prefill_chunk_size=16,
        theta_key="position_embedding_base",
        extra={"hidden_activation": "gelu_pytorch_tanh", "attn_logit_softcapping": 8.0,
               "final_logit_softcapping": 4.0, "query_pre_attn_scalar": 64, "sliding_window": 4096,
               "attention_bias": False},
    ),
    "tiny-gemma3": LlamaShape(
        model_type="gemma3_text", hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, head_dim=64, intermediate_size=256, vocab_size=512, rope_theta=1e6,
        rms_norm_eps=1e-6, tie_word_embeddings=True, context_window_size=256, prefill_chunk_size=16,
        theta_key="position_embedding_base",
        extra={"hidden_activation": "gelu_pytorch_tanh", "query_pre_attn_scalar": 64,
               "sliding_window": 8, "sliding_window_pattern": 2, "rope_local_base_freq": 10000.0,
               "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "attention_bias": False},
    ),
}  # fmt: skip
"""Test shapes (``tiny-<arch>``). Gemma 2's soft-caps are far below its real 50 / 30 so that
they bite on random weights; Phi-3's partial rotary (0.75) is Phi-4-mini's. Gemma 3's window
(8 keys) and pattern (every 2nd layer global, not every 6th) make a 2-layer model with a
short prompt use both kinds of layer and slide its window; its global layers have the 4B's
linear RoPE scaling (factor 8), its local ones their own base (10000)."""

GEMMA3_TEXT_FIELDS = (
    "hidden_size", "intermediate_size", "num_hidden_layers", "attention_bias", "num_attention_heads",
    "num_key_value_heads", "head_dim", "rms_norm_eps", "hidden_activation", "position_embedding_base",
    "rope_scaling", "context_window_size", "prefill_chunk_size", "query_pre_attn_scalar",
    "sliding_window_size",
)  # fmt: skip
"""The fields of MLC's ``Gemma3TextConfig`` (gemma3_model.py): the rest of HF's keys go to its kwargs."""


def gemma3_model_config(flat: dict[str, Any]) -> dict[str, Any]:
    """MLC's nested Gemma 3 ``model_config``: ``text_config`` (fields + ``kwargs``) inside ``Gemma3Config``.

    As MLC's gen_config writes it: the text config's fields, HF's other keys under its
    ``kwargs`` (``rope_local_base_freq``, ``sliding_window_pattern``, ``sliding_window``), and
    outside it ``vocab_size`` and the numbers MLC compiles in.
    """
    flat = dict(flat)
    flat["sliding_window_size"] = flat.get("sliding_window")
    text = {k: flat.pop(k) for k in GEMMA3_TEXT_FIELDS if k in flat}
    for key in ("vocab_size", "tie_word_embeddings", "hidden_act"):
        flat.pop(key, None)
    text["kwargs"] = flat
    return {
        "text_config": text,
        "vocab_size": text.get("vocab_size") or 0,
        "tensor_parallel_shards": 1,
        "max_batch_size": 1,
        "context_window_size": text["context_window_size"],
        "sliding_window_size": text["sliding_window_size"],
        "prefill_chunk_size": text["prefill_chunk_size"],
        "is_text_model": True,
    }


def chat_config(shape: LlamaShape, quantization: str) -> dict[str, Any]:
    """``mlc-chat-config.json`` of ``shape``, with Gemma 3's ``model_config`` nested as MLC writes it."""
    config = flat_chat_config(shape, quantization)
    if shape.model_type.startswith("gemma3"):
        config["model_config"] = gemma3_model_config(config["model_config"])
        config["model_config"]["vocab_size"] = shape.vocab_size
        config["sliding_window_size"] = config["model_config"]["sliding_window_size"]
    return config


SHAPES.update(ZOO)

_Q_RMS = np.float32(np.sqrt(56.0 / 3.0))  # RMS of (q - 7) for q uniform in 0..14


def _q4_words(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Random packed 4-bit values in 0..14 (a nibble of 15 becomes 14, MLC never writes 15)."""
    words = rng.integers(0, 2**32, size=(rows, cols // 8), dtype=np.uint32)
    all_ones = words & (words >> 1) & (words >> 2) & (words >> 3) & np.uint32(0x11111111)
    return words ^ all_ones


def stored_params(shape: LlamaShape, quantization: str) -> Iterator[tuple[str, tuple[int, ...], str]]:
    """(name, shape, dtype) of every stored tensor, in MLC's order: what MLC's library lists as params.

    q4*: every 2-D weight becomes ``q_weight`` uint32 ``[out, in/8]`` + ``q_scale`` ``[out, in/32]``;
    *f16 keeps the scales and the unquantised tensors float16, *f32 float32.
    """
    float_dtype = "float16" if quantization in ("q0f16", "q4f16_1") else "float32"
    quantised = quantization.startswith("q4")
    for name, dims in param_shapes(shape):
        if quantised and len(dims) == 2 and dims[1] % GROUP == 0:
            stem, (rows, cols) = name[: -len(".weight")], dims
            yield f"{stem}.q_weight", (rows, cols // 8), "uint32"
            yield f"{stem}.q_scale", (rows, cols // GROUP), float_dtype
        else:
            yield name, dims, float_dtype


def random_stored(
    params: Iterable[tuple[str, tuple[int, ...], str]], seed: int, embed: str, tied: bool
) -> Iterator[tuple[str, np.ndarray]]:
    """Random tensors for a stored-parameter list, weights of std ~ 1/sqrt(fan_in).

    Norms are near 1 (as MLC stores them, Gemma's ``1 + w`` included), biases near 0; an untied
    embedding (``embed`` is its stem) has unit variance, a tied one doubles as the lm_head.
    """
    rng = np.random.default_rng(seed)
    for name, dims, dtype in params:
        stem = name.rsplit(".", 1)[0]
        if len(dims) == 1:
            base = 0.0 if name.endswith(".bias") else 1.0
            yield name, (base + 0.02 * rng.random(dims, dtype=np.float32)).astype(dtype)
            continue
        rows, cols = dims
        if name.endswith(".q_weight"):
            yield name, _q4_words(rng, rows, cols * 8)
            continue
        fan_in = cols * GROUP if name.endswith(".q_scale") else cols
        std = 1.0 if stem == embed and not tied else fan_in**-0.5
        if name.endswith(".q_scale"):
            jitter = 0.5 + rng.random((rows, cols), dtype=np.float32)
            yield name, (jitter * np.float32(std) / _Q_RMS).astype(dtype)
        else:
            weights = rng.random(dims, dtype=np.float32)
            yield name, ((weights - np.float32(0.5)) * np.float32(std * np.sqrt(12.0))).astype(dtype)


def random_tensors(shape: LlamaShape, quantization: str, seed: int) -> Iterator[tuple[str, np.ndarray]]:
    """Stored tensors (already in ``quantization``'s form) of a decoder of ``shape``."""
    n = naming(shape.model_type)
    tied = n.tied(shape.model_config())
    return random_stored(stored_params(shape, quantization), seed, n.embed, tied)


def build(shape_name: str, quantization: str, out: Path, seed: int = 0) -> dict[str, Any]:
    """Write the model dir; returns the tensor-cache JSON."""
    shape = SHAPES[shape_name]
    config = chat_config(shape, quantization)
    tokenizer = byte_level_tokenizer_json()
    return write_model_dir(out, config, tokenizer, stored=random_tensors(shape, quantization, seed))


_LAYER = re.compile(r"\.layers\.(\d+)\.|\.h\.(\d+)\.")


def meta_params(meta: dict[str, Any], layers: int | None = None) -> list[tuple[str, tuple[int, ...], str]]:
    """The parameter list of an MLC library's metadata (``../shared/mlc-libs/meta/*.json``), verbatim,
    keeping only layers ``< layers`` (every layer when None)."""
    out = []
    for p in meta["params"]:
        m = _LAYER.search(p["name"])
        if layers is not None and m and int(m.group(1) or m.group(2)) >= layers:
            continue
        out.append((str(p["name"]), tuple(int(d) for d in p["shape"]), str(p["dtype"])))
    return out


META_SHAPES = {"qwen2": "qwen2-0.5b"}
"""The shape whose config numbers (RoPE base, eps: not in a library's metadata) a meta's model_type uses."""


def build_from_meta(meta_path: Path, out: Path, layers: int | None = None, seed: int = 0) -> dict[str, Any]:
    """A model dir whose tensors are exactly the library's parameter list (first ``layers`` layers).

    The chat config is the matching real shape's (``META_SHAPES``), with the library's own
    context window, prefill chunk and kv-cache numbers; its tensor list must equal ours.
    """
    meta = json.loads(Path(meta_path).read_text("utf-8"))
    kv = meta["kv_cache"]
    shape = dataclasses.replace(
        SHAPES[META_SHAPES[meta["model_type"]]],
        num_hidden_layers=layers if layers is not None else int(kv["num_hidden_layers"]),
        context_window_size=int(meta["context_window_size"]),
        prefill_chunk_size=int(meta["prefill_chunk_size"]),
    )
    for key in ("num_attention_heads", "num_key_value_heads", "head_dim"):
        assert getattr(shape, key) == kv[key], f"{meta_path}: {key} {kv[key]} != {getattr(shape, key)}"
    params = meta_params(meta, layers)
    ours = list(stored_params(shape, str(meta["quantization"])))
    assert ours == params, f"{meta_path}: our tensor list differs from the library's"
    n = naming(shape.model_type)
    stored = random_stored(params, seed, n.embed, n.tied(shape.model_config()))
    config = chat_config(shape, str(meta["quantization"]))
    return write_model_dir(out, config, byte_level_tokenizer_json(), stored=stored)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--shape", choices=sorted(SHAPES))
    source.add_argument("--from-meta", type=Path, help="an MLC library's metadata JSON: its params verbatim")
    parser.add_argument("--layers", type=int, help="with --from-meta: keep only the first N layers")
    parser.add_argument("--quantization", default="q4f32_1", choices=QUANTIZATIONS)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.from_meta:
        cache = build_from_meta(args.from_meta, args.out, args.layers, args.seed)
    else:
        cache = build(args.shape, args.quantization, args.out, args.seed)
    meta = cache["metadata"]
    print(
        f"wrote {args.out}: {meta['ParamSize']:,} params, {meta['ParamBytes'] / 2**20:.1f} MiB "
        f"in {len(cache['records'])} shards, {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
