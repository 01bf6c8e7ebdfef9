"""Structured output through the engine on the reference backend (NumPy + PyPI xgrammar).

Every response_format form the engine accepts is honoured: OpenAI's ``json_schema``, web-llm's
``json_object`` with a ``schema``, plain ``json_object`` and an EBNF ``grammar``. Every answer
must parse and match its schema, on the random-weight tiny model (a constraint must hold for a
gibberish model) and on SmolLM2, streamed and not; every response validates as the openai
package's model. A schema that does not compile fails by name and leaves the model usable.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

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
            messages=ASK, n=3, seed=5, max_tokens=20, response_format={"type": "grammar", "grammar": EBNF_YES_NO}
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
        reply = await engine.chat.completions.create(messages=ASK, max_tokens=40, seed=1, response_format=openai_form("const"))
        assert checked(reply, SCHEMAS["const"]) == {"kind": "point"}

    run(main())
