"""MLC conv_template → prompt text, for the template styles the default models use."""

from __future__ import annotations

from py_worker.conversation import Conversation

CHATML = {
    "name": "chatml",
    "system_template": "<|im_start|>system\n{system_message}<|im_end|>\n",
    "system_message": "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
    "roles": {"user": "<|im_start|>user", "assistant": "<|im_start|>assistant"},
    "seps": ["<|im_end|>\n"],
    "role_content_sep": "\n",
    "role_empty_sep": "\n",
    "stop_str": ["<|im_end|>"],
    "stop_token_ids": [2],
}
LLAMA3 = {
    "name": "llama-3",
    "system_template": "<|start_header_id|>system<|end_header_id|>\n\n{system_message}<|eot_id|>",
    "system_message": "You are a helpful, respectful and honest assistant.",
    "roles": {"user": "<|start_header_id|>user", "assistant": "<|start_header_id|>assistant"},
    "seps": ["<|eot_id|>"],
    "role_content_sep": "<|end_header_id|>\n\n",
    "role_empty_sep": "<|end_header_id|>\n\n",
    "stop_str": [],
    "stop_token_ids": [128001, 128009],
    "system_prefix_token_ids": [128000],
}
QWEN2 = {
    **CHATML,
    "name": "qwen2",
    "system_message": "You are a helpful assistant.",
    "stop_token_ids": [151643, 151645],
}


def text(template: dict, messages: list[dict]) -> str:
    return "".join(Conversation.from_template(template).prompt_pieces(messages))


def test_chatml_inserts_default_system_prompt() -> None:
    assert text(CHATML, [{"role": "user", "content": "Hi"}]) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_request_system_message_replaces_default() -> None:
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert text(QWEN2, msgs) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_llama3_multi_turn_and_stop_ids() -> None:
    msgs = [
        {"role": "user", "content": "A"},
        {"role": "assistant", "content": "B"},
        {"role": "user", "content": "C"},
    ]
    conv = Conversation.from_template(LLAMA3)
    assert "".join(conv.prompt_pieces(msgs)) == (
        "<|start_header_id|>system<|end_header_id|>\n\n"
        "You are a helpful, respectful and honest assistant.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nA<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nB<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nC<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert conv.system_prefix_token_ids == [128000]
    assert conv.stop_token_ids == [128001, 128009]


def test_continuation_extends_the_cached_conversation_exactly() -> None:
    """Cached pieces + the answer + continuation pieces == the full prompt of the next turn."""
    conv = Conversation.from_template(CHATML)
    first = [{"role": "user", "content": "A"}]
    answer = "B"
    second = [*first, {"role": "assistant", "content": answer}, {"role": "user", "content": "C"}]
    cached = "".join(conv.prompt_pieces(first)) + answer
    assert cached + "".join(conv.continuation_pieces(second, answered=2)) == "".join(
        conv.prompt_pieces(second)
    )
