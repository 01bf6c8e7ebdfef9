"""The ``tokenizer.json`` of a ``tokenizer.ggml.model == "gpt2"`` GGUF (byte-level BPE).

``tokenizer.ggml.pre`` names llama.cpp's split regexes. The digit family (``smollm``,
``starcoder`` ...) isolates every ``\\p{N}`` then applies GPT-2's regex:
``Digits(individual_digits)`` + ``ByteLevel(use_regex)``. GPT-2's own family:
``ByteLevel(use_regex)``. Llama 3 (``llama-bpe`` ...) and Qwen2 (``qwen2``, ``deepseek-r1-qwen``
...): ``Split(regex, Isolated)`` + ``ByteLevel(use_regex=false)`` with the regex of
llama-vocab.cpp; Llama 3's family also sets ``ignore_merges`` (a whole pre-token found in the
vocabulary is one token). Merges keep the GGUF's rank order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from py_worker.reference.gguf_tokenizer.vocab import bpe_model, flag, post_processor, special_id, unsupported

LLAMA3_REGEX = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""llama-vocab.cpp's regex for LLAMA_VOCAB_PRE_TYPE_LLAMA3 (also DBRX, SMAUG)."""

QWEN2_REGEX = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""llama-vocab.cpp's regex for LLAMA_VOCAB_PRE_TYPE_QWEN2 (also STABLELM2): Llama 3's, one digit at a time."""

# tokenizer.ggml.pre -> (pre-tokenizer family, ignore_merges, llama.cpp's default add_bos).
_DIGITS = ("digits", False, False)
_GPT2 = ("gpt2", False, False)
_LLAMA3 = ("llama3", True, True)
_LLAMA3_MERGES = ("llama3", False, False)
_QWEN2 = ("qwen2", False, False)
BPE_PRE: dict[str, tuple[str, bool, bool]] = {
    # LLAMA_VOCAB_PRE_TYPE_{STARCODER,REFACT,COMMAND_R,SMOLLM,CODESHELL,EXAONE,MINERVA,MELLUM2}
    "smollm": _DIGITS,
    "starcoder": _DIGITS,
    "refact": _DIGITS,
    "command-r": _DIGITS,
    "codeshell": _DIGITS,
    "exaone": _DIGITS,
    "minerva-7b": _DIGITS,
    "mellum2": _DIGITS,
    # LLAMA_VOCAB_PRE_TYPE_{GPT2,MPT,OLMO,JAIS,TRILLION,GRANITE_DOCLING}
    "gpt-2": _GPT2,
    "phi-2": _GPT2,
    "gigachat": _GPT2,
    "a.x-4.0": _GPT2,
    "mellum": _GPT2,
    "exaone4": _GPT2,
    "mpt": _GPT2,
    "olmo": _GPT2,
    "jais": _GPT2,
    "trillion": _GPT2,
    "granite-docling": _GPT2,
    # LLAMA_VOCAB_PRE_TYPE_LLAMA3 (ignore_merges, add_bos)
    "llama3": _LLAMA3,
    "llama-v3": _LLAMA3,
    "llama-bpe": _LLAMA3,
    "falcon3": _LLAMA3,
    "falcon-h1": _LLAMA3,
    "pixtral": _LLAMA3,
    "midm-2.0": _LLAMA3,
    "lfm2": _LLAMA3,
    # LLAMA_VOCAB_PRE_TYPE_{DBRX,SMAUG}: Llama 3's regex, merges always applied
    "dbrx": _LLAMA3_MERGES,
    "smaug-bpe": _LLAMA3_MERGES,
    # LLAMA_VOCAB_PRE_TYPE_{QWEN2,STABLELM2}
    "qwen2": _QWEN2,
    "deepseek-r1-qwen": _QWEN2,
    "megrez": _QWEN2,
    "stablelm2": _QWEN2,
}
"""Every ``tokenizer.ggml.pre`` of a ``gpt2`` model this builder reproduces exactly."""


def _gpt2_merges(meta: Mapping[str, Any], ids: dict[str, int], model: Any, pre: Any) -> list[list[str]]:
    """The GGUF's merges as pairs, split as llama.cpp splits them (at the first space after the
    first character); a repeated pair keeps its first rank, as in llama.cpp's map."""
    raw = meta.get("tokenizer.ggml.merges")
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise unsupported(model, pre, "tokenizer.ggml.merges is missing")
    seen: set[tuple[str, str]] = set()
    out: list[list[str]] = []
    for merge in raw:
        text = str(merge)
        pos = text.find(" ", 1)
        if pos < 0:
            continue  # llama.cpp ranks it as ("", ""), which never matches
        a, b = text[:pos], text[pos + 1 :]
        if (a, b) in seen:
            continue
        if a not in ids or b not in ids or a + b not in ids:
            raise unsupported(model, pre, f"merge {text!r} names a token that is not in the vocabulary")
        seen.add((a, b))
        out.append([a, b])
    return out


def _byte_level(use_regex: bool) -> dict[str, Any]:
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": use_regex}


def _split(regex: str) -> dict[str, Any]:
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


def bpe_body(meta: Mapping[str, Any], tokens: list[str], model: Any, pre: Any) -> dict[str, Any]:
    """The normalizer, pre-tokenizer, post-processor, decoder and model of a ``gpt2`` GGUF."""
    family, ignore_merges, add_bos_default = BPE_PRE[pre]
    pre_tokenizer: dict[str, Any]
    if family == "digits":
        pre_tokenizer = {
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": True}, _byte_level(True)],
        }
    elif family == "gpt2":
        pre_tokenizer = _byte_level(True)
    else:
        regex = LLAMA3_REGEX if family == "llama3" else QWEN2_REGEX
        pre_tokenizer = {"type": "Sequence", "pretokenizers": [_split(regex), _byte_level(False)]}
    ids = {t: i for i, t in enumerate(tokens)}
    merges = _gpt2_merges(meta, ids, model, pre)
    n = len(tokens)
    # llama.cpp's defaults for LLAMA_VOCAB_TYPE_BPE: BOS = EOS = 11.
    bos, eos = special_id(meta, "bos_token_id", n, 11), special_id(meta, "eos_token_id", n, 11)
    return {
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor(
            tokens,
            flag(meta, "add_bos_token", add_bos_default),
            flag(meta, "add_eos_token", False),
            bos,
            eos,
            model,
            pre,
        ),
        "decoder": _byte_level(True),
        "model": bpe_model(tokens, merges, unk=None, byte_fallback=False, ignore_merges=ignore_merges),
    }
