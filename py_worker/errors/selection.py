"""Errors of choosing the loaded model that serves a request, and of reload (web-llm's rules)."""

from __future__ import annotations

from py_worker.errors.base import PyWorkerError
from py_worker.errors.families import ModelSelectionError


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
