"""Model selection and reload checks follow web-llm's rules, one test per rule."""

from __future__ import annotations

import pytest

from py_worker.errors import (
    EmbeddingUnsupportedModelError,
    IncorrectPipelineLoadedError,
    ModelNotFoundError,
    ModelNotLoadedError,
    ReloadArgumentSizeUnmatchedError,
    ReloadModelIdNotUniqueError,
    SpecifiedModelNotFoundError,
    UnclearModelToUseError,
)
from py_worker.router import (
    check_pipeline,
    check_reload_args,
    find_record,
    is_embedding_model,
    select_model,
)

APP_CONFIG = {
    "model_list": [
        {"model_id": "SmolLM2-135M", "model": "/models/smol"},
        {"model_id": "MiniLM", "model": "/models/minilm", "model_type": "embedding"},
    ]
}


def test_no_model_loaded() -> None:
    with pytest.raises(ModelNotLoadedError, match="ChatCompletionRequest") as info:
        select_model([], None, "ChatCompletionRequest")
    assert "reload" in info.value.message
    assert info.value.fields == {"request_name": "ChatCompletionRequest"}


def test_no_model_loaded_even_when_one_is_named() -> None:
    with pytest.raises(ModelNotLoadedError):
        select_model([], "SmolLM2-135M", "ChatCompletionRequest")


@pytest.mark.parametrize("loaded", [["a"], ["a", "b"], ["b", "a", "c"]])
def test_requested_and_loaded(loaded: list[str]) -> None:
    assert select_model(loaded, "a", "ChatCompletionRequest") == "a"


@pytest.mark.parametrize("loaded", [["a"], ["a", "b"]])
def test_requested_not_loaded_names_loaded_ids(loaded: list[str]) -> None:
    with pytest.raises(SpecifiedModelNotFoundError) as info:
        select_model(loaded, "zzz", "CompletionCreateParams")
    msg = info.value.message
    assert "zzz" in msg
    assert "CompletionCreateParams" in msg
    assert all(m in msg for m in loaded)
    assert info.value.fields["loaded"] == loaded
    assert info.value.fields["requested"] == "zzz"


def test_none_requested_one_loaded() -> None:
    assert select_model(("only",), None, "EmbeddingCreateParams") == "only"


def test_none_requested_several_loaded() -> None:
    with pytest.raises(UnclearModelToUseError) as info:
        select_model(["a", "b"], None, "EmbeddingCreateParams")
    assert "a, b" in info.value.message
    assert "EmbeddingCreateParams" in info.value.message
    assert info.value.fields["loaded"] == ["a", "b"]


def test_empty_string_counts_as_not_given() -> None:
    assert select_model(["a"], "", "ChatCompletionRequest") == "a"
    with pytest.raises(UnclearModelToUseError):
        select_model(["a", "b"], "", "ChatCompletionRequest")


@pytest.mark.parametrize(
    ("ids", "opts"),
    [(["a"], None), (["a", "b"], None), (["a", "b"], [{}, {"temperature": 0}]), ([], None), ([], [])],
)
def test_reload_args_ok(ids: list[str], opts: list[dict[str, float]] | None) -> None:
    check_reload_args(ids, opts)


def test_reload_ids_not_unique() -> None:
    with pytest.raises(ReloadModelIdNotUniqueError) as info:
        check_reload_args(["a", "b", "a", "c", "c"], None)
    assert info.value.fields["duplicates"] == ["a", "c"]
    assert "a, c" in info.value.message


@pytest.mark.parametrize(("ids", "opts"), [(["a"], [{}, {}]), (["a", "b"], [{}]), (["a"], [])])
def test_reload_size_unmatched(ids: list[str], opts: list[dict[str, float]]) -> None:
    with pytest.raises(ReloadArgumentSizeUnmatchedError) as info:
        check_reload_args(ids, opts)
    assert f"{len(ids)} modelId" in info.value.message
    assert f"{len(opts)} chatOpts" in info.value.message


def test_find_record() -> None:
    record = find_record(APP_CONFIG, "MiniLM")
    assert record == APP_CONFIG["model_list"][1]
    record["model"] = "changed"
    assert APP_CONFIG["model_list"][1]["model"] == "/models/minilm"  # a copy, config untouched


@pytest.mark.parametrize("config", [APP_CONFIG, {"model_list": []}, {}])
def test_find_record_missing(config: dict[str, list[dict[str, str]]]) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        find_record(config, "Nope-1B")
    assert "Nope-1B" in info.value.message
    assert info.value.fields["known"] == [r["model_id"] for r in config.get("model_list", [])]


def test_pipeline_checks() -> None:
    llm, emb = (is_embedding_model(record) for record in APP_CONFIG["model_list"])
    check_pipeline("SmolLM2-135M", llm, False, "ChatCompletionRequest")
    check_pipeline("MiniLM", emb, True, "EmbeddingCreateParams")
    with pytest.raises(IncorrectPipelineLoadedError, match="MiniLM"):
        check_pipeline("MiniLM", emb, False, "ChatCompletionRequest")
    with pytest.raises(EmbeddingUnsupportedModelError, match="SmolLM2-135M"):
        check_pipeline("SmolLM2-135M", llm, True, "EmbeddingCreateParams")


def test_embedding_rule() -> None:
    """One rule: the record's model_type "embedding", or an encoder config (BERT)."""
    assert is_embedding_model({"model_type": "embedding"}, {"model_type": "llama"})
    assert is_embedding_model({}, {"model_type": "bert"})
    assert not is_embedding_model({"model_type": "LLM"}, {"model_type": "llama"})
    assert not is_embedding_model({})
