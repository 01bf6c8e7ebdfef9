"""MLC ``conv_template`` JSON → prompt pieces, stop strings and stop token ids.

The prompt is built as a list of pieces, one per message, each tokenised on its own (as web-llm
does). Keeping the pieces separate is what lets a multi-round chat prefill only the new turn: the
pieces of a conversation are a prefix of the pieces of its continuation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SYSTEM = "{system_message}"
PLACEHOLDERS = {
    "user": "{user_message}",
    "assistant": "{assistant_message}",
    "tool": "{tool_message}",
}


@dataclass
class Conversation:
    """A parsed MLC Conversation template."""

    system_template: str
    system_message: str
    roles: dict[str, str]
    role_templates: dict[str, str]
    seps: list[str]
    role_content_sep: str
    role_empty_sep: str
    stop_str: list[str]
    stop_token_ids: list[int]
    system_prefix_token_ids: list[int]
    add_role_after_system_message: bool

    @classmethod
    def from_template(cls, t: dict[str, Any]) -> Conversation:
        seps = list(t.get("seps") or [""])
        return cls(
            system_template=str(t.get("system_template", SYSTEM)),
            system_message=str(t.get("system_message", "")),
            roles={str(k): str(v) for k, v in (t.get("roles") or {}).items()},
            role_templates={str(k): str(v) for k, v in (t.get("role_templates") or {}).items()},
            seps=seps,
            role_content_sep=str(t.get("role_content_sep", "")),
            role_empty_sep=str(t.get("role_empty_sep", "")),
            stop_str=[str(s) for s in (t.get("stop_str") or [])],
            stop_token_ids=[int(i) for i in (t.get("stop_token_ids") or [])],
            system_prefix_token_ids=[int(i) for i in (t.get("system_prefix_token_ids") or [])],
            add_role_after_system_message=bool(t.get("add_role_after_system_message", True)),
        )

    def system_piece(self, messages: list[dict[str, Any]]) -> str:
        """The system prompt: the request's system message if it has one, else the default."""
        message = self.system_message
        if messages and messages[0]["role"] == "system":
            message = str(messages[0]["content"])
        return self.system_template.replace(SYSTEM, message)

    def message_piece(self, index: int, role: str, content: str) -> str:
        """One non-system message, closed by its separator (``index`` counts non-system messages)."""
        template = self.role_templates.get(role, PLACEHOLDERS.get(role, "{}"))
        body = template.replace(PLACEHOLDERS.get(role, "{}"), content)
        prefix = self.roles.get(role, role) + self.role_content_sep
        if index == 0 and not self.add_role_after_system_message:
            prefix = ""
        return prefix + body + self.separator(index)

    def separator(self, index: int) -> str:
        return self.seps[index % len(self.seps)]

    def generation_prompt(self) -> str:
        """What opens the assistant's answer."""
        return self.roles.get("assistant", "assistant") + self.role_empty_sep

    def prompt_pieces(self, messages: list[dict[str, Any]]) -> list[str]:
        """Full prompt for a chat request: system, every message, then the assistant's opening."""
        turns = messages[1:] if messages and messages[0]["role"] == "system" else messages
        pieces = [self.system_piece(messages)]
        pieces += [self.message_piece(i, m["role"], str(m["content"])) for i, m in enumerate(turns)]
        pieces.append(self.generation_prompt())
        return [p for p in pieces if p]

    def continuation_pieces(self, messages: list[dict[str, Any]], answered: int) -> list[str]:
        """Pieces that follow an answer already in the KV cache.

        ``answered`` is how many non-system messages the cache holds, the last being the
        assistant's answer (its text is in the cache, its separator not yet).
        """
        turns = messages[1:] if messages and messages[0]["role"] == "system" else messages
        pieces = [self.separator(answered - 1)]
        pieces += [
            self.message_piece(i, m["role"], str(m["content"])) for i, m in enumerate(turns) if i >= answered
        ]
        pieces.append(self.generation_prompt())
        return [p for p in pieces if p]
