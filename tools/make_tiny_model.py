"""Build the tiny deterministic Llama used by fast kernel and engine tests.

    python -m tools.make_tiny_model --out build/models/tiny-llama-q0f32 [--quantization q4f32_1]

Random weights from ``numpy.random.default_rng(seed)``, a byte-level tokenizer (every UTF-8
byte is a token, so any text round-trips) and the ChatML conversation template. The shape and
config builders here are shared with ``make_random_model`` (real model shapes, benchmarks).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from py_worker.reference.architectures import LINEARS, naming
from tools.mlc_format import write_model_dir

ROOT = Path(__file__).resolve().parent.parent

SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
IM_START, IM_END, ENDOFTEXT = 256, 257, 258
TOKENIZER_VOCAB = 512


@dataclass(frozen=True)
class LlamaShape:
    """A decoder's shape (the fields of MLC's ``model_config``) for any ``model_type`` we run."""

    model_type: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    rope_theta: float
    tie_word_embeddings: bool
    rms_norm_eps: float = 1e-5
    context_window_size: int = 4096
    prefill_chunk_size: int = 512
    theta_key: str = "rope_theta"
    """MLC's key for the RoPE base: ``rope_theta`` (Qwen) or ``position_embedding_base`` (the others)."""
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)
    """Further ``model_config`` keys of the architecture (rope_scaling, soft-caps, attention_bias…)."""

    def model_config(self) -> dict[str, Any]:
        return {
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "num_hidden_layers": self.num_hidden_layers,
            "rms_norm_eps": self.rms_norm_eps,
            self.theta_key: self.rope_theta,
            "vocab_size": self.vocab_size,
            "tie_word_embeddings": self.tie_word_embeddings,
            "context_window_size": self.context_window_size,
            "prefill_chunk_size": self.prefill_chunk_size,
            "hidden_act": "silu",
            **self.extra,
        }


TINY = LlamaShape(
    model_type="llama",
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    intermediate_size=128,
    vocab_size=TOKENIZER_VOCAB,
    rope_theta=10000.0,
    tie_word_embeddings=False,
    context_window_size=256,
    prefill_chunk_size=16,
)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map (what the ByteLevel pre-tokenizer emits)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def byte_level_tokenizer_json(vocab_size: int = TOKENIZER_VOCAB) -> bytes:
    """HF tokenizers JSON: id b = byte b, then the ChatML specials, then ``<pad_i>`` to vocab_size."""
    vocab = {ch: b for b, ch in sorted(bytes_to_unicode().items())}
    specials = [*SPECIAL_TOKENS, *(f"<pad_{i}>" for i in range(vocab_size - 256 - len(SPECIAL_TOKENS)))]
    added = [
        {
            "id": 256 + i,
            "content": text,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i, text in enumerate(specials)
    ]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    tokenizer: dict[str, Any] = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": None,
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "vocab": vocab,
            "merges": [],
        },
    }
    # Key order kept as written (HF's own order); ensure_ascii keeps the file plain ASCII.
    return (json.dumps(tokenizer, indent=2) + "\n").encode("ascii")


def chatml_conv_template() -> dict[str, Any]:
    """MLC Conversation JSON for ChatML (what SmolLM2 and Qwen2 chat models use)."""
    return {
        "name": "chatml",
        "system_template": "<|im_start|>system\n{system_message}<|im_end|>\n",
        "system_message": "You are a helpful assistant.",
        "system_prefix_token_ids": None,
        "add_role_after_system_message": True,
        "roles": {"user": "<|im_start|>user", "assistant": "<|im_start|>assistant"},
        "role_templates": {"user": "{user_message}", "assistant": "{assistant_message}"},
        "messages": [],
        "seps": ["<|im_end|>\n"],
        "role_content_sep": "\n",
        "role_empty_sep": "\n",
        "stop_str": ["<|im_end|>"],
        "stop_token_ids": [IM_END],
        "function_string": "",
        "use_function_calling": False,
    }


def chat_config(shape: LlamaShape, quantization: str) -> dict[str, Any]:
    """``mlc-chat-config.json`` for a Llama-family model with the byte-level tokenizer."""
    return {
        "version": "0.1.0",
        "model_type": shape.model_type,
        "quantization": quantization,
        "model_config": shape.model_config(),
        "vocab_size": shape.vocab_size,
        "context_window_size": shape.context_window_size,
        "sliding_window_size": -1,
        "prefill_chunk_size": shape.prefill_chunk_size,
        "attention_sink_size": -1,
        "tensor_parallel_shards": 1,
        "max_batch_size": 1,
        "conv_template": chatml_conv_template(),
        "tokenizer_files": ["tokenizer.json"],
        "bos_token_id": IM_START,
        "eos_token_id": IM_END,
        "pad_token_id": ENDOFTEXT,
        "temperature": 1.0,
        "top_p": 1.0,
        "repetition_penalty": 1.0,
        "frequency_penalty": 0.0,
        "presence_penalty": 0.0,
    }


