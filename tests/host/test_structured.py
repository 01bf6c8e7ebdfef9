"""Structured output through the engine on the reference backend (NumPy + PyPI xgrammar).

Every response_format form the engine accepts is honoured: OpenAI's ``json_schema``, web-llm's
``json_object`` with a ``schema``, plain ``json_object`` and an EBNF ``grammar``. Every answer
must parse and match its schema, on the random-weight tiny model (a constraint must hold for a
gibberish model) and on SmolLM2, streamed and not; every response validates as the openai
package's model. A schema that does not compile fails by name and leaves the model usable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any, Literal, TypedDict

import jsonschema
import openai.types.chat as oc
import pytest

from py_worker.engine import MLCEngine
from py_worker.errors import GrammarError, UnsupportedFieldsError
from py_worker.reference import ReferenceKernels
from tests.structured_cases import EBNF_LANGUAGE, EBNF_YES_NO, MAX_TOKENS, SCHEMAS

ASK = [{"role": "user", "content": "Describe one thing as JSON."}]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def loaded(app_config: dict[str, Any], model_id: str) -> MLCEngine:
    engine = MLCEngine(ReferenceKernels(), app_config)
    await engine.reload([model_id])
    return engine


def openai_form(name: str) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": SCHEMAS[name]}}


def checked(reply: dict[str, Any], schema: dict[str, Any]) -> Any:
    """The reply's content, parsed and checked against ``schema`` and the openai model."""
    oc.ChatCompletion.model_validate(reply)
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "stop", choice
    value = json.loads(choice["message"]["content"])
    jsonschema.validate(value, schema)
    return value


def test_every_schema_holds_on_the_random_tiny_model(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        engine = await loaded(app_config, "tiny-a")
        for name, schema in SCHEMAS.items():
            for seed in (0, 1):  # sampled (seeded), so the two runs walk different paths
                reply = await engine.chat.completions.create(
                    messages=ASK, max_tokens=MAX_TOKENS, seed=seed, response_format=openai_form(name)
                )
                checked(reply, schema)

    run(main())


def test_every_schema_and_json_mode_hold_on_smollm2(smollm2_gguf_config: dict[str, Any]) -> None:
    async def main() -> None:
        engine = await loaded(smollm2_gguf_config, "smol")
        values = []
        for name, schema in SCHEMAS.items():
            reply = await engine.chat.completions.create(
                messages=ASK, max_tokens=MAX_TOKENS, temperature=0, response_format=openai_form(name)
            )
            values.append(checked(reply, schema))
        assert len({json.dumps(v) for v in values}) > len(values) // 2  # answers, not one fixed text
        # Plain JSON mode is OpenAI's: a JSON object (its keys unbounded: a real model ends them).
        plain = await engine.chat.completions.create(
            messages=ASK, max_tokens=MAX_TOKENS, temperature=0, response_format={"type": "json_object"}
        )
        assert isinstance(checked(plain, {"type": "object"}), dict)

    run(main())


def test_streamed_web_llm_form_and_plain_json_object(app_config: dict[str, Any]) -> None:
    """web-llm's {type: json_object, schema: "<text>"} streamed: the chunks join into valid JSON."""

    async def main() -> None:
        engine = await loaded(app_config, "tiny-a")
        schema = SCHEMAS["nested-object"]
        fmt = {"type": "json_object", "schema": json.dumps(schema)}
        stream = await engine.chat.completions.create(
            messages=ASK, stream=True, max_tokens=MAX_TOKENS, seed=3, response_format=fmt
        )
        text, finish = "", None
        async with stream:
            async for chunk in stream:
                oc.ChatCompletionChunk.model_validate(chunk)
                for choice in chunk["choices"]:
                    text += choice["delta"].get("content") or ""
                    finish = choice["finish_reason"] or finish
        assert finish == "stop"
        jsonschema.validate(json.loads(text), schema)

    run(main())


def test_ebnf_grammar_and_n_choices(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        engine = await loaded(app_config, "tiny-b")
        reply = await engine.chat.completions.create(
            messages=ASK,
            n=3,
            seed=5,
            max_tokens=20,
            response_format={"type": "grammar", "grammar": EBNF_YES_NO},
        )
        oc.ChatCompletion.model_validate(reply)
        for choice in reply["choices"]:
            assert choice["message"]["content"] in EBNF_LANGUAGE
            assert choice["finish_reason"] == "stop"

    run(main())


def test_a_bad_schema_fails_by_name_and_the_model_goes_on(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        engine = await loaded(app_config, "tiny-a")
        bad = {"type": "object", "properties": {"x": {"$ref": "#/$defs/missing"}}}
        with pytest.raises(GrammarError) as caught:
            await engine.chat.completions.create(
                messages=ASK, max_tokens=8, response_format={"type": "json_object", "schema": bad}
            )
        assert caught.value.fields["kind"] == "json_schema"
        assert "missing" in caught.value.fields["reason"]
        with pytest.raises(GrammarError):
            await engine.chat.completions.create(
                messages=ASK, max_tokens=8, response_format={"type": "grammar", "grammar": "root ::= "}
            )
        with pytest.raises(UnsupportedFieldsError) as refused:  # a grammar ends at the end token
            await engine.chat.completions.create(
                messages=ASK, max_tokens=8, ignore_eos=True, response_format={"type": "json_object"}
            )
        assert refused.value.fields["fields_found"] == ["ignore_eos"]
        reply = await engine.chat.completions.create(
            messages=ASK, max_tokens=40, seed=1, response_format=openai_form("const")
        )
        assert checked(reply, SCHEMAS["const"]) == {"kind": "point"}

    run(main())


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["C", "F"]}},
            "required": ["city", "unit"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"enum": ["UTC", "CET"]}},
            "required": ["zone"],
        },
    },
}


