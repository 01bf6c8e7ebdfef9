"""Errors of options of web-llm's engine, handler or model records that py_worker cannot honour
(the drop-in surface: js_glue/worker-handler.js, host-handler.js, proxy.js).
"""

from __future__ import annotations

from typing import ClassVar

from py_worker.errors.base import PyWorkerError
from py_worker.errors.families import ModelLoadError


class UnsupportedEngineOptionError(PyWorkerError):
    """An option of web-llm's engine or handler API that py_worker does not support (fields: option)."""

    fields_: ClassVar[tuple[str, ...]] = ("option",)


class LogitProcessorNotSupportedError(UnsupportedEngineOptionError):
    """Custom logit processors (web-llm's logitProcessorRegistry) are refused (fields: option, models)."""

    fields_ = ("option", "models")


class WasmThreadsError(ModelLoadError):
    """A record (or the engine) asks llama.cpp for a thread count it cannot have: not a whole
    number, or more than one where the page is not cross-origin isolated (``fields.threads``,
    ``fields.isolated``)."""

    fields_ = ("threads", "isolated")
