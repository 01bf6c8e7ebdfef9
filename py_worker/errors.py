"""Every error the engine raises is a named class that survives the worker boundary.

web-llm sends errors across postMessage as "Name: message" strings, so the class is lost on
the main thread. Here each error serialises to ``{"name", "message", "fields"}`` and
``error_from_dict`` rebuilds the same class on the other side (the JS proxy does the same with
classes of the same names). Class names follow web-llm's where web-llm has one, so code that
checks ``err.name`` keeps working.
"""

from __future__ import annotations

from typing import Any, ClassVar

_REGISTRY: dict[str, type[PyWorkerError]] = {}


class PyWorkerError(Exception):
    """Base of all engine errors. ``fields`` holds the structured details of the error.

    Each class declares its fields once, so every raise site (Python here, JS through the
    generated js_glue/errors.js) passes the same keys: ``fields_`` must all be given,
    ``optional_`` may be. A class that declares neither has its parent's.
    """

    fields_: ClassVar[tuple[str, ...]] = ()
    optional_: ClassVar[tuple[str, ...]] = ()

    def __init__(self, message: str, **fields: Any) -> None:
        check_fields(type(self), fields)
        super().__init__(message)
        self.message = message
        self.fields = fields

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "fields_" in cls.__dict__ or "optional_" in cls.__dict__:
            cls.fields_ = cls.__dict__.get("fields_", ())
            cls.optional_ = cls.__dict__.get("optional_", ())
        _REGISTRY[cls.__name__] = cls

    def to_dict(self) -> dict[str, Any]:
        """The wire form: class name, message and a copy of the fields."""
        return {"name": type(self).__name__, "message": self.message, "fields": dict(self.fields)}

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's default pickling calls cls(*args) and would drop the fields.
        return (error_from_dict, (self.to_dict(),))


def check_fields(cls: type[PyWorkerError], fields: dict[str, Any]) -> None:
    """Refuse a field ``cls`` does not declare, or a missing required one (a raise site's bug)."""
    unknown = [k for k in fields if k not in cls.fields_ and k not in cls.optional_]
    missing = [k for k in cls.fields_ if k not in fields]
    if unknown or missing:
        raise TypeError(
            f"{cls.__name__} fields: undeclared {unknown}, missing {missing}"
            f" (declared: {list(cls.fields_)}, optional: {list(cls.optional_)})"
        )


def error_to_dict(exc: BaseException) -> dict[str, Any]:
    """Serialise any exception; non-engine ones keep their Python class name."""
    if isinstance(exc, PyWorkerError):
        return exc.to_dict()
    return {"name": type(exc).__name__, "message": str(exc), "fields": {}}


def error_from_dict(data: dict[str, Any]) -> PyWorkerError:
    """Rebuild an error from ``error_to_dict`` output; unknown names become ``RemoteError``."""
    name = str(data.get("name", "Error"))
    message = str(data.get("message", ""))
    fields = dict(data.get("fields") or {})
    cls = _REGISTRY.get(name)
    if cls is None:
        cls = RemoteError
        fields["remote_name"] = name
    # Bypass the subclass constructor: fields may hold any key, "message" included.
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.message = message
    err.fields = fields
    return err


def error_names() -> list[str]:
    """Every registered class name (the JS proxy must define a class for each)."""
    return sorted(_REGISTRY)


class RemoteError(PyWorkerError):
    """An error from the other side whose class is not known here (its name is in fields)."""

    optional_ = ("remote_name",)


# Families, so callers can catch a group.
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


# Model selection and reload (web-llm's rules for which loaded model serves a request).
class ModelNotLoadedError(ModelSelectionError):
    """A request arrived while no model is loaded."""

    optional_ = ("request_name", "handle")


class SpecifiedModelNotFoundError(ModelSelectionError):
    """The request names a model that is not among the loaded ones."""

    fields_ = ("requested", "loaded", "request_name")


class UnclearModelToUseError(ModelSelectionError):
    """Several models are loaded and the request names none of them."""

    fields_ = ("loaded", "request_name")


class ModelNotFoundError(ModelSelectionError):
    """The model id has no record in the app config's model_list."""

    fields_ = ("model_id", "known")


class ReloadModelIdNotUniqueError(ModelSelectionError):
    """A reload lists the same model id more than once."""

    fields_ = ("model_ids", "duplicates")


class ReloadArgumentSizeUnmatchedError(ModelSelectionError):
    """A reload passes chatOpts whose count differs from the count of model ids."""

    fields_ = ("num_model_ids", "num_chat_opts")


