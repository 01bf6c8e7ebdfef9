"""Chat templates and conversations shared by the host and the Pyodide chat-template tests.

Plain data and one function, ``render_all``, that uses only ``py_worker`` and the standard library:
tests/pyodide/test_chat_template.py ``exec``s this file's text inside Pyodide and on the host, and
the two results must be equal.
"""

from __future__ import annotations

from typing import Any

QWEN25 = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. '
            + 'You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first)
           or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""
"""Qwen2.5-Instruct's template (its tool instructions shortened): a default system prompt, tool turns."""

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
"""Meta-Llama-3-Instruct's template: BOS from ``bos_token``, headers, contents trimmed."""

LLAMA3_CONTROL = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]

FAMILIES: dict[str, dict[str, Any]] = {
    "qwen2.5": {
        "chat_template": QWEN25,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "stop_token_ids": [2],
    },
    "llama3": {
        "chat_template": LLAMA3,
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "stop_token_ids": [128009],
    },
}

SYSTEM = {"role": "system", "content": "You are a terse assistant. Answer in one sentence."}
CHATS: dict[str, list[dict[str, Any]]] = {
    "system": [SYSTEM, {"role": "user", "content": "What is the capital of France?"}],
    "multi-turn": [
        SYSTEM,
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": "Seven is prime."},
        {"role": "user", "content": "And an even one?"},
        {"role": "assistant", "content": "Two, the only even prime."},
        {"role": "user", "content": "Thanks! Café, naïve, 日本語 😀"},
    ],
    "no-system": [
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "Hi! How can I help?"},
        {"role": "user", "content": "Tell me a joke about cats"},
    ],
}


def render_all(families: dict[str, dict[str, Any]], chats: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Every family's prompt for every chat, the continuation after a cached answer, and the
    wire form of the template errors, as plain data."""
    from py_worker.chat_template import ChatTemplate
    from py_worker.errors import error_to_dict

    out: dict[str, Any] = {}
    for family, config in families.items():
        template = ChatTemplate.from_config(config)
        for chat, messages in chats.items():
            extended = [
                *messages,
                {"role": "assistant", "content": "Paris."},
                {"role": "user", "content": "Why?"},
            ]
            answered = len([m for m in extended[:-1] if m["role"] != "system"])
            out[f"{family}/{chat}"] = {
                "prompt": template.prompt_pieces(messages),
                "continuation": template.continuation_pieces(extended, answered),
            }
    errors = {
        "raised": "{% for m in messages %}\n{{ raise_exception('Roles must alternate') }}{% endfor %}",
        "syntax": "{% if messages %}\n{% for %}",
        "render": "a\n{{ messages[0].content + 1 }}",
    }
    for kind, source in errors.items():
        try:
            ChatTemplate(source).prompt_pieces([{"role": "user", "content": "hi"}])
            out[f"error/{kind}"] = None
        except Exception as exc:
            out[f"error/{kind}"] = error_to_dict(exc)
    return out
