"""An HF ``tokenizer.json`` built from a GGUF's tokenizer metadata, tokenizing as llama.cpp does.

Input: the GGUF metadata as a plain mapping of key -> value (strings, ints, floats, bools, lists),
as ``GGUFReader`` fields' ``.contents()`` give it (``metadata_from_reader``) and as the JS parser
gives it (js_glue/kernels/gguf.js). ``js_glue/kernels/gguf_tokenizer.js`` is this module's twin:
same tables, same checks, the same JSON text to the byte. Output: JSON text that HF tokenizers
(and @mlc-ai/web-tokenizers, the same Rust core in wasm) read, and whose
``encode(text, add_special_tokens=...)`` gives the ids of llama.cpp's
``llama_tokenize(text, add_special, parse_special=true)`` (src/llama-vocab.cpp).

What llama.cpp does, and how it is written here:

- Special tokens. Every token of type CONTROL, USER_DEFINED or UNKNOWN (plus the ones llama.cpp
  promotes by their text: end-of-generation texts, FIM texts when no FIM id is given, gpt-oss's)
  is cut out of the text first, longest first; HF added tokens (``normalized: false``) are matched
  leftmost-longest. Both give the same pieces unless a special token's end overlaps the start of
  a longer (or equally long) one: such a vocabulary is refused.
- ``tokenizer.ggml.model == "gpt2"`` (byte-level BPE): ``tokenizer.ggml.pre`` names llama.cpp's
  split regexes. The digit family (``smollm``, ``starcoder`` ...) isolates every ``\\p{N}`` then
  applies GPT-2's regex: ``Digits(individual_digits)`` + ``ByteLevel(use_regex)``. GPT-2's own
  family: ``ByteLevel(use_regex)``. Llama 3 (``llama-bpe`` ...) and Qwen2 (``qwen2``,
  ``deepseek-r1-qwen`` ...): ``Split(regex, Isolated)`` + ``ByteLevel(use_regex=false)`` with the
  regex of llama-vocab.cpp; Llama 3's family also sets ``ignore_merges`` (a whole pre-token found
  in the vocabulary is one token). Merges keep the GGUF's rank order.
- ``tokenizer.ggml.model == "llama"`` (SentencePiece BPE: Llama 2, TinyLlama, Mistral): llama.cpp
  merges the adjacent pair whose concatenation is the highest-scoring vocabulary token, leftmost
  first, and falls back to ``<0xXX>`` byte tokens. Here: BPE with ``byte_fallback`` and merges
  ranked by the score of their result (several splits of one result by the parts' ids, as HF's
  SentencePiece converter ranks them); a space is prepended to every text piece (at the start and
  after each special token, llama.cpp's ``add_space_prefix``) by a ``Prepend`` normalizer, which
  HF applies to each piece between added tokens, and spaces become ``▁``. Ranks cannot say
  "leftmost first", so distinct tokens of one score are refused, except runs of one character
  (the whitespace pieces Llama and Mistral score alike), for which both algorithms are run on
  runs of every length up to four times the longest piece (plus eight) and must agree.
- BOS/EOS: ``tokenizer.ggml.add_bos_token`` / ``add_eos_token`` (llama.cpp's per-model defaults
  when absent) become a ``TemplateProcessing`` post-processor, so they are added only when the
  caller asks for special tokens (the engine's encode never does: the chat template writes BOS).

Anything else raises ``UnsupportedTokenizerError`` (fields ``model``, ``pre``). The output is
deterministic: same metadata, same bytes.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from py_worker.errors import UnsupportedTokenizerError

# llama.cpp's LLAMA_TOKEN_TYPE_* (the GGUF's tokenizer.ggml.token_type values).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

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

SUPPORTED_MODELS = ("gpt2", "llama")

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

STRIP_MODEL_NAMES = ("phi-3", "phi3", "modern-bert")
"""``general.name`` substrings for which llama.cpp strips spaces around special tokens (ASCII
``isspace``, which HF's lstrip/rstrip cannot reproduce): refused."""

SPACE = "▁"


def _unsupported(model: Any, pre: Any, why: str) -> UnsupportedTokenizerError:
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


def _special_id(meta: Mapping[str, Any], key: str, n_tokens: int, default: int | None) -> int | None:
    """A special token id as llama.cpp resolves it: the key's id when valid, else the model's default
    (dropped when out of range)."""
    found = _token_id(meta, key, n_tokens)
    if found is not None:
        return found
    return default if default is not None and default < n_tokens else None


def _flag(meta: Mapping[str, Any], key: str, default: bool) -> bool:
    value = meta.get(f"tokenizer.ggml.{key}")
    return default if value is None else bool(value)


def _vocab(meta: Mapping[str, Any], model: Any, pre: Any) -> tuple[list[str], list[int]]:
    """Tokens (empty ones renamed as llama.cpp does) and their GGUF token types."""
    raw = meta.get("tokenizer.ggml.tokens")
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise _unsupported(model, pre, "tokenizer.ggml.tokens is missing")
    tokens = [str(t) if t != "" else f"[EMPTY_{i}]" for i, t in enumerate(raw)]
    if len(set(tokens)) != len(tokens):
        raise _unsupported(model, pre, "the vocabulary has duplicate token strings")
    types = meta.get("tokenizer.ggml.token_type")
    kinds = [NORMAL] * len(tokens) if types is None else [int(t) for t in types][: len(tokens)]
    if len(kinds) < len(tokens):
        raise _unsupported(model, pre, "tokenizer.ggml.token_type is shorter than the vocabulary")
    return tokens, kinds


def _special_attrs(
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
            raise _unsupported(model, pre, f"several FIM tokens of one kind and no id for it: {texts}")
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


def _check_special_overlaps(specials: list[str], model: Any, pre: Any) -> None:
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
                    raise _unsupported(
                        model,
                        pre,
                        f"special tokens {s!r} and {specials[j]!r} overlap (llama.cpp cuts the longer first)",
                    )


def _added_tokens(tokens: list[str], specials: dict[int, bool]) -> list[dict[str, Any]]:
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


def _post_processor(
    tokens: list[str], add_bos: bool, add_eos: bool, bos: int | None, eos: int | None, model: Any, pre: Any
) -> dict[str, Any] | None:
    """BOS/EOS added when the caller asks for special tokens (llama.cpp's ``add_special``)."""
    if add_bos and bos is None:
        raise _unsupported(model, pre, "add_bos_token is true but there is no BOS token")
    if add_eos and eos is None:
        raise _unsupported(model, pre, "add_eos_token is true but there is no EOS token")
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


def _bpe_model(
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


def _gpt2_merges(meta: Mapping[str, Any], ids: dict[str, int], model: Any, pre: Any) -> list[list[str]]:
    """The GGUF's merges as pairs, split as llama.cpp splits them (at the first space after the
    first character); a repeated pair keeps its first rank, as in llama.cpp's map."""
    raw = meta.get("tokenizer.ggml.merges")
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise _unsupported(model, pre, "tokenizer.ggml.merges is missing")
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
            raise _unsupported(model, pre, f"merge {text!r} names a token that is not in the vocabulary")
        seen.add((a, b))
        out.append([a, b])
    return out


def _byte_level(use_regex: bool) -> dict[str, Any]:
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": use_regex}


def _split(regex: str) -> dict[str, Any]:
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


def _gpt2(meta: Mapping[str, Any], tokens: list[str], model: Any, pre: Any) -> dict[str, Any]:
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
    bos, eos = _special_id(meta, "bos_token_id", n, 11), _special_id(meta, "eos_token_id", n, 11)
    return {
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": _post_processor(
            tokens,
            _flag(meta, "add_bos_token", add_bos_default),
            _flag(meta, "add_eos_token", False),
            bos,
            eos,
            model,
            pre,
        ),
        "decoder": _byte_level(True),
        "model": _bpe_model(tokens, merges, unk=None, byte_fallback=False, ignore_merges=ignore_merges),
    }


def _spm_merges(
    tokens: list[str], kinds: list[int], scores: list[float], specials: dict[int, bool], model: Any, pre: Any
) -> list[list[str]]:
    """Every (left, right) pair of tokens whose concatenation is a token, best result first.

    llama.cpp merges the adjacent symbols whose concatenation is the highest-scoring token; a
    symbol is a token or a lone character that is not one (HF turns that one into byte tokens).
    So a token that llama.cpp can form from a lone non-token character, or HF from a byte token,
    is refused. A special token is cut out of the raw text first, so only one holding "▁" (which
    spaces become) can still be formed.
    """
    ids = {t: i for i, t in enumerate(tokens)}
    ranked: list[tuple[float, int, int, int]] = []
    formable: set[int] = set()
    for i, tok in enumerate(tokens):
        if i not in specials or SPACE in tok:
            formable.add(i)
        for k in range(1, len(tok)):
            left, right = ids.get(tok[:k]), ids.get(tok[k:])
            if left is None or right is None:
                if (
                    i in formable
                    and (left is not None or k == 1)
                    and (right is not None or k == len(tok) - 1)
                ):
                    raise _unsupported(
                        model, pre, f"llama.cpp can form {tok!r} from a character that is not a token"
                    )
                continue
            if i in formable and BYTE in (kinds[left], kinds[right]):
                raise _unsupported(model, pre, f"HF can form {tok!r} from a byte token")
            ranked.append((-scores[i], i, left, right))
    ranked.sort()
    _check_ties(ranked, formable, tokens, model, pre)
    return [[tokens[left], tokens[right]] for _, _, left, right in ranked]


def _run_char(tok: str) -> str | None:
    """The character a token repeats (``"▁▁▁"`` -> ``"▁"``), if it is such a run."""
    return tok[0] if len(tok) > 1 and tok == tok[0] * len(tok) else None


def _check_ties(
    ranked: list[tuple[float, int, int, int]], formable: set[int], tokens: list[str], model: Any, pre: Any
) -> None:
    """Refuse equal scores that could make llama.cpp and HF merge in a different order.

    Between candidates of equal score llama.cpp takes the leftmost, HF the lower rank; so distinct
    tokens of one score are refused, except runs of one character (SentencePiece's whitespace
    pieces, which share one score), checked by running both algorithms on them. Several splits
    of one token share its score too: ranked by the parts' ids as HF's own SentencePiece
    conversion ranks them (which never differed from llama.cpp on real vocabularies).
    """
    groups: dict[float, set[int]] = {}
    for neg, result, _, _ in ranked:
        if result in formable:
            groups.setdefault(neg, set()).add(result)
    runs: set[str] = set()
    for results in groups.values():
        if len(results) < 2:
            continue
        chars = {_run_char(tokens[i]) for i in results}
        char = next(iter(chars))
        if len(chars) > 1 or char is None:
            a, b = sorted(results)[:2]
            raise _unsupported(
                model,
                pre,
                f"tokens {tokens[a]!r} and {tokens[b]!r} score the same (HF breaks the tie otherwise)",
            )
        runs.add(char)
    for char in sorted(runs):
        _check_run(char, ranked, formable, tokens, model, pre)


def _check_run(
    char: str,
    ranked: list[tuple[float, int, int, int]],
    formable: set[int],
    tokens: list[str],
    model: Any,
    pre: Any,
) -> None:
    """Runs of ``char`` merge alike in llama.cpp (leftmost first) and HF (lowest rank first).

    Needs: every run token of ``char`` can be formed and all share one score (so runs are merged
    together, after every other merge that could touch them), and no other token holds two
    ``char`` in a row (so nothing else takes part); then both algorithms are run on runs of up to
    four times the longest run token, plus eight.
    """
    lengths = {len(t): i for i, t in enumerate(tokens) if _run_char(t) == char}
    why = ""
    if any(i not in formable for i in lengths.values()):
        why = "a special token is one"
    elif len({neg for neg, result, _, _ in ranked if result in lengths.values()}) > 1:
        why = "they do not all score the same"
    elif any(char * 2 in t and _run_char(t) != char for i, t in enumerate(tokens) if i in formable):
        why = "another token holds two in a row"
    rank = {
        (len(tokens[left]), len(tokens[right])): n
        for n, (_, result, left, right) in enumerate(ranked)
        if result in lengths.values()
    }
    for n in range(2, 4 * max(lengths) + 9):
        if why:
            break
        leftmost, lowest = [1] * n, [1] * n
        while True:
            at = [i for i in range(len(leftmost) - 1) if leftmost[i] + leftmost[i + 1] in lengths]
            if not at:
                break
            leftmost[at[0] : at[0] + 2] = [leftmost[at[0]] + leftmost[at[0] + 1]]
        while True:
            pairs = [(rank[p], i) for i, p in enumerate(itertools.pairwise(lowest)) if p in rank]
            if not pairs:
                break
            i = min(pairs)[1]
            lowest[i : i + 2] = [lowest[i] + lowest[i + 1]]
        if leftmost != lowest:
            why = f"a run of {n} splits as {leftmost} in llama.cpp, {lowest} in HF"
    if why:
        raise _unsupported(model, pre, f"runs of {char!r} may tokenize differently: {why}")


def _spm(
    meta: Mapping[str, Any],
    tokens: list[str],
    kinds: list[int],
    specials: dict[int, bool],
    model: Any,
    pre: Any,
) -> dict[str, Any]:
    name = str(meta.get("general.name") or "").lower()
    if any(s in name for s in STRIP_MODEL_NAMES):
        raise _unsupported(model, pre, f"llama.cpp strips spaces around special tokens for {name!r}")
    ids = {t: i for i, t in enumerate(tokens)}
    missing = [b for b in range(256) if f"<0x{b:02X}>" not in ids]
    if missing:
        raise _unsupported(model, pre, f"{len(missing)} byte tokens <0xXX> are missing")
    raw_scores = meta.get("tokenizer.ggml.scores")
    scores = [0.0] * len(tokens) if raw_scores is None else [float(s) for s in raw_scores][: len(tokens)]
    if len(scores) < len(tokens):
        raise _unsupported(model, pre, "tokenizer.ggml.scores is shorter than the vocabulary")
    if any(math.isnan(x) for x in scores):
        raise _unsupported(model, pre, "tokenizer.ggml.scores holds NaN")
    merges = _spm_merges(tokens, kinds, scores, specials, model, pre)
    n = len(tokens)
    # llama.cpp's defaults for LLAMA_VOCAB_TYPE_SPM: BOS 1, EOS 2, UNK 0, add_bos, a space prefix.
    bos, eos = _special_id(meta, "bos_token_id", n, 1), _special_id(meta, "eos_token_id", n, 2)
    unk = _special_id(meta, "unknown_token_id", n, 0)
    prefix = _flag(meta, "add_space_prefix", True)
    replace: dict[str, Any] = {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}
    decoders: list[dict[str, Any]] = [
        {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
    ]
    if prefix:
        decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
    return {
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": SPACE}, replace]}
        if prefix
        else replace,
        "pre_tokenizer": None,
        "post_processor": _post_processor(
            tokens,
            _flag(meta, "add_bos_token", True),
            _flag(meta, "add_eos_token", False),
            bos,
            eos,
            model,
            pre,
        ),
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": _bpe_model(
            tokens,
            merges,
            unk=tokens[unk] if unk is not None else None,
            byte_fallback=True,
            ignore_merges=False,
        ),
    }


def tokenizer_json_object(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The HF tokenizers JSON object equivalent to the GGUF's llama.cpp tokenizer."""
    model = meta.get("tokenizer.ggml.model")
    pre = meta.get("tokenizer.ggml.pre")
    if model not in SUPPORTED_MODELS:
        raise _unsupported(model, pre, f"tokenizer.ggml.model must be one of {', '.join(SUPPORTED_MODELS)}")
    if model == "gpt2" and pre not in BPE_PRE:
        raise _unsupported(
            model, pre, "this tokenizer.ggml.pre (llama.cpp's pre-tokenizer) is not reproduced here"
        )
    tokens, kinds = _vocab(meta, model, pre)
    specials = _special_attrs(meta, tokens, kinds, model, pre)
    _check_special_overlaps([tokens[i] for i in specials], model, pre)
    body = (
        _gpt2(meta, tokens, model, pre)
        if model == "gpt2"
        else _spm(meta, tokens, kinds, specials, model, pre)
    )
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": _added_tokens(tokens, specials),
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
