"""Chat completions, completions and embeddings of a remote model (py_worker/remote.py).

A request gets the same checks as a local one (``protocol.validate_*``); what passes is sent to
the server as OpenAI fields, and what the server returns comes back in the same OpenAI shapes
as a local model's, with ``model`` set to the record's ``model_id``. A request that sets where
it goes (``base_url``, ``headers``, ``api_key``) or asks for something the OpenAI API has no
field for (web-llm's grammar forms) is refused with ``UnsupportedFieldsError`` before anything
is sent. An interrupt, a stream closed early, an unload or a cancelled task aborts the HTTP
request, so the server stops generating.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import protocol
from ..errors import RemoteProtocolError, UnsupportedFieldsError
from ..generate import Interrupt
from ..remote import RemoteModel, Transport
from ..router import check_pipeline

if TYPE_CHECKING:
    from ..engine import MLCEngine
    from ..stream import Stream

ROUTING_FIELDS = ("base_url", "headers", "api_key")
"""Where a request goes is the app config's to say, never the request's."""
SAMPLING_FIELDS = (
    "temperature", "top_p", "frequency_penalty", "presence_penalty", "repetition_penalty",
    "max_tokens", "stop", "logit_bias", "logprobs", "top_logprobs", "seed", "n", "stream",
    "stream_options", "ignore_eos",
)  # fmt: skip
CHAT_FIELDS = (*SAMPLING_FIELDS, "response_format", "tools", "tool_choice")
COMPLETION_FIELDS = (*SAMPLING_FIELDS, "echo")
EMBEDDING_FIELDS = ("encoding_format",)
OPENAI_RESPONSE_FORMATS = ("text", "json_object", "json_schema")


async def remote_chat(
    engine: MLCEngine, remote: RemoteModel, request: dict[str, Any]
) -> dict[str, Any] | Stream:
    req = protocol.validate_chat_request(request)
    refuse(request, "ChatCompletionRequest", unforwardable_format(req.config.response_format))
    check_pipeline(remote.model_id, remote.is_embedding, False, "ChatCompletionRequest")
    body = {**forwarded(request, CHAT_FIELDS), "messages": req.messages}
    return await generate(engine, remote, "/chat/completions", body, CHAT)


async def remote_completion(
    engine: MLCEngine, remote: RemoteModel, request: dict[str, Any]
) -> dict[str, Any] | Stream:
    req = protocol.validate_completion_request(request)
    refuse(request, "CompletionCreateParams", [])
    check_pipeline(remote.model_id, remote.is_embedding, False, "CompletionCreateParams")
    body = {**forwarded(request, COMPLETION_FIELDS), "prompt": req.prompt}
    return await generate(engine, remote, "/completions", body, COMPLETION)


async def remote_embedding(engine: MLCEngine, remote: RemoteModel, request: dict[str, Any]) -> dict[str, Any]:
    req = protocol.validate_embedding_request(request)
    refuse(request, "EmbeddingCreateParams", [])
    check_pipeline(remote.model_id, remote.is_embedding, True, "EmbeddingCreateParams")
    body = {**forwarded(request, EMBEDDING_FIELDS), "input": req.input}
    transport = transport_of(engine)
    async with remote.slot(engine.locks):
        reply = await whole_reply(transport, remote, "/embeddings", body)
    if (
        not isinstance(reply, dict)
        or not isinstance(reply.get("data"), list)
        or not all(is_vector(item) for item in reply["data"])
    ):
        raise protocol_error(
            remote,
            "an embedding reply must hold one vector of numbers per input (a server that does "
            "not pool sends one per token)",
        )
    return {**reply, "object": "list", "model": remote.model_id}


def is_vector(item: Any) -> bool:
    vector = item.get("embedding") if isinstance(item, dict) else None
    return isinstance(vector, list) and all(isinstance(x, int | float) for x in vector)


def refuse(request: Mapping[str, Any], target: str, found: list[str]) -> None:
    found = [*(f for f in ROUTING_FIELDS if f in request), *found]
    if found:
        raise UnsupportedFieldsError(
            f"The following fields in {target} cannot be sent to a remote model: {', '.join(found)} "
            "(the app config alone says where a remote model's requests go and with which headers; "
            "grammar and structural_tag formats have no OpenAI field; nothing was sent).",
            fields_found=found,
            target=target,
        )


def unforwardable_format(fmt: Mapping[str, Any] | None) -> list[str]:
    """web-llm's own response_format forms, which an OpenAI server does not read."""
    if fmt is None or (fmt["type"] in OPENAI_RESPONSE_FORMATS and "schema" not in fmt):
        return []
    return ["response_format"]


