"""A model's own Jinja chat template → prompt pieces, rendered exactly as transformers renders it.

The one idea: the template is the only source of truth for the prompt text. The prompt is the
template rendered with ``add_generation_prompt=True`` (one piece, tokenised as transformers'
``apply_chat_template`` tokenises it: no special tokens added). What follows an answer already in
the KV cache is found by rendering too: the conversation up to that answer (with its generation
prompt) plus the answer's text must be a prefix of the extended conversation's render, and the
rest is the continuation. When it is not a prefix (a template that rewrites earlier turns, trims
the answer, or moves the system prompt), ``continuation_pieces`` says so with None and the engine
prefills from scratch.

Rendering matches transformers' ``utils/chat_template_utils.py``: an
``ImmutableSandboxedEnvironment`` with ``trim_blocks`` and ``lstrip_blocks``, the
``loopcontrols`` extension and a pass-through ``{% generation %}`` tag, its ``tojson`` filter,
the ``raise_exception``, ``strftime_now``, ``dict`` and ``namespace`` globals, and the variables
``messages``, ``add_generation_prompt``, ``tools=None``, ``documents=None`` and the special-token
strings the config names (``bos_token``, ``eos_token``, …; absent ones stay undefined, as they are
for transformers). jinja2 is imported when the first template is compiled, so a worker that only
serves MLC ``conv_template`` models never loads it.
"""

from __future__ import annotations

import functools
import json
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import ChatTemplateError

if TYPE_CHECKING:
    from jinja2 import Template
    from jinja2.sandbox import ImmutableSandboxedEnvironment

SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
"""transformers' special-token attributes: the config's strings for them become template variables."""


@dataclass
class ChatTemplate:
    """A Jinja chat template with the special-token strings it may use and the stop token ids."""

    source: str
    special_tokens: dict[str, str] = field(default_factory=dict)
    stop_token_ids: list[int] = field(default_factory=list)
    system_prefix_token_ids: list[int] = field(default_factory=list)
    """Always empty: a template writes its own BOS, and transformers adds no special tokens."""
    stop_str: list[str] = field(default_factory=list)
    _compiled: Template | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ChatTemplate:
        """From a model config: the ``chat_template`` string, the special-token strings, and
        ``stop_token_ids`` (else ``[eos_token_id]``)."""
        source = config.get("chat_template")
        if not isinstance(source, str) or not source:
            raise ChatTemplateError(
                "The model config has no chat_template string.", kind="missing", error="", line=None
            )
        stop = config.get("stop_token_ids")
        if not stop and isinstance(config.get("eos_token_id"), int):
            stop = [config["eos_token_id"]]
        return cls(
            source=source,
            special_tokens={k: config[k] for k in SPECIAL_TOKENS if isinstance(config.get(k), str)},
            stop_token_ids=[int(i) for i in stop or []],
        )

    def template(self) -> Template:
        """The compiled template (compiled once; a syntax error is a ``ChatTemplateError``)."""
        if self._compiled is None:
            env = _environment()
            try:
                self._compiled = env.from_string(self.source)
            except Exception as exc:  # TemplateSyntaxError above all; any failure is the template's
                raise _template_error(exc, "syntax") from exc
        return self._compiled

    def render(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool) -> str:
        """The template's text for ``messages``, as ``apply_chat_template(tokenize=False)`` gives it."""
        compiled = self.template()
        from jinja2 import TemplateError

        chat = [{k: v for k, v in m.items() if v is not None} for m in messages]
        try:
            return compiled.render(
                messages=chat,
                tools=None,
                documents=None,
                add_generation_prompt=add_generation_prompt,
                **self.special_tokens,
            )
        except TemplateError as exc:
            raise _template_error(exc, "raised" if isinstance(exc, _raised_error()) else "render") from exc
        except Exception as exc:  # a template is code: a TypeError in it is still the template's error
            raise _template_error(exc, "render") from exc

    def prompt_pieces(self, messages: list[dict[str, Any]]) -> list[str]:
        """The full prompt of a chat request: one piece, the render with the generation prompt."""
        text = self.render(messages, add_generation_prompt=True)
        return [text] if text else []

    def continuation_pieces(self, messages: list[dict[str, Any]], answered: int) -> list[str] | None:
        """Pieces that follow an answer already in the KV cache, or None when rendering shows none.

        ``answered`` is how many non-system messages the cache holds, the last being the
        assistant's answer: the cache holds the render of the messages before it (with the
        generation prompt) and then the answer's text. The result is what the render of all of
        ``messages`` adds after that text (typically the end-of-turn token the model sampled but
        the cache does not hold, then the new turns and the next generation prompt).
        """
        offset = 1 if messages and messages[0].get("role") == "system" else 0
        cut = offset + answered
        if answered < 1 or cut > len(messages):
            return None
        answer = messages[cut - 1]
        if answer.get("role") != "assistant" or not isinstance(answer.get("content"), str):
            return None
        try:
            cached = self.render(messages[: cut - 1], add_generation_prompt=True) + answer["content"]
        except ChatTemplateError:
            return None  # the full prefill renders ``messages`` and reports their own error, if any
        full = self.render(messages, add_generation_prompt=True)
        if not full.startswith(cached):
            return None
        rest = full[len(cached) :]
        return [rest] if rest else []


