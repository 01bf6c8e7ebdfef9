"""The ``tokenizer.json`` of a ``tokenizer.ggml.model == "llama"`` GGUF (SentencePiece BPE).

Llama 2, TinyLlama, Mistral: llama.cpp merges the adjacent pair whose concatenation is the
highest-scoring vocabulary token, leftmost first, and falls back to ``<0xXX>`` byte tokens. Here:
BPE with ``byte_fallback`` and merges ranked by the score of their result (several splits of one
result by the parts' ids, as HF's SentencePiece converter ranks them); a space is prepended to
every text piece (at the start and after each special token, llama.cpp's ``add_space_prefix``) by
a ``Prepend`` normalizer, which HF applies to each piece between added tokens, and spaces become
``▁``. Ranks cannot say "leftmost first", so distinct tokens of one score are refused, except
runs of one character (the whitespace pieces Llama and Mistral score alike), for which both
algorithms are run on runs of every length up to four times the longest piece (plus eight) and
must agree.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

from py_worker.reference.gguf_tokenizer.vocab import (
    BYTE,
    bpe_model,
    flag,
    post_processor,
    special_id,
    unsupported,
)

STRIP_MODEL_NAMES = ("phi-3", "phi3", "modern-bert")
"""``general.name`` substrings for which llama.cpp strips spaces around special tokens (ASCII
``isspace``, which HF's lstrip/rstrip cannot reproduce): refused."""

SPACE = "▁"


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
                    raise unsupported(
                        model, pre, f"llama.cpp can form {tok!r} from a character that is not a token"
                    )
                continue
            if i in formable and BYTE in (kinds[left], kinds[right]):
                raise unsupported(model, pre, f"HF can form {tok!r} from a byte token")
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
            raise unsupported(
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
        raise unsupported(model, pre, f"runs of {char!r} may tokenize differently: {why}")


def spm_body(
    meta: Mapping[str, Any],
    tokens: list[str],
    kinds: list[int],
    specials: dict[int, bool],
    model: Any,
    pre: Any,
) -> dict[str, Any]:
    """The normalizer, pre-tokenizer, post-processor, decoder and model of a ``llama`` GGUF."""
    name = str(meta.get("general.name") or "").lower()
    if any(s in name for s in STRIP_MODEL_NAMES):
        raise unsupported(model, pre, f"llama.cpp strips spaces around special tokens for {name!r}")
    ids = {t: i for i, t in enumerate(tokens)}
    missing = [b for b in range(256) if f"<0x{b:02X}>" not in ids]
    if missing:
        raise unsupported(model, pre, f"{len(missing)} byte tokens <0xXX> are missing")
    raw_scores = meta.get("tokenizer.ggml.scores")
    scores = [0.0] * len(tokens) if raw_scores is None else [float(s) for s in raw_scores][: len(tokens)]
    if len(scores) < len(tokens):
        raise unsupported(model, pre, "tokenizer.ggml.scores is shorter than the vocabulary")
    if any(math.isnan(x) for x in scores):
        raise unsupported(model, pre, "tokenizer.ggml.scores holds NaN")
    merges = _spm_merges(tokens, kinds, scores, specials, model, pre)
    n = len(tokens)
    # llama.cpp's defaults for LLAMA_VOCAB_TYPE_SPM: BOS 1, EOS 2, UNK 0, add_bos, a space prefix.
    bos, eos = special_id(meta, "bos_token_id", n, 1), special_id(meta, "eos_token_id", n, 2)
    unk = special_id(meta, "unknown_token_id", n, 0)
    prefix = flag(meta, "add_space_prefix", True)
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
        "post_processor": post_processor(
            tokens,
            flag(meta, "add_bos_token", True),
            flag(meta, "add_eos_token", False),
            bos,
            eos,
            model,
            pre,
        ),
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": bpe_model(
            tokens,
            merges,
            unk=tokens[unk] if unk is not None else None,
            byte_fallback=True,
            ignore_merges=False,
        ),
    }
