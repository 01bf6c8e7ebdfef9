"""``engine.chat.completions``: chat completions, the model's chat format over the messages.

A follow-up turn whose earlier messages are what the KV cache holds prefills only the new turn
(``ChatTurn.prompt``); anything else resets the cache and prefills the whole conversation.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal, overload

from .. import protocol, schema
from ..errors import InvalidRequestFieldError, UnsupportedFieldsError
from ..generate import Outcome
from ..model import Model
from ..tools import CallHolder, ToolUse
from .answer import Shapes, answer
from .remote import remote_chat

if TYPE_CHECKING:
    from ..engine import MLCEngine
    from ..stream import Stream


class Chat:
    def __init__(self, engine: MLCEngine) -> None:
        self.completions = ChatCompletions(engine)


class ChatCompletions:
    """``await engine.chat.completions.create(messages=[...], stream=..., ...)``; the fields
    are OpenAI's, checked by web-llm's rules (``protocol.validate_chat_request``)."""

    def __init__(self, engine: MLCEngine) -> None:
        self.engine = engine

    @overload
    async def create(
        self, *, messages: list[dict[str, Any]], stream: Literal[True], **params: Any
    ) -> Stream: ...

    @overload
    async def create(
        self, *, messages: list[dict[str, Any]], stream: Literal[False] = False, **params: Any
    ) -> dict[str, Any]: ...

    async def create(self, **request: Any) -> dict[str, Any] | Stream:
        if (remote := self.engine.remote_for(request.get("model"))) is not None:
            return await remote_chat(self.engine, remote, request)
        req = protocol.validate_chat_request(request)
        refuse_unhonoured(req)
        model = self.engine.pick(req.model, "ChatCompletionRequest", embedding=False)
        return await answer(self.engine, model, ChatTurn(req), req.config)

    async def parse(self, *, response_format: Any, **request: Any) -> dict[str, Any]:
        """``create`` (not streamed) with ``response_format`` a Python type — a dataclass, a
        TypedDict, ``list[int]``, a Literal... (py_worker/schema.py) — as openai-python's
        ``beta.chat.completions.parse``: each choice's ``message["parsed"]`` is its answer as that
        type (None when the answer did not end: finish_reason "length" or "abort")."""
        if request.get("stream"):
            raise InvalidRequestFieldError("parse() does not stream; use create(stream=True)", field="stream")
        reply: dict[str, Any] = await self.create(
            response_format=schema.response_format(response_format), **request
        )
        for choice in reply["choices"]:
            message = choice["message"]
            done = choice["finish_reason"] == "stop"
            message["parsed"] = (
                schema.build(response_format, json.loads(message["content"])) if done else None
            )
        return reply


class ChatTurn:
    """The chat ``Kind`` of one request (see answer.py)."""

    shapes = Shapes(
        "chatcmpl",
        protocol.responses.chat_completion,
        lambda id, model_id, created, text, finish, logprobs, calls: protocol.responses.chat_chunk(
            id, model_id, created, 0, text, True, finish, logprobs, calls
        ),
        protocol.responses.chat_usage_chunk,
    )

    def __init__(self, req: protocol.ChatRequest) -> None:
        self.tools = tool_use(req)
        self.messages = self.tools.messages(req.messages) if self.tools else req.messages
        self.grammar = (
            ("structural_tag", self.tools.structural_tag())
            if self.tools
            else protocol.grammar_of(req.config.response_format)
        )

    async def prompt(self, engine: MLCEngine, model: Model) -> list[int]:
        """Prompt tokens to prefill: only the new turn when the cache holds the earlier ones."""
        conv, messages, chat = model.conversation, self.messages, model.chat
        assert conv is not None
        if chat.messages and messages[:-1] == chat.messages and messages[-1]["role"] in ("user", "tool"):
            answered = len([m for m in chat.messages if m["role"] != "system"])
            pieces = conv.continuation_pieces(messages, answered)
            if pieces is not None:  # None: the template's render does not extend the cached one
                return chat.pending + await tokenize_pieces(engine, model, pieces)
        pieces = conv.prompt_pieces(messages)  # before the reset: a template error keeps the cache
        await chat.reset(engine.kernels, model.handle)
        return conv.system_prefix_token_ids + await tokenize_pieces(engine, model, pieces)

    def record(self, model: Model, outcome: Outcome, *, keep: bool) -> None:
        model.last_message = outcome.text
        model.chat.remember(self.messages, outcome, keep=keep)

    def opening(self) -> str:
        return ""

    def holder(self) -> CallHolder | None:
        return CallHolder() if self.tools else None

    def finish(self, text: str, finish_reason: str) -> tuple[str | None, list[dict[str, Any]] | None, str]:
        if not self.tools:
            return text, None, finish_reason
        content, calls = self.tools.parse(text)
        if not calls:
            return content or "", None, finish_reason
        return content, calls, "tool_calls" if finish_reason == "stop" else finish_reason


def tool_use(req: protocol.ChatRequest) -> ToolUse | None:
    """The request's tools, unless there are none or ``tool_choice`` is "none" (OpenAI's
    default is "auto")."""
    if not req.tools or req.tool_choice == "none":
        return None
    return ToolUse(req.tools, req.tool_choice or "auto")


def refuse_unhonoured(req: protocol.ChatRequest) -> None:
    """Fields that pass web-llm's checks but that cannot be honoured together are refused, never
    dropped: ``ignore_eos`` with a grammar (a response_format or tools: a grammar ends only on an
    end-of-answer token), and a ``response_format`` with tools in use (a tool call is not the
    JSON the format asks for)."""
    found = []
    constrained = protocol.grammar_of(req.config.response_format) is not None
    if req.config.ignore_eos and (constrained or tool_use(req)):
        found.append("ignore_eos")
    if constrained and tool_use(req):
        found.append("response_format")
    if found:
        raise UnsupportedFieldsError(
            f"The following fields in ChatCompletionRequest cannot be honoured with the others: "
            f"{', '.join(found)} (a grammar ends at the end-of-answer token, which ignore_eos would "
            "skip; a tool call is not the JSON a response_format asks for; nothing was run).",
            fields_found=found,
            target="ChatCompletionRequest",
        )


async def tokenize_pieces(engine: MLCEngine, model: Model, pieces: list[str]) -> list[int]:
    """The pieces tokenized one by one (a piece is a role marker or a message's text)."""
    ids: list[int] = []
    for piece in pieces:
        ids += await engine.kernels.tokenize(model.handle, piece)
    return ids
