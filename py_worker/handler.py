"""The worker's message handler, independent of any transport.

It speaks web-llm's envelope (``{kind, uuid, content}`` in, ``return`` / ``throw`` /
``initProgressCallback`` out) and adds what web-llm lacks: every request gets exactly one
terminal reply (an unknown kind gets a ``throw``, never silence), errors keep their class,
streams have ids with ``next`` and ``return`` so a consumer that leaves early frees the
model, and a worker that lost its models reloads once and remembers it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .engine import MLCEngine, Stream
from .errors import (
    DuplicateUuidError,
    InvalidRequestFieldError,
    MalformedMessageError,
    StreamNotFoundError,
    UnknownMessageKindError,
    error_to_dict,
)
from .protocol.message import MAX_DEPTH, message_uuid, plain_message

Post = Callable[[dict[str, Any]], None]
Decode = Callable[[Any, int], Any]
"""A transport's raw message → Python values, containers converted down to the given depth
(deeper ones may stay opaque); it may raise. Host messages are Python already."""
LOG_LEVELS = {
    "TRACE": logging.DEBUG,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
    "SILENT": logging.CRITICAL + 1,
}
"""web-llm's log levels and the Python levels they map to."""
Reply = Any


@dataclass
class OpenStream:
    """A stream the client pulls from; ``lock`` keeps its next/return calls in order."""

    stream: Stream
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pulling: asyncio.Future[Any] | None = None
    closing: bool = False