def param_shapes(shape: LlamaShape) -> Iterator[tuple[str, tuple[int, ...]]]:
    """MLC's tensor names and f32 shapes of a decoder of ``shape.model_type``, in MLC's order.

    Names from py_worker/reference/architectures.py (MLC's model definitions): the embedding,
    each layer's roles in module order (a linear's bias right after it), the final norm, lm_head.
    Gemma 3's q, k and v are three linears.
    """
    n = naming(shape.model_type)
    h, hd = shape.hidden_size, shape.head_dim
    q_rows, kv_rows = shape.num_attention_heads * hd, shape.num_key_value_heads * hd
    dims = {
        "qkv": (q_rows + 2 * kv_rows, h),
        "q": (q_rows, h),
        "k": (kv_rows, h),
        "v": (kv_rows, h),
        "o": (h, q_rows),
        "gate_up": (2 * shape.intermediate_size, h),
        "down": (h, shape.intermediate_size),
        "q_norm": (hd,),
        "k_norm": (hd,),
    }
    config = shape.model_config()
    biases = n.bias_roles(config)
    yield f"{n.embed}.weight", (shape.vocab_size, h)
    for i in range(shape.num_hidden_layers):
        p = n.layer.format(i=i)
        for role, stem in n.roles.items():
            yield f"{p}{stem}.weight", dims.get(role, (h,))
            if role in biases and role in LINEARS:
                yield f"{p}{stem}.bias", (dims[role][0],)
    yield f"{n.final_norm}.weight", (h,)
    if not n.tied(config):
        yield f"{n.lm_head}.weight", (shape.vocab_size, h)


def tiny_params(seed: int = 0, shape: LlamaShape = TINY) -> dict[str, np.ndarray]:
    """Deterministic f32 weights. Linear layers ~N(0, 1/fan_in); norms near 1.

    The embedding has unit variance so each token moves the residual stream; lm_head rows are
    scaled per token by ``_lm_head_row_scale``.
    """
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    for name, dims in param_shapes(shape):
        if len(dims) == 1:
            if name.endswith("bias"):
                w = 0.1 * rng.standard_normal(dims, dtype=np.float32)
            else:
                w = 1.0 + 0.1 * rng.standard_normal(dims, dtype=np.float32)
        elif name == "model.embed_tokens.weight":
            w = rng.standard_normal(dims, dtype=np.float32)
        else:
            w = rng.standard_normal(dims, dtype=np.float32) / np.float32(np.sqrt(dims[1]))
        if name == "lm_head.weight" or (name == "model.embed_tokens.weight" and shape.tie_word_embeddings):
            w = w * _lm_head_row_scale(shape.vocab_size)[:, None]
        params[name] = w.astype(np.float32)
    if not shape.tie_word_embeddings:
        # Push each token's lm_head row away from its own embedding: otherwise the residual stream,
        # which still carries the input token, makes "repeat the last token" the greedy choice.
        emb, head = params["model.embed_tokens.weight"], params["lm_head.weight"]
        unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        head -= np.float32(0.5) * unit * np.linalg.norm(head, axis=1, keepdims=True)
    return params


def _lm_head_row_scale(vocab_size: int) -> np.ndarray:
    """Per-token lm_head gain: printable ASCII and the specials speak up, other bytes less, pads hardly.

    Greedy text from random weights is then mostly readable ASCII (easier engine tests), while
    multi-byte UTF-8 and ``<|im_end|>`` stay reachable.
    """
    gain = np.full(vocab_size, 0.05, dtype=np.float32)
    gain[:256] = 1.0
    gain[ord(" ") : ord("~") + 1] = 2.0
    gain[ord("\n")] = 2.0
    gain[IM_START : ENDOFTEXT + 1] = 2.0
    return gain


def build(out: Path, quantization: str, seed: int = 0) -> None:
    """Write the tiny model dir (same seed and quantisation -> same bytes)."""
    config = chat_config(TINY, quantization)
    write_model_dir(out, config, byte_level_tokenizer_json(), params=tiny_params(seed))


def ensure_tiny(quantization: str) -> Path:
    """``build/models/tiny-llama-<quantization>``, written on first use (host tests, bench)."""
    out = ROOT / "build" / "models" / f"tiny-llama-{quantization}"
    if not (out / "tensor-cache.json").exists():
        build(out, quantization)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--quantization", default="q0f32", choices=["q0f32", "q4f32_1", "q4f16_1"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build(args.out, args.quantization, args.seed)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
