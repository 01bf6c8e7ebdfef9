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


def _byte_of_char() -> dict[int, int]:
    """GPT-2's byte-level alphabet: printable bytes stand for themselves, the others for 256 + n."""
    out, n = {}, 0
    for b in range(256):
        if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF:
            out[b] = b
        else:
            out[256 + n] = b
            n += 1
    return out


BYTE_OF_CHAR = _byte_of_char()
FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def token_bytes(token: str, kind: str) -> bytes:
    """The bytes of one token as the vocabulary type spells it."""
    if kind == "byte_fallback":
        m = FALLBACK.fullmatch(token)
        return bytes([int(m.group(1), 16)]) if m else token.replace("▁", " ").encode()
    if kind == "byte_level":
        out = bytearray()
        for ch in token:
            b = BYTE_OF_CHAR.get(ord(ch))
            out += ch.encode() if b is None else bytes([b])  # an added token's own text
        return bytes(out)
    return token.encode()


START = (0, 0, 0)
"""Between characters; otherwise (continuation bytes still needed, allowed range of the next)."""


def _next(state: tuple[int, int, int], b: int) -> tuple[int, int, int] | None:
    """RFC 3629's table of well-formed UTF-8 sequences, one byte at a time."""
    if state == START:
        if b < 0x80:
            return START
        leads = [
            (0xC2, 0xDF, (1, 0x80, 0xBF)),
            (0xE0, 0xE0, (2, 0xA0, 0xBF)),
            (0xE1, 0xEC, (2, 0x80, 0xBF)),
            (0xED, 0xED, (2, 0x80, 0x9F)),
            (0xEE, 0xEF, (2, 0x80, 0xBF)),
            (0xF0, 0xF0, (3, 0x90, 0xBF)),
            (0xF1, 0xF3, (3, 0x80, 0xBF)),
            (0xF4, 0xF4, (3, 0x80, 0x8F)),
        ]
        return next((s for lo, hi, s in leads if lo <= b <= hi), None)
    n, lo, hi = state
    if not lo <= b <= hi:
        return None
    return START if n == 1 else (n - 1, 0x80, 0xBF)


def advance(state: tuple[int, int, int] | None, data: bytes) -> tuple[int, int, int] | None:
    """The decoder state after ``data``, or None where it is not valid UTF-8."""
    for b in data:
        if state is None:
            return None
        state = _next(state, b)
    return state


class Utf8Masks:
    """Which ids keep an answer valid UTF-8 from each decoder state (built when first met), and
    which hold a control byte (00-1F: a JSON schema's answer has none). Twin of
    js_glue/kernels/token_bytes.js: the npm xgrammar lets strings hold bytes no UTF-8 text has,
    and lets JSON strings hold control bytes."""

    def __init__(self, data: list[bytes], vocab_size: int) -> None:
        self.data = data
        self.vocab_size = vocab_size
        self._masks: dict[tuple[int, int, int], Array] = {}
        self.control = np.ones(vocab_size, dtype=bool)
        self.control[[i for i, d in enumerate(data) if any(b < 0x20 for b in d)]] = False

    def mask(self, state: tuple[int, int, int]) -> Array:
        if state not in self._masks:
            ok = np.ones(self.vocab_size, dtype=bool)
            ok[[i for i, d in enumerate(self.data) if advance(state, d) is None]] = False
            self._masks[state] = ok
        return self._masks[state]


@dataclass
class _Matcher:
    matcher: Any
    json: bool
    """A JSON schema's: control bytes are masked too."""
    state: tuple[int, int, int] = START


@dataclass
class Grammars:
    """One model's matchers: ``open`` compiles a ``kernels.grammar_spec``; ``mask`` gives the next
    step's allowed ids as a bool array over the logits; ``accept`` advances by the picked id."""

    vocab: list[str]
    tokenizer_json: dict[str, Any]
    vocab_size: int
    _compilers: dict[tuple[int, ...], Any] = field(default_factory=dict)
    _matchers: dict[int, _Matcher] = field(default_factory=dict)
    _next: int = 1

    def __post_init__(self) -> None:
        kind = vocab_kind(self.tokenizer_json)[0]
        self._data = [token_bytes(t, kind) for t in self.vocab]
        self._utf8 = Utf8Masks(self._data, self.vocab_size)

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
        self._matchers[grammar_id] = _Matcher(matcher, kind == "json_schema")
        return grammar_id

    def _get(self, grammar_id: int) -> _Matcher:
        try:
            return self._matchers[grammar_id]
        except KeyError:
            raise GrammarError(f"no grammar matcher {grammar_id} is open", kind="", reason="closed") from None

    def mask(self, grammar_id: int) -> Array:
        import xgrammar as xgr

        m = self._get(grammar_id)
        bitmask = xgr.allocate_token_bitmask(1, self.vocab_size)
        m.matcher.fill_next_token_bitmask(bitmask)
        words = bitmask.numpy().view(np.uint32)[0]
        ids = np.arange(self.vocab_size)
        allowed: Array = ((words[ids >> 5] >> (ids & 31)) & 1 == 1) & self._utf8.mask(m.state)
        return allowed & self._utf8.control if m.json else allowed

    def accept(self, grammar_id: int, token: int) -> bool:
        """Advance by ``token``; True once the grammar has ended (a stop token was accepted)."""
        m = self._get(grammar_id)
        if not m.matcher.accept_token(int(token)):
            raise GrammarError(
                f"the grammar rejected token {token}, which its own mask allowed", kind="", reason="rejected"
            )
        if token < len(self._data):
            m.state = advance(m.state, self._data[token]) or START
        return bool(m.matcher.is_terminated())

    def close(self, grammar_id: int) -> None:
        self._matchers.pop(grammar_id, None)
