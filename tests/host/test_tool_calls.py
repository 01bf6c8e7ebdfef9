"""py_worker/tools.py on its own: the streamed view never shows part of a call, the parser and
the renderer agree, and the grammar accepts exactly the calls the parser reads."""

from __future__ import annotations

import json

import pytest

from py_worker.reference.grammar import Grammars
from py_worker.reference.tokenizer import ReferenceTokenizer
from py_worker.tools import CallHolder, ToolUse, as_text
from tools.make_tiny_model import ensure_tiny

TOOL = {
    "type": "function",
    "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}},
}
ANSWER = 'Let me look.\n<tool_call>\n{"name": "f", "arguments": {"x": 3}}\n</tool_call>'


@pytest.mark.parametrize("cut", range(1, len(ANSWER)))
def test_a_stream_shows_the_text_before_the_call_and_never_part_of_it(cut: int) -> None:
    holder = CallHolder()
    shown = holder.feed(ANSWER[:cut]) + holder.feed(ANSWER[cut:]) + holder.rest()
    assert shown == "Let me look.\n"


def test_text_that_only_looks_like_a_call_start_is_shown_at_the_end() -> None:
    holder = CallHolder()
    assert holder.feed("a <tool") == "a "
    assert holder.feed("box") == "<toolbox"
    assert holder.feed(" <t") == " "
    assert holder.rest() == "<t"


def test_parse_and_render_agree() -> None:
    use = ToolUse([TOOL], "auto")
    content, calls = use.parse(ANSWER)
    assert content == "Let me look.\n"
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("f", {"x": 3})
    ]
    again = as_text({"role": "assistant", "content": content, "tool_calls": calls})
    assert again["content"] == ANSWER  # what the model wrote is what it reads next turn
    assert use.parse("no call here") == ("no call here", [])
    tool = as_text({"role": "tool", "tool_call_id": "c1", "content": "42"})
    assert tool == {"role": "user", "content": "<tool_response>\n42\n</tool_response>"}


@pytest.mark.parametrize(
    ("choice", "text", "ok"),
    [
        ("auto", ANSWER, True),
        ("auto", "just text", True),
        ("required", ANSWER, False),  # a forced answer is only calls
        ("required", ANSWER.split("\n", 1)[1], True),
        ({"type": "function", "function": {"name": "f"}}, ANSWER.split("\n", 1)[1], True),
        ("required", '<tool_call>\n{"name": "g", "arguments": {}}\n</tool_call>', False),
        ("required", '<tool_call>\n{"name": "f", "arguments": {"x": "3"}}\n</tool_call>', False),
    ],
)
def test_the_grammar_takes_what_the_parser_reads(choice: object, text: str, ok: bool) -> None:
    tok = ReferenceTokenizer(ensure_tiny("q0f32") / "tokenizer.json")
    grammars = Grammars(tok.tokens(), tok.json, 512)
    spec = {
        "kind": "structural_tag",
        "source": ToolUse([TOOL], choice).structural_tag(),
        "stop_token_ids": [257],
    }
    gid = grammars.open(spec)
    accepted = True
    for token in [*tok.encode(text), 257]:
        if not grammars.mask(gid)[token]:
            accepted = False
            break
        grammars.accept(gid, token)
    assert accepted == ok
