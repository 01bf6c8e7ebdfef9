"""Errors of a remote model (a record with backend "remote": an OpenAI-compatible server;
py_worker/remote.py): a record that is unusable, a server that did not serve a request.
"""

from __future__ import annotations

from typing import ClassVar

from py_worker.errors.base import PyWorkerError
from py_worker.errors.families import ModelLoadError


class RemoteConfigError(ModelLoadError):
    """A remote model record is unusable (``fields.model_id``, ``fields.field``: which key; a
    header's value is never named)."""

    fields_ = ("model_id", "field")


class RemoteModelError(PyWorkerError):
    """A remote model's server did not serve a request (family of the errors below; every one
    has ``fields.model_id`` and ``fields.origin``, the server's scheme, host and port)."""

    fields_: ClassVar[tuple[str, ...]] = ("model_id", "origin")


class RemoteServerError(RemoteModelError):
    """The server answered with an HTTP error, or an error inside its stream (``fields.status``,
    ``fields.server_message``: the server's own words, credentials removed)."""

    fields_ = ("model_id", "origin", "status", "server_message")


class RemoteConnectionError(RemoteModelError):
    """The server could not be reached (connection refused, DNS, CORS, the connection lost)."""


class RemoteTimeoutError(RemoteModelError):
    """The server sent nothing for ``fields.timeout_ms`` (before its reply began, or between two
    pieces of a stream); the request was aborted."""

    fields_ = ("model_id", "origin", "timeout_ms")


class RemoteProtocolError(RemoteModelError):
    """The server's reply is not an OpenAI response (``fields.reason``)."""

    fields_ = ("model_id", "origin", "reason")
