"""One generation request, streamed or not: the skeleton that chat and text completions share.

A request is accepted (interruptible) at once, waits for its model's lock, then builds its
prompt and runs its ``n`` choices with the model held. What differs between a chat and a text
completion is a ``Kind``: how the prompt is made, what is recorded after a choice, and the
shapes of the response and its chunks. A request interrupted before it began touches nothing
and ends with finish_reason "abort".
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .. import protocol
from ..generate import Delta, Generation, Interrupt, Outcome, Settings
from ..kernels import KNOB_NAMES, Knobs, Sampled, grammar_spec
from ..model import Model
from ..protocol.responses import Choice, TokenLogprob

if TYPE_CHECKING:
    from ..engine import MLCEngine
    from ..stream import Stream


@dataclass(frozen=True)
class Shapes:
    """The OpenAI shapes of one kind of request (protocol.responses builds them)."""

    id_prefix: str
    """The response id's prefix: ``chatcmpl`` or ``cmpl``."""
    response: Callable[[str, str, int, list[Choice], dict[str, Any]], dict[str, Any]]
    """``(id, model_id, created, choices, usage)`` → the non-streaming response."""
    chunk: Callable[
        [str, str, int, str, str | None, list[TokenLogprob] | None, list[dict[str, Any]] | None],
        dict[str, Any],
    ]
    """``(id, model_id, created, text, finish_reason, logprobs, tool_calls)`` → one stream chunk."""
    usage_chunk: Callable[[str, str, int, dict[str, Any]], dict[str, Any]]
    """``(id, model_id, created, usage)`` → the last chunk of a stream with include_usage."""


class Kind(Protocol):
    """What one request of a kind (chat, text completion) does where the two differ."""

    shapes: Shapes
    grammar: tuple[str, str] | None
    """What the answer must match: ``(kind, source)`` of ``kernels.grammar_spec``, or None."""

    async def prompt(self, engine: MLCEngine, model: Model) -> list[int]:
        """The tokens to prefill, the model held (resetting the cache where it must)."""
        ...

    def record(self, model: Model, outcome: Outcome, *, keep: bool) -> None:
        """After a choice: what the model remembers of it (``keep``: the only choice)."""
        ...

    def opening(self) -> str:
        """Text before the answer, in its choice and streamed first (a completion's echoed
        prompt), or ""."""
        ...

    def holder(self) -> Holder | None:
        """What filters a stream's text (tool calls are not shown as text), or None."""
        ...

    def finish(self, text: str, finish_reason: str) -> tuple[str | None, list[dict[str, Any]] | None, str]:
        """A choice's ``(content, tool_calls, finish_reason)`` from its generated text."""
        ...


class Holder(Protocol):
    def feed(self, text: str) -> str:
        """The part of the text so far that a stream may show now."""
        ...

    def rest(self) -> str:
        """At the end: what was held and may be shown after all."""
        ...


async def answer(
    engine: MLCEngine, model: Model, kind: Kind, config: protocol.GenerationConfig
) -> dict[str, Any] | Stream:
    """The response of a non-streaming request, or the ``Stream`` of a streaming one."""
    model.check_token_ids(list(config.logit_bias), "logit_bias")
    if config.stream:
        return engine.open_stream(model, lambda signal: streamed(engine, model, kind, config, signal))
    signal = engine.accept()
    try:
        return await complete(engine, model, kind, config, signal)
    finally:
        engine.done(signal)


async def complete(
    engine: MLCEngine, model: Model, kind: Kind, config: protocol.GenerationConfig, signal: Interrupt
) -> dict[str, Any]:
    started, rng = time.perf_counter(), seeded(config)
    choices, outcomes = [], []
    async with engine.holding(model, signal):
        settings = settings_for(model, config, kind.grammar)
        for index in range(config.n):
            if signal.is_set:  # interrupted before this choice began: the model is untouched
                outcome = aborted(model)
                logprobs: list[TokenLogprob] | None = [] if settings.logprobs else None
            else:
                prompt = await kind.prompt(engine, model)
                outcome, logprobs = await one_choice(engine, model, prompt, settings, rng, signal)
                kind.record(model, outcome, keep=config.n == 1)
            outcomes.append(outcome)
            content, calls, finish = kind.finish(outcome.text, outcome.finish_reason)
            choices.append(Choice(index, kind.opening() + (content or ""), finish, logprobs, calls))
    shapes, usage = kind.shapes, usage_of(outcomes, started)
    return shapes.response(
        protocol.responses.new_id(shapes.id_prefix), model.model_id, int(time.time()), choices, usage
    )


async def streamed(
    engine: MLCEngine, model: Model, kind: Kind, config: protocol.GenerationConfig, signal: Interrupt
) -> AsyncIterator[dict[str, Any]]:
    started, rng = time.perf_counter(), seeded(config)
    shapes, model_id = kind.shapes, model.model_id
    chunk_id, created = protocol.responses.new_id(shapes.id_prefix), int(time.time())
    outcome: Outcome | None = None
    if not signal.is_set:
        async with engine.holding(model, signal):
            if not signal.is_set:
                settings = settings_for(model, config, kind.grammar)
                prompt = await kind.prompt(engine, model)
                generation = new_generation(engine, model, settings, rng, signal)
                holder = kind.holder()
                if opening := kind.opening():
                    yield shapes.chunk(chunk_id, model_id, created, opening, None, None, None)
                async with contextlib.aclosing(stream_choice(engine, model, generation, prompt)) as pieces:
                    async for text, logprobs in pieces:
                        shown = holder.feed(text) if holder else text
                        if shown or logprobs is not None:
                            yield shapes.chunk(chunk_id, model_id, created, shown, None, logprobs, None)
                if holder and (held := holder.rest()):
                    yield shapes.chunk(chunk_id, model_id, created, held, None, None, None)
                outcome = generation.outcome
                kind.record(model, outcome, keep=True)
    if outcome is None:  # interrupted before it began: only the final chunk, model untouched
        outcome = aborted(model)
    _, calls, finish = kind.finish(outcome.text, outcome.finish_reason)
    yield shapes.chunk(chunk_id, model_id, created, "", finish, None, calls)
    if config.include_usage:
        yield shapes.usage_chunk(chunk_id, model_id, created, usage_of([outcome], started))


