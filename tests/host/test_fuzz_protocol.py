"""Fuzz request validation against the OpenAI schemas of the ``openai`` package.

Requests are generated from the package's own TypedDicts (chat, text completion, embedding
create params), walked here into hypothesis strategies, and then broken by mutations that the
OpenAI surface web-llm accepts must refuse. For every request:

- validation returns, or raises a *named* py_worker error: a ``RequestValidationError``
  subclass other than the family bases; never another exception, never a hang;
- a request it accepts is one the OpenAI schema accepts in every field web-llm reads (it ignores
  the others unchecked, as web-llm does), with web-llm's documented extensions
  (``as_openai``): null means absent, ``model`` may be left out, chat's
  ``response_format`` may be ``grammar`` or ``structural_tag``, completions take ``logprobs`` as
  a boolean;
- a request a mutation broke is refused, with the error class web-llm names where it names one.

The number of requests checked is printed and written to bench/out/fuzz.json;
``PY_WORKER_FUZZ=explore`` runs ten times as many, different on every run.
"""

from __future__ import annotations

import collections.abc as cabc
import json
import math
import os
import signal
import time
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typing_extensions as te
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai import _types as openai_types
from openai.types import completion_create_params as openai_completion
from openai.types import embedding_create_params as openai_embedding
from openai.types.chat import completion_create_params as openai_chat

from py_worker import errors
from py_worker.errors import RequestValidationError
from py_worker.protocol import validate_chat_request, validate_completion_request, validate_embedding_request

OUT = Path(__file__).resolve().parents[2] / "bench" / "out" / "fuzz.json"
HANG_S = 10
EXAMPLES = 120
FAMILIES = (errors.PyWorkerError, RequestValidationError, errors.GenerationConfigError)
COUNTS: dict[str, int] = {}
SLOWEST = [0.0]

SCHEMAS: dict[str, Any] = {
    "chat": openai_chat.CompletionCreateParamsBase,
    "completion": openai_completion.CompletionCreateParamsBase,
    "embedding": openai_embedding.EmbeddingCreateParams,
}
VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "chat": validate_chat_request,
    "completion": validate_completion_request,
    "embedding": validate_embedding_request,
}

# ---- the schema, read from the openai package's type hints -------------------------------------

WRAPPERS = {typing.Required, typing.NotRequired, te.Required, te.NotRequired, typing.Annotated}
SEQUENCES = {list, cabc.Iterable, cabc.Sequence, openai_types.SequenceNotStr}
UNIONS = {typing.Union, types.UnionType}


def hints(td: Any) -> dict[str, Any]:
    return typing.get_type_hints(td, include_extras=True)


def is_required(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Required, te.Required)


def unwrap(hint: Any) -> Any:
    while typing.get_origin(hint) in WRAPPERS:
        hint = typing.get_args(hint)[0]
    return hint


TEXT = st.one_of(st.text(max_size=8), st.sampled_from(["Hi", "user", "text", "function", "auto", "none"]))


