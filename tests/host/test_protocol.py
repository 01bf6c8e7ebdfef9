"""OpenAI protocol layer: every check web-llm makes of a request, and every built object
validated by `openai`."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import ValidationError

from py_worker import errors as E
from py_worker.protocol import (
    ChatRequest,
    GenerationConfig,
    validate_chat_request,
    validate_completion_request,
    validate_embedding_request,
)
from py_worker.protocol import responses as R

USER = [{"role": "user", "content": "Hi"}]


def chat(**fields: Any) -> dict[str, Any]:
    return {"messages": USER, **fields}


def comp(**fields: Any) -> dict[str, Any]:
    return {"prompt": "Once upon a time", **fields}


# ---------------------------------------------------------------- request validation: happy paths


def test_chat_defaults() -> None:
    req = validate_chat_request(chat())
    assert req == ChatRequest(
        model=None, messages=USER, config=GenerationConfig(), tools=None, tool_choice=None
    )


def test_chat_every_supported_field() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    req = validate_chat_request(
        {
            "model": "SmolLM2",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "you"}],
                },
                {"role": "assistant", "content": None, "tool_calls": [{"id": "0", "type": "function"}]},
                {"role": "tool", "content": "sunny", "tool_call_id": "0"},
            ],
            "stream": True,
            "stream_options": {"include_usage": True},
            "n": 1,
            "frequency_penalty": 0.5,
            "presence_penalty": -0.5,
            "repetition_penalty": 1.1,
            "max_tokens": 16,
            "stop": ["\n\n", "END"],
            "temperature": 0.7,
            "top_p": 0.9,
            "logit_bias": {"42": -100, "7": 5.5},
            "logprobs": True,
            "top_logprobs": 5,
            "seed": 1234,
            "tools": tools,
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "response_format": {"type": "json_object", "schema": {"type": "object"}},
            "ignore_eos": True,
            "extra_body": {"enable_thinking": False},
        }
    )
    assert req.model == "SmolLM2"
    assert [m["content"] for m in req.messages] == ["Be brief.", "Hello, you", "", "sunny"]
    assert req.messages[3]["tool_call_id"] == "0"
    assert req.tools == tools
    assert req.tool_choice == {"type": "function", "function": {"name": "get_weather"}}
    assert req.config == GenerationConfig(
        temperature=0.7,
        top_p=0.9,
        frequency_penalty=0.5,
        presence_penalty=-0.5,
        repetition_penalty=1.1,
        max_tokens=16,
        stop=["\n\n", "END"],
        logit_bias={42: -100.0, 7: 5.5},
        logprobs=True,
        top_logprobs=5,
        seed=1234,
        ignore_eos=True,
        n=1,
        stream=True,
        include_usage=True,
        response_format={"type": "json_object", "schema": {"type": "object"}},
    )


def test_chat_input_is_not_mutated() -> None:
    msgs = [{"role": "user", "content": [{"type": "text", "text": "a"}]}]
    req = {"messages": msgs}
    snapshot = json.dumps(req)
    validate_chat_request(req)
    assert json.dumps(req) == snapshot


@pytest.mark.parametrize(
    ("fields", "attr", "expected"),
    [
        ({"stop": "###"}, "stop", ["###"]),
        ({"stop": None}, "stop", []),
        ({"max_tokens": 8.0}, "max_tokens", 8),  # JS numbers: an integral float is an integer
        ({"seed": 3.0}, "seed", 3),
        ({"seed": -5}, "seed", -5),
        ({"n": 3}, "n", 3),
        ({"temperature": 0}, "temperature", 0.0),
        ({"top_p": 1}, "top_p", 1.0),
        ({"frequency_penalty": 2}, "presence_penalty", 0.0),  # web-llm: the other becomes 0
        ({"presence_penalty": -2}, "frequency_penalty", 0.0),
        ({"logprobs": True}, "top_logprobs", 0),
        ({"logprobs": True, "top_logprobs": 0}, "top_logprobs", 0),
        ({"logit_bias": {"0": 100, "5": -100}}, "logit_bias", {0: 100.0, 5: -100.0}),
        ({"logit_bias": {3: 1}}, "logit_bias", {3: 1.0}),
        ({"response_format": {"type": "text"}}, "response_format", {"type": "text"}),
        (
            {"response_format": {"type": "grammar", "grammar": "root ::= 'a'"}},
            "response_format",
            {"type": "grammar", "grammar": "root ::= 'a'"},
        ),
        ({"stream": False, "stream_options": None}, "include_usage", False),
        ({"stream": True, "stream_options": {}}, "include_usage", False),
    ],
)
def test_chat_config_values(fields: dict[str, Any], attr: str, expected: Any) -> None:
    config = validate_chat_request(chat(**fields)).config
    assert getattr(config, attr) == expected
    assert type(getattr(config, attr)) is type(expected)


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "a"}],
        [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}],
        [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
        ],
        [{"role": "user", "content": "a"}, {"role": "tool", "content": "{}", "tool_call_id": "1"}],
        [{"role": "user", "content": ""}],
    ],
)
def test_chat_message_orders_accepted(messages: list[dict[str, Any]]) -> None:
    assert validate_chat_request({"messages": messages}).messages == messages


def test_tool_choice_strings() -> None:
    assert validate_chat_request(chat(tool_choice="auto")).tool_choice == "auto"
    assert validate_chat_request(chat(tool_choice="none")).tool_choice == "none"
    assert validate_chat_request(chat(tool_choice="required")).tool_choice == "required"


def test_unknown_chat_fields_ignored_as_in_web_llm() -> None:
    # web-llm's ChatCompletionRequestUnsupportedFields is empty: nothing is rejected by name.
    assert validate_chat_request(chat(user="u1", some_future_field=1)).config == GenerationConfig()


def test_completion_request() -> None:
    req = validate_completion_request(
        comp(
            echo=True, max_tokens=4, stop="\n", model="m", stream=True, stream_options={"include_usage": True}
        )
    )
    assert (req.model, req.prompt, req.echo) == ("m", "Once upon a time", True)
    assert req.config.max_tokens == 4
    assert req.config.stop == ["\n"]
    assert req.config.include_usage
    assert req.config.response_format is None
    assert validate_completion_request(comp()).echo is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hello", ["hello"]),
        (["a", "b"], ["a", "b"]),
        ([1, 2, 3], [[1, 2, 3]]),
        ([[1, 2], [3.0]], [[1, 2], [3]]),
    ],
)
def test_embedding_inputs_normalised(value: Any, expected: Any) -> None:
    req = validate_embedding_request({"input": value, "model": "MiniLM", "encoding_format": "float"})
    assert req.input == expected
    assert req.model == "MiniLM"


# ---------------------------------------------------------------- request validation: every error

NAN, INF = math.nan, math.inf

CHAT_ERRORS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    # (id, request, error class, text the message must contain)
    ("not-a-dict", [], E.InvalidRequestFieldError, "request"),  # type: ignore[list-item]
    ("messages-missing", {}, E.InvalidRequestFieldError, "messages"),
    ("messages-empty", {"messages": []}, E.InvalidRequestFieldError, "messages"),
    ("messages-not-list", {"messages": "hi"}, E.InvalidRequestFieldError, "messages"),
    ("message-not-dict", {"messages": ["hi"]}, E.InvalidRequestFieldError, "messages[0]"),
    ("role-missing", {"messages": [{"content": "x"}]}, E.InvalidRequestFieldError, "messages[0].role"),
    (
        "role-unknown",
        {"messages": [{"role": "function", "content": "x"}]},
        E.UnsupportedRoleError,
        "function",
    ),
    (
        "system-not-first",
        {"messages": [*USER, {"role": "system", "content": "s"}, *USER]},
        E.SystemMessageOrderError,
        "index 1",
    ),
    (
        "last-assistant",
        {"messages": [*USER, {"role": "assistant", "content": "b"}]},
        E.MessageOrderError,
        "assistant",
    ),
    ("last-system", {"messages": [{"role": "system", "content": "s"}]}, E.MessageOrderError, "system"),
    ("user-content-int", {"messages": [{"role": "user", "content": 3}]}, E.UserMessageContentError, "int"),
    ("user-content-missing", {"messages": [{"role": "user"}]}, E.UserMessageContentError, "NoneType"),
    (
        "user-content-image",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                    ],
                }
            ]
        },
        E.UserMessageContentError,
        "image_url",
    ),
    (
        "user-content-empty-list",
        {"messages": [{"role": "user", "content": []}]},
        E.UserMessageContentError,
        "empty list",
    ),
    (
        "system-content-list",
        {"messages": [{"role": "system", "content": [{"type": "text", "text": "s"}]}, *USER]},
        E.ContentTypeError,
        "system",
    ),
    (
        "assistant-content-int",
        {"messages": [{"role": "assistant", "content": 1}, *USER]},
        E.ContentTypeError,
        "assistant",
    ),
    (
        "assistant-null-no-tools",
        {"messages": [{"role": "assistant", "content": None}, *USER]},
        E.InvalidRequestFieldError,
        "messages[0].content",
    ),
    (
        "tool-content-dict",
        {"messages": [*USER, {"role": "tool", "content": {}, "tool_call_id": "1"}]},
        E.ContentTypeError,
        "tool",
    ),
    ("stream-n", chat(stream=True, n=2), E.StreamingCountError, "n=2"),
    (
        "stream-options-no-stream",
        chat(stream_options={"include_usage": True}),
        E.InvalidStreamOptionsError,
        "stream=True",
    ),
    (
        "stream-options-stream-false",
        chat(stream=False, stream_options={}),
        E.InvalidStreamOptionsError,
        "stream_options",
    ),
    (
        "stream-options-not-dict",
        chat(stream=True, stream_options=True),
        E.InvalidRequestFieldError,
        "stream_options",
    ),
    (
        "include-usage-not-bool",
        chat(stream=True, stream_options={"include_usage": 1}),
        E.InvalidRequestFieldError,
        "include_usage",
    ),
    ("stream-not-bool", chat(stream="yes"), E.InvalidRequestFieldError, "stream"),
    ("seed-float", chat(seed=1.5), E.SeedTypeError, "1.5"),
    ("seed-string", chat(seed="7"), E.SeedTypeError, "'7'"),
    ("seed-bool", chat(seed=True), E.SeedTypeError, "True"),
    ("seed-nan", chat(seed=NAN), E.SeedTypeError, "nan"),
    ("freq-high", chat(frequency_penalty=2.5), E.PenaltyRangeError, "frequency_penalty"),
    ("freq-low", chat(frequency_penalty=-2.01), E.PenaltyRangeError, "frequency_penalty"),
    ("pres-high", chat(presence_penalty=3), E.PenaltyRangeError, "presence_penalty"),
    ("pres-nan", chat(presence_penalty=NAN), E.InvalidRequestFieldError, "presence_penalty"),
    ("rep-zero", chat(repetition_penalty=0), E.RepetitionPenaltyError, "repetition_penalty"),
    ("rep-negative", chat(repetition_penalty=-1), E.RepetitionPenaltyError, "-1"),
    ("rep-inf", chat(repetition_penalty=INF), E.InvalidRequestFieldError, "finite"),
    ("max-tokens-zero", chat(max_tokens=0), E.MaxTokensError, "max_tokens"),
    ("max-tokens-negative", chat(max_tokens=-3), E.MaxTokensError, "-3"),
    ("max-tokens-float", chat(max_tokens=2.5), E.InvalidRequestFieldError, "max_tokens"),
    ("max-tokens-string", chat(max_tokens="10"), E.InvalidRequestFieldError, "max_tokens"),
    ("top-p-zero", chat(top_p=0), E.TopPError, "top_p"),
    ("top-p-high", chat(top_p=1.0001), E.TopPError, "top_p"),
    ("top-p-nan", chat(top_p=NAN), E.InvalidRequestFieldError, "top_p"),
    ("temperature-negative", chat(temperature=-0.1), E.TemperatureError, "temperature"),
    ("temperature-inf", chat(temperature=INF), E.InvalidRequestFieldError, "temperature"),
    ("temperature-bool", chat(temperature=True), E.InvalidRequestFieldError, "temperature"),
    ("logit-bias-high", chat(logit_bias={"5": 101}), E.LogitBiasError, "101"),
    ("logit-bias-low", chat(logit_bias={"5": -100.5}), E.LogitBiasError, "-100.5"),
    ("logit-bias-nan", chat(logit_bias={"5": NAN}), E.LogitBiasError, "nan"),
    ("logit-bias-str-value", chat(logit_bias={"5": "1"}), E.LogitBiasError, "'1'"),
    ("logit-bias-word-key", chat(logit_bias={"hello": 1}), E.LogitBiasError, "hello"),
    ("logit-bias-negative-key", chat(logit_bias={"-1": 1}), E.LogitBiasError, "-1"),
    ("logit-bias-float-key", chat(logit_bias={"1.5": 1}), E.LogitBiasError, "1.5"),
    ("logit-bias-not-dict", chat(logit_bias=[1, 2]), E.InvalidRequestFieldError, "logit_bias"),
    ("top-logprobs-no-logprobs", chat(top_logprobs=2), E.LogprobsNotEnabledError, "logprobs"),
    (
        "top-logprobs-logprobs-false",
        chat(logprobs=False, top_logprobs=2),
        E.LogprobsNotEnabledError,
        "logprobs",
    ),
    ("top-logprobs-high", chat(logprobs=True, top_logprobs=6), E.TopLogprobsError, "6"),
    ("top-logprobs-negative", chat(logprobs=True, top_logprobs=-1), E.TopLogprobsError, "-1"),
    ("logprobs-int", chat(logprobs=1), E.InvalidRequestFieldError, "logprobs"),
    ("n-zero", chat(n=0), E.InvalidRequestFieldError, "n"),
    ("stop-list-of-int", chat(stop=[1]), E.InvalidRequestFieldError, "stop"),
    ("stop-empty-string", chat(stop=""), E.InvalidRequestFieldError, "stop"),
    ("ignore-eos-string", chat(ignore_eos="true"), E.InvalidRequestFieldError, "ignore_eos"),
    ("model-int", chat(model=3), E.InvalidRequestFieldError, "model"),
    ("format-unknown", chat(response_format={"type": "xml"}), E.UnsupportedResponseFormatError, "xml"),
    (
        "format-schema-on-text",
        chat(response_format={"type": "text", "schema": "{}"}),
        E.InvalidResponseFormatError,
        "json_object",
    ),
    (
        "format-grammar-missing",
        chat(response_format={"type": "grammar"}),
        E.InvalidResponseFormatGrammarError,
        "grammar",
    ),
    (
        "format-grammar-wrong-type",
        chat(response_format={"type": "json_object", "grammar": "g"}),
        E.InvalidResponseFormatGrammarError,
        "grammar",
    ),
    ("format-not-dict", chat(response_format="json"), E.InvalidRequestFieldError, "response_format"),
    ("tools-not-list", chat(tools={"type": "function"}), E.InvalidRequestFieldError, "tools"),
    ("tool-type", chat(tools=[{"type": "retrieval"}]), E.UnsupportedToolTypeError, "retrieval"),
    (
        "tool-no-name",
        chat(tools=[{"type": "function", "function": {}}]),
        E.InvalidRequestFieldError,
        "tools[0].function.name",
    ),
    ("tool-choice-unknown", chat(tool_choice="sometimes"), E.InvalidToolChoiceError, "sometimes"),
    (
        "tool-choice-type",
        chat(tools=[{"type": "function", "function": {"name": "f"}}], tool_choice={"type": "retrieval"}),
        E.UnsupportedToolChoiceTypeError,
        "retrieval",
    ),
    (
        "tool-choice-unknown-fn",
        chat(
            tools=[{"type": "function", "function": {"name": "f"}}],
            tool_choice={"type": "function", "function": {"name": "g"}},
        ),
        E.FunctionNotFoundError,
        "'g'",
    ),
    (
        "tool-choice-no-tools",
        chat(tool_choice={"type": "function", "function": {"name": "g"}}),
        E.FunctionNotFoundError,
        "'g'",
    ),
]


@pytest.mark.parametrize(
    ("request_", "cls", "text"), [c[1:] for c in CHAT_ERRORS], ids=[c[0] for c in CHAT_ERRORS]
)
def test_chat_errors(request_: Any, cls: type[Exception], text: str) -> None:
    with pytest.raises(cls) as info:
        validate_chat_request(request_)
    assert type(info.value) is cls
    assert text in str(info.value)
    # Every error must cross the worker boundary as JSON.
    json.dumps(E.error_to_dict(info.value), allow_nan=False)


COMPLETION_ERRORS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("suffix", comp(suffix="end"), E.UnsupportedFieldsError, "suffix"),
    ("user", comp(user="u"), E.UnsupportedFieldsError, "user"),
    ("best-of", comp(best_of=2), E.UnsupportedFieldsError, "best_of"),
    ("best-of-null", comp(best_of=None), E.UnsupportedFieldsError, "best_of"),
    ("all-three", comp(suffix="", user="", best_of=1), E.UnsupportedFieldsError, "suffix, user, best_of"),
    ("prompt-missing", {}, E.InvalidRequestFieldError, "prompt"),
    ("prompt-list", comp(prompt=["a", "b"]), E.InvalidRequestFieldError, "prompt"),
    ("echo-string", comp(echo="yes"), E.InvalidRequestFieldError, "echo"),
    ("stream-n", comp(stream=True, n=3), E.StreamingCountError, "n=3"),
    ("stream-options", comp(stream_options={"include_usage": True}), E.InvalidStreamOptionsError, "stream"),
    ("seed", comp(seed=0.5), E.SeedTypeError, "0.5"),
    ("temperature", comp(temperature=-1), E.TemperatureError, "temperature"),
    ("top-p", comp(top_p=2), E.TopPError, "top_p"),
    ("max-tokens", comp(max_tokens=0), E.MaxTokensError, "max_tokens"),
    ("penalty", comp(frequency_penalty=-3), E.PenaltyRangeError, "frequency_penalty"),
    ("top-logprobs", comp(top_logprobs=1), E.LogprobsNotEnabledError, "logprobs"),
    ("nan", comp(temperature=NAN), E.InvalidRequestFieldError, "temperature"),
]


@pytest.mark.parametrize(
    ("request_", "cls", "text"), [c[1:] for c in COMPLETION_ERRORS], ids=[c[0] for c in COMPLETION_ERRORS]
)
def test_completion_errors(request_: Any, cls: type[Exception], text: str) -> None:
    with pytest.raises(cls) as info:
        validate_completion_request(request_)
    assert type(info.value) is cls
    assert text in str(info.value)


EMBEDDING_ERRORS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("dimensions", {"input": "a", "dimensions": 8}, E.UnsupportedFieldsError, "dimensions"),
    ("user", {"input": "a", "user": "u"}, E.UnsupportedFieldsError, "user"),
    (
        "base64",
        {"input": "a", "encoding_format": "base64"},
        E.EmbeddingUnsupportedEncodingFormatError,
        "base64",
    ),
    (
        "format-unknown",
        {"input": "a", "encoding_format": "int8"},
        E.InvalidRequestFieldError,
        "encoding_format",
    ),
    ("empty-string", {"input": ""}, E.EmbeddingInputEmptyError, "empty"),
    ("empty-list", {"input": []}, E.EmbeddingInputEmptyError, "empty"),
    ("empty-string-in-list", {"input": ["a", ""]}, E.EmbeddingInputEmptyError, "empty"),
    ("empty-token-list-in-list", {"input": [[1], []]}, E.EmbeddingInputEmptyError, "empty"),
    ("missing", {}, E.InvalidRequestFieldError, "input"),
    ("number", {"input": 5}, E.InvalidRequestFieldError, "input"),
    ("mixed", {"input": ["a", 1]}, E.InvalidRequestFieldError, "input"),
    ("negative-token", {"input": [1, -2]}, E.InvalidRequestFieldError, "input"),
    ("float-token", {"input": [[1, 2.5]]}, E.InvalidRequestFieldError, "input[0]"),
    ("bool-token", {"input": [True]}, E.InvalidRequestFieldError, "input"),
    ("model-int", {"input": "a", "model": 1}, E.InvalidRequestFieldError, "model"),
]


@pytest.mark.parametrize(
    ("request_", "cls", "text"), [c[1:] for c in EMBEDDING_ERRORS], ids=[c[0] for c in EMBEDDING_ERRORS]
)
def test_embedding_errors(request_: Any, cls: type[Exception], text: str) -> None:
    with pytest.raises(cls) as info:
        validate_embedding_request(request_)
    assert type(info.value) is cls
    assert text in str(info.value)


def test_invalid_field_error_names_the_field() -> None:
    with pytest.raises(E.InvalidRequestFieldError) as info:
        validate_chat_request(chat(top_p="high"))
    assert info.value.fields == {"field": "top_p", "expected": "a number"}


# ---------------------------------------------------------------- responses, checked by openai's models

EXTRA = {
    "e2e_latency_s": 1.5,
    "prefill_tokens_per_s": 120.0,
    "decode_tokens_per_s": 30.0,
    "time_to_first_token_s": 0.2,
    "time_per_output_token_s": 0.033,
}
LOGPROBS = [
    R.TokenLogprob("Hel", -0.1, list(b"Hel"), [("Hel", -0.1, list(b"Hel")), ("Hi", -2.5, list(b"Hi"))]),
    R.TokenLogprob("lo ✓", -0.3, list("lo ✓".encode()), [("lo ✓", -0.3, list("lo ✓".encode()))]),
]


def roundtrip(obj: dict[str, Any]) -> dict[str, Any]:
    """What the JS side receives: the object must be JSON-serialisable as built."""
    loaded: dict[str, Any] = json.loads(json.dumps(obj, allow_nan=False))
    return loaded


def test_new_id() -> None:
    a, b = R.new_id("chatcmpl"), R.new_id("chatcmpl")
    assert a.startswith("chatcmpl-")
    assert len(a) == len("chatcmpl-") + 32
    assert a != b


def test_usage_fields() -> None:
    assert R.usage(10, 5, None) == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    assert R.usage(10, 5, EXTRA)["extra"] == EXTRA


@pytest.mark.parametrize("finish", ["stop", "length", "tool_calls"])
def test_chat_completion_validates(finish: str) -> None:
    choices = [R.Choice(0, "Hello ✓", finish, LOGPROBS), R.Choice(1, "Other", finish, None)]
    obj = roundtrip(R.chat_completion("chatcmpl-1", "SmolLM2", 1700000000, choices, R.usage(12, 2, EXTRA)))
    model = ChatCompletion.model_validate(obj)
    assert model.object == "chat.completion"
    assert model.id == "chatcmpl-1"
    assert model.created == 1700000000
    assert model.model == "SmolLM2"
    assert [c.message.content for c in model.choices] == ["Hello ✓", "Other"]
    assert [c.message.role for c in model.choices] == ["assistant", "assistant"]
    assert [c.finish_reason for c in model.choices] == [finish, finish]
    assert [c.index for c in model.choices] == [0, 1]
    lp = model.choices[0].logprobs
    assert lp is not None
    assert lp.content is not None
    assert [t.token for t in lp.content] == ["Hel", "lo ✓"]
    assert [t.logprob for t in lp.content] == [-0.1, -0.3]
    assert bytes(lp.content[1].bytes or []).decode() == "lo ✓"
    assert [(t.token, t.logprob) for t in lp.content[0].top_logprobs] == [("Hel", -0.1), ("Hi", -2.5)]
    assert model.choices[1].logprobs is None
    assert model.usage is not None
    assert (model.usage.prompt_tokens, model.usage.completion_tokens, model.usage.total_tokens) == (12, 2, 14)
    assert model.usage.model_dump()["extra"] == EXTRA


def test_chat_completion_tool_calls_validate() -> None:
    call = {"id": "0", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
    obj = roundtrip(
        R.chat_completion("c", "m", 1, [R.Choice(0, "", "tool_calls", None, [call])], R.usage(1, 1, None))
    )
    model = ChatCompletion.model_validate(obj)
    calls = model.choices[0].message.tool_calls
    assert calls is not None
    assert calls[0].function.name == "f"
    assert calls[0].function.arguments == '{"x": 1}'  # type: ignore[union-attr]


def test_abort_is_web_llms_only_departure_from_openai() -> None:
    obj = roundtrip(
        R.chat_completion("c", "m", 1, [R.Choice(0, "partial", "abort", None)], R.usage(3, 1, None))
    )
    assert obj["choices"][0]["finish_reason"] == "abort"
    with pytest.raises(ValidationError) as info:
        ChatCompletion.model_validate(obj)
    # The one complaint is the finish reason's literal; everything else is OpenAI's shape.
    assert [(e["loc"], e["type"]) for e in info.value.errors()] == [
        (("choices", 0, "finish_reason"), "literal_error")
    ]


def test_chat_stream_chunks_validate() -> None:
    first = roundtrip(R.chat_chunk("c", "m", 5, 0, "He", True, None, None))
    middle = roundtrip(R.chat_chunk("c", "m", 5, 0, "llo", False, None, LOGPROBS[:1]))
    last = roundtrip(R.chat_chunk("c", "m", 5, 0, "", False, "length", None))
    usage_chunk = roundtrip(R.chat_usage_chunk("c", "m", 5, R.usage(4, 3, EXTRA)))
    chunks = [ChatCompletionChunk.model_validate(o) for o in (first, middle, last, usage_chunk)]
    assert all(c.object == "chat.completion.chunk" and c.id == "c" and c.created == 5 for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == "He"
    assert "role" not in middle["choices"][0]["delta"]
    assert chunks[1].choices[0].delta.content == "llo"
    middle_lp = chunks[1].choices[0].logprobs
    assert middle_lp is not None
    assert middle_lp.content is not None
    assert middle_lp.content[0].token == "Hel"
    assert [c.choices[0].finish_reason for c in chunks[:3]] == [None, None, "length"]
    assert chunks[3].choices == []
    assert chunks[3].usage is not None
    assert chunks[3].usage.total_tokens == 7
    assert chunks[3].usage.model_dump()["extra"] == EXTRA


def test_chat_chunk_without_content_and_with_tool_calls() -> None:
    call = {"id": "0", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    obj = roundtrip(R.chat_chunk("c", "m", 5, 0, None, False, "tool_calls", None, [call]))
    assert "content" not in obj["choices"][0]["delta"]
    chunk = ChatCompletionChunk.model_validate(obj)
    tool_calls = chunk.choices[0].delta.tool_calls
    assert tool_calls is not None
    assert tool_calls[0].index == 0
    assert tool_calls[0].function is not None
    assert tool_calls[0].function.name == "f"


def test_completion_validates_with_legacy_and_chat_style_logprobs() -> None:
    text = "Once upon a timeHello ✓"  # echo: prompt first, then the two generated tokens
    choices = [R.Choice(0, text, "stop", LOGPROBS), R.Choice(1, "x", "length", None)]
    obj = roundtrip(R.completion("cmpl-1", "m", 9, choices, R.usage(4, 2, EXTRA)))
    model = Completion.model_validate(obj)
    assert model.object == "text_completion"
    assert model.id == "cmpl-1"
    assert model.created == 9
    assert [c.text for c in model.choices] == [text, "x"]
    assert [c.finish_reason for c in model.choices] == ["stop", "length"]
    lp = model.choices[0].logprobs
    assert lp is not None
    assert lp.tokens == ["Hel", "lo ✓"]
    assert lp.token_logprobs == [-0.1, -0.3]
    assert lp.top_logprobs == [{"Hel": -0.1, "Hi": -2.5}, {"lo ✓": -0.3}]
    assert lp.text_offset == [16, 19]
    assert text[16:19] == "Hel"
    assert lp.model_dump()["content"][1]["token"] == "lo ✓"  # web-llm's chat-style list survives
    assert model.usage is not None
    assert model.usage.model_dump()["extra"] == EXTRA


def test_completion_chunks_validate() -> None:
    chunk = roundtrip(R.completion_chunk("cmpl-1", "m", 9, 0, "Hel", None, LOGPROBS[:1]))
    last = roundtrip(R.completion_chunk("cmpl-1", "m", 9, 0, "", "stop", None))
    usage_chunk = roundtrip(R.completion_usage_chunk("cmpl-1", "m", 9, R.usage(4, 1, None)))
    # openai-python's Completion type has no null finish_reason (its stream skips validation),
    # yet OpenAI and web-llm send null mid-stream: that must be the only complaint.
    with pytest.raises(ValidationError) as info:
        Completion.model_validate(chunk)
    assert [(e["loc"], e["input"]) for e in info.value.errors()] == [(("choices", 0, "finish_reason"), None)]
    mid = Completion.model_validate({**chunk, "choices": [{**chunk["choices"][0], "finish_reason": "stop"}]})
    assert mid.object == "text_completion"
    assert mid.choices[0].text == "Hel"
    lp = mid.choices[0].logprobs
    assert lp is not None
    assert lp.text_offset == [0]
    assert lp.tokens == ["Hel"]
    end, tail = Completion.model_validate(last), Completion.model_validate(usage_chunk)
    assert end.choices[0].finish_reason == "stop"
    assert end.choices[0].text == ""
    assert tail.choices == []
    assert tail.usage is not None
    assert tail.usage.total_tokens == 5


def test_embedding_response_validates() -> None:
    vectors = [[0.6, 0.8, 0.0], [0.0, -1.0, 0.0]]
    obj = roundtrip(R.embedding_response("MiniLM", vectors, 7, {"prefill_tokens_per_s": 900.0}))
    model = CreateEmbeddingResponse.model_validate(obj)
    assert model.object == "list"
    assert model.model == "MiniLM"
    assert [d.embedding for d in model.data] == vectors
    assert [d.index for d in model.data] == [0, 1]
    assert all(d.object == "embedding" for d in model.data)
    assert (model.usage.prompt_tokens, model.usage.total_tokens) == (7, 7)
    assert obj["usage"]["extra"] == {"prefill_tokens_per_s": 900.0}
    assert "extra" not in R.embedding_response("MiniLM", vectors, 7)["usage"]