def call_of(reply: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The one tool call of a reply (checked as openai's model), as (name, arguments)."""
    parsed = oc.ChatCompletion.model_validate(reply)
    choice = parsed.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    assert len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    return call.function.name, json.loads(call.function.arguments)


def long_context(app_config: dict[str, Any]) -> dict[str, Any]:
    """The tiny models with room for the tools' system prompt (their byte tokens are many)."""
    grown = {"context_window_size": 2048}
    return {"model_list": [{**r, "overrides": grown} for r in app_config["model_list"]]}


@pytest.mark.parametrize("model_id", ["tiny-a", "tiny-b"])
def test_forced_tool_calls_round_trip(app_config: dict[str, Any], model_id: str) -> None:
    """tool_choice "required" and a named function make the answer one valid call, on a
    gibberish model too; the call and its result go back as messages and the model answers."""

    async def main() -> None:
        engine = await loaded(long_context(app_config), model_id)
        messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
        for seed in range(3):
            reply = await engine.chat.completions.create(
                messages=messages,
                tools=[WEATHER, TIME],
                tool_choice="required",
                seed=seed,
                max_tokens=MAX_TOKENS,
            )
            name, args = call_of(reply)
            tool = {WEATHER["function"]["name"]: WEATHER, TIME["function"]["name"]: TIME}[name]
            jsonschema.validate(args, tool["function"]["parameters"])
        named = {"type": "function", "function": {"name": "get_time"}}
        reply = await engine.chat.completions.create(
            messages=messages, tools=[WEATHER, TIME], tool_choice=named, seed=9, max_tokens=MAX_TOKENS
        )
        name, args = call_of(reply)
        assert name == "get_time"
        assert args["zone"] in ("UTC", "CET")
        message = reply["choices"][0]["message"]
        assert message["content"] is None
        follow = [
            *messages,
            {"role": "assistant", "content": None, "tool_calls": message["tool_calls"]},
            {"role": "tool", "tool_call_id": message["tool_calls"][0]["id"], "content": '{"time": "12:00"}'},
        ]
        final = await engine.chat.completions.create(
            messages=follow, tools=[WEATHER, TIME], tool_choice="none", seed=1, max_tokens=12
        )
        parsed = oc.ChatCompletion.model_validate(final)
        assert parsed.choices[0].message.tool_calls is None
        assert parsed.choices[0].finish_reason in ("stop", "length")

    run(main())


def test_streamed_tool_call_comes_in_the_last_chunk(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        engine = await loaded(long_context(app_config), "tiny-a")
        stream = await engine.chat.completions.create(
            messages=[{"role": "user", "content": "Time?"}],
            tools=[TIME],
            tool_choice="required",
            stream=True,
            seed=2,
            max_tokens=MAX_TOKENS,
        )
        chunks = [oc.ChatCompletionChunk.model_validate(c) async for c in stream]
        shown = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert shown == ""  # a forced call is no text
        last = chunks[-1].choices[0]
        assert last.finish_reason == "tool_calls"
        assert last.delta.tool_calls is not None
        assert last.delta.tool_calls[0].function is not None
        assert last.delta.tool_calls[0].function.name == "get_time"
        args = json.loads(last.delta.tool_calls[0].function.arguments or "")
        jsonschema.validate(args, TIME["function"]["parameters"])

    run(main())


def test_auto_tool_choice_on_smollm2(smollm2_gguf_config: dict[str, Any]) -> None:
    """tool_choice "auto" lets a real model answer in text or call: whichever it does, a call is
    valid and the text is not a half call."""

    async def main() -> None:
        engine = await loaded(smollm2_gguf_config, "smol")
        for content in ("What is the weather in Paris, in C?", "Say hello."):
            reply = await engine.chat.completions.create(
                messages=[{"role": "user", "content": content}], tools=[WEATHER], temperature=0, max_tokens=80
            )
            parsed = oc.ChatCompletion.model_validate(reply)
            message = parsed.choices[0].message
            for call in message.tool_calls or []:
                assert call.function.name == "get_weather"
                jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])
            assert "<tool_call>" not in (message.content or "")

    run(main())


@dataclasses.dataclass
class Pet:
    name: str
    legs: int
    kind: Literal["cat", "dog"]
    indoor: bool = True


class Owner(TypedDict):
    pet: Pet
    age: int | None


def test_parse_returns_the_answer_as_a_python_type(smollm2_gguf_config: dict[str, Any]) -> None:
    """openai-python's ``parse``: a dataclass or TypedDict in, its instance out (SmolLM2)."""

    async def main() -> None:
        engine = await loaded(smollm2_gguf_config, "smol")
        ask = [{"role": "user", "content": "Describe a pet."}]
        parse = engine.chat.completions.parse
        reply = await parse(messages=ask, response_format=Pet, temperature=0, max_tokens=80)
        pet = reply["choices"][0]["message"]["parsed"]
        assert isinstance(pet, Pet)
        assert pet.kind in ("cat", "dog")
        assert isinstance(pet.legs, int)
        owner = await parse(messages=ask, response_format=Owner, temperature=0, max_tokens=120)
        parsed = owner["choices"][0]["message"]["parsed"]
        assert isinstance(parsed["pet"], Pet)
        assert parsed["age"] is None or isinstance(parsed["age"], int)

    run(main())


def test_python_types_as_schemas() -> None:
    from py_worker.schema import build, json_schema

    schema = json_schema(Owner)
    value = {"pet": {"name": "Rex", "legs": 4, "kind": "dog"}, "age": None}
    jsonschema.validate(value, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**value, "extra": 1}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"pet": {"name": "Rex", "legs": 4, "kind": "cow"}, "age": 3}, schema)
    assert build(Owner, value) == {"pet": Pet("Rex", 4, "dog"), "age": None}
    assert json_schema(Pet)["required"] == ["name", "legs", "kind"]  # indoor has a default
    assert build(list[float], [1, 2.5]) == [1.0, 2.5]


def test_structural_tag_response_format(app_config: dict[str, Any]) -> None:
    """web-llm's structural_tag response format (xgrammar's JSON, as an object or as text)."""
    tag = {
        "type": "structural_tag",
        "format": {
            "type": "tag",
            "begin": "<n>",
            "content": {"type": "json_schema", "json_schema": {"enum": [1, 2]}},
            "end": "</n>",
        },
    }

    async def main() -> None:
        engine = await loaded(app_config, "tiny-a")
        for seed, given in enumerate([tag, json.dumps(tag)]):
            reply = await engine.chat.completions.create(
                messages=ASK,
                seed=seed,
                max_tokens=20,
                response_format={"type": "structural_tag", "structural_tag": given},
            )
            assert reply["choices"][0]["message"]["content"] in ("<n>1</n>", "<n>2</n>")

    run(main())
