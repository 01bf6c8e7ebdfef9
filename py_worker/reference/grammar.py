"""Constrained decoding for the reference backend: PyPI ``xgrammar``, the same engine (and the same
settings) as js_glue/kernels/grammar.js uses through @mlc-ai/web-xgrammar in the browser.

Host-only: it needs torch for xgrammar's bitmask. The vocabulary rule is the JS one
(``vocab_kind``): how a tokenizer.json spells its tokens decides xgrammar's vocab type.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from py_worker.errors import GrammarError

Array = Any  # numpy.ndarray


def _flat(node: Any, key: str) -> list[dict[str, Any]]:
    if not node:
        return []
    if node.get("type") == "Sequence":
        return [leaf for child in node.get(key) or [] for leaf in _flat(child, key)]
    return [node]


def vocab_kind(tokenizer_json: dict[str, Any]) -> tuple[str, bool]:
    """``(vocab type, prepend space)``: "byte_level" for a ByteLevel decoder, "byte_fallback" for
    a ByteFallback one, else "raw"; the space when a normalizer or Metaspace prepends "▁"."""
    decoders = [d.get("type") for d in _flat(tokenizer_json.get("decoder"), "decoders")]
    kind = (
        "byte_level" if "ByteLevel" in decoders else "byte_fallback" if "ByteFallback" in decoders else "raw"
    )
    normalizers = _flat(tokenizer_json.get("normalizer"), "normalizers")
    pres = _flat(tokenizer_json.get("pre_tokenizer"), "pretokenizers")
    prepend = any(n.get("type") == "Prepend" and n.get("prepend") == "▁" for n in normalizers) or any(
        p.get("type") == "Metaspace"
        and (p.get("add_prefix_space") is True or p.get("prepend_scheme") in ("always", "first"))
        for p in pres
    )
    return kind, prepend


def control_ids(vocab: list[str], kind: str) -> list[int]:
    """Ids whose text holds a control character (U+0000-U+001F): raw, as GPT-2's byte-level map
    spells those bytes (U+0100-U+011F), or as a SentencePiece byte piece <0x00>-<0x1F>. JSON
    allows none of them unescaped, but xgrammar's JSON strings do, so a JSON schema's mask also
    drops these ids (with no free whitespace, JSON outside strings has no control byte either)."""
    out = []
    for i, token in enumerate(vocab):
        bad = any(ord(c) < 0x20 or (kind == "byte_level" and 0x100 <= ord(c) < 0x120) for c in token)
        if bad or (kind == "byte_fallback" and re.fullmatch(r"<0x[01][0-9A-Fa-f]>", token)):
            out.append(i)
    return out


@dataclass
class Grammars:
    """One model's matchers: ``open`` compiles a ``kernels.grammar_spec``; ``mask`` gives the next
    step's allowed ids as a bool array over the logits; ``accept`` advances by the picked id."""

    vocab: list[str]
    tokenizer_json: dict[str, Any]
    vocab_size: int
    _compilers: dict[tuple[int, ...], Any] = field(default_factory=dict)
    _matchers: dict[int, tuple[Any, bool]] = field(default_factory=dict)
    """id → (matcher, whether control_ids are masked too: a JSON schema's)"""
    _next: int = 1

    def __post_init__(self) -> None:
        self._control = control_ids(self.vocab, vocab_kind(self.tokenizer_json)[0])

    def _compiler(self, stop_ids: tuple[int, ...]) -> Any:
        import xgrammar as xgr

        if stop_ids not in self._compilers:
            kind, prepend = vocab_kind(self.tokenizer_json)
            info = xgr.TokenizerInfo(
                self.vocab,
                vocab_type=xgr.VocabType[kind.upper()],
                vocab_size=self.vocab_size,
                stop_token_ids=list(stop_ids) or None,
                add_prefix_space=prepend,
            )
            self._compilers[stop_ids] = xgr.GrammarCompiler(info)
        return self._compilers[stop_ids]

    def open(self, spec: dict[str, Any]) -> int:
        import xgrammar as xgr

        stop_ids = tuple(int(t) for t in spec.get("stop_token_ids") or [])
        compiler = self._compiler(stop_ids)
        kind, source = spec["kind"], str(spec["source"])
        try:
            if kind == "json_schema":
                compiled = compiler.compile_json_schema(
                    source, any_whitespace=False, indent=None, separators=(", ", ": "), strict_mode=True
                )
            elif kind == "ebnf":
                compiled = compiler.compile_grammar(source, root_rule_name="root")
            elif kind == "structural_tag":
                compiled = compiler.compile_structural_tag(json.loads(source))
            else:
                raise ValueError(f"unknown grammar kind {kind!r}")
        except (RuntimeError, ValueError, TypeError) as exc:
            raise GrammarError(
                f"The {kind} of the request does not compile: {exc}", kind=kind, reason=str(exc)
            ) from exc
        matcher = xgr.GrammarMatcher(compiled, override_stop_tokens=list(stop_ids) or None)
        grammar_id = self._next
        self._next += 1
        self._matchers[grammar_id] = (matcher, kind == "json_schema")
        return grammar_id

    def _get(self, grammar_id: int) -> tuple[Any, bool]:
        try:
            return self._matchers[grammar_id]
        except KeyError:
            raise GrammarError(f"no grammar matcher {grammar_id} is open", kind="", reason="closed") from None

    def mask(self, grammar_id: int) -> Array:
        import xgrammar as xgr

        matcher, json_only = self._get(grammar_id)
        bitmask = xgr.allocate_token_bitmask(1, self.vocab_size)
        matcher.fill_next_token_bitmask(bitmask)
        words = bitmask.numpy().view(np.uint32)[0]
        ids = np.arange(self.vocab_size)
        allowed: Array = (words[ids >> 5] >> (ids & 31)) & 1 == 1
        if json_only:
            allowed[self._control] = False
        return allowed

    def accept(self, grammar_id: int, token: int) -> bool:
        """Advance by ``token``; True once the grammar has ended (a stop token was accepted)."""
        matcher, _ = self._get(grammar_id)
        if not matcher.accept_token(int(token)):
            raise GrammarError(
                f"the grammar rejected token {token}, which its own mask allowed", kind="", reason="rejected"
            )
        return bool(matcher.is_terminated())

    def close(self, grammar_id: int) -> None:
        self._matchers.pop(grammar_id, None)
