"""A streamed answer: the chunks of one generation, read at the reader's pace, never leaked.

``Stream`` is what ``create(stream=True)`` returns (openai-python's ``AsyncStream``): iterate
it with ``async for``; use it as ``async with`` (or call ``aclose()``) to stop early. Its
producer task is the only thing that runs the generation, so closing, an interrupt or an
error always ends that task and frees the model's lock in its ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from .generate import Interrupt
from .locks import ModelLocks


class Stream:
    """An async iterator of chunks. ``aclose()`` (or leaving ``async with stream:``) stops the
    generation and frees the model at once.

    A producer task runs the generation and keeps its chunks until they are read. It makes a
    chunk when the reader asks for one, so the generation keeps pace with its reader, except
    when it must not wait for the reader: once the request is interrupted (interruptGenerate,
    reload, unload), or once another request waits for the model this stream holds. It then
    makes the rest of its answer at once and frees the model; the reader still gets every
    chunk. So a request made inside ``for await`` over this stream (resetChat, a non-streaming
    chat, forwardTokensAndSample, another stream on the same model) is served after this
    stream's generation instead of waiting for ever, and the loop then reads the rest.
    """

    def __init__(
        self,
        chunks: AsyncIterator[dict[str, Any]],
        *,
        locks: ModelLocks | None = None,
        model_id: str = "",
        signal: Interrupt | None = None,
        on_end: Callable[[Stream], None] | None = None,
    ) -> None:
        self._chunks = chunks
        self._locks = locks
        self._model_id = model_id
        self._on_end = on_end
        self._buffer: deque[dict[str, Any]] = deque()
        self._error: BaseException | None = None
        self._ended = False
        self._closed = False
        self._readers = 0
        self._drain = False
        self._wake = asyncio.Event()  # the producer's: a reader waits, or drain
        self._ready = asyncio.Event()  # the readers': a chunk, or the end
        self.producer: asyncio.Task[None] = asyncio.ensure_future(self._produce())
        self.producer.add_done_callback(lambda _: self._end())
        if signal is not None:
            signal.listen(self._drain_now)

    def _drain_now(self) -> None:
        self._drain = True
        self._wake.set()

    def _end(self) -> None:
        self._ended = True
        self._ready.set()
        if self._on_end is not None:
            on_end, self._on_end = self._on_end, None
            on_end(self)

    async def _produce(self) -> None:
        stop_watching: Callable[[], None] | None = None
        try:
            while True:
                while not (self._readers or self._drain):
                    self._wake.clear()
                    await self._wake.wait()
                try:
                    chunk = await self._chunks.__anext__()
                except StopAsyncIteration:
                    return
                self._buffer.append(chunk)
                self._ready.set()
                if stop_watching is None and self._locks is not None:
                    # From its first chunk until its generation ends the stream holds its model.
                    stop_watching = self._locks.on_waiter(self._model_id, self._drain_now)
        except asyncio.CancelledError:
            if not self._closed:
                raise
        except Exception as exc:
            self._error = exc
        finally:
            if stop_watching is not None:
                stop_watching()
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()  # a generation parked between chunks ends here, freeing its model

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while not self._buffer:
            if self._ended or self._closed:
                if self._error is not None and not self._closed:
                    error, self._error = self._error, None
                    raise error
                raise StopAsyncIteration
            self._ready.clear()
            self._readers += 1
            self._wake.set()
            try:
                await self._ready.wait()
            finally:
                self._readers -= 1
        return self._buffer.popleft()

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        self._buffer.clear()
        self._ready.set()
        if not self.producer.done():
            self.producer.cancel()
            await asyncio.wait({self.producer})
