"""The GGUF -> ``tokenizer.json`` builder now lives in ``py_worker/reference/gguf_tokenizer/`` (host
only, next to its JS twin's tests); this re-export keeps ``tools.gguf_tokenizer`` importable."""

from py_worker.reference.gguf_tokenizer import (
    BPE_PRE,
    LLAMA3_REGEX,
    QWEN2_REGEX,
    SUPPORTED_MODELS,
    metadata_from_reader,
    tokenizer_json_bytes,
    tokenizer_json_from_gguf,
    tokenizer_json_from_reader,
    tokenizer_json_object,
)

__all__ = [
    "BPE_PRE",
    "LLAMA3_REGEX",
    "QWEN2_REGEX",
    "SUPPORTED_MODELS",
    "metadata_from_reader",
    "tokenizer_json_bytes",
    "tokenizer_json_from_gguf",
    "tokenizer_json_from_reader",
    "tokenizer_json_object",
]
