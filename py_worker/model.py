"""A loaded model: its config, and the chat whose tokens its KV cache holds.

``Model`` is what the engine knows of a model it loaded (handle, config, chat format, stats);
``ChatState`` alone owns what the KV cache holds for the chat (``kv_length``, the recorded
``messages``, the ``pending`` tokens) and the one operation that empties it, so the rule "the
cache and the record of it change together" has one owner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .chat_template import ChatTemplate
from .conversation import Conversation
from .errors import InvalidRequestFieldError
from .generate import Outcome
from .kernels import DEFAULT_CONTEXT_WINDOW, DEFAULT_PREFILL_CHUNK, Kernels
from .router import is_embedding_model


@dataclass
class Stats:
    """Token counts and seconds, for runtime_stats_text."""

    prefill_tokens: int = 0
    prefill_s: float = 0.0
    decode_tokens: int = 0
    decode_s: float = 0.0
    backend: str = ""
    """Which backend runs the model and why (the JS shim's choice), when the backend says."""

    def add(self, out: Outcome) -> None:
        self.prefill_tokens += out.prompt_tokens
        self.prefill_s += out.prefill_s
        self.decode_tokens += max(0, len(out.tokens) - 1)
        self.decode_s += out.decode_s

    def text(self) -> str:
        prefill = self.prefill_tokens / self.prefill_s if self.prefill_s else 0.0
        decode = self.decode_tokens / self.decode_s if self.decode_s else 0.0
        text = f"prefill: {prefill:.4f} tokens/sec, decoding: {decode:.4f} tokens/sec"
        return f"{text}, backend: {self.backend}" if self.backend else text


@dataclass
class ChatState:
    """What the KV cache holds: ``kv_length`` tokens; when they are exactly a chat, its
    ``messages`` (the last one the assistant's answer) and the ``pending`` accepted tokens not
    yet in the cache. Empty ``messages``: the next chat turn prefills from scratch."""

    kv_length: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)

    def forget(self) -> None:
        """The cache no longer matches a chat (its tokens stay until ``reset``)."""
        self.messages = []
        self.pending = []

    async def reset(self, kernels: Kernels, handle: int) -> None:
        """Empty the cache, and the record of it with it."""
        await kernels.reset(handle)
        self.kv_length = 0
        self.forget()

    def remember(self, messages: list[dict[str, Any]], outcome: Outcome, *, keep: bool) -> None:
        """After a chat answer: record the chat when the cache holds exactly it, so the next
        turn can prefill only itself."""
        if keep and outcome.kv_exact:
            self.messages = [*messages, {"role": "assistant", "content": outcome.text}]
            self.pending = list(outcome.pending)
        else:
            self.forget()


@dataclass
class Model:
    """A loaded model. ``config`` is its ``mlc-chat-config.json`` (or a GGUF's equivalent) with
    the record's overrides and the reload's chat options over it."""

    model_id: str
    handle: int
    config: dict[str, Any]
    is_embedding: bool
    conversation: Conversation | ChatTemplate | None
    chat: ChatState = field(default_factory=ChatState)
    last_message: str = ""
    stats: Stats = field(default_factory=Stats)
    token_text: dict[int, str] = field(default_factory=dict)
    """Detokenized single tokens, for logprobs."""

    def _int(self, key: str, default: int) -> int:
        cfg = self.config
        return int(cfg.get(key) or cfg.get("model_config", {}).get(key) or default)

    @property
    def context_window(self) -> int:
        return self._int("context_window_size", DEFAULT_CONTEXT_WINDOW)

    @property
    def prefill_chunk(self) -> int:
        return self._int("prefill_chunk_size", DEFAULT_PREFILL_CHUNK)

    @property
    def vocab_size(self) -> int:
        return self._int("vocab_size", 0)

    def check_token_ids(self, ids: list[int], field: str) -> None:
        """Token ids come from the client as numbers: keep them inside the vocabulary."""
        limit = self.vocab_size or float("inf")  # a config without vocab_size bounds nothing but < 0
        bad = [i for i in ids if not 0 <= i < limit]
        if bad:
            raise InvalidRequestFieldError(
                f"{field} has token ids outside the vocabulary [0, {limit}): {bad[:5]}",
                field=field,
            )


def make_model(model_id: str, handle: int, config: dict[str, Any], record: dict[str, Any]) -> Model:
    """The Model of a load: an embedding model by router's rule; the chat format is
    MLC's ``conv_template`` when there is one (chatOpts may set one over a GGUF's), else the
    model's own Jinja ``chat_template`` (a GGUF's ``tokenizer.chat_template``)."""
    is_embedding = is_embedding_model(record, config)
    template = config.get("conv_template")
    conversation: Conversation | ChatTemplate | None = None
    if isinstance(template, dict):
        conversation = Conversation.from_template(template)
    elif isinstance(config.get("chat_template"), str) and config["chat_template"]:
        conversation = ChatTemplate.from_config(config)
    model = Model(model_id, handle, config, is_embedding, conversation)
    if config.get("backend"):
        model.stats.backend = f"{config['backend']} ({config.get('backend_reason', '')})"
    return model
