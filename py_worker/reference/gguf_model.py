"""A GGUF decoder for the reference backend: the config and f32 weights the JS loader derives too.

The twin of ``js_glue/kernels/gguf.js`` (``ggufConfig``) and of the GGUF path of ``llama.js``:
the same config keys from the same metadata, and every tensor dequantised exactly (our NumPy
twins of the kernels' block decoders, ``ggml.py``), never re-quantised. Weights keep llama.cpp's
row order: for the ``llama`` architecture its converter permuted the q/k rows for ggml's
adjacent-pair RoPE, so the config says ``rope_interleaved`` instead of undoing the permutation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFReader, ReaderTensor

from py_worker.errors import ModelLoadError, UnsupportedArchitectureError
from py_worker.reference.ggml import check_supported, dequantize

Array = Any  # numpy.ndarray

ARCHITECTURES = {"llama": True, "qwen2": False}
"""Architecture -> whether its RoPE pairs are interleaved (ggml NORM) rather than halves (NEOX)."""

EOG_TEXTS = (
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>",
    "<|end_of_text|>",
)  # fmt: skip
"""Control tokens that end a turn besides EOS/EOT/EOM (the list gguf.js keeps too)."""

CONTROL = 3
PREFILL_CHUNK = 128


def metadata(reader: GGUFReader) -> dict[str, Any]:
    """Every metadata key with its plain Python value (what gguf.js's parser gives JS)."""
    return {key: field.contents() for key, field in reader.fields.items() if not key.startswith("GGUF.")}


def _stop_token_ids(meta: dict[str, Any]) -> list[int]:
    ids = {
        int(meta[f"tokenizer.ggml.{k}_token_id"])
        for k in ("eos", "eot", "eom")
        if f"tokenizer.ggml.{k}_token_id" in meta
    }
    tokens = meta.get("tokenizer.ggml.tokens") or []
    types = meta.get("tokenizer.ggml.token_type") or []
    ids |= {
        i
        for i, (t, kind) in enumerate(zip(tokens, types, strict=False))
        if kind == CONTROL and t in EOG_TEXTS
    }
    return sorted(ids)


def gguf_config(reader: GGUFReader) -> dict[str, Any]:
    """The mlc-chat-config-shaped config of a GGUF decoder (same keys and values as gguf.js)."""
    meta = metadata(reader)
    arch = meta.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"GGUF architecture {arch} is not supported by the wgsl backend "
            f"(supported: {', '.join(ARCHITECTURES)})",
            architecture=str(arch),
            supported=list(ARCHITECTURES),
        )
    for t in reader.tensors:
        check_supported(int(t.tensor_type), t.name)

    def m(key: str, default: Any = None) -> Any:
        return meta.get(f"{arch}.{key}", default)

    tokens = list(meta.get("tokenizer.ggml.tokens") or [])
    hidden, heads = int(m("embedding_length")), int(m("attention.head_count"))
    ctx = int(m("context_length", 2048))
    bos, eos = meta.get("tokenizer.ggml.bos_token_id"), meta.get("tokenizer.ggml.eos_token_id")
    model_config = {
        "hidden_size": hidden,
        "intermediate_size": int(m("feed_forward_length")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(m("attention.head_count_kv", heads)),
        "head_dim": int(m("rope.dimension_count", hidden // heads)),
        "num_hidden_layers": int(m("block_count")),
        "vocab_size": int(m("vocab_size", len(tokens))),
        "rms_norm_eps": float(m("attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": float(m("rope.freq_base", 10000.0)),
        "rope_interleaved": ARCHITECTURES[arch],
        "tie_word_embeddings": "output.weight" not in {t.name for t in reader.tensors},
        "context_window_size": ctx,
        "prefill_chunk_size": PREFILL_CHUNK,
    }
    return {
        "model_type": arch,
        "source": "gguf",
        "model_config": model_config,
        "vocab_size": model_config["vocab_size"],
        "context_window_size": ctx,
        "prefill_chunk_size": PREFILL_CHUNK,
        "tokenizer_files": ["tokenizer.json"],
        "chat_template": meta.get("tokenizer.chat_template"),
        "bos_token_id": None if bos is None else int(bos),
        "eos_token_id": None if eos is None else int(eos),
        "bos_token": None if bos is None else tokens[int(bos)],
        "eos_token": None if eos is None else tokens[int(eos)],
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        "stop_token_ids": _stop_token_ids(meta),
    }


def tensor_f32(t: ReaderTensor) -> Array:
    """One tensor dequantised to f32, ``[rows, cols]`` (a GGUF shape lists cols first)."""
    dims = [int(d) for d in t.shape]
    cols, rows = dims[0], int(np.prod(dims[1:]))
    out = dequantize(np.frombuffer(t.data.tobytes(), dtype=np.uint8), int(t.tensor_type), rows, cols, t.name)
    return out if len(dims) > 1 else out.reshape(cols)


def mlc_weights(reader: GGUFReader, config: dict[str, Any]) -> dict[str, Array]:
    """f32 weights under the names ``reference/llama.py`` reads: q|k|v and gate|up joined by rows."""
    tensors = {t.name: t for t in reader.tensors}
    names = set(tensors)
    layers = int(config["model_config"]["num_hidden_layers"])

    def f32(name: str) -> Array:
        if name not in tensors:
            raise ModelLoadError(f"the GGUF has no tensor {name}", tensor=name)
        return tensor_f32(tensors[name])

    w: dict[str, Array] = {
        "model.embed_tokens.weight": f32("token_embd.weight"),
        "model.norm.weight": f32("output_norm.weight"),
    }
    if "output.weight" in names:
        w["lm_head.weight"] = f32("output.weight")
    for i in range(layers):
        b, p = f"blk.{i}.", f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = f32(b + "attn_norm.weight")
        w[p + "post_attention_layernorm.weight"] = f32(b + "ffn_norm.weight")
        w[p + "self_attn.qkv_proj.weight"] = np.concatenate([f32(b + f"attn_{x}.weight") for x in "qkv"])
        if b + "attn_q.bias" in names:
            w[p + "self_attn.qkv_proj.bias"] = np.concatenate([f32(b + f"attn_{x}.bias") for x in "qkv"])
        w[p + "self_attn.o_proj.weight"] = f32(b + "attn_output.weight")
        w[p + "mlp.gate_up_proj.weight"] = np.concatenate(
            [f32(b + "ffn_gate.weight"), f32(b + "ffn_up.weight")]
        )
        w[p + "mlp.down_proj.weight"] = f32(b + "ffn_down.weight")
    return w


def load_gguf(path: Path) -> tuple[dict[str, Any], dict[str, Array], GGUFReader]:
    """Config, f32 weights and the open reader (for the tokenizer) of one GGUF file."""
    try:
        reader = GGUFReader(path)
    except (ValueError, OSError) as exc:
        raise ModelLoadError(f"not a readable GGUF file: {exc}", format="gguf") from exc
    config = gguf_config(reader)
    return config, mlc_weights(reader, config), reader
