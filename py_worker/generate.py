"""The token loop: prefill in chunks → sample → decode in GPU-resident batches → stop → stream.

One ``Generation`` serves one choice of one request. It knows nothing of locks or of the
OpenAI shapes: it yields ``Delta`` pieces of text (never half a UTF-8 character, never a
possible prefix of a stop string) and ends with a ``finish_reason`` and timing figures.

Its kernels are behind ``kernels.finishing``: a consumer cancelled while a call is in flight
waits for that call to end, so the next request on the model finds the KV cache in a known state.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ContextWindowSizeExceededError
from .kernels import Kernels, Knobs, Sampled, SamplingParams, finishing

FIRST_BATCH = 1
"""Decode steps queued before the first readback after the first token (keeps streaming smooth)."""
MAX_BATCH = 64
"""At most this many decode steps are queued on the device per readback."""
BATCH_SECONDS = 0.15
"""Batches grow (doubling) until one takes about this long: a fast GPU amortises its sync over
many tokens, a slow CPU adapter still streams token by token."""
DETOKENIZE_WINDOW = 32
"""Tokens the incremental detokeniser re-decodes before it slides its window forward."""


@dataclass
class Settings(Knobs):
    """Resolved per-request settings: the sampling knobs (request values over the model's
    defaults, ``Knobs.resolve``) and what the loop itself needs."""

    logit_bias: dict[int, float] = field(default_factory=dict)
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    logprobs: bool = False
    top_logprobs: int = 0
    grammar: dict[str, Any] | None = None
    """What the answer must match (``kernels.grammar_spec``), or None for free text."""


@dataclass
class Delta:
    """Text released to the consumer, with the tokens that produced it when logprobs are asked."""

    text: str
    sampled: list[Sampled] = field(default_factory=list)


@dataclass
class Outcome:
    """How a generation ended and what it cost."""

    finish_reason: str = "stop"
    text: str = ""
    tokens: list[int] = field(default_factory=list)
    prompt_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    first_token_s: float = 0.0
    pending: list[int] = field(default_factory=list)
    """Accepted tokens not yet in the KV cache (the last sampled one, when it was not a stop token)."""
    kv_exact: bool = True
    """False when the cache does not hold exactly prompt + answer: a stop string cut the text
    (the cache holds more), or the generation was interrupted before its prompt was all in."""


class Interrupt:
    """The interrupt flag of one request, shared by its choices. A request has it from the moment
    it is accepted, so ``interruptGenerate()`` reaches it while it waits for its model, tokenizes
    or prefills, not only once it decodes."""

    def __init__(self) -> None:
        self.is_set = False
        self._listeners: list[Callable[[], None]] = []

    def set(self) -> None:
        if not self.is_set:
            self.is_set = True
            for listener in list(self._listeners):
                listener()

    def listen(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` once the flag is set (at once if it is set already)."""
        self._listeners.append(listener)
        if self.is_set:
            listener()


class Detokenizer:
    """Incremental detokenisation that never splits a UTF-8 character.

    Decodes a short window of recent tokens and releases only text that has grown and does not
    end in U+FFFD (an unfinished multi-byte sequence).
    """

    def __init__(self, kernels: Kernels, handle: int) -> None:
        self.kernels = finishing(kernels)
        self.handle = handle
        self.tokens: list[int] = []
        self.prefix = 0
        self.read = 0
        self.prefix_text = ""

    async def push(self, tokens: list[int], *, final: bool = False) -> str:
        """Add tokens; return the text they complete (one detokenize call, two when sliding).

        ``final``: no token follows, so return everything decoded since the last release: all
        the complete characters, held back until now because the text ended in an unfinished
        one. Only that unfinished sequence at the very end (U+FFFD) is dropped, so an answer
        cut by max_tokens is a prefix of the same answer with a larger max_tokens."""
        self.tokens += tokens
        text = await self.kernels.detokenize(self.handle, self.tokens[self.prefix :])
        if final:
            text = text.rstrip("\ufffd")
            return text[len(self.prefix_text) :] if len(text) > len(self.prefix_text) else ""
        if len(text) <= len(self.prefix_text) or text.endswith("\ufffd"):
            return ""
        delta = text[len(self.prefix_text) :]
        if len(self.tokens) - self.prefix <= DETOKENIZE_WINDOW:
            self.prefix_text = text  # the window still starts where it did: no second call
        else:
            self.prefix = self.read  # slide: keep the tokens since the last release as context
            self.prefix_text = await self.kernels.detokenize(self.handle, self.tokens[self.prefix :])
        self.read = len(self.tokens)
        return delta