def strategy(hint: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of the JSON shape ``hint`` describes (nesting bounded, so generation stays small)."""
    hint = unwrap(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return st.none()
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in UNIONS:
        return st.one_of(*(strategy(a, depth) for a in args))
    if hint is str:
        return TEXT
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(-3, 300)
    if hint is float:
        return st.one_of(st.floats(-3, 3), st.sampled_from([0.0, 1.0, 0.5]))
    if origin in SEQUENCES or hint in SEQUENCES:
        item = strategy(args[0] if args else object, depth + 1)
        return st.lists(item, max_size=3 if depth < 3 else 0)
    if origin is dict or hint is dict:
        key, value = args if args else (str, object)
        return st.dictionaries(strategy(key, depth + 1), strategy(value, depth + 1), max_size=2)
    if te.is_typeddict(hint):
        fields = hints(hint)
        required = {k: strategy(v, depth + 1) for k, v in fields.items() if is_required(v)}
        optional = (
            {} if depth > 3 else {k: strategy(v, depth + 1) for k, v in fields.items() if not is_required(v)}
        )
        return st.fixed_dictionaries(required, optional=optional)
    return st.one_of(st.none(), st.integers(), TEXT)  # object / Any


def conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` (decoded JSON) has the shape ``hint`` describes. JSON semantics: an
    integral number is an integer, NaN and the infinities are no numbers, extra keys are allowed."""
    hint = unwrap(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin in UNIONS:
        return any(conforms(value, a) for a in args)
    if hint is str:
        return isinstance(value, str)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return number(value) and float(value).is_integer()
    if hint is float:
        return number(value)
    if origin in SEQUENCES or hint in SEQUENCES:
        return isinstance(value, list) and all(conforms(v, args[0] if args else object) for v in value)
    if origin is dict or hint is dict:
        key, item = args if args else (str, object)
        return isinstance(value, dict) and all(
            conforms(k, key) and conforms(v, item) for k, v in value.items()
        )
    if te.is_typeddict(hint):
        fields = hints(hint)
        return (
            isinstance(value, dict)
            and all(k in value for k, h in fields.items() if is_required(h))
            and all(conforms(v, fields[k]) for k, v in value.items() if k in fields)
        )
    return True  # object / Any


def number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# The fields web-llm's surface reads ; it ignores OpenAI's others unchecked, as web-llm does.
GENERATION_FIELDS = {
    "model", "stream", "stream_options", "n", "frequency_penalty", "presence_penalty", "repetition_penalty",
    "max_tokens", "stop", "temperature", "top_p", "logit_bias", "logprobs", "top_logprobs", "seed",
    "ignore_eos",
}  # fmt: skip
READ = {
    "chat": {*GENERATION_FIELDS, "messages", "tools", "tool_choice", "response_format"},
    "completion": {*GENERATION_FIELDS, "prompt", "echo", "suffix", "user", "best_of"},
    "embedding": {"model", "input", "encoding_format", "dimensions", "user"},
}


def as_openai(kind: str, request: dict[str, Any]) -> dict[str, Any]:
    """The request as plain OpenAI reads it, with web-llm's documented extensions taken out and
    the fields web-llm ignores left out."""
    fields = hints(SCHEMAS[kind])
    out = {
        k: v
        for k, v in request.items()
        if k in READ[kind] and (v is not None or (k in fields and is_required(fields[k])))
    }
    if out.get("model") is None:
        out["model"] = "any-model"  # web-llm: model is optional (the loaded one serves)
    fmt = out.get("response_format")
    if kind == "chat" and isinstance(fmt, dict) and fmt.get("type") in ("grammar", "structural_tag"):
        del out["response_format"]  # web-llm's own response formats
    if kind == "completion" and isinstance(out.get("logprobs"), bool):
        del out["logprobs"]  # web-llm's completions take chat-style boolean logprobs
    return out


# ---- requests ----------------------------------------------------------------------------------

USER = [{"role": "user", "content": "Hi"}]


def schema_requests(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """Requests straight from the OpenAI TypedDict; for chat, half of them get a plain user turn
    as messages, so the fields after ``messages`` are reached too."""
    raw = strategy(SCHEMAS[kind])
    if kind == "chat":
        return st.one_of(raw, raw.map(lambda r: {**r, "messages": USER}))
    return raw


# Requests web-llm's surface accepts, for the mutations to break.
base_generation = {
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0.01, 1),
    "max_tokens": st.integers(1, 512),
    "seed": st.integers(0, 2**31),
    "frequency_penalty": st.floats(-2, 2),
    "presence_penalty": st.floats(-2, 2),
    "repetition_penalty": st.floats(0.1, 2),
    "stop": st.one_of(TEXT.filter(bool), st.lists(TEXT.filter(bool), max_size=2)),
    "logit_bias": st.dictionaries(st.integers(0, 999).map(str), st.integers(-100, 100), max_size=2),
}
BASE: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "chat": st.fixed_dictionaries({"messages": st.just(USER)}, optional=base_generation),
    "completion": st.fixed_dictionaries({"prompt": TEXT}, optional=base_generation),
    "embedding": st.fixed_dictionaries(
        {"input": st.one_of(TEXT.filter(bool), st.lists(st.integers(0, 500), min_size=1, max_size=4))}
    ),
}

Mutation = tuple[str, dict[str, Any], tuple[type[errors.PyWorkerError], ...]]
"""(name, fields to set — a value of DROP removes the field, expected error classes)."""
DROP = object()
ANY_BAD: tuple[type[errors.PyWorkerError], ...] = (RequestValidationError,)
BAD_NUMBERS = [math.nan, math.inf, -math.inf, "1", True, [1], {"x": 1}]
GEN = errors.GenerationConfigError
FIELD = errors.InvalidRequestFieldError


def number_mutations(field: str, out_of_range: list[Any], cls: type[errors.PyWorkerError]) -> list[Mutation]:
    return [(f"{field}={v!r}", {field: v}, (cls,)) for v in out_of_range] + [
        (f"{field}={v!r}", {field: v}, (FIELD, GEN, errors.SeedTypeError)) for v in BAD_NUMBERS
    ]


GENERATION_MUTATIONS: list[Mutation] = [
    *number_mutations("temperature", [-0.01, -1e9], errors.TemperatureError),
    *number_mutations("top_p", [0, -0.5, 1.0001, 7], errors.TopPError),
    *number_mutations("frequency_penalty", [2.01, -2.01, 1e9], errors.PenaltyRangeError),
    *number_mutations("presence_penalty", [2.5, -3], errors.PenaltyRangeError),
    *number_mutations("repetition_penalty", [0, -1], errors.RepetitionPenaltyError),
    *number_mutations("max_tokens", [0, -1, -(2**40)], errors.MaxTokensError),
    ("max_tokens=1.5", {"max_tokens": 1.5}, (FIELD,)),
    ("n=0", {"n": 0}, (FIELD,)),
    ("n=1.5", {"n": 1.5}, (FIELD,)),
    ("seed=1.5", {"seed": 1.5}, (errors.SeedTypeError,)),
    ("seed='7'", {"seed": "7"}, (errors.SeedTypeError,)),
    ("seed=nan", {"seed": math.nan}, (errors.SeedTypeError,)),
    ("stream+n", {"stream": True, "n": 2}, (errors.StreamingCountError,)),
    (
        "stream_options w/o stream",
        {"stream_options": {"include_usage": True}},
        (errors.InvalidStreamOptionsError,),
    ),
    ("stream='yes'", {"stream": "yes"}, (FIELD,)),
    ("logit_bias key", {"logit_bias": {"abc": 1}}, (errors.LogitBiasError,)),
    ("logit_bias key<0", {"logit_bias": {"-1": 1}}, (errors.LogitBiasError,)),
    ("logit_bias 101", {"logit_bias": {"5": 101}}, (errors.LogitBiasError,)),
    ("logit_bias nan", {"logit_bias": {"5": math.nan}}, (errors.LogitBiasError,)),
    ("logit_bias list", {"logit_bias": [1, 2]}, (FIELD,)),
    ("top_logprobs w/o logprobs", {"top_logprobs": 2}, (errors.LogprobsNotEnabledError,)),
    ("top_logprobs=6", {"logprobs": True, "top_logprobs": 6}, (errors.TopLogprobsError,)),
    ("top_logprobs=-1", {"logprobs": True, "top_logprobs": -1}, (errors.TopLogprobsError,)),
    ("stop=''", {"stop": ""}, (FIELD,)),
    ("stop=['']", {"stop": ["a", ""]}, (FIELD,)),
    ("stop=5", {"stop": 5}, (FIELD,)),
    ("model=5", {"model": 5}, (FIELD,)),
]
MUTATIONS: dict[str, list[Mutation]] = {
    "chat": [
        *GENERATION_MUTATIONS,
        ("no messages", {"messages": DROP}, (FIELD,)),
        ("messages=[]", {"messages": []}, (FIELD,)),
        ("messages='Hi'", {"messages": "Hi"}, (FIELD,)),
        ("role wizard", {"messages": [{"role": "wizard", "content": "x"}]}, (errors.UnsupportedRoleError,)),
        ("role missing", {"messages": [{"content": "x"}]}, (FIELD,)),
        (
            "system second",
            {"messages": [*USER, {"role": "system", "content": "s"}, *USER]},
            (errors.SystemMessageOrderError,),
        ),
        (
            "last assistant",
            {"messages": [*USER, {"role": "assistant", "content": "a"}]},
            (errors.MessageOrderError,),
        ),
        ("user content 5", {"messages": [{"role": "user", "content": 5}]}, (errors.UserMessageContentError,)),
        (
            "user image part",
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            (errors.UserMessageContentError,),
        ),
        (
            "system content list",
            {"messages": [{"role": "system", "content": [1]}, *USER]},
            (errors.ContentTypeError,),
        ),
        (
            "response_format xml",
            {"response_format": {"type": "xml"}},
            (errors.UnsupportedResponseFormatError,),
        ),
        (
            "schema with text",
            {"response_format": {"type": "text", "schema": "{}"}},
            (errors.InvalidResponseFormatError,),
        ),
        (
            "grammar missing",
            {"response_format": {"type": "grammar"}},
            (errors.InvalidResponseFormatGrammarError,),
        ),
        ("tools retrieval", {"tools": [{"type": "retrieval"}]}, (errors.UnsupportedToolTypeError,)),
        ("tools not list", {"tools": {"type": "function"}}, (FIELD,)),
        ("tool_choice sometimes", {"tool_choice": "sometimes"}, (errors.InvalidToolChoiceError,)),
        (
            "tool_choice unknown function",
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            (errors.FunctionNotFoundError,),
        ),
    ],
    "completion": [
        *GENERATION_MUTATIONS,
        ("no prompt", {"prompt": DROP}, (FIELD,)),
        ("prompt tokens", {"prompt": [1, 2, 3]}, (FIELD,)),
        ("suffix", {"suffix": "x"}, (errors.UnsupportedFieldsError,)),
        ("user", {"user": "u"}, (errors.UnsupportedFieldsError,)),
        ("best_of null", {"best_of": None}, (errors.UnsupportedFieldsError,)),
        ("echo='yes'", {"echo": "yes"}, (FIELD,)),
    ],
    "embedding": [
        ("no input", {"input": DROP}, (FIELD,)),
        ("input ''", {"input": ""}, (errors.EmbeddingInputEmptyError,)),
        ("input []", {"input": []}, (errors.EmbeddingInputEmptyError,)),
        ("input ['']", {"input": ["a", ""]}, (errors.EmbeddingInputEmptyError,)),
        ("input [[]]", {"input": [[1], []]}, (errors.EmbeddingInputEmptyError,)),
        ("input [-1]", {"input": [-1]}, (FIELD,)),
        ("input [1.5]", {"input": [1, 1.5]}, (FIELD,)),
        ("input [nan]", {"input": [math.nan]}, (FIELD,)),
        ("input mixed", {"input": ["a", [1]]}, (FIELD,)),
        ("input 5", {"input": 5}, (FIELD,)),
        ("dimensions", {"dimensions": 8}, (errors.UnsupportedFieldsError,)),
        ("user", {"user": "u"}, (errors.UnsupportedFieldsError,)),
        ("base64", {"encoding_format": "base64"}, (errors.EmbeddingUnsupportedEncodingFormatError,)),
        ("encoding 3", {"encoding_format": 3}, (FIELD,)),
    ],
}

# ---- the checks --------------------------------------------------------------------------------


class Hang(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise Hang(f"validation ran past {HANG_S} s")


def validate(kind: str, request: Any) -> BaseException | None:
    """Run the validator under an alarm; returns the exception it raised, or None."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_S)
    started = time.perf_counter()
    try:
        VALIDATORS[kind](request)
    except Hang:
        raise
    except Exception as exc:
        return exc
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        SLOWEST[0] = max(SLOWEST[0], time.perf_counter() - started)
        COUNTS[kind] = COUNTS.get(kind, 0) + 1
    return None


def assert_named(exc: BaseException, request: Any) -> None:
    assert isinstance(exc, RequestValidationError), (type(exc).__name__, exc, request)
    assert type(exc) not in FAMILIES, (type(exc).__name__, request)
    assert exc.to_dict()["name"] == type(exc).__name__
    json.dumps(exc.to_dict())  # the fields cross the worker boundary as JSON-like data


def check(kind: str, request: Any) -> BaseException | None:
    """The property every request must meet; returns the error, if refused."""
    exc = validate(kind, request)
    if exc is None:
        assert isinstance(request, dict)
        openai_view = as_openai(kind, request)
        assert conforms(openai_view, SCHEMAS[kind]), ("accepted, but the OpenAI schema refuses", request)
        COUNTS[f"{kind}_accepted"] = COUNTS.get(f"{kind}_accepted", 0) + 1
    else:
        assert_named(exc, request)
    return exc


def mutate(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in change.items():
        if value is DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


# ---- tests -------------------------------------------------------------------------------------

EXPLORE = os.environ.get("PY_WORKER_FUZZ") == "explore"
"""CI runs a fixed set of examples; PY_WORKER_FUZZ=explore runs ten times as many, new each run."""
FUZZ = settings(
    max_examples=EXAMPLES * (10 if EXPLORE else 1),
    derandomize=not EXPLORE,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
KINDS = list(SCHEMAS)


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    if not COUNTS:
        return
    total = sum(v for k, v in COUNTS.items() if k in SCHEMAS)
    print(f"\nprotocol fuzz: {total} requests validated {COUNTS}, slowest {SLOWEST[0] * 1e3:.1f} ms")
    record = json.loads(OUT.read_text()) if OUT.exists() else {}
    record["protocol"] = {"requests": total, **COUNTS, "slowest_validation_s": SLOWEST[0]}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(record, indent=2) + "\n")


MINIMAL: dict[str, dict[str, Any]] = {
    "chat": {"messages": USER},
    "completion": {"prompt": "p"},
    "embedding": {"input": "x"},
}
OFF_SCHEMA: dict[str, dict[str, Any]] = {
    "chat": {"temperature": math.nan},
    "completion": {"max_tokens": 1.5},
    "embedding": {"dimensions": "8"},
}


@pytest.mark.parametrize("kind", KINDS)
def test_schema_walker_reads_the_openai_types(kind: str) -> None:
    """The walker must see the schema's required fields, or the fuzz below would be hollow."""
    required = {k for k, h in hints(SCHEMAS[kind]).items() if is_required(h)}
    assert required == {"model", *MINIMAL[kind]}
    minimal = {"model": "m", **MINIMAL[kind]}
    assert conforms(minimal, SCHEMAS[kind])
    assert not conforms({"model": "m"}, SCHEMAS[kind])
    assert not conforms({**minimal, **OFF_SCHEMA[kind]}, SCHEMAS[kind])


@FUZZ
@given(data=st.data())
@pytest.mark.parametrize("kind", KINDS)
def test_schema_shaped_requests_are_accepted_or_refused_by_name(kind: str, data: st.DataObject) -> None:
    request = data.draw(schema_requests(kind))
    assert conforms(request, SCHEMAS[kind])
    check(kind, request)


@FUZZ
@given(data=st.data())
@pytest.mark.parametrize("kind", KINDS)
def test_broken_requests_are_refused_by_name(kind: str, data: st.DataObject) -> None:
    base = data.draw(BASE[kind])
    assert validate(kind, base) is None, base  # the base is one web-llm's surface accepts
    name, change, expected = data.draw(st.sampled_from(MUTATIONS[kind]))
    request = mutate(base, change)
    exc = check(kind, request)
    assert exc is not None, (name, request)
    assert isinstance(exc, expected), (name, type(exc).__name__, expected)


@FUZZ
@given(data=st.data())
@pytest.mark.parametrize("kind", KINDS)
def test_junk_anywhere_is_refused_by_name_or_accepted_as_schema(kind: str, data: st.DataObject) -> None:
    """Schema-shaped requests with one field, at any depth, replaced by junk (wrong types, NaN,
    huge strings, negative numbers, nested junk)."""
    request = data.draw(schema_requests(kind))
    junk = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(),
        st.text(max_size=5),
        st.just("x" * 200_000),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(TEXT, st.integers(), max_size=2),
    )
    path = data.draw(st.lists(st.integers(0, 5), min_size=1, max_size=4))
    check(kind, replace_at(request, path, data.draw(junk)))
    check("chat" if kind != "chat" else "completion", request)  # a request of the wrong kind, too


def replace_at(value: Any, path: list[int], junk: Any) -> Any:
    """``value`` with the node reached by following ``path`` (child indices, wrapping) replaced."""
    if not path or not isinstance(value, dict | list) or not value:
        return junk
    if isinstance(value, dict):
        key = sorted(value)[path[0] % len(value)]
        return {**value, key: replace_at(value[key], path[1:], junk)}
    i = path[0] % len(value)
    return [*value[:i], replace_at(value[i], path[1:], junk), *value[i + 1 :]]
