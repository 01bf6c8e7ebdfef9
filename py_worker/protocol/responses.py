"""Builders of responses and stream chunks as plain dicts in OpenAI's shapes (as web-llm sends).

Plain dicts cross to JS as objects unchanged. web-llm's additions are kept: ``usage.extra``
(latency and speed figures) and the ``abort`` finish reason.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any


@dataclass
class TokenLogprob:
    """One generated token's logprob, its UTF-8 bytes, and the top alternatives (token, logprob, bytes)."""

    token: str
    logprob: float
    bytes: list[int]
    top: list[tuple[str, float, list[int]]]


@dataclass
class Choice:
    """One finished choice of a request; ``tool_calls`` holds parsed calls in OpenAI's shape."""

    index: int
    text: str
    finish_reason: str
    logprobs: list[TokenLogprob] | None
    tool_calls: list[dict[str, Any]] | None = None


def new_id(prefix: str) -> str:
    """A fresh response id such as ``chatcmpl-<32 hex>``."""
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int, extra: dict[str, float] | None) -> dict[str, Any]:
    """OpenAI usage; ``extra`` carries web-llm's e2e_latency_s, prefill/decode tokens per second,
    time_to_first_token_s and time_per_output_token_s."""
    result: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if extra is not None:
        result["extra"] = dict(extra)
    return result


def _token_logprob(lp: TokenLogprob) -> dict[str, Any]:
    return {
        "token": lp.token,
        "logprob": lp.logprob,
        "bytes": list(lp.bytes),
        "top_logprobs": [{"token": t, "logprob": p, "bytes": list(b)} for t, p, b in lp.top],
    }


def _chat_logprobs(logprobs: list[TokenLogprob] | None) -> dict[str, Any] | None:
    return None if logprobs is None else {"content": [_token_logprob(lp) for lp in logprobs]}


def _completion_logprobs(logprobs: list[TokenLogprob] | None, text: str) -> dict[str, Any] | None:
    """OpenAI's legacy completion logprobs, plus web-llm's chat-style ``content`` list."""
    if logprobs is None:
        return None
    # The tokens are the tail of the text (an echoed prompt comes first).
    offset = max(0, len(text) - sum(len(lp.token) for lp in logprobs))
    offsets = []
    for lp in logprobs:
        offsets.append(offset)
        offset += len(lp.token)
    return {
        "tokens": [lp.token for lp in logprobs],
        "token_logprobs": [lp.logprob for lp in logprobs],
        "top_logprobs": [{t: p for t, p, _ in lp.top} for lp in logprobs],
        "text_offset": offsets,
        "content": [_token_logprob(lp) for lp in logprobs],
    }


def chat_completion(
    id: str, model: str, created: int, choices: list[Choice], usage: dict[str, Any]
) -> dict[str, Any]:
    """A non-streaming chat completion (``object: "chat.completion"``)."""
    out = []
    for c in choices:
        # OpenAI: a reply that is only tool calls has content null.
        content = None if c.tool_calls and not c.text else c.text
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if c.tool_calls is not None:
            message["tool_calls"] = c.tool_calls
        out.append(
            {
                "index": c.index,
                "message": message,
                "finish_reason": c.finish_reason,
                "logprobs": _chat_logprobs(c.logprobs),
            }
        )
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": out,
        "usage": usage,
    }


def chat_chunk(
    id: str,
    model: str,
    created: int,
    index: int,
    content: str | None,
    role: bool,
    finish_reason: str | None,
    logprobs: list[TokenLogprob] | None,
    tool_calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One stream chunk: a delta (``role`` adds ``role: "assistant"``), and on the last one
    the finish reason (and, as in web-llm, the parsed tool calls)."""
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    if tool_calls is not None:
        delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(tool_calls)]
    choice: dict[str, Any] = {"index": index, "delta": delta, "finish_reason": finish_reason}
    if logprobs is not None:
        choice["logprobs"] = _chat_logprobs(logprobs)
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [choice],
    }


def chat_usage_chunk(id: str, model: str, created: int, usage: dict[str, Any]) -> dict[str, Any]:
    """The extra last chunk of a stream with ``include_usage``: no choices, only usage."""
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage,
    }


def completion(
    id: str, model: str, created: int, choices: list[Choice], usage: dict[str, Any]
) -> dict[str, Any]:
    """A non-streaming text completion (``object: "text_completion"``)."""
    return {
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": c.index,
                "text": c.text,
                "finish_reason": c.finish_reason,
                "logprobs": _completion_logprobs(c.logprobs, c.text),
            }
            for c in choices
        ],
        "usage": usage,
    }


def completion_chunk(
    id: str,
    model: str,
    created: int,
    index: int,
    text: str,
    finish_reason: str | None,
    logprobs: list[TokenLogprob] | None,
) -> dict[str, Any]:
    """One text completion stream chunk (OpenAI streams text completions as ``text_completion``)."""
    return {
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": index,
                "text": text,
                "finish_reason": finish_reason,
                "logprobs": _completion_logprobs(logprobs, text),
            }
        ],
    }


def completion_usage_chunk(id: str, model: str, created: int, usage: dict[str, Any]) -> dict[str, Any]:
    """The extra last chunk of a text completion stream with ``include_usage``."""
    return {
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage,
    }


def embedding_response(
    model: str,
    vectors: list[list[float]],
    prompt_tokens: int,
    extra: dict[str, float] | None = None,
) -> dict[str, Any]:
    """An embedding list; ``extra`` carries web-llm's ``prefill_tokens_per_s``."""
    usage_out: dict[str, Any] = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    if extra is not None:
        usage_out["extra"] = dict(extra)
    return {
        "object": "list",
        "model": model,
        "data": [{"object": "embedding", "index": i, "embedding": list(v)} for i, v in enumerate(vectors)],
        "usage": usage_out,
    }
