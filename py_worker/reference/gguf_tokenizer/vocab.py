"""What both tokenizer models share: the vocabulary, its special tokens, BOS/EOS.

- Special tokens. Every token of type CONTROL, USER_DEFINED or UNKNOWN (plus the ones llama.cpp
  promotes by their text: end-of-generation texts, FIM texts when no FIM id is given, gpt-oss's)
  is cut out of the text first, longest first; HF added tokens (``normalized: false``) are matched
  leftmost-longest. Both give the same pieces unless a special token's end overlaps the start of
  a longer (or equally long) one: such a vocabulary is refused.
- BOS/EOS: ``tokenizer.ggml.add_bos_token`` / ``add_eos_token`` (llama.cpp's per-model defaults
  when absent) become a ``TemplateProcessing`` post-processor, so they are added only when the
  caller asks for special tokens (the engine's encode never does: the chat template writes BOS).

Also the BPE model object both write, and ``unsupported``, the one refusal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from py_worker.errors import UnsupportedTokenizerError

# llama.cpp's LLAMA_TOKEN_TYPE_* (the GGUF's tokenizer.ggml.token_type values).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

EOG_TEXTS = (
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<｜end▁of▁sentence｜>", "[e~[",
)  # fmt: skip
"""Texts llama.cpp makes end-of-generation tokens, and so CONTROL, whatever their GGUF type."""

FIM_TEXTS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("fim_pre_token_id", "prefix_token_id"),
     ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
      "<|code_prefix|>", "<|prefix|>")),
    (("fim_suf_token_id", "suffix_token_id"),
     ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
      "<|code_suffix|>", "<|suffix|>")),
    (("fim_mid_token_id", "middle_token_id"),
     ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
      "<|code_middle|>", "<|middle|>")),
    (("fim_pad_token_id",), ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]")),
    (("fim_rep_token_id",), ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>")),
    (("fim_sep_token_id",), ("<|file_sep|>",)),
)  # fmt: skip
"""Per FIM kind: its metadata keys (``tokenizer.ggml.<key>``) and the texts llama.cpp makes CONTROL
(the first one it meets) when none of the keys gives a valid id."""

USER_DEFINED_TEXTS = ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>")
"""gpt-oss's tokens llama.cpp always makes USER_DEFINED."""


def unsupported(model: Any, pre: Any, why: str) -> UnsupportedTokenizerError:
    """The refusal of a tokenizer this cannot reproduce exactly, saying why."""
    return UnsupportedTokenizerError(
        f"GGUF tokenizer model={model!r} pre={pre!r} is not supported: {why}",
        model=model,
        pre=pre,
    )


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return int(value)


def _token_id(meta: Mapping[str, Any], key: str, n_tokens: int) -> int | None:
    """``tokenizer.ggml.<key>`` when it is a valid token id (llama.cpp ignores an out-of-range one)."""
    value = _int(meta.get(f"tokenizer.ggml.{key}"))
    return value if value is not None and 0 <= value < n_tokens else None


def special_id(meta: Mapping[str, Any], key: str, n_tokens: int, default: int | None) -> int | None:
    """A special token id as llama.cpp resolves it: the key's id when valid, else the model's default
    (dropped when out of range)."""
    found = _token_id(meta, key, n_tokens)
    if found is not None:
        return found
    return default if default is not None and default < n_tokens else None


def flag(meta: Mapping[str, Any], key: str, default: bool) -> bool:
    value = meta.get(f"tokenizer.ggml.{key}")
    return default if value is None else bool(value)


def read_vocab(meta: Mapping[str, Any], model: Any, pre: Any) -> tuple[list[str], list[int]]:
    """Tokens (empty ones renamed as llama.cpp does) and their GGUF token types."""
    raw = meta.get("tokenizer.ggml.tokens")
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise unsupported(model, pre, "tokenizer.ggml.tokens is missing")
    tokens = [str(t) if t != "" else f"[EMPTY_{i}]" for i, t in enumerate(raw)]
    if len(set(tokens)) != len(tokens):
        raise unsupported(model, pre, "the vocabulary has duplicate token strings")
    types = meta.get("tokenizer.ggml.token_type")
    kinds = [NORMAL] * len(tokens) if types is None else [int(t) for t in types][: len(tokens)]
    if len(kinds) < len(tokens):
        raise unsupported(model, pre, "tokenizer.ggml.token_type is shorter than the vocabulary")
    return tokens, kinds


