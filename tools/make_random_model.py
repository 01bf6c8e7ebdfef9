"""Random-weight MLC model dirs of real model shapes, for benchmarks.

    python -m tools.make_random_model --shape qwen2-0.5b --quantization q4f16_1 --out DIR

Speed and memory, not realism: quantised tensors are drawn directly as random 4-bit words and
scales (no f32 matrix, no quantiser pass) and streamed to the shards one at a time. The tokenizer
is the tiny model's byte-level one (ids >= 512 decode to nothing); the model's vocab keeps the
real size so the lm_head costs what it costs in the real model.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make `tools` and `py_worker` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from py_worker.reference.weights import GROUP
from tools.make_tiny_model import TINY, LlamaShape, byte_level_tokenizer_json, chat_config, param_shapes
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
}

_Q_RMS = np.float32(np.sqrt(56.0 / 3.0))  # RMS of (q - 7) for q uniform in 0..14


def _q4_words(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Random packed 4-bit values in 0..14 (a nibble of 15 becomes 14, MLC never writes 15)."""
    words = rng.integers(0, 2**32, size=(rows, cols // 8), dtype=np.uint32)
    all_ones = words & (words >> 1) & (words >> 2) & (words >> 3) & np.uint32(0x11111111)
    return words ^ all_ones


def random_tensors(shape: LlamaShape, quantization: str, seed: int) -> Iterator[tuple[str, np.ndarray]]:
    """Stored tensors (already in ``quantization``'s form) with weights of std ~ 1/sqrt(fan_in)."""
    rng = np.random.default_rng(seed)
    scale_dtype = np.float16 if quantization == "q4f16_1" else np.float32
    for name, dims in param_shapes(shape):
        if len(dims) == 1:
            base = 1.0 if name.endswith("norm.weight") else 0.0
            yield name, (base + 0.02 * rng.random(dims, dtype=np.float32)).astype(scale_dtype)
            continue
        rows, cols = dims
        std = 1.0 if name == "model.embed_tokens.weight" and not shape.tie_word_embeddings else cols**-0.5
        if quantization == "q0f32":
            weights = rng.random(dims, dtype=np.float32)
            yield name, (weights - np.float32(0.5)) * np.float32(std * np.sqrt(12.0))
            continue
        stem = name[: -len(".weight")]
        yield f"{stem}.q_weight", _q4_words(rng, rows, cols)
        jitter = 0.5 + rng.random((rows, cols // GROUP), dtype=np.float32)
        yield f"{stem}.q_scale", (jitter * np.float32(std) / _Q_RMS).astype(scale_dtype)


def build(shape_name: str, quantization: str, out: Path, seed: int = 0) -> dict[str, Any]:
    """Write the model dir; returns the tensor-cache JSON."""
    shape = SHAPES[shape_name]
    config = chat_config(shape, quantization)
    tokenizer = byte_level_tokenizer_json()
    return write_model_dir(out, config, tokenizer, stored=random_tensors(shape, quantization, seed))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", required=True, choices=sorted(SHAPES))
    parser.add_argument("--quantization", default="q4f32_1", choices=QUANTIZATIONS)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    cache = build(args.shape, args.quantization, args.out, args.seed)
    meta = cache["metadata"]
    print(
        f"wrote {args.out}: {meta['ParamSize']:,} params, {meta['ParamBytes'] / 2**20:.1f} MiB "
        f"in {len(cache['records'])} shards, {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
