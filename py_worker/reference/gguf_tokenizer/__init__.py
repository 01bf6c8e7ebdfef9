"""An HF ``tokenizer.json`` built from a GGUF's tokenizer metadata, tokenizing as llama.cpp does.

Input: the GGUF metadata as a plain mapping of key -> value (strings, ints, floats, bools, lists),
as ``GGUFReader`` fields' ``.contents()`` give it (``metadata_from_reader``) and as the JS parser
gives it (js_glue/kernels/gguf.js). ``js_glue/kernels/gguf_tokenizer.js`` is this package's twin:
same tables, same checks, the same JSON text to the byte. Output: JSON text that HF tokenizers
(and @mlc-ai/web-tokenizers, the same Rust core in wasm) read, and whose
``encode(text, add_special_tokens=...)`` gives the ids of llama.cpp's
``llama_tokenize(text, add_special, parse_special=true)`` (src/llama-vocab.cpp).

What llama.cpp does, and how it is written here, is told by the module that writes it:
``vocab`` (the special tokens, cut out of the text first, and BOS/EOS, for both models), ``bpe``
(``tokenizer.ggml.model == "gpt2"``, byte-level BPE) and ``spm`` (``"llama"``, SentencePiece BPE).

Anything else raises ``UnsupportedTokenizerError`` (fields ``model``, ``pre``). The output is
deterministic: same metadata, same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from py_worker.reference.gguf_tokenizer.bpe import BPE_PRE, LLAMA3_REGEX, QWEN2_REGEX, bpe_body
from py_worker.reference.gguf_tokenizer.spm import spm_body
from py_worker.reference.gguf_tokenizer.vocab import (
    added_tokens,
    check_special_overlaps,
    read_vocab,
    special_attrs,
    unsupported,
)

__all__ = [
    "BPE_PRE",
    "LLAMA3_REGEX",
    "QWEN2_REGEX",
    "SUPPORTED_MODELS",
    "dumps",
    "metadata_from_reader",
    "tokenizer_json_bytes",
    "tokenizer_json_from_gguf",
    "tokenizer_json_from_reader",
    "tokenizer_json_object",
]

SUPPORTED_MODELS = ("gpt2", "llama")


def tokenizer_json_object(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The HF tokenizers JSON object equivalent to the GGUF's llama.cpp tokenizer."""
    model = meta.get("tokenizer.ggml.model")
    pre = meta.get("tokenizer.ggml.pre")
    if model not in SUPPORTED_MODELS:
        raise unsupported(model, pre, f"tokenizer.ggml.model must be one of {', '.join(SUPPORTED_MODELS)}")
    if model == "gpt2" and pre not in BPE_PRE:
        raise unsupported(
            model, pre, "this tokenizer.ggml.pre (llama.cpp's pre-tokenizer) is not reproduced here"
        )
    tokens, kinds = read_vocab(meta, model, pre)
    specials = special_attrs(meta, tokens, kinds, model, pre)
    check_special_overlaps([tokens[i] for i in specials], model, pre)
    body = (
        bpe_body(meta, tokens, model, pre)
        if model == "gpt2"
        else spm_body(meta, tokens, kinds, specials, model, pre)
    )
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_tokens(tokens, specials),
        **body,
    }


def dumps(obj: Any) -> str:
    """The serialisation both builders share: ``json.dumps`` defaults, ASCII-escaped, newline-ended."""
    return json.dumps(obj, ensure_ascii=True) + "\n"


def tokenizer_json_from_gguf(meta: Mapping[str, Any]) -> str:
    """The ``tokenizer.json`` text for GGUF metadata (the twin of gguf_tokenizer.js's export)."""
    return dumps(tokenizer_json_object(meta))


def metadata_from_reader(reader: Any) -> dict[str, Any]:
    """A ``gguf.GGUFReader``'s metadata as the plain mapping the builder takes."""
    return {key: field.contents() for key, field in reader.fields.items() if not key.startswith("GGUF.")}


def tokenizer_json_from_reader(reader: Any) -> str:
    """``tokenizer_json_from_gguf`` for a ``gguf.GGUFReader``."""
    return tokenizer_json_from_gguf(metadata_from_reader(reader))


def tokenizer_json_bytes(source: Any) -> bytes:
    """The ``tokenizer.json`` bytes (ASCII) for a ``GGUFReader`` or a metadata mapping."""
    meta = source if isinstance(source, Mapping) else metadata_from_reader(source)
    return tokenizer_json_from_gguf(meta).encode("ascii")
