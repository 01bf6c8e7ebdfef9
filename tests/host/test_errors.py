"""Errors survive the worker boundary: same class, message and fields after to_dict/JSON/from_dict."""

from __future__ import annotations

import json
import pickle

import pytest

from py_worker import errors
from py_worker.errors import (
    PyWorkerError,
    RemoteError,
    error_from_dict,
    error_names,
    error_to_dict,
)

ALL_CLASSES = [getattr(errors, name) for name in error_names()]

# Names web-llm's proxy users may test for (err.name); each must exist here with that name.
WEB_LLM_NAMES = [
    "ModelNotFoundError",
    "ModelNotLoadedError",
    "SpecifiedModelNotFoundError",
    "UnclearModelToUseError",
    "ReloadModelIdNotUniqueError",
    "ReloadArgumentSizeUnmatchedError",
    "IncorrectPipelineLoadedError",
    "EmbeddingUnsupportedModelError",
    "UnsupportedFieldsError",
    "StreamingCountError",
    "SeedTypeError",
    "InvalidStreamOptionsError",
    "MessageOrderError",
    "SystemMessageOrderError",
    "ContentTypeError",
    "UnsupportedRoleError",
    "EmbeddingInputEmptyError",
    "EmbeddingUnsupportedEncodingFormatError",
    "EmbeddingExceedContextWindowSizeError",
    "ContextWindowSizeExceededError",
    "InvalidResponseFormatError",
    "InvalidResponseFormatGrammarError",
    "InvalidToolChoiceError",
    "UnsupportedToolChoiceTypeError",
    "FunctionNotFoundError",
    "UnsupportedToolTypeError",
    "UnsupportedModelIdError",
    "UnknownMessageKindError",
    "WebGPUNotAvailableError",
    "WebGPUNotFoundError",
    "FeatureSupportError",
    "ShaderF16SupportError",
    "DeviceLostError",
    "EngineNotLoadedError",
    "WorkerEngineModelNotLoadedError",
    "UnsupportedTokenizerFilesError",
    "WindowSizeConfigurationError",
    "WindowSizeSpecificationError",
    "AttentionSinkSizeError",
    "EmbeddingSlidingWindowError",
]


def test_registry_holds_every_subclass() -> None:
    def walk(cls: type[PyWorkerError]) -> set[type[PyWorkerError]]:
        found = set(cls.__subclasses__())
        for sub in cls.__subclasses__():
            found |= walk(sub)
        return found

    assert {c.__name__ for c in walk(PyWorkerError)} == set(error_names())
    assert len(ALL_CLASSES) > 60


@pytest.mark.parametrize("name", WEB_LLM_NAMES)
def test_web_llm_names_exist(name: str) -> None:
    assert name in error_names()
    assert issubclass(getattr(errors, name), PyWorkerError)


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_every_class_has_a_real_docstring(cls: type[PyWorkerError]) -> None:
    doc = (cls.__doc__ or "").strip()
    assert doc
    assert doc != "See the name."
    assert len(doc.splitlines()[0]) > 20


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_round_trip_through_json(cls: type[PyWorkerError]) -> None:
    values: list[object] = ["m-1", ["a", "b"], 3, None, {"k": "ü"}]
    fields = {k: values[i % len(values)] for i, k in enumerate((*cls.fields_, *cls.optional_))}
    err = cls(f"{cls.__name__} happened: ünïcode ✓", **fields)
    wire = json.loads(json.dumps(err.to_dict()))
    assert wire == {
        "name": cls.__name__,
        "message": f"{cls.__name__} happened: ünïcode ✓",
        "fields": fields,
    }
    back = error_from_dict(wire)
    assert type(back) is cls
    assert back.message == err.message
    assert str(back) == str(err)
    assert back.fields == err.fields
    assert back.to_dict() == err.to_dict()


def test_family_catch_still_works_after_round_trip() -> None:
    back = error_from_dict(errors.TopPError("bad top_p", value=2.0).to_dict())
    assert isinstance(back, errors.GenerationConfigError)
    assert isinstance(back, errors.RequestValidationError)
    with pytest.raises(errors.RequestValidationError, match="bad top_p"):
        raise back


def test_fields_may_use_any_key() -> None:
    back = error_from_dict({"name": "MalformedMessageError", "message": "m", "fields": {"message": "x"}})
    assert type(back) is errors.MalformedMessageError
    assert back.message == "m"
    assert back.fields == {"message": "x"}


def test_unknown_name_becomes_remote_error() -> None:
    back = error_from_dict({"name": "TypeError", "message": "boom", "fields": {"a": 1}})
    assert type(back) is RemoteError
    assert back.message == "boom"
    assert back.fields == {"a": 1, "remote_name": "TypeError"}


def test_missing_parts_of_the_dict() -> None:
    back = error_from_dict({})
    assert type(back) is RemoteError
    assert back.fields == {"remote_name": "Error"}


def test_non_engine_exception_keeps_its_name() -> None:
    assert error_to_dict(ValueError("nope")) == {"name": "ValueError", "message": "nope", "fields": {}}
    assert error_to_dict(errors.StreamNotFoundError("gone", stream_id=7)) == {
        "name": "StreamNotFoundError",
        "message": "gone",
        "fields": {"stream_id": 7},
    }


def test_pickle_keeps_class_and_fields() -> None:
    err = errors.SpecifiedModelNotFoundError("not loaded", requested="x", loaded=["a"], request_name="chat")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is errors.SpecifiedModelNotFoundError
    assert back.fields == {"requested": "x", "loaded": ["a"], "request_name": "chat"}