class Handler:
    """``await handler.handle(message, post)`` for each message; replies go through ``post``."""

    def __init__(self, engine: MLCEngine, *, decode: Decode | None = None, null: object = None) -> None:
        self.engine = engine
        self.decode = decode
        self.null = null
        """The transport's null value (``pyodide.ffi.jsnull`` in the worker), read as None."""
        self.streams: dict[str, OpenStream] = {}
        self.in_flight: set[tuple[str, Any]] = set()
        """(type, uuid) of every request not yet answered, to refuse a second one with that uuid."""
        self._ids = itertools.count(1)
        self._recovering = asyncio.Lock()
        self.kinds: dict[str, Callable[[dict[str, Any], Any, Post], Awaitable[Reply]]] = {
            "reload": self.reload,
            "unload": self.unload,
            "chatCompletionNonStreaming": self.chat_completion,
            "chatCompletionStreamInit": self.chat_stream_init,
            "completionNonStreaming": self.completion,
            "completionStreamInit": self.completion_stream_init,
            "completionStreamNextChunk": self.stream_next,
            "completionStreamReturn": self.stream_return,
            "embedding": self.embedding,
            "interruptGenerate": self.interrupt,
            "resetChat": self.reset_chat,
            "getMessage": self.get_message,
            "runtimeStatsText": self.runtime_stats_text,
            "forwardTokensAndSample": self.forward_tokens_and_sample,
            "getMaxStorageBufferBindingSize": self.max_storage_buffer_binding_size,
            "getGPUVendor": self.gpu_vendor,
            "setLogLevel": self.set_log_level,
            "setAppConfig": self.set_app_config,
        }

    async def handle(self, message: Any, post: Post) -> None:
        """Answer one message with exactly one ``return`` or ``throw`` (even when cancelled).

        ``message`` is read here, inside the error path: a cyclic, too deep or too large one,
        or one the transport cannot convert, is answered with ``MalformedMessageError``."""
        uuid: Any = None
        key: tuple[str, Any] | None = None
        try:
            # The envelope first (its uuid answers even a message that cannot be read further).
            envelope = message if self.decode is None else decoded(self.decode, message, 1)
            uuid = message_uuid(envelope, self.null)
            if uuid is not None:
                key = (type(uuid).__name__, uuid)
                if key in self.in_flight:
                    key = None  # the request in flight keeps its uuid
                    raise DuplicateUuidError(
                        f"A request with uuid {uuid!r} is still in flight; this one is refused.", uuid=uuid
                    )
                self.in_flight.add(key)
            if self.decode is not None:
                message = decoded(self.decode, message, MAX_DEPTH + 1)
            message = plain_message(message, self.null)
            if not isinstance(message, dict) or not isinstance(message.get("kind"), str):
                raise MalformedMessageError(
                    "A message must be an object with a string 'kind'.", reason="kind"
                )
            kind = message["kind"]
            method = self.kinds.get(kind)
            if method is None:
                raise UnknownMessageKindError(f"Unknown message kind: {kind!r}.", kind=kind)
            content = message.get("content")
            content = {} if content is None else content
            if not isinstance(content, dict):
                raise MalformedMessageError(
                    f"The content of a {kind!r} message must be an object.", reason="content"
                )
            result = await method(content, uuid, post)
        except BaseException as exc:  # every failure becomes the one reply
            self._finish(key)
            post({"kind": "throw", "uuid": uuid, "content": error_to_dict(exc)})
            if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                raise
            return
        self._finish(key)
        post({"kind": "return", "uuid": uuid, "content": result})

    def _finish(self, key: tuple[str, Any] | None) -> None:
        if key is not None:
            self.in_flight.discard(key)

    # ---- models -------------------------------------------------------------------------

    async def reload(self, content: dict[str, Any], uuid: Any, post: Post) -> None:
        def progress(report: dict[str, Any]) -> None:
            post({"kind": "initProgressCallback", "uuid": uuid, "content": report})

        # Open streams are not closed here: the engine interrupts their generations, and each
        # ends with its final chunk (finish_reason "abort") for its reader to pull.
        ids = model_ids(required(content, "modelId"))
        await self.engine.reload(ids, chat_opts(content.get("chatOpts")), progress=progress)

    async def unload(self, content: dict[str, Any], uuid: Any, post: Post) -> None:
        await self.engine.unload()

    async def reload_if_unmatched(self, content: dict[str, Any], uuid: Any, post: Post) -> None:
        """A restarted worker has lost its models: reload what the client expects, once."""
        if content.get("modelId") is None:
            return
        expected = model_ids(content["modelId"])
        async with self._recovering:
            if expected != self.engine.loaded_model_ids():
                await self.reload({"modelId": expected, "chatOpts": content.get("chatOpts")}, uuid, post)

    # ---- inference ----------------------------------------------------------------------

    async def chat_completion(self, content: dict[str, Any], uuid: Any, post: Post) -> Reply:
        await self.reload_if_unmatched(content, uuid, post)
        return await self.engine.chat.completions.create(**request_of(content, stream=False))

    async def completion(self, content: dict[str, Any], uuid: Any, post: Post) -> Reply:
        await self.reload_if_unmatched(content, uuid, post)
        return await self.engine.completions.create(**request_of(content, stream=False))

    async def embedding(self, content: dict[str, Any], uuid: Any, post: Post) -> Reply:
        await self.reload_if_unmatched(content, uuid, post)
        return await self.engine.embeddings.create(**request_of(content, stream=None))

    async def chat_stream_init(self, content: dict[str, Any], uuid: Any, post: Post) -> Reply:
        await self.reload_if_unmatched(content, uuid, post)
        stream = await self.engine.chat.completions.create(**request_of(content, stream=True))
        return self._open(stream)

    async def completion_stream_init(self, content: dict[str, Any], uuid: Any, post: Post) -> Reply:
        await self.reload_if_unmatched(content, uuid, post)
        stream = await self.engine.completions.create(**request_of(content, stream=True))
        return self._open(stream)

    def _open(self, stream: Any) -> dict[str, str]:
        assert isinstance(stream, Stream)
        stream_id = f"stream-{next(self._ids)}"
        self.streams[stream_id] = OpenStream(stream)
        return {"streamId": stream_id}

    async def stream_next(self, content: dict[str, Any], uuid: Any, post: Post) -> Reply:
        stream_id = stream_id_of(content)
        entry = self.streams.get(stream_id)
        if entry is None:
            raise StreamNotFoundError(
                f"No open stream {stream_id!r} (finished or closed).", stream_id=stream_id
            )
        async with entry.lock:
            if entry.closing:
                return {"done": True}
            entry.pulling = asyncio.ensure_future(entry.stream.__anext__())
            try:
                return {"chunk": await entry.pulling}
            except StopAsyncIteration:
                self.streams.pop(stream_id, None)
                return {"done": True}
            except asyncio.CancelledError:
                if entry.closing:
                    return {"done": True}
                raise
            except BaseException:
                self.streams.pop(stream_id, None)
                raise
            finally:
                entry.pulling = None

    async def stream_return(self, content: dict[str, Any], uuid: Any, post: Post) -> Reply:
        """Close a stream early: stop its generation and free its model now."""
        stream_id = stream_id_of(content)
        entry = self.streams.get(stream_id)
        if entry is not None:
            # Shielded: a return that is itself cancelled still closes the stream and frees the model.
            await asyncio.shield(self._close(stream_id, entry))
        return {"done": True}

    async def _close(self, stream_id: str, entry: OpenStream) -> None:
        try:
            await close(entry)
        finally:
            if self.streams.get(stream_id) is entry:
                del self.streams[stream_id]

    # ---- control ------------------------------------------------------------------------

    async def interrupt(self, content: dict[str, Any], uuid: Any, post: Post) -> None:
        self.engine.interrupt_generate()

    async def reset_chat(self, content: dict[str, Any], uuid: Any, post: Post) -> None:
        await self.engine.reset_chat(bool(content.get("keepStats", False)), model_id(content))

    async def get_message(self, content: dict[str, Any], uuid: Any, post: Post) -> Reply:
        return await self.engine.get_message(model_id(content))

    async def runtime_stats_text(self, content: dict[str, Any], uuid: Any, post: Post) -> Reply:
        return await self.engine.runtime_stats_text(model_id(content))

    async def forward_tokens_and_sample(self, content: dict[str, Any], uuid: Any, post: Post) -> Reply:
        ids = required(content, "inputIds")
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise InvalidRequestFieldError("inputIds must be a list of integers.", field="inputIds")
        return await self.engine.forward_tokens_and_sample(
            ids, bool(content.get("isPrefill", True)), content.get("modelId")
        )

    async def max_storage_buffer_binding_size(self, content: dict[str, Any], uuid: Any, post: Post) -> Reply:
        return (await self.engine.kernels.device_info()).get("maxStorageBufferBindingSize")

    async def gpu_vendor(self, content: dict[str, Any], uuid: Any, post: Post) -> Reply:
        return (await self.engine.kernels.device_info()).get("vendor", "")

    async def set_log_level(self, content: dict[str, Any], uuid: Any, post: Post) -> None:
        level = str(content.get("level", "WARN")).upper()
        if level not in LOG_LEVELS:
            raise InvalidRequestFieldError(
                f"Unknown log level {level!r}; expected one of {sorted(LOG_LEVELS)}.", field="level"
            )
        logging.getLogger("py_worker").setLevel(LOG_LEVELS[level])

    async def set_app_config(self, content: dict[str, Any], uuid: Any, post: Post) -> None:
        config = required(content, "appConfig")
        if not isinstance(config, dict) or not isinstance(config.get("model_list"), list):
            raise InvalidRequestFieldError(
                "appConfig must be an object with a model_list.", field="appConfig"
            )
        self.engine.set_app_config(config)


