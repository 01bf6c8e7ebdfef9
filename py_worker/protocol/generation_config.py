"""Sampling and length settings shared by chat and text completions, checked as web-llm does.

A ``None`` field means "use the model's default from mlc-chat-config.json"; the engine fills it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import (
    InvalidResponseFormatError,
    InvalidResponseFormatGrammarError,
    InvalidStreamOptionsError,
    LogitBiasError,
    LogprobsNotEnabledError,
    MaxTokensError,
    PenaltyRangeError,
    RepetitionPenaltyError,
    SeedTypeError,
    StreamingCountError,
    TemperatureError,
    TopLogprobsError,
    TopPError,
    UnsupportedResponseFormatError,
)
from .fields import (
    as_integer,
    bad_field,
    get_bool,
    get_integer,
    get_number,
    is_number,
    present,
    require_mapping,
)

RESPONSE_FORMAT_TYPES = ("text", "json_object", "json_schema", "grammar", "structural_tag")
MAX_TOP_LOGPROBS = 5


@dataclass
class GenerationConfig:
    """What one request asks of the generation loop."""

    temperature: float | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    repetition_penalty: float | None = None
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    logit_bias: dict[int, float] = field(default_factory=dict)
    logprobs: bool = False
    top_logprobs: int = 0
    seed: int | None = None
    ignore_eos: bool = False
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    response_format: dict[str, Any] | None = None


def parse_generation_config(d: Mapping[str, Any], *, response_format: bool) -> GenerationConfig:
    """Read and check the generation fields of a chat or completion request.

    ``response_format`` says whether the request kind accepts that field (chat does,
    text completions do not).
    """
    stream = get_bool(d, "stream")
    include_usage = _stream_options(d, stream)
    n = _choice_count(d, stream)
    seed = _seed(d)
    freq, pres = _penalties(d)
    repetition = get_number(d, "repetition_penalty")
    if repetition is not None and repetition <= 0:
        raise RepetitionPenaltyError(
            f"Make sure `repetition_penalty` > 0, but got {repetition}.", value=repetition
        )
    max_tokens = get_integer(d, "max_tokens")
    if max_tokens is not None and max_tokens <= 0:
        raise MaxTokensError(f"Make sure `max_tokens` > 0, but got {max_tokens}.", value=max_tokens)
    top_p = get_number(d, "top_p")
    if top_p is not None and not 0 < top_p <= 1:
        raise TopPError(f"Make sure 0 < top_p <= 1, but got {top_p}.", value=top_p)
    temperature = get_number(d, "temperature")
    if temperature is not None and temperature < 0:
        raise TemperatureError(f"Make sure temperature >= 0, but got {temperature}.", value=temperature)
    logprobs, top_logprobs = _logprobs(d)
    return GenerationConfig(
        temperature=temperature,
        top_p=top_p,
        frequency_penalty=freq,
        presence_penalty=pres,
        repetition_penalty=repetition,
        max_tokens=max_tokens,
        stop=_stop(d),
        logit_bias=_logit_bias(d),
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        seed=seed,
        ignore_eos=get_bool(d, "ignore_eos"),
        n=n,
        stream=stream,
        include_usage=include_usage,
        response_format=_response_format(d) if response_format else None,
    )


def _stream_options(d: Mapping[str, Any], stream: bool) -> bool:
    if not present(d, "stream_options"):
        return False
    if not stream:
        raise InvalidStreamOptionsError("Only specify stream_options when stream=True.")
    options = require_mapping(d["stream_options"], "stream_options")
    return get_bool(options, "include_usage")


def _choice_count(d: Mapping[str, Any], stream: bool) -> int:
    n = get_integer(d, "n")
    if n is None:
        return 1
    if n < 1:
        raise bad_field("n", "an integer >= 1", n)
    if stream and n > 1:
        raise StreamingCountError(f"When streaming, `n` cannot be > 1, but got n={n}.", n=n)
    return n


def _seed(d: Mapping[str, Any]) -> int | None:
    value = d.get("seed")
    if value is None:
        return None
    seed = as_integer(value)
    if seed is None:
        raise SeedTypeError(f"`seed` should be an integer, but got {value!r}.", value=repr(value))
    return seed


def _penalties(d: Mapping[str, Any]) -> tuple[float | None, float | None]:
    freq = get_number(d, "frequency_penalty")
    pres = get_number(d, "presence_penalty")
    for name, value in (("frequency_penalty", freq), ("presence_penalty", pres)):
        if value is not None and not -2.0 <= value <= 2.0:
            raise PenaltyRangeError(f"Make sure -2 <= {name} <= 2, but got {value}.", field=name, value=value)
    # web-llm: when only one of the two is set, the other becomes 0 rather than the model default.
    if freq is not None and pres is None:
        pres = 0.0
    elif pres is not None and freq is None:
        freq = 0.0
    return freq, pres


def _stop(d: Mapping[str, Any]) -> list[str]:
    value = d.get("stop")
    if value is None:
        return []
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise bad_field("stop", "a non-empty string or a list of non-empty strings", value)
    return list(stops)


def _logit_bias(d: Mapping[str, Any]) -> dict[int, float]:
    value = d.get("logit_bias")
    if value is None:
        return {}
    bias = require_mapping(value, "logit_bias")
    result: dict[int, float] = {}
    for key, amount in bias.items():
        token = _token_key(key)
        if token is None:
            raise LogitBiasError(
                f"logit_bias keys must be token ids written as integer strings, but got {key!r}.",
                key=str(key),
            )
        amount = bias[key]
        # NaN and the infinities fail the range test too.
        if not is_number(amount) or not -100 <= amount <= 100:
            raise LogitBiasError(
                f"Make sure -100 <= logit_bias <= 100, but got {amount!r} for token id {token}.",
                token=token,
                value=repr(amount),
            )
        result[token] = float(amount)
    return result


def _token_key(key: Any) -> int | None:
    if isinstance(key, str):
        return int(key) if key.isascii() and key.isdigit() else None
    if isinstance(key, int) and not isinstance(key, bool) and key >= 0:
        return key  # a Python caller may pass int keys directly
    return None


def _logprobs(d: Mapping[str, Any]) -> tuple[bool, int]:
    logprobs = get_bool(d, "logprobs")
    top = get_integer(d, "top_logprobs")
    if top is None:
        return logprobs, 0
    if not logprobs:
        raise LogprobsNotEnabledError("top_logprobs requires logprobs to be true.", top_logprobs=top)
    if not 0 <= top <= MAX_TOP_LOGPROBS:
        raise TopLogprobsError(
            f"Make sure 0 <= top_logprobs <= {MAX_TOP_LOGPROBS}, but got {top}.", value=top
        )
    return logprobs, top


def _response_format(d: Mapping[str, Any]) -> dict[str, Any] | None:
    value = d.get("response_format")
    if value is None:
        return None
    fmt = dict(require_mapping(value, "response_format"))
    kind = fmt.get("type", "text")
    if kind not in RESPONSE_FORMAT_TYPES:
        raise UnsupportedResponseFormatError(
            f"response_format.type must be one of {', '.join(RESPONSE_FORMAT_TYPES)}, but got {kind!r}.",
            type=repr(kind),
        )
    if present(fmt, "schema") and kind != "json_object":
        raise InvalidResponseFormatError(
            "A JSON schema is only supported with the `json_object` response format.", type=kind
        )
    if present(fmt, "schema") and not isinstance(fmt["schema"], str | dict):
        raise bad_field("response_format.schema", "a JSON schema (string or object)", fmt["schema"])
    has_grammar = present(fmt, "grammar")
    if has_grammar != (kind == "grammar"):
        raise InvalidResponseFormatGrammarError(
            "When response_format.type is `grammar`, response_format.grammar must be given, and "
            "response_format.grammar needs type `grammar`.",
            type=kind,
        )
    if has_grammar and not isinstance(fmt["grammar"], str):
        raise bad_field("response_format.grammar", "a string (EBNF grammar)", fmt["grammar"])
    if kind == "json_schema":  # OpenAI's form: {type, json_schema: {name, schema?, strict?}}
        spec = require_mapping(fmt.get("json_schema"), "response_format.json_schema")
        if not isinstance(spec.get("name"), str):
            raise bad_field("response_format.json_schema.name", "a string", spec.get("name"))
        if present(spec, "schema") and not isinstance(spec["schema"], dict):
            raise bad_field("response_format.json_schema.schema", "a JSON schema object", spec["schema"])
    if kind == "structural_tag" and not isinstance(fmt.get("structural_tag"), str | dict):
        wanted = "a structural tag (object or JSON text)"
        raise bad_field("response_format.structural_tag", wanted, fmt.get("structural_tag"))
    fmt["type"] = kind
    return fmt


ANY_OBJECT = '{"type": "object"}'


def grammar_of(fmt: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """``(kind, source)`` of ``kernels.grammar_spec`` for a checked response_format; None for text.

    ``json_object`` is a JSON object (OpenAI's meaning), or one that matches its ``schema``
    (web-llm's form); ``json_schema`` is OpenAI's form of the same; ``grammar`` is EBNF."""
    kind = (fmt or {}).get("type", "text")
    if fmt is None or kind == "text":
        return None
    if kind == "grammar":
        return "ebnf", str(fmt["grammar"])
    if kind == "structural_tag":
        tag = fmt["structural_tag"]
        return "structural_tag", tag if isinstance(tag, str) else json.dumps(tag)
    schema = fmt.get("schema") if kind == "json_object" else fmt["json_schema"].get("schema")
    if schema is None:
        return "json_schema", ANY_OBJECT
    return "json_schema", schema if isinstance(schema, str) else json.dumps(schema)
