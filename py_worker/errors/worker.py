"""Errors of the worker and its transport: a message it cannot serve, a worker that cannot start
or stops answering.
"""

from __future__ import annotations

from py_worker.errors.base import PyWorkerError


class UnknownMessageKindError(PyWorkerError):
    """The worker got a message kind it does not know (it still replies, unlike web-llm)."""

    fields_ = ("kind",)


class MalformedMessageError(PyWorkerError):
    """A worker message cannot be served as it is.

    ``fields.reason`` says why: ``"kind"`` (not an object with a string kind), ``"content"``
    (content not an object), ``"cycle"`` (an object inside itself), ``"depth"`` (nested deeper
    than ``fields.limit`` levels), ``"size"`` (more items or characters than ``fields.limit``),
    ``"unreadable"`` (the transport could not convert it; ``fields.error`` names its error).
    """

    fields_ = ("reason",)
    optional_ = ("limit", "depth", "error", "kind", "cause")


class DuplicateUuidError(MalformedMessageError):
    """A message reuses the uuid of a request still in flight: it is refused (its reply carries
    that uuid) and the request in flight runs on, unaffected (``fields.uuid``)."""

    fields_ = ("uuid",)


class StreamNotFoundError(PyWorkerError):
    """A stream id is unknown, already finished or already closed."""

    fields_ = ("stream_id",)


class WorkerBootError(PyWorkerError):
    """The worker could not start Pyodide, the py_worker wheel or the kernel shim."""


class WorkerUnresponsiveError(PyWorkerError):
    """The worker stopped answering heartbeats; the proxy replaces it and resends what was pending."""

    optional_ = ("filename", "kind", "in_flight", "restarts")


class MessageTooLargeError(PyWorkerError):
    """A message is larger than the worker accepts; refused in JS (fields: kind, size, limit)."""

    fields_ = ("kind", "size", "limit")