def special_attrs(
    meta: Mapping[str, Any], tokens: list[str], kinds: list[int], model: Any, pre: Any
) -> dict[int, bool]:
    """id -> HF ``special`` flag of every token llama.cpp cuts out before tokenizing.

    CONTROL and UNKNOWN are special (hidden by ``skip_special_tokens``), USER_DEFINED is not;
    llama.cpp's promotions by text are applied in its order.
    """
    ids = {t: i for i, t in enumerate(tokens)}
    attrs: dict[int, str] = {}
    for i, kind in enumerate(kinds):
        if kind in (CONTROL, UNKNOWN):
            attrs[i] = "control"
        elif kind == USER_DEFINED:
            attrs[i] = "user"
    for keys, texts in FIM_TEXTS:
        if any(_token_id(meta, k, len(tokens)) is not None for k in keys):
            continue
        present = [ids[t] for t in texts if t in ids]
        if len(present) > 1 and any(attrs.get(i) != "control" for i in present):
            # llama.cpp promotes the first one its hash map yields: not reproducible.
            raise unsupported(model, pre, f"several FIM tokens of one kind and no id for it: {texts}")
        for i in present:
            attrs[i] = "control"
    for text in EOG_TEXTS:
        if text in ids:
            attrs[ids[text]] = "control"
    for text in USER_DEFINED_TEXTS:
        if text in ids:
            attrs[ids[text]] = "user"
    if "<|end|>" in ids and (
        ("<|return|>" in ids and "<|call|>" in ids) or ("<|calls|>" in ids and "<|flush|>" in ids)
    ):
        attrs[ids["<|end|>"]] = "user"
    if "<|tool_response>" in ids and "</s>" in ids:
        attrs.pop(ids["</s>"], None)
    return {i: attrs[i] == "control" for i in sorted(attrs)}


def check_special_overlaps(specials: list[str], model: Any, pre: Any) -> None:
    """Refuse special tokens whose cut-out order would differ between llama.cpp and HF.

    llama.cpp cuts the longest token first (by UTF-8 length); HF matches leftmost-longest. They
    agree unless a token's proper suffix is a proper prefix of a token at least as long.
    """
    longest: dict[str, list[tuple[int, int]]] = {}  # proper prefix -> two longest (bytes, index)
    lengths = [len(s.encode("utf-8", "surrogatepass")) for s in specials]
    for j, s in enumerate(specials):
        for k in range(1, len(s)):
            best = longest.setdefault(s[:k], [])
            best.append((lengths[j], j))
            best.sort(reverse=True)
            del best[2:]
    for i, s in enumerate(specials):
        for k in range(1, len(s)):
            for length, j in longest.get(s[k:], ()):
                if j != i and length >= lengths[i]:
                    raise unsupported(
                        model,
                        pre,
                        f"special tokens {s!r} and {specials[j]!r} overlap (llama.cpp cuts the longer first)",
                    )


def added_tokens(tokens: list[str], specials: dict[int, bool]) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "content": tokens[i],
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": special,
        }
        for i, special in specials.items()
    ]


def post_processor(
    tokens: list[str], add_bos: bool, add_eos: bool, bos: int | None, eos: int | None, model: Any, pre: Any
) -> dict[str, Any] | None:
    """BOS/EOS added when the caller asks for special tokens (llama.cpp's ``add_special``)."""
    if add_bos and bos is None:
        raise unsupported(model, pre, "add_bos_token is true but there is no BOS token")
    if add_eos and eos is None:
        raise unsupported(model, pre, "add_eos_token is true but there is no EOS token")
    before = [bos] if add_bos and bos is not None else []
    after = [eos] if add_eos and eos is not None else []
    if not before and not after:
        return None

    def template(type_id: int, seq: str) -> list[dict[str, Any]]:
        return [
            *({"SpecialToken": {"id": tokens[i], "type_id": type_id}} for i in before),
            {"Sequence": {"id": seq, "type_id": type_id}},
            *({"SpecialToken": {"id": tokens[i], "type_id": type_id}} for i in after),
        ]

    special_tokens: dict[str, Any] = {}
    for i in sorted({*before, *after}):
        special_tokens[tokens[i]] = {"id": tokens[i], "ids": [i], "tokens": [tokens[i]]}
    return {
        "type": "TemplateProcessing",
        "single": template(0, "A"),
        "pair": [*template(0, "A"), *template(1, "B")],
        "special_tokens": special_tokens,
    }


def bpe_model(
    vocab: list[str], merges: list[list[str]], *, unk: str | None, byte_fallback: bool, ignore_merges: bool
) -> dict[str, Any]:
    return {
        "type": "BPE",
        "dropout": None,
        "unk_token": unk,
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "fuse_unk": byte_fallback,
        "byte_fallback": byte_fallback,
        "ignore_merges": ignore_merges,
        "vocab": {tok: i for i, tok in enumerate(vocab)},
        "merges": merges,
    }
