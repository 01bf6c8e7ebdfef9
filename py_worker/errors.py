"""Every error the engine raises is a named class that survives the worker boundary.

web-llm sends errors across postMessage as "Name: message" strings, so the class is lost on
the main thread. Here each error serialises to ``{"name", "message", "fields"}`` and
``from_dict`` rebuilds the same class on the other side (the JS proxy does the same with
classes of the same names).
"""

from __future__ import annotations

from typing import Any


_REGISTRY: dict[str, type["PyWorkerError"]] = {}


class PyWorkerError(Exception):
    """Base of all engine errors. ``fields`` holds the structured details of the error."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def to_dict(self) -> dict[str, Any]:
        return {"name": type(self).__name__, "message": self.message, "fields": dict(self.fields)}




def error_to_dict(exc: BaseException) -> dict[str, Any]:
    """Serialise any exception; non-engine ones keep their Python class name."""
    if isinstance(exc, PyWorkerError):
        return exc.to_dict()
    return {"name": type(exc).__name__, "message": str(exc), "fields": {}}


def error_from_dict(data: dict[str, Any]) -> Exception:
    """Rebuild an error from ``error_to_dict`` output; unknown names become ``RemoteError``."""
    name = str(data.get("name", "Error"))
    message = str(data.get("message", ""))
    fields = data.get("fields") or {}
    cls = _REGISTRY.get(name)
    if cls is None:
        return RemoteError(message, remote_name=name, **fields)
    err = cls.__new__(cls)
    PyWorkerError.__init__(err, message, **fields)
    return err


class RemoteError(PyWorkerError):
    """An error from the other side whose class is not known here (its name is in fields)."""


# Groups, so callers can catch a family.
class ModelSelectionError(PyWorkerError):
    """Which model serves a request could not be decided."""


class RequestValidationError(PyWorkerError):
    """A request breaks a rule of the OpenAI surface web-llm accepts."""


class GenerationConfigError(RequestValidationError):
    """A sampling or length setting is out of range."""


class ModelLoadError(PyWorkerError):
    """A model's artifacts could not be fetched, checked or loaded."""


class DeviceError(PyWorkerError):
    """The compute device refused or lost work."""



# Model selection and reload (FACTS §2).
class ModelNotLoadedError(ModelSelectionError):
    """No model is loaded."""
class SpecifiedModelNotFoundError(ModelSelectionError):
    """The requested model is not among the loaded ones."""
class UnclearModelToUseError(ModelSelectionError):
    """Several models are loaded and the request names none."""
class ModelNotFoundError(ModelSelectionError):
    """The id is not in the app config."""
class ReloadModelIdNotUniqueError(ModelSelectionError):
    """See the name."""
class ReloadArgumentSizeUnmatchedError(ModelSelectionError):
    """See the name."""
class IncorrectPipelineLoadedError(ModelSelectionError):
    """A chat or completion request went to an embedding model."""
class EmbeddingUnsupportedModelError(ModelSelectionError):
    """An embedding request went to a model that is not an embedding model."""
class ReloadInterruptedError(PyWorkerError):
    """A newer reload or an unload superseded this reload."""

# Request validation (FACTS §3).
class UnsupportedFieldsError(RequestValidationError):
    """See the name."""
class StreamingCountError(RequestValidationError):
    """See the name."""
class SeedTypeError(RequestValidationError):
    """See the name."""
class InvalidStreamOptionsError(RequestValidationError):
    """See the name."""
class MessageOrderError(RequestValidationError):
    """See the name."""
class ContentTypeError(RequestValidationError):
    """See the name."""
class UnsupportedRoleError(RequestValidationError):
    """See the name."""
class UserMessageContentError(RequestValidationError):
    """See the name."""
class SystemMessageOrderError(RequestValidationError):
    """See the name."""
class InvalidRequestFieldError(RequestValidationError):
    """A field has the wrong type or is missing."""
class EmbeddingInputEmptyError(RequestValidationError):
    """See the name."""
class EmbeddingUnsupportedEncodingFormatError(RequestValidationError):
    """See the name."""
class UnsupportedResponseFormatError(RequestValidationError):
    """See the name."""
class UnsupportedToolChoiceError(RequestValidationError):
    """See the name."""
class ContextWindowSizeExceededError(RequestValidationError):
    """See the name."""
class EmbeddingExceedContextWindowSizeError(RequestValidationError):
    """See the name."""

# Generation config ranges (web-llm's postInitAndCheckGenerationConfigValues).
class PenaltyRangeError(GenerationConfigError):
    """See the name."""
class RepetitionPenaltyError(GenerationConfigError):
    """See the name."""
class MaxTokensError(GenerationConfigError):
    """See the name."""
class TopPError(GenerationConfigError):
    """See the name."""
class TemperatureError(GenerationConfigError):
    """See the name."""
class LogitBiasError(GenerationConfigError):
    """See the name."""
class TopLogprobsError(GenerationConfigError):
    """See the name."""
class LogprobsNotEnabledError(GenerationConfigError):
    """See the name."""

# Worker protocol.
class UnknownMessageKindError(PyWorkerError):
    """See the name."""
class MalformedMessageError(PyWorkerError):
    """See the name."""
class StreamNotFoundError(PyWorkerError):
    """See the name."""

# Loading and device.
class ArtifactFetchError(ModelLoadError):
    """See the name."""
class IntegrityError(ModelLoadError):
    """An artifact's sha256 differs from the pinned one."""
class ModelLibraryMissingError(ModelLoadError):
    """See the name."""
class ShaderF16SupportError(DeviceError):
    """See the name."""
class DeviceLostError(DeviceError):
    """See the name."""
class WebGPUNotAvailableError(DeviceError):
    """See the name."""
