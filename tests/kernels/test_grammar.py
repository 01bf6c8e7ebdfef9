"""Constrained sampling (rule step 0) on the WGSL kernels against the NumPy reference.

The browser side masks with @mlc-ai/web-xgrammar and the GPU sampler; the reference with PyPI
xgrammar and NumPy. For the same schema, prompt and uniforms both must pick the same ids at every
step, the text must parse and match the schema, and ``decodeSteps`` must stop after the step that
ends the grammar. A schema that does not compile fails by name with the engine's reason.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jsonschema
import pytest

from py_worker.kernels import SamplingParams, grammar_spec
from tests.kernels.test_tiny_model import PROMPT, Ref, assert_same_samples, values
from tools.kernel_runners import Runner, tiny_model

EOS = 257  # the tiny model's end of turn
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 6},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
        "n": {"type": "integer", "minimum": -5, "maximum": 40},
    },
    "required": ["name", "tags", "n"],
}
DRAWS = [(0.37 * i + 0.11) % 1.0 for i in range(80)]  # fixed uniforms, spread over [0, 1)


def constrained(p: SamplingParams) -> dict[str, Any]:
    return dataclasses.replace(p, grammar=1).to_wire()  # the first matcher a model opens is 1


@pytest.mark.parametrize(
    "first",
    [
        SamplingParams(temperature=0.0, uniforms=[0.5], logprobs=True, top_logprobs=3),
        SamplingParams(temperature=1.0, top_p=0.9, uniforms=[0.3], logprobs=True, top_logprobs=2),
    ],
    ids=["greedy", "nucleus"],
)
def test_masked_samples_equal_the_reference_and_match_the_schema(
    runner: Runner, first: SamplingParams
) -> None:
    model = tiny_model("q0f32")
    ref = Ref(model)
    ids = ref("tokenize", PROMPT)[:10]
    spec = grammar_spec("json_schema", json.dumps(SCHEMA), [EOS])
    loop = dataclasses.replace(first, uniforms=DRAWS, repetition_penalty=1.1)
    calls: list[list[Any]] = [
        ["prefill", ids],
        ["openGrammar", spec],
        ["sample", constrained(first)],
        ["decodeSteps", len(DRAWS), constrained(loop)],
    ]
    got = values(runner({"record": {"model": model}, "calls": calls}))
    assert got[1] == 1

    ref("prefill", ids)
    assert ref("open_grammar", spec) == 1
    want = [ref("sample", dataclasses.replace(first, grammar=1))]
    want += ref("decode_steps", len(DRAWS), dataclasses.replace(loop, grammar=1))
    samples = [got[2], *got[3]]
    assert_same_samples(samples, want, first.logprobs)
    tokens = [s["token"] for s in samples]
    assert tokens[-1] == EOS, "the steps must reach the end of the schema"
    assert len(tokens) < len(DRAWS)  # decodeSteps stopped at the grammar's end
    text = ref("detokenize", tokens[:-1])
    value = json.loads(text)
    jsonschema.validate(value, SCHEMA)


def test_decode_steps_stop_at_the_grammars_end_and_a_bad_grammar_is_named(runner: Runner) -> None:
    model = tiny_model("q0f32")
    yes_no = grammar_spec("ebnf", 'root ::= "yes" | "no"', [EOS])
    greedy = SamplingParams(temperature=0.0, uniforms=[0.0] * 8)
    calls: list[list[Any]] = [
        ["prefill", [65, 66, 67]],
        ["openGrammar", yes_no],
        ["sample", constrained(dataclasses.replace(greedy, uniforms=[0.0]))],
        ["decodeSteps", 8, constrained(greedy)],
        ["stats"],
        [
            "openGrammar",
            grammar_spec("json_schema", '{"type": "object", "properties": {"x": {"$ref": "#/nope"}}}'),
        ],
        ["openGrammar", grammar_spec("ebnf", "root ::= ")],
    ]
    out = runner({"record": {"model": model}, "calls": calls})
    first, steps, stats = (r["value"] for r in out["results"][2:5])
    tokens = [first["token"]] + [s["token"] for s in steps]
    assert tokens[-1] == EOS
    assert len(steps) < 8  # stopped early, after the end-of-turn id
    assert stats["kv_length"] == 3 + len(steps)  # only the steps it ran are in the cache
    ref = Ref(model)
    assert ref("detokenize", tokens[:-1]) in ("yes", "no")
    for bad in out["results"][5:]:
        assert bad["error"]["name"] == "GrammarError", bad
    assert "nope" in out["results"][5]["error"]["message"]
