"""Errors of loading a model: its artifacts, library, tokenizer, weights or window sizes."""

from __future__ import annotations

from py_worker.errors.families import ModelLoadError


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