def held_back(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of ``text`` that could still grow into a stop string."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest


class Generation:
    """One choice: prefill ``prompt`` on top of ``kv_length`` cached tokens, then decode."""

    def __init__(
        self,
        kernels: Kernels,
        handle: int,
        settings: Settings,
        *,
        context_window: int,
        prefill_chunk: int,
        kv_length: int,
        rng: random.Random,
        interrupt: Interrupt | None = None,
    ) -> None:
        self.kernels = finishing(kernels)
        self.handle = handle
        self.settings = settings
        self.context_window = context_window
        self.prefill_chunk = max(1, prefill_chunk)
        self.kv_length = kv_length
        self.rng = rng
        self.prompt_end = kv_length
        self.signal = interrupt or Interrupt()
        self.outcome = Outcome()
        self.matcher: int | None = None

    @property
    def interrupted(self) -> bool:
        return self.signal.is_set

    def interrupt(self) -> None:
        """Stop at the next kernel-call boundary with finish_reason "abort"."""
        self.signal.set()

    def params(self, n: int) -> SamplingParams:
        s = self.settings
        return SamplingParams(
            **s.knobs(),
            logit_bias=s.logit_bias,
            history=list(self.outcome.tokens),
            uniforms=[self.rng.random() for _ in range(n)],
            logprobs=s.logprobs,
            top_logprobs=s.top_logprobs,
            grammar=self.matcher,
        )

    async def prefill(self, prompt: list[int]) -> None:
        """Prefill in chunks; raises before touching the cache if the prompt cannot fit."""
        if self.kv_length + len(prompt) >= self.context_window:
            raise ContextWindowSizeExceededError(
                f"Prompt tokens exceed context window size: number of prompt tokens: "
                f"{self.kv_length + len(prompt)}; context window size: {self.context_window}",
                prompt_tokens=self.kv_length + len(prompt),
                context_window_size=self.context_window,
            )
        start = time.perf_counter()
        for i in range(0, len(prompt), self.prefill_chunk):
            if self.interrupted:
                break
            await self.kernels.prefill(self.handle, prompt[i : i + self.prefill_chunk])
            self.kv_length += len(prompt[i : i + self.prefill_chunk])
        self.outcome.prompt_tokens = len(prompt)
        self.outcome.prefill_s = time.perf_counter() - start

    def budget(self) -> int:
        """How many more tokens may be generated (max_tokens and the context window)."""
        used = len(self.outcome.tokens)
        room = self.context_window - self.prompt_end - used
        if self.settings.max_tokens is not None:
            room = min(room, self.settings.max_tokens - used)
        return max(0, room)

    async def run(self, prompt: list[int]) -> AsyncGenerator[Delta, None]:
        """Yield text deltas; ``self.outcome`` is complete when the iterator ends.

        A constrained generation holds its grammar matcher from before the first sample to the
        end, however the iterator ends."""
        try:
            async with contextlib.aclosing(self._run(prompt)) as deltas:
                async for delta in deltas:
                    yield delta
        finally:
            if self.matcher is not None:
                matcher, self.matcher = self.matcher, None
                await self.kernels.close_grammar(self.handle, matcher)

    async def _run(self, prompt: list[int]) -> AsyncGenerator[Delta, None]:
        out, s = self.outcome, self.settings
        if s.grammar is not None:  # before the prefill: a grammar that does not compile costs nothing
            self.matcher = await self.kernels.open_grammar(self.handle, s.grammar)
        await self.prefill(prompt)
        self.prompt_end = self.kv_length
        if self.interrupted:
            out.finish_reason = "abort"
            out.kv_exact = False  # the cache may hold part of the prompt: nothing to reuse
            return
        stop_ids = set() if s.ignore_eos else set(s.stop_token_ids)
        detok = Detokenizer(self.kernels, self.handle)
        start = time.perf_counter()
        batch = [await self.kernels.sample(self.handle, self.params(1))]
        out.first_token_s = out.prefill_s + (time.perf_counter() - start)
        unsent, unsent_sampled = "", list[Sampled]()
        next_batch = FIRST_BATCH
        while True:
            accepted: list[Sampled] = []
            stopped = False
            for sampled in batch:
                if sampled.token in stop_ids:
                    stopped = True
                    break
                accepted.append(sampled)
                if self.budget() - len(accepted) <= 0:
                    break
            out.tokens += [a.token for a in accepted]
            ending = stopped or self.interrupted or self.budget() <= 0
            # The last push flushes: everything decoded reaches the answer, not only the text
            # held back for stop strings.
            unsent += await detok.push([a.token for a in accepted], final=ending)
            unsent_sampled += accepted
            cut = min((i for i in (unsent.find(x) for x in s.stop) if i >= 0), default=-1)
            if cut >= 0:
                out.kv_exact = False
                unsent = unsent[:cut]
                out.finish_reason = "stop"
                break
            if ending:
                out.finish_reason = "stop" if stopped else "abort" if self.interrupted else "length"
                break
            release = unsent[: len(unsent) - held_back(unsent, s.stop)]
            if release:
                out.text += release
                yield Delta(release, unsent_sampled)
                unsent, unsent_sampled = unsent[len(release) :], []
            if self.interrupted:  # while the consumer had the delta: end without another batch
                batch = []
                continue
            # Queue the next decode steps on the device; the last accepted token feeds them.
            n = min(next_batch, self.budget())
            step = time.perf_counter()
            batch = await self.kernels.decode_steps(self.handle, n, self.params(n))
            took = time.perf_counter() - step
            out.decode_s += took
            self.kv_length += len(batch)  # a grammar's end stops a batch early
            by_time = int(BATCH_SECONDS * n / took) if took > 0 else MAX_BATCH
            next_batch = max(1, min(MAX_BATCH, next_batch * 2, by_time))
        await self.settle()
        if unsent or unsent_sampled:
            out.text += unsent
            yield Delta(unsent, unsent_sampled)

    async def settle(self) -> None:
        """Rewind the cache to the accepted tokens; the last accepted one may still be pending.

        The cache holds every sampled token but the newest, so it may hold tokens after a stop
        token (dropped here), or lack the last accepted token (kept in ``pending`` for the next
        turn's prefill).
        """
        accepted = len(self.outcome.tokens)
        cached = self.kv_length - self.prompt_end
        if cached > accepted:
            await self.kernels.rewind(self.handle, self.prompt_end + accepted)
            self.kv_length = self.prompt_end + accepted
        self.outcome.pending = self.outcome.tokens[min(cached, accepted) :]
