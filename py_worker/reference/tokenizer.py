"""Host tokenizer for the reference backend: the `tokenizers` wheel reading ``tokenizer.json``.

It mirrors what @mlc-ai/web-tokenizers (the browser's tokenizer, same Rust core) does, checked on
the tiny model: encode adds no special tokens, decode keeps special tokens, and bytes that do not
form complete UTF-8 decode to U+FFFD (so the engine can hold back a partial character).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer


class ReferenceTokenizer:
    """``encode``/``decode`` with the browser tokenizer's defaults."""

    def __init__(self, path: Path | None = None, *, json_text: str | None = None) -> None:
        """From a ``tokenizer.json`` file, or from its text (built from a GGUF's metadata)."""
        text = json_text if json_text is not None else Path(str(path)).read_text(encoding="utf-8")
        self._tok = Tokenizer.from_str(text)
        self.json: dict[str, Any] = json.loads(text)
        """The tokenizer.json itself (constrained decoding reads how it spells tokens)."""

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: list[int]) -> str:
        return str(self._tok.decode(list(ids), skip_special_tokens=False))

    def tokens(self) -> list[str]:
        """Every id's token as the vocabulary spells it ("" for an id the tokenizer lacks)."""
        return [self._tok.id_to_token(i) or "" for i in range(self.vocab_size)]

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))
