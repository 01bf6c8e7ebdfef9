"""Build an HF ``tokenizer.json`` from a GGUF's byte-level BPE tokenizer, tokenizing as llama.cpp does.

llama.cpp picks its pre-tokenizer from ``tokenizer.ggml.pre``. For ``smollm`` (and the other
StarCoder-style vocabularies) it first isolates every ``\\p{N}`` code point, then applies GPT-2's
split regex, then byte-level BPE by merge rank. transformers' GGUF conversion keeps only the GPT-2
regex, so numerals (non-ASCII ones above all) tokenize differently from the model's training
(FACTS §10). Here the digit step is written back as a ``Digits(individual_digits)`` pre-tokenizer,
which splits on Rust's ``char::is_numeric`` (general categories Nd, Nl, No: exactly ``\\p{N}``).

Added tokens are the GGUF's control (type 3) and user-defined (type 4) tokens; they are matched
before pre-tokenization, as llama.cpp does with ``parse_special=true`` (how a chat prompt is
tokenized). No BOS is added (``tokenizer.ggml.add_bos_token`` is false for SmolLM2).
"""

from __future__ import annotations

import json
from typing import Any

from gguf import GGUFReader

CONTROL, USER_DEFINED = 3, 4

DIGIT_SPLIT_PRE = ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva")
"""``tokenizer.ggml.pre`` values whose llama.cpp regex list starts with a lone ``\\p{N}``."""

GPT2_STYLE_PRE = (*DIGIT_SPLIT_PRE, "gpt-2", "gpt2", "mpt", "olmo", "jais")
"""Values whose (remaining) split regex is GPT-2's, which the ByteLevel pre-tokenizer applies."""


def _field(reader: GGUFReader, key: str) -> Any:
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def tokenizer_json_from_gguf(reader: GGUFReader) -> dict[str, Any]:
    """The HF tokenizers JSON object equivalent to the GGUF's llama.cpp tokenizer."""
    model = _field(reader, "tokenizer.ggml.model")
    pre = _field(reader, "tokenizer.ggml.pre") or "default"
    if model != "gpt2" or pre not in GPT2_STYLE_PRE:
        raise ValueError(f"unsupported GGUF tokenizer: model={model!r} pre={pre!r}")
    tokens: list[str] = list(_field(reader, "tokenizer.ggml.tokens"))
    types: list[int] = [int(t) for t in _field(reader, "tokenizer.ggml.token_type")]
    merges: list[str] = list(_field(reader, "tokenizer.ggml.merges"))
    if len(set(tokens)) != len(tokens):
        raise ValueError("GGUF vocabulary has duplicate token strings; a JSON vocab cannot hold them")

    added = [
        {
            "id": i,
            "content": tok,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": kind == CONTROL,
        }
        for i, (tok, kind) in enumerate(zip(tokens, types, strict=True))
        if kind in (CONTROL, USER_DEFINED)
    ]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    pre_tokenizer: dict[str, Any] = byte_level
    if pre in DIGIT_SPLIT_PRE:
        pre_tokenizer = {
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level],
        }
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
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
            "vocab": {tok: i for i, tok in enumerate(tokens)},
            "merges": merges,
        },
    }


def tokenizer_json_bytes(reader: GGUFReader) -> bytes:
    """Serialised deterministically (key order as HF writes it, ASCII-escaped, trailing newline)."""
    return (json.dumps(tokenizer_json_from_gguf(reader), ensure_ascii=True) + "\n").encode("ascii")