@functools.cache
def _raised_error() -> type[Exception]:
    """The error ``raise_exception`` raises: a TemplateError subclass, so it is told apart."""
    from jinja2 import TemplateError

    return type("RaiseExceptionError", (TemplateError,), {})


@functools.cache
def _environment() -> ImmutableSandboxedEnvironment:
    """transformers' chat-template environment (``_cached_compile_jinja_template``)."""
    import jinja2
    import jinja2.ext
    from jinja2 import nodes
    from jinja2.parser import Parser
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(jinja2.ext.Extension):
        """``{% generation %}…{% endgeneration %}``: transformers' assistant-span marker; renders
        its body unchanged (the span tracking it feeds is not used here)."""

        tags = {"generation"}  # noqa: RUF012 (jinja2.ext.Extension declares it so)

        def parse(self, parser: Parser) -> nodes.Node:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Callable[[], str]) -> str:
            return caller()

    raised = _raised_error()

    def raise_exception(message: str) -> None:
        raise raised(message)

    def tojson(
        x: Any,
        ensure_ascii: bool = False,
        indent: int | str | None = None,
        separators: tuple[str, str] | None = None,
        sort_keys: bool = False,
    ) -> str:
        # Not Jinja's own tojson, which escapes HTML characters.
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    def strftime_now(format: str) -> str:
        return datetime.now().strftime(format)

    class TemplateDict:
        """``dict(...)`` in a template, without access to the dict type itself."""

        def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
            return dict(*args, **kwargs)

        def fromkeys(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
            return dict.fromkeys(*args, **kwargs)

    class TemplateNamespace(jinja2.utils.Namespace):
        """``namespace(...)`` that refuses underscore-prefixed attribute names."""

        def __init__(*args: Any, **kwargs: Any) -> None:  # Jinja's trick: `namespace(self=...)` works
            self, rest = args[0], args[1:]
            attrs = dict(*rest, **kwargs)
            for name in attrs:
                TemplateNamespace._check_name(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name: str, value: Any) -> None:
            TemplateNamespace._check_name(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check_name(name: Any) -> None:
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(
                    f"Chat templates cannot store underscore-prefixed attributes on a namespace, "
                    f"but got {name!r}."
                )

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    env.globals["dict"] = TemplateDict()
    env.globals["namespace"] = TemplateNamespace
    return env


def _template_error(exc: BaseException, kind: str) -> ChatTemplateError:
    """A ``ChatTemplateError`` for ``exc``, with the template line Jinja recorded, if any."""
    line = getattr(exc, "lineno", None)
    if line is None:
        line = _template_line(exc.__traceback__)
    message = str(getattr(exc, "message", None) or exc)
    error = "TemplateError" if kind == "raised" else type(exc).__name__  # what transformers raises
    if kind != "raised":
        message = f"The model's chat template failed ({kind}): {error}: {message}"
    return ChatTemplateError(message, kind=kind, error=error, line=line)


def _template_line(tb: types.TracebackType | None) -> int | None:
    """The innermost template line of a render traceback (Jinja names template frames so)."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
