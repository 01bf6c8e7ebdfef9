"""Text completion requests: web-llm's checks on a plain dict.

web-llm rejects ``suffix``, ``user`` and ``best_of`` (set at all, even to null) and accepts
only a string prompt; ``echo`` returns the prompt in front of the generated text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .fields import bad_field, get_bool, get_string, reject_unsupported, require_mapping
from .generation_config import GenerationConfig, parse_generation_config

UNSUPPORTED_FIELDS = ("suffix", "user", "best_of")


@dataclass
class CompletionRequest:
    """A checked text completion request, as the engine consumes it."""

    model: str | None
    prompt: str
    echo: bool
    config: GenerationConfig


def validate_completion_request(d: Any) -> CompletionRequest:
    """Check a text completion request."""
    request = require_mapping(d, "request")
    reject_unsupported(request, UNSUPPORTED_FIELDS, "CompletionCreateParams")
    model = get_string(request, "model")
    prompt = request.get("prompt")
    if not isinstance(prompt, str):
        raise bad_field("prompt", "a string", prompt)
    echo = get_bool(request, "echo")
    config = parse_generation_config(request, response_format=False)
    return CompletionRequest(model=model, prompt=prompt, echo=echo, config=config)
