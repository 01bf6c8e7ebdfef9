"""The families of engine errors, so a caller can catch a group."""

from __future__ import annotations

from typing import ClassVar

from py_worker.errors.base import PyWorkerError


class ModelSelectionError(PyWorkerError):
    """Which model serves a request could not be decided."""


class RequestValidationError(PyWorkerError):
    """A request breaks a rule of the OpenAI surface web-llm accepts."""


class GenerationConfigError(RequestValidationError):
    """A sampling or length setting is out of range (web-llm's ConfigValueError family)."""


class ModelLoadError(PyWorkerError):
    """A model's artifacts could not be fetched, checked or loaded."""

    fields_: ClassVar[tuple[str, ...]] = ()
    optional_: ClassVar[tuple[str, ...]] = (
        "backend", "url", "tvmjs_version", "rope_type", "tensor", "ggml_type", "model_type", "format",
        "tried", "function", "kv_state_kind",
    )


class DeviceError(PyWorkerError):
    """The compute device refused or lost work."""
