"""A remote model: a record with ``backend: "remote"`` served by an OpenAI-compatible server
(vLLM, SGLang, llama.cpp's server) instead of the engine's own kernels.

Where its requests go (``base_url``) and with which credentials (``headers``) comes only from
the record, i.e. from the app config the page set; a request can never change either. The HTTP
work is JS's (js_glue/kernels/remote.js, reached through a ``Transport``); this module checks a
record once, at reload, and holds what the engine needs to route and pace its requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from .errors import RemoteConfigError
from .router import is_embedding_model

if TYPE_CHECKING:
    from .locks import ModelLocks

DEFAULT_TIMEOUT_MS = 60_000
"""How long the server may stay silent: before its reply begins, or between two stream pieces."""


class Transport(Protocol):
    """The request-level API of the JS shim (``remoteOpen`` … in js_glue/kernels/remote.js)."""

    def open(self, record: dict[str, Any], path: str, body: dict[str, Any]) -> int:
        """Start sending ``body`` to ``record``'s server at ``path``; the request's id at once,
        so it can be aborted while it connects. Its errors come from ``next`` / ``result``."""
        ...

    async def next(self, request_id: int) -> Any:
        """The next event of a streamed reply (its JSON); None at its end or once it was aborted."""
        ...

    async def result(self, request_id: int) -> Any:
        """The JSON of a non-streamed reply; None once it was aborted."""
        ...

    def abort(self, request_id: int) -> None:
        """Abort the HTTP request (the server sees the client leave); a finished one is a no-op."""
        ...


def is_remote_record(record: Mapping[str, Any]) -> bool:
    return record.get("backend") == "remote"


@dataclass
class RemoteModel:
    """A loaded remote model. ``wire`` is all JS is told of the record (no other key of it
    leaves Python); ``concurrency`` None lets every request through (the server batches), 1
    serves them one at a time in arrival order (the per-model FIFO lock), N at most N at once."""

    model_id: str
    wire: dict[str, Any]
    is_embedding: bool
    concurrency: int | None
    _slots: asyncio.Semaphore | None = field(default=None, repr=False)

    @property
    def origin(self) -> str:
        parts = urlsplit(self.wire["base_url"])
        return f"{parts.scheme}://{parts.netloc}"

    def slot(self, locks: ModelLocks) -> contextlib.AbstractAsyncContextManager[None]:
        """Wait for a place among the requests this model serves at once."""
        if self.concurrency is None:
            return contextlib.nullcontext()
        if self.concurrency == 1:
            return locks.hold(self.model_id)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        return _held(self._slots)


@contextlib.asynccontextmanager
async def _held(slots: asyncio.Semaphore) -> AsyncIterator[None]:
    async with slots:
        yield


def remote_model(record: Mapping[str, Any], transport: Transport | None) -> RemoteModel:
    """Check a ``backend: "remote"`` record; ``RemoteConfigError`` names the key that is wrong
    (never a header's value)."""
    model_id = str(record.get("model_id"))
    if transport is None:
        raise RemoteConfigError(
            f"Remote model {model_id}: this engine has no remote transport (the JS shim's).",
            model_id=model_id,
            field="backend",
        )

    def bad(key: str, why: str) -> RemoteConfigError:
        return RemoteConfigError(f"Remote model {model_id}: {key} {why}.", model_id=model_id, field=key)

    base_url = record.get("base_url")
    parts = urlsplit(base_url) if isinstance(base_url, str) else None
    if (
        not isinstance(base_url, str)
        or parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
    ):
        raise bad("base_url", "must be an http(s) URL such as http://127.0.0.1:8000/v1")
    if parts.username is not None or parts.password is not None:
        raise bad("base_url", "must not hold credentials: put them in headers")
    headers = record.get("headers") or {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise bad("headers", "must map header names to string values")
    served = record.get("model")
    if served is not None and not isinstance(served, str):
        raise bad("model", "must be the server's model name (a string)")
    timeout = record.get("timeout_ms", DEFAULT_TIMEOUT_MS)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise bad("timeout_ms", "must be a positive number of milliseconds")
    concurrency = record.get("concurrency")
    if concurrency is not None and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
    ):
        raise bad("concurrency", "must be a positive integer (or absent: no limit)")
    wire = {
        "model_id": model_id,
        "base_url": base_url.rstrip("/"),
        "model": served,
        "headers": dict(headers),
        "timeout_ms": float(timeout),
    }
    return RemoteModel(model_id, wire, is_embedding_model(record), concurrency)