def settings_for(
    model: Model, config: protocol.GenerationConfig, grammar: tuple[str, str] | None
) -> Settings:
    """The request's settings over the model's defaults; ``grammar`` constrains the answer."""
    knobs = Knobs.resolve(model.config, {k: v for k, v in vars(config).items() if k in KNOB_NAMES})
    conv = model.conversation
    stop_ids = list(conv.stop_token_ids if conv else [])
    return Settings(
        **knobs.knobs(),
        logit_bias=dict(config.logit_bias),
        max_tokens=config.max_tokens,
        stop=list(config.stop),
        stop_token_ids=stop_ids,
        ignore_eos=config.ignore_eos,
        logprobs=config.logprobs,
        top_logprobs=config.top_logprobs,
        grammar=None if grammar is None else grammar_spec(*grammar, stop_ids),
    )


def new_generation(
    engine: MLCEngine, model: Model, settings: Settings, rng: random.Random, signal: Interrupt
) -> Generation:
    return Generation(
        engine.kernels,
        model.handle,
        settings,
        context_window=model.context_window,
        prefill_chunk=model.prefill_chunk,
        kv_length=model.chat.kv_length,
        rng=rng,
        interrupt=signal,
    )


async def run(model: Model, generation: Generation, prompt: list[int]) -> AsyncGenerator[Delta, None]:
    """Run one choice on a held model.

    From its first kernel call the cache no longer matches the recorded chat: the chat is
    forgotten now and recorded again (``Kind.record``) only when the choice ends normally with
    an exact cache, so an error, an interrupt in prefill or a stream closed early leaves
    "nothing cached" and the next turn prefills from scratch."""
    model.chat.forget()
    try:
        async with contextlib.aclosing(generation.run(prompt)) as deltas:
            async for delta in deltas:
                yield delta
    finally:
        model.chat.kv_length = generation.kv_length
        model.stats.add(generation.outcome)


async def one_choice(
    engine: MLCEngine,
    model: Model,
    prompt: list[int],
    settings: Settings,
    rng: random.Random,
    signal: Interrupt,
) -> tuple[Outcome, list[TokenLogprob] | None]:
    """Run one non-streaming choice to its end; logprobs when the settings ask for them."""
    generation = new_generation(engine, model, settings, rng, signal)
    logprobs: list[TokenLogprob] = []
    async with contextlib.aclosing(run(model, generation, prompt)) as deltas:
        async for delta in deltas:
            if settings.logprobs:
                logprobs += await token_logprobs(engine, model, delta.sampled)
    return generation.outcome, logprobs if settings.logprobs else None


async def stream_choice(
    engine: MLCEngine, model: Model, generation: Generation, prompt: list[int]
) -> AsyncGenerator[tuple[str, list[TokenLogprob] | None], None]:
    """Text pieces of one streamed choice, with their logprobs when the settings ask for them."""
    wanted = generation.settings.logprobs
    async with contextlib.aclosing(run(model, generation, prompt)) as deltas:
        async for delta in deltas:
            if delta.text or wanted:
                yield delta.text, await token_logprobs(engine, model, delta.sampled) if wanted else None


async def token_logprobs(engine: MLCEngine, model: Model, sampled: list[Sampled]) -> list[TokenLogprob]:
    async def text(token: int) -> str:
        if token not in model.token_text:
            model.token_text[token] = await engine.kernels.detokenize(model.handle, [token])
        return model.token_text[token]

    out = []
    for s in sampled:
        t = await text(s.token)
        top = [(await text(i), lp, list((await text(i)).encode())) for i, lp in s.top_logprobs]
        out.append(TokenLogprob(t, float(s.logprob or 0.0), list(t.encode()), top))
    return out


def aborted(model: Model) -> Outcome:
    """The outcome of a request interrupted before its generation began."""
    model.last_message = ""
    return Outcome(finish_reason="abort")


def seeded(config: protocol.GenerationConfig) -> random.Random:
    """The request's random stream: reproducible with a seed, fresh without one."""
    return random.Random(config.seed) if config.seed is not None else random.Random()


def usage_of(outcomes: list[Outcome], started: float) -> dict[str, Any]:
    prompt_tokens = outcomes[0].prompt_tokens if outcomes else 0
    completion = sum(len(o.tokens) for o in outcomes)
    prefill_s = sum(o.prefill_s for o in outcomes)
    decode_s = sum(o.decode_s for o in outcomes)
    decoded = sum(max(0, len(o.tokens) - 1) for o in outcomes)
    extra = {
        "e2e_latency_s": time.perf_counter() - started,
        "prefill_tokens_per_s": prompt_tokens / prefill_s if prefill_s else 0.0,
        "decode_tokens_per_s": decoded / decode_s if decode_s else 0.0,
        "time_to_first_token_s": outcomes[0].first_token_s if outcomes else 0.0,
        "time_per_output_token_s": decode_s / decoded if decoded else 0.0,
    }
    return protocol.responses.usage(prompt_tokens, completion, extra)
