"""Embedding requests: web-llm's checks on a plain dict, input normalised to a batch.

Input may be a string, a list of strings, a token list or a list of token lists; it comes out
as a list of strings or a list of token lists. ``dimensions`` and ``user`` are rejected, and
only the float encoding is served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import EmbeddingInputEmptyError, EmbeddingUnsupportedEncodingFormatError
from .fields import as_integer, bad_field, get_string, reject_unsupported, require_mapping

UNSUPPORTED_FIELDS = ("dimensions", "user")
_INPUT_SHAPE = "a string, a list of strings, a list of token ids or a list of token-id lists"


@dataclass
class EmbeddingRequest:
    """A checked embedding request, as the engine consumes it."""

    model: str | None
    input: list[str] | list[list[int]]


def validate_embedding_request(d: Any) -> EmbeddingRequest:
    """Check an embedding request and normalise its input to a batch."""
    request = require_mapping(d, "request")
    reject_unsupported(request, UNSUPPORTED_FIELDS, "EmbeddingCreateParams")
    model = get_string(request, "model")
    encoding = request.get("encoding_format")
    if encoding == "base64":
        raise EmbeddingUnsupportedEncodingFormatError(
            "Embedding in base64 format is currently not supported; use encoding_format 'float'."
        )
    if encoding not in (None, "float"):
        raise bad_field("encoding_format", "'float'", encoding)
    return EmbeddingRequest(model=model, input=_batch(request.get("input")))


def _batch(value: Any) -> list[str] | list[list[int]]:
    if isinstance(value, str):
        _non_empty(value)
        return [value]
    if not isinstance(value, list):
        raise bad_field("input", _INPUT_SHAPE, value)
    _non_empty(value)
    if all(isinstance(v, str) for v in value):
        for v in value:
            _non_empty(v)
        return list(value)
    if all(isinstance(v, list) for v in value):
        return [_tokens(v, f"input[{i}]") for i, v in enumerate(value)]
    return [_tokens(value, "input")]


def _tokens(value: list[Any], where: str) -> list[int]:
    _non_empty(value)
    ids = [as_integer(v) for v in value]
    if any(i is None or i < 0 for i in ids):
        raise bad_field(where, "a list of non-negative integer token ids", value)
    return [i for i in ids if i is not None]


def _non_empty(value: str | list[Any]) -> None:
    if not value:
        raise EmbeddingInputEmptyError("Embedding input cannot be an empty string or an empty token array.")