def decoded(decode: Decode, message: Any, depth: int) -> Any:
    """``decode(message, depth)``; a transport's failure to convert is a malformed message."""
    try:
        return decode(message, depth)
    except Exception as exc:
        raise MalformedMessageError(
            f"The message cannot be read: {type(exc).__name__}: {exc}"[:500],
            reason="unreadable",
            error=type(exc).__name__,
        ) from exc


async def close(entry: OpenStream) -> None:
    """Stop a stream's generation (cancelling a pull in flight) and release its model."""
    entry.closing = True
    if entry.pulling is not None:
        entry.pulling.cancel()
    async with entry.lock:
        await entry.stream.aclose()


def required(content: dict[str, Any], name: str) -> Any:
    if name not in content:
        raise InvalidRequestFieldError(f"The message content lacks the field {name!r}.", field=name)
    return content[name]


def request_of(content: dict[str, Any], *, stream: bool | None) -> dict[str, Any]:
    """The OpenAI request inside a message, with ``stream`` forced to the kind's meaning."""
    request = required(content, "request")
    if not isinstance(request, dict):
        raise InvalidRequestFieldError("request must be an object.", field="request")
    if stream is None:
        return dict(request)
    if stream is False and request.get("stream"):
        raise InvalidRequestFieldError("A non-streaming message kind got stream: true.", field="stream")
    return {**request, "stream": stream} if stream else {k: v for k, v in request.items() if k != "stream"}


def model_ids(value: Any) -> list[str]:
    """``modelId`` of a reload or an inference request: one id or a list of ids."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidRequestFieldError(
        "modelId must be a model id or a non-empty list of model ids.", field="modelId"
    )


def model_id(content: dict[str, Any]) -> str | None:
    """``modelId`` of a control request: absent, or one id."""
    value = content.get("modelId")
    if value is None or isinstance(value, str):
        return value
    raise InvalidRequestFieldError("modelId must be a model id string.", field="modelId")


def chat_opts(value: Any) -> dict[str, Any] | list[dict[str, Any] | None] | None:
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, list) and all(v is None or isinstance(v, dict) for v in value):
        return value
    raise InvalidRequestFieldError("chatOpts must be an object or a list of objects.", field="chatOpts")


def stream_id_of(content: dict[str, Any]) -> str:
    value = required(content, "streamId")
    if not isinstance(value, str):
        raise InvalidRequestFieldError("streamId must be a string.", field="streamId")
    return value
