"""Build the tiny deterministic BERT encoder used by fast embedding tests and the notebook in CI.

    python -m tools.make_tiny_bert [--out build/models/tiny-bert-q0f32] [--seed 0]

Random weights from ``numpy.random.default_rng(seed)`` under HF's BERT tensor names, and the
tiny Llama's byte-level tokenizer (any text encodes), so the WGSL BERT kernels and the NumPy
reference encoder can be compared in seconds. Same seed -> same bytes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tools.make_tiny_model import TOKENIZER_VOCAB, byte_level_tokenizer_json
from tools.mlc_format import write_model_dir

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "build" / "models" / "tiny-bert-q0f32"
BERT_SHAPE = {"hidden_size": 32, "num_attention_heads": 2, "num_hidden_layers": 2, "intermediate_size": 64}
BERT_WINDOW = 128


def bert_params(seed: int = 0) -> dict[str, np.ndarray]:
    """HF BERT tensor names with deterministic random values (what the reference BERT reads)."""
    rng = np.random.default_rng(seed)
    h, inner = BERT_SHAPE["hidden_size"], BERT_SHAPE["intermediate_size"]

    def mat(rows: int, cols: int) -> np.ndarray:
        return np.asarray(rng.standard_normal((rows, cols)) / np.sqrt(cols), dtype=np.float32)

    def vec(n: int, around: float) -> np.ndarray:
        return (around + 0.1 * rng.standard_normal(n)).astype(np.float32)

    p = {
        "embeddings.word_embeddings.weight": rng.standard_normal((TOKENIZER_VOCAB, h)).astype(np.float32),
        "embeddings.position_embeddings.weight": mat(BERT_WINDOW, h),
        "embeddings.token_type_embeddings.weight": mat(2, h),
        "embeddings.LayerNorm.weight": vec(h, 1.0),
        "embeddings.LayerNorm.bias": vec(h, 0.0),
    }
    for i in range(BERT_SHAPE["num_hidden_layers"]):
        pre = f"encoder.layer.{i}."
        for name, (rows, cols) in {
            "attention.self.query": (h, h),
            "attention.self.key": (h, h),
            "attention.self.value": (h, h),
            "attention.output.dense": (h, h),
            "intermediate.dense": (inner, h),
            "output.dense": (h, inner),
        }.items():
            p[pre + name + ".weight"] = mat(rows, cols)
            p[pre + name + ".bias"] = vec(rows, 0.0)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            p[pre + norm + ".weight"] = vec(h, 1.0)
            p[pre + norm + ".bias"] = vec(h, 0.0)
    return p


def build(out: Path, seed: int = 0) -> None:
    """Write the tiny BERT model dir."""
    config = {
        "model_type": "bert",
        "quantization": "q0f32",
        "model_config": {**BERT_SHAPE, "vocab_size": TOKENIZER_VOCAB, "layer_norm_eps": 1e-12},
        "vocab_size": TOKENIZER_VOCAB,
        "context_window_size": BERT_WINDOW,
        "prefill_chunk_size": BERT_WINDOW,
        "tokenizer_files": ["tokenizer.json"],
    }
    write_model_dir(out, config, byte_level_tokenizer_json(), params=bert_params(seed))


def ensure_tiny_bert(out: Path = DEFAULT_OUT) -> Path:
    """``out`` (default build/models/tiny-bert-q0f32), written once."""
    if not (out / "tensor-cache.json").exists():
        build(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build(args.out, args.seed)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