class IncorrectPipelineLoadedError(ModelSelectionError):
    """A chat or completion request went to an embedding model."""

    optional_ = ("model_id", "request_name", "model_type", "backend")


class EmbeddingUnsupportedModelError(ModelSelectionError):
    """An embedding request went to a model that is not an embedding model."""

    optional_ = ("model_id", "request_name", "model_type", "backend")


class UnsupportedModelIdError(ModelSelectionError):
    """The selected model cannot serve a feature of the request (e.g. tools)."""

    fields_ = ("model_id", "request_name")


class ReloadInterruptedError(PyWorkerError):
    """A newer reload or an unload superseded this reload."""


class EngineNotLoadedError(PyWorkerError):
    """An engine call needs a loaded model, but reload() was never called."""


class WorkerEngineModelNotLoadedError(PyWorkerError):
    """The worker lost its model (e.g. it was restarted) and the client sent none to reload."""


# Request validation (the checks web-llm makes of an OpenAI request).
class UnsupportedFieldsError(RequestValidationError):
    """The request sets a field web-llm declares but does not support."""

    fields_ = ("fields_found", "target")


class InvalidRequestFieldError(RequestValidationError):
    """A field has the wrong type, a non-finite number, or a required one is missing."""

    optional_ = ("field", "expected")


class StreamingCountError(RequestValidationError):
    """A streaming request asks for n > 1 choices."""

    fields_ = ("n",)


class SeedTypeError(RequestValidationError):
    """``seed`` is not an integer."""

    fields_ = ("value",)


class InvalidStreamOptionsError(RequestValidationError):
    """``stream_options`` is set on a request that does not stream."""


class MessageOrderError(RequestValidationError):
    """The messages are in an order the engine cannot serve (e.g. the last is not user/tool)."""

    fields_ = ("role",)


class SystemMessageOrderError(RequestValidationError):
    """A system message appears anywhere but first."""

    fields_ = ("index",)


class ContentTypeError(RequestValidationError):
    """A system, assistant or tool message has content that is not a string."""

    fields_ = ("role", "index")


class UnsupportedRoleError(RequestValidationError):
    """A message has a role other than system, user, assistant or tool."""

    fields_ = ("role", "index")


class UserMessageContentError(RequestValidationError):
    """A user message's content is neither a string nor a list of text parts."""

    fields_ = ("index",)


class ChatTemplateError(RequestValidationError):
    """The model's Jinja chat template cannot render these messages.

    Fields: ``kind`` is ``"raised"`` (the template called ``raise_exception``, e.g. for roles that
    do not alternate), ``"syntax"`` (the template does not parse), ``"render"`` (it failed while
    rendering) or ``"missing"`` (the config has no template string); ``error`` is the underlying
    exception's class name; ``line`` is the template line when Jinja knows it, else None.
    """

    fields_ = ("kind", "error", "line")


class EmbeddingInputEmptyError(RequestValidationError):
    """Embedding input is empty, or holds an empty string or an empty token list."""


class EmbeddingUnsupportedEncodingFormatError(RequestValidationError):
    """Embeddings were asked for in base64; only float is supported."""


class UnsupportedResponseFormatError(RequestValidationError):
    """``response_format.type`` is not text, json_object, grammar or structural_tag."""

    fields_ = ("type",)


class InvalidResponseFormatError(RequestValidationError):
    """A JSON schema is given with a response_format type other than json_object."""

    fields_ = ("type",)


class InvalidResponseFormatGrammarError(RequestValidationError):
    """A grammar is given without type grammar, or type grammar without a grammar."""

    fields_ = ("type",)


class GrammarError(RequestValidationError):
    """A response_format's schema, grammar or structural tag does not compile (``kind``,
    ``reason``: the grammar engine's own words), or the grammar engine cannot load."""

    fields_ = ("kind", "reason")


class UnsupportedToolTypeError(RequestValidationError):
    """A tool is not of type "function", the only type supported."""

    fields_ = ("index",)


class UnsupportedToolChoiceError(RequestValidationError):
    """``tool_choice`` cannot be honoured (family of the tool-choice errors below)."""


class InvalidToolChoiceError(UnsupportedToolChoiceError):
    """``tool_choice`` is a string other than "none" or "auto"."""

    fields_ = ("value",)


class UnsupportedToolChoiceTypeError(UnsupportedToolChoiceError):
    """A named ``tool_choice`` is not of type "function"."""


class FunctionNotFoundError(UnsupportedToolChoiceError):
    """A named ``tool_choice`` names a function that is not in ``tools``."""

    fields_ = ("name", "tools")


class ContextWindowSizeExceededError(RequestValidationError):
    """The prompt has more tokens than the model's context window."""

    optional_ = ("context_window_size", "prompt_tokens", "length", "added", "backend")


