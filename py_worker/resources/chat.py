"""``engine.chat.completions``: chat completions, the model's chat format over the messages.

A follow-up turn whose earlier messages are what the KV cache holds prefills only the new turn
(``ChatTurn.prompt``); anything else resets the cache and prefills the whole conversation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, overload

from .. import protocol
from ..errors import UnsupportedFieldsError
from ..generate import Outcome
from ..model import Model
from .answer import Shapes, answer

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
        req = protocol.validate_chat_request(request)
        refuse_unhonoured(req)
        model = self.engine.pick(req.model, "ChatCompletionRequest", embedding=False)
        return await answer(self.engine, model, ChatTurn(req), req.config)


class ChatTurn:
    """The chat ``Kind`` of one request (see answer.py)."""

    shapes = Shapes(
        "chatcmpl",
        protocol.responses.chat_completion,
        lambda id, model_id, created, text, finish, logprobs: protocol.responses.chat_chunk(
            id, model_id, created, 0, text, True, finish, logprobs
        ),
        protocol.responses.chat_usage_chunk,
    )

    def __init__(self, req: protocol.ChatRequest) -> None:
        self.messages = req.messages

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


def refuse_unhonoured(req: protocol.ChatRequest) -> None:
    """Fields that pass web-llm's checks but that this engine cannot honour are refused, never
    dropped: ``tools`` (unless ``tool_choice`` is "none"), and ``ignore_eos`` with a
    ``response_format`` (a grammar ends only on an end-of-answer token)."""
    found = []
    if req.tools and req.tool_choice != "none":
        found.append("tools")
    if req.config.ignore_eos and protocol.grammar_of(req.config.response_format) is not None:
        found.append("ignore_eos")
    if found:
        raise UnsupportedFieldsError(
            f"The following fields in ChatCompletionRequest are not supported here: {', '.join(found)} "
            "(tool calls are not implemented; a response_format ends at the end-of-answer token, "
            "which ignore_eos would skip; nothing was run).",
            fields_found=found,
            target="ChatCompletionRequest",
        )


async def tokenize_pieces(engine: MLCEngine, model: Model, pieces: list[str]) -> list[int]:
    """The pieces tokenized one by one (a piece is a role marker or a message's text)."""
    ids: list[int] = []
    for piece in pieces:
        ids += await engine.kernels.tokenize(model.handle, piece)
    return ids
