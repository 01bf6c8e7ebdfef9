"""Chat completion requests: web-llm's checks (postInitAndCheckFields) on a plain dict.

web-llm's current list of unsupported chat fields is empty (it once held only ``model``, which
is now supported), so unknown top-level fields are ignored here as there, not rejected.
Messages come out normalised: ``content`` is always a string.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import (
    ContentTypeError,
    FunctionNotFoundError,
    InvalidToolChoiceError,
    MessageOrderError,
    SystemMessageOrderError,
    UnsupportedRoleError,
    UnsupportedToolChoiceTypeError,
    UnsupportedToolTypeError,
    UserMessageContentError,
)
from .fields import bad_field, get_string, present, require_mapping
from .generation_config import GenerationConfig, parse_generation_config

ROLES = ("system", "user", "assistant", "tool")
TOOL_CHOICE_STRINGS = ("none", "auto", "required")


@dataclass
class ChatRequest:
    """A checked chat completion request, as the engine consumes it."""

    model: str | None
    messages: list[dict[str, Any]]
    config: GenerationConfig
    tools: list[Any] | None
    tool_choice: Any


def validate_chat_request(d: Any) -> ChatRequest:
    """Check a chat completion request and normalise its messages."""
    request = require_mapping(d, "request")
    model = get_string(request, "model")
    messages = _messages(request.get("messages"))
    config = parse_generation_config(request, response_format=True)
    tools = _tools(request.get("tools"))
    tool_choice = _tool_choice(request.get("tool_choice"), tools)
    return ChatRequest(model=model, messages=messages, config=config, tools=tools, tool_choice=tool_choice)


def _messages(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise bad_field("messages", "a non-empty list of messages", value)
    result = [_message(m, i) for i, m in enumerate(value)]
    for i, message in enumerate(result):
        if message["role"] == "system" and i != 0:
            raise SystemMessageOrderError(
                f"A system message must be the first in `messages`; found one at index {i}.", index=i
            )
    last = result[-1]["role"]
    if last not in ("user", "tool"):
        raise MessageOrderError(
            f"Last message should be from either `user` or `tool`, but it is from `{last}`.", role=last
        )
    return result


def _message(value: Any, index: int) -> dict[str, Any]:
    where = f"messages[{index}]"
    message = dict(require_mapping(value, where))
    role = message.get("role")
    if not isinstance(role, str):
        raise bad_field(f"{where}.role", "a string", role)
    if role not in ROLES:
        raise UnsupportedRoleError(
            f"Unsupported role of message: {role!r} at {where}; expected one of {', '.join(ROLES)}.",
            role=role,
            index=index,
        )
    content = message.get("content")
    if role == "user":
        message["content"] = _user_content(content, index)
    elif role == "assistant" and content is None:
        if not present(message, "tool_calls"):
            raise bad_field(f"{where}.content", "a string (null only with tool_calls)", content)
        message["content"] = ""
    elif not isinstance(content, str):
        raise ContentTypeError(
            f"A {role} message should have string content; {where} has {type(content).__name__}.",
            role=role,
            index=index,
        )
    if role == "tool" and not isinstance(message.get("tool_call_id", ""), str):
        raise bad_field(f"{where}.tool_call_id", "a string", message.get("tool_call_id"))
    return message


def _user_content(content: Any, index: int) -> str:
    """A string, or a list of text parts joined in order (this engine reads no images)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content and all(_is_text_part(p) for p in content):
        return "".join(p["text"] for p in content)
    raise UserMessageContentError(
        f"User message content must be a string or a non-empty list of text parts "
        f"({{'type': 'text', 'text': ...}}); messages[{index}] has {_describe(content)}. "
        "The loaded models read text only.",
        index=index,
    )


def _is_text_part(part: Any) -> bool:
    return isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str)


def _describe(content: Any) -> str:
    if isinstance(content, list):
        kinds = [p.get("type") if isinstance(p, Mapping) else type(p).__name__ for p in content]
        return f"parts of types {kinds}" if kinds else "an empty list"
    return type(content).__name__


def _tools(value: Any) -> list[Any] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise bad_field("tools", "a list of tools", value)
    for i, tool in enumerate(value):
        tool_map = require_mapping(tool, f"tools[{i}]")
        if tool_map.get("type") != "function":
            raise UnsupportedToolTypeError(
                f"Only 'function' tool type is supported, but tools[{i}] has type {tool_map.get('type')!r}.",
                index=i,
            )
        function = require_mapping(tool_map.get("function"), f"tools[{i}].function")
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise bad_field(f"tools[{i}].function.name", "a non-empty string", function.get("name"))
    return list(value)


def _tool_choice(value: Any, tools: list[Any] | None) -> Any:
    if value is None or isinstance(value, str):
        if value is not None and value not in TOOL_CHOICE_STRINGS:
            raise InvalidToolChoiceError(
                f"Invalid tool choice value: {value!r}; "
                "expected 'none', 'auto', 'required' or a named function.",
                value=value,
            )
        return value
    choice = require_mapping(value, "tool_choice")
    if choice.get("type") != "function":
        raise UnsupportedToolChoiceTypeError(
            "Unsupported tool choice type. Only tool choices of type 'function' are supported, "
            f"got {choice.get('type')!r}.",
        )
    name = require_mapping(choice.get("function"), "tool_choice.function").get("name")
    names = [t["function"]["name"] for t in tools or []]
    if name not in names:
        raise FunctionNotFoundError(
            f"The tool choice function {name!r} is not found in the tools list {names}.",
            name=repr(name),
            tools=names,
        )
    return dict(choice)