class EmbeddingExceedContextWindowSizeError(RequestValidationError):
    """An embedding input has more tokens than the embedding model's context window."""

    fields_ = ("input_tokens", "context_window_size")


# Generation config ranges (web-llm's postInitAndCheckGenerationConfigValues).
class PenaltyRangeError(GenerationConfigError):
    """frequency_penalty or presence_penalty lies outside [-2, 2]."""

    fields_ = ("field", "value")


class RepetitionPenaltyError(GenerationConfigError):
    """repetition_penalty is not greater than 0."""

    fields_ = ("value",)


class MaxTokensError(GenerationConfigError):
    """max_tokens is not greater than 0."""

    fields_ = ("value",)


class TopPError(GenerationConfigError):
    """top_p lies outside (0, 1]."""

    fields_ = ("value",)


class TemperatureError(GenerationConfigError):
    """temperature is negative."""

    fields_ = ("value",)


class LogitBiasError(GenerationConfigError):
    """A logit_bias key is not a token id, or its value lies outside [-100, 100]."""

    optional_ = ("key", "token", "value")


class TopLogprobsError(GenerationConfigError):
    """top_logprobs lies outside [0, 5]."""

    fields_ = ("value",)


class LogprobsNotEnabledError(GenerationConfigError):
    """top_logprobs is set while logprobs is not true."""

    fields_ = ("top_logprobs",)


# Worker protocol.
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


# Loading and device.
class ArtifactFetchError(ModelLoadError):
    """A model file could not be fetched (network, HTTP status or cache failure)."""

    optional_ = ("url", "status", "path")


class IntegrityError(ModelLoadError):
    """An artifact's sha256 differs from the pinned one."""

    fields_ = ("file",)
    optional_ = ("url", "expected", "actual")


class ModelLibraryMissingError(ModelLoadError):
    """The mlc backend was chosen but the model record has no model_lib."""

    fields_ = ("model_id",)


class ModelLibRuntimeError(ModelLoadError):
    """A model library links with none of the shipped tvmjs runtimes (model_lib, needs, missing, shipped)."""

    fields_ = ("model_lib", "needs", "missing", "shipped")


class UnsupportedTokenizerFilesError(ModelLoadError):
    """The model directory has no tokenizer file the engine can read."""

    fields_ = ("files",)


class UnsupportedTokenizerError(ModelLoadError):
    """A GGUF's tokenizer cannot be rebuilt to tokenize exactly as llama.cpp (fields: model, pre)."""

    fields_ = ("model", "pre")


class UnsupportedWeightFormatError(ModelLoadError):
    """A GGUF tensor uses a ggml type the kernels cannot read (fields: tensor, ggml_type, type_name)."""

    fields_ = ("tensor", "ggml_type", "type_name")


class WindowSizeConfigurationError(ModelLoadError):
    """Both context_window_size and sliding_window_size are positive."""

    fields_ = ()


class WindowSizeSpecificationError(ModelLoadError):
    """Neither context_window_size nor sliding_window_size is positive."""

    fields_ = ()


class AttentionSinkSizeError(ModelLoadError):
    """A sliding window is used without a non-negative attention_sink_size."""

    fields_ = ()


class EmbeddingSlidingWindowError(ModelLoadError):
    """An embedding model is configured with a sliding window."""

    fields_ = ()


class UnsupportedArchitectureError(ModelLoadError):
    """A GGUF's ``general.architecture`` is not one the backend's decoder implements."""

    fields_ = ("architecture", "supported")


class WebGPUNotAvailableError(DeviceError):
    """The environment has no WebGPU (navigator.gpu is missing)."""


class WebGPUNotFoundError(DeviceError):
    """WebGPU exists but no adapter or device could be obtained."""


class FeatureSupportError(DeviceError):
    """The model needs a WebGPU feature the adapter lacks."""

    fields_ = ("feature",)
    optional_ = ("model_id",)


class ShaderF16SupportError(FeatureSupportError):
    """The model needs the shader-f16 feature, which the adapter lacks."""


class DeviceLostError(DeviceError):
    """The WebGPU device was lost (often out of memory)."""

    optional_ = ("reason",)


class MessageTooLargeError(PyWorkerError):
    """A message is larger than the worker accepts; refused in JS (fields: kind, size, limit)."""

    fields_ = ("kind", "size", "limit")


# The web-llm drop-in surface (js_glue/worker-handler.js, host-handler.js, proxy.js).
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


# Remote models (a record with backend "remote": an OpenAI-compatible server; py_worker/remote.py).
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
