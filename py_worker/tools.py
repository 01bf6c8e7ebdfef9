"""Tool calling: OpenAI ``tools`` / ``tool_choice`` as a prompt, a grammar and a parser.

One format for every model, the Hermes one (Qwen2.5 and Hermes 2/3 are trained on it): the
tools' signatures go into the system prompt inside ``<tools></tools>``, and a call is
``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``. The grammar makes every call
well-formed, its name one of the tools and its arguments match that tool's ``parameters``:

- ``tool_choice`` "auto": free text, and from ``<tool_call>`` on, a constrained call (any number);
- "required": exactly one call of any tool; a named function: exactly one call of it.

Earlier turns are rendered the same way: an assistant message's ``tool_calls`` as call blocks,
a ``tool`` message as a user turn holding ``<tool_response>...</tool_response>``, so every chat
template (MLC's and Jinja ones) carries them.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

OPEN, CLOSE = "<tool_call>", "</tool_call>"
CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)
ANY_OBJECT = {"type": "object"}

SYSTEM = (
    "You are a function calling AI model. You are provided with function signatures within "
    "<tools></tools> XML tags. You may call one or more functions to assist with the user query. "
    "Don't make assumptions about what values to plug into functions. Here are the available "
    "tools: <tools> {tools} </tools>\n"
    "For each function call return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags as follows:\n"
    '<tool_call>\n{{"name": <function-name>, "arguments": <args-dict>}}\n</tool_call>'
)


def _call_text(name: str, arguments: str) -> str:
    return f'{OPEN}\n{{"name": {json.dumps(name)}, "arguments": {arguments}}}\n{CLOSE}'


@dataclass
class ToolUse:
    """The tools of one request and how they may be used (``choice``: "auto", "required" or a
    named function ``{"type": "function", "function": {"name": ...}}``)."""

    tools: list[dict[str, Any]]
    choice: Any

    @property
    def forced(self) -> bool:
        """Whether the answer must be a call (and nothing else)."""
        return bool(self.choice != "auto")

    def functions(self) -> list[dict[str, Any]]:
        named = self.choice["function"]["name"] if isinstance(self.choice, dict) else None
        fns = [t["function"] for t in self.tools]
        return [f for f in fns if named is None or f["name"] == named]

    def messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The conversation as the model reads it: the tools in the system prompt, calls and
        tool results as text."""
        signatures = " ".join(json.dumps(t["function"]) for t in self.tools)
        system = SYSTEM.format(tools=signatures)
        rest = messages
        if messages and messages[0]["role"] == "system":
            system, rest = f"{messages[0]['content']}\n\n{system}", messages[1:]
        return [{"role": "system", "content": system}, *(as_text(m) for m in rest)]

    def structural_tag(self) -> str:
        """The grammar (xgrammar's structural tag, as JSON text) of the answer."""
        tags = [
            {
                "type": "tag",
                "begin": f'{OPEN}\n{{"name": {json.dumps(f["name"])}, "arguments": ',
                "content": {"type": "json_schema", "json_schema": f.get("parameters") or ANY_OBJECT},
                "end": f"}}\n{CLOSE}",
            }
            for f in self.functions()
        ]
        if self.forced:
            fmt: dict[str, Any] = {"type": "or", "elements": tags}
        else:
            fmt = {"type": "triggered_tags", "triggers": [OPEN], "tags": tags}
        return json.dumps({"type": "structural_tag", "format": fmt})

    def parse(self, text: str) -> tuple[str | None, list[dict[str, Any]]]:
        """The answer's text before its first call (None when empty: what a stream shows) and its
        calls in OpenAI's shape."""
        calls = []
        for match in CALL.finditer(text):
            call = json.loads(match.group(1))  # the grammar made it valid
            calls.append(
                {
                    "id": f"call_{uuid.uuid4().hex[:24]}",
                    "type": "function",
                    "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
                }
            )
        content = text.split(OPEN, 1)[0] if calls else text
        return (content or None), calls


def as_text(message: dict[str, Any]) -> dict[str, Any]:
    """One message with its tool calls or tool result written out as the model reads them."""
    if message["role"] == "tool":
        return {"role": "user", "content": f"<tool_response>\n{message['content']}\n</tool_response>"}
    if message["role"] == "assistant" and message.get("tool_calls"):
        blocks = [
            _call_text(c["function"]["name"], c["function"]["arguments"]) for c in message["tool_calls"]
        ]
        # The text before the calls is what parse() gave back: as generated, joined as is.
        return {"role": "assistant", "content": (message["content"] or "") + "\n".join(blocks)}
    return message


class CallHolder:
    """What a stream may show of an answer with tools: text up to a call, never part of one.

    Text that is, or could still become, the start of ``<tool_call>`` is held; from the first
    call on, nothing more is shown (the calls come in the last chunk, parsed)."""

    def __init__(self) -> None:
        self.seen = ""
        self.shown = 0
        self.in_call = False

    def feed(self, text: str) -> str:
        self.seen += text
        if self.in_call:
            return ""
        at = self.seen.find(OPEN, self.shown)
        if at >= 0:
            self.in_call = True
            out, self.shown = self.seen[self.shown : at], at
            return out
        keep = next(
            (n for n in range(min(len(OPEN) - 1, len(self.seen)), 0, -1) if self.seen.endswith(OPEN[:n])), 0
        )
        end = max(self.shown, len(self.seen) - keep)
        out, self.shown = self.seen[self.shown : end], end
        return out

    def rest(self) -> str:
        """At the end: held text that never became a call."""
        out = "" if self.in_call else self.seen[self.shown :]
        self.shown = len(self.seen)
        return out