def forwarded(request: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The fields the server is sent, as the request gave them (they passed the checks)."""
    return {name: request[name] for name in names if request.get(name) is not None}


def transport_of(engine: MLCEngine) -> Transport:
    assert engine.remote is not None  # a remote model loads only with one
    return engine.remote


def with_model(remote: RemoteModel, body: dict[str, Any]) -> dict[str, Any]:
    """The body as sent: the server's own name of the model (the record's ``model``)."""
    return {**body, "model": remote.wire["model"] or remote.model_id}


async def whole_reply(
    transport: Transport,
    remote: RemoteModel,
    path: str,
    body: dict[str, Any],
    signal: Interrupt | None = None,
) -> Any:
    """A non-streamed reply's JSON; None when ``signal`` aborted it first."""
    request_id = transport.open(remote.wire, path, with_model(remote, body))
    if signal is not None:
        signal.listen(lambda: transport.abort(request_id))
    try:
        return await transport.result(request_id)
    finally:
        transport.abort(request_id)  # a no-op once it ended; the HTTP request of a cancelled caller


@dataclass(frozen=True)
class Shape:
    """The OpenAI shapes of one kind of generation request."""

    object: str
    """A response's ``object``."""
    chunk_object: str
    """A stream chunk's ``object``."""

    def abort_chunk(self, id: str, model_id: str, created: int) -> dict[str, Any]:
        """The last chunk of an interrupted stream."""
        if self is CHAT:
            return protocol.responses.chat_chunk(id, model_id, created, 0, "", True, "abort", None)
        return protocol.responses.completion_chunk(id, model_id, created, 0, "", "abort", None)

    def aborted(self, model_id: str) -> dict[str, Any]:
        """The reply of a request interrupted before the server answered: nothing of it is known."""
        build = protocol.responses.chat_completion if self is CHAT else protocol.responses.completion
        id = protocol.responses.new_id("chatcmpl" if self is CHAT else "cmpl")
        choices = [protocol.Choice(0, "", "abort", None)]
        return build(id, model_id, int(time.time()), choices, protocol.responses.usage(0, 0, None))


CHAT = Shape("chat.completion", "chat.completion.chunk")
COMPLETION = Shape("text_completion", "text_completion")


async def generate(
    engine: MLCEngine, remote: RemoteModel, path: str, body: dict[str, Any], shape: Shape
) -> dict[str, Any] | Stream:
    transport = transport_of(engine)
    if body.get("stream"):
        return engine.open_stream(
            remote, lambda signal: streamed(engine, transport, remote, path, body, shape, signal)
        )
    signal = engine.accept()
    try:
        reply = None
        async with remote.slot(engine.locks):
            if not signal.is_set:
                reply = await whole_reply(transport, remote, path, body, signal)
    finally:
        engine.done(signal)
    if reply is None:
        return shape.aborted(remote.model_id)
    return normalised(reply, remote, shape.object)


async def streamed(
    engine: MLCEngine,
    transport: Transport,
    remote: RemoteModel,
    path: str,
    body: dict[str, Any],
    shape: Shape,
    signal: Interrupt,
) -> AsyncIterator[dict[str, Any]]:
    """The server's chunks as they arrive; interrupted, the HTTP request is aborted and the
    stream ends with a chunk of finish_reason "abort" (as a local model's)."""
    last: dict[str, Any] = {"id": protocol.responses.new_id("chatcmpl"), "created": int(time.time())}
    finished = False
    async with remote.slot(engine.locks):
        if not signal.is_set:
            request_id = transport.open(remote.wire, path, with_model(remote, body))
            signal.listen(lambda: transport.abort(request_id))
            try:
                while (event := await transport.next(request_id)) is not None:
                    last = normalised(event, remote, shape.chunk_object)
                    finished = finished or any(c.get("finish_reason") for c in last["choices"])
                    yield last
            finally:
                transport.abort(request_id)
    if signal.is_set and not finished:
        yield shape.abort_chunk(str(last["id"]), remote.model_id, int(last.get("created") or time.time()))


def normalised(reply: Any, remote: RemoteModel, object: str) -> dict[str, Any]:
    """The server's response or chunk in the local shapes: ``model`` is the record's id."""
    if not isinstance(reply, dict) or not isinstance(reply.get("choices"), list):
        raise protocol_error(remote, f"a {object} reply has no choices list")
    return {**reply, "object": reply.get("object") or object, "model": remote.model_id}


def protocol_error(remote: RemoteModel, reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"Remote model {remote.model_id} at {remote.origin}: {reason}.",
        model_id=remote.model_id,
        origin=remote.origin,
        reason=reason,
    )
