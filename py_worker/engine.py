"""MLCEngine: loaded models, per-model locks, and the openai-python style resources.

The engine owns no GPU objects: it drives a ``Kernels`` backend (py_worker/kernels.py). Every
request takes its model's FIFO lock for the whole of its kernel work and gives it back in a
``finally``, so an error, an interrupt, a cancelled task or a stream closed early all free the
model for the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from . import protocol
from .chat_template import ChatTemplate
from .conversation import Conversation
from .errors import (
    EmbeddingExceedContextWindowSizeError,
    EmbeddingUnsupportedModelError,
    IncorrectPipelineLoadedError,
    InvalidRequestFieldError,
    ModelNotLoadedError,
    ReloadInterruptedError,
)
from .generate import Delta, Generation, Interrupt, Outcome, Settings, finish_call
from .kernels import Kernels, Sampled, SamplingParams
from .locks import ModelLocks
from .protocol.responses import Choice, TokenLogprob
from .router import check_reload_args, find_record, select_model

log = logging.getLogger("py_worker")

ProgressReport = Callable[[dict[str, Any]], None]
"""Receives web-llm's InitProgressReport: ``{progress, timeElapsed, text}``."""

EMBED_BATCH = 32
SAMPLING_DEFAULTS = {
    "temperature": 1.0,
    "top_p": 1.0,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
    "repetition_penalty": 1.0,
}


@dataclass
class Stats:
    """Token counts and seconds, for runtime_stats_text."""

    prefill_tokens: int = 0
    prefill_s: float = 0.0
    decode_tokens: int = 0
    decode_s: float = 0.0

    def add(self, out: Outcome) -> None:
        self.prefill_tokens += out.prompt_tokens
        self.prefill_s += out.prefill_s
        self.decode_tokens += max(0, len(out.tokens) - 1)
        self.decode_s += out.decode_s


@dataclass
class Model:
    """A loaded model and the chat whose tokens sit in its KV cache."""

    model_id: str
    handle: int
    config: dict[str, Any]
    is_embedding: bool
    conversation: Conversation | ChatTemplate | None
    messages: list[dict[str, Any]] = field(default_factory=list)
    kv_length: int = 0
    pending: list[int] = field(default_factory=list)
    last_message: str = ""
    stats: Stats = field(default_factory=Stats)
    token_text: dict[int, str] = field(default_factory=dict)

    @property
    def context_window(self) -> int:
        cfg = self.config
        return int(
            cfg.get("context_window_size") or cfg.get("model_config", {}).get("context_window_size") or 4096
        )

    @property
    def prefill_chunk(self) -> int:
        cfg = self.config
        return int(
            cfg.get("prefill_chunk_size") or cfg.get("model_config", {}).get("prefill_chunk_size") or 512
        )

    @property
    def vocab_size(self) -> int:
        cfg = self.config
        return int(cfg.get("vocab_size") or cfg.get("model_config", {}).get("vocab_size") or 0)

    def check_token_ids(self, ids: list[int], field: str) -> None:
        """Token ids come from the client as numbers: keep them inside the vocabulary."""
        limit = self.vocab_size or float("inf")  # a config without vocab_size bounds nothing but < 0
        bad = [i for i in ids if not 0 <= i < limit]
        if bad:
            raise InvalidRequestFieldError(
                f"{field} has token ids outside the vocabulary [0, {limit}): {bad[:5]}",
                field=field,
            )

    def forget_chat(self) -> None:
        """The cache no longer matches a chat: the next chat request prefills from scratch."""
        self.messages = []
        self.pending = []


class MLCEngine:
    """The engine. ``await engine.reload(model_id)``, then ``engine.chat.completions.create(...)``."""

    def __init__(
        self,
        kernels: Kernels,
        app_config: dict[str, Any] | None = None,
        *,
        init_progress_callback: ProgressReport | None = None,
    ) -> None:
        self.kernels = kernels
        self.app_config: dict[str, Any] = app_config or {"model_list": []}
        self.init_progress_callback = init_progress_callback
        self.models: dict[str, Model] = {}
        self.locks = ModelLocks()
        self.running: set[Interrupt] = set()
        """The interrupt flag of every request accepted and not yet finished."""
        self.streams: set[Stream] = set()
        """Every stream whose generation has not ended."""
        self._epoch = 0
        self._loading = asyncio.Lock()
        self.chat = Chat(self)
        self.completions = Completions(self)
        self.embeddings = Embeddings(self)

    # ---- models -------------------------------------------------------------------------

    def set_app_config(self, app_config: dict[str, Any]) -> None:
        self.app_config = app_config

    def loaded_model_ids(self) -> list[str]:
        return list(self.models)

    async def reload(
        self,
        model_ids: str | list[str],
        chat_opts: dict[str, Any] | list[dict[str, Any] | None] | None = None,
        *,
        progress: ProgressReport | None = None,
    ) -> None:
        """Unload everything, then load ``model_ids`` one at a time. A newer reload or an
        unload makes this one stop with ``ReloadInterruptedError``."""
        ids = [model_ids] if isinstance(model_ids, str) else list(model_ids)
        opts = chat_opts if isinstance(chat_opts, list) else [chat_opts] * len(ids)
        check_reload_args(ids, opts if isinstance(chat_opts, list) else None)
        records = [find_record(self.app_config, model_id) for model_id in ids]
        self._epoch += 1
        epoch = self._epoch
        await self._unload_all()
        report = progress or self.init_progress_callback
        async with self._loading:
            for record, opt in zip(records, opts, strict=True):
                self._check_epoch(epoch)
                loaded = await self._load_one(record, report)
                if epoch != self._epoch:
                    await self.kernels.unload(loaded.handle)
                    self._check_epoch(epoch)
                config = {**loaded.config, **(record.get("overrides") or {}), **(opt or {})}
                model_id = str(record["model_id"])
                self.models[model_id] = make_model(model_id, loaded.handle, config, record)

    async def _load_one(self, record: dict[str, Any], report: ProgressReport | None) -> Any:
        start = time.perf_counter()

        def progress(fraction: float, text: str) -> None:
            if report is not None:
                report({"progress": fraction, "timeElapsed": time.perf_counter() - start, "text": text})

        return await self.kernels.load(record, progress)

    def _check_epoch(self, epoch: int) -> None:
        if epoch != self._epoch:
            raise ReloadInterruptedError("Reload was interrupted by a newer reload or unload.")

    async def unload(self) -> None:
        """Free every model. Running requests are interrupted and finish first."""
        self._epoch += 1
        await self._unload_all()

    async def _unload_all(self) -> None:
        # Every request accepted so far ends: streams with their final chunk (finish_reason
        # "abort"), which they make without waiting for their readers.
        self.interrupt_generate()
        ending = [stream.producer for stream in self.streams]
        if ending:
            await asyncio.wait(ending)
        for model_id in list(self.models):
            async with self.locks.hold(model_id):
                model = self.models.pop(model_id, None)
                if model is not None:
                    await self.kernels.unload(model.handle)

    def pick(self, requested: str | None, request_name: str, *, embedding: bool) -> Model:
        """Route a request to a loaded model and check it has the right pipeline."""
        model = self.models[select_model(list(self.models), requested, request_name)]
        if embedding and not model.is_embedding:
            raise EmbeddingUnsupportedModelError(
                f"Trying to run embeddings.create() with {model.model_id}, which does not have "
                "ModelRecord.model_type === ModelType.embedding in the model record.",
                model_id=model.model_id,
            )
        if not embedding and model.is_embedding:
            raise IncorrectPipelineLoadedError(
                f"{request_name} expects an LLM, but {model.model_id} is an embedding model.",
                model_id=model.model_id,
                request_name=request_name,
            )
        return model

    async def _hold(self, model: Model) -> Model:
        """After the lock is taken, make sure the model was not unloaded while we queued."""
        if self.models.get(model.model_id) is not model:
            raise ModelNotLoadedError(f"Model {model.model_id} was unloaded before the request ran.")
        return model

    # ---- control ------------------------------------------------------------------------

    def interrupt_generate(self) -> None:
        """End every request accepted before now (running, or waiting for its model or for its
        stream's first pull) with finish_reason "abort"; later requests are not affected."""
        for signal in list(self.running):
            signal.set()

    def accept(self) -> Interrupt:
        """Register a request as interruptible from now until ``done(signal)``."""
        signal = Interrupt()
        self.running.add(signal)
        return signal

    def done(self, signal: Interrupt) -> None:
        self.running.discard(signal)

    def open_stream(
        self, model: Model, chunks: Callable[[Interrupt], AsyncIterator[dict[str, Any]]]
    ) -> Stream:
        """A stream of ``chunks(signal)``, accepted (interruptible) from now."""
        signal = self.accept()

        def ended(stream: Stream) -> None:
            self.done(signal)
            self.streams.discard(stream)

        stream = Stream(
            chunks(signal), locks=self.locks, model_id=model.model_id, signal=signal, on_end=ended
        )
        self.streams.add(stream)
        return stream

    async def get_message(self, model: str | None = None) -> str:
        return self.pick(model, "getMessage", embedding=False).last_message

    async def reset_chat(self, keep_stats: bool = False, model: str | None = None) -> None:
        target = self.pick(model, "resetChat", embedding=False)
        async with self.locks.hold(target.model_id):
            await self._hold(target)
            await self.kernels.reset(target.handle)
            target.forget_chat()
            target.kv_length = 0
            target.last_message = ""
            if not keep_stats:
                target.stats = Stats()

    async def runtime_stats_text(self, model: str | None = None) -> str:
        s = self.pick(model, "runtimeStatsText", embedding=False).stats
        prefill = s.prefill_tokens / s.prefill_s if s.prefill_s else 0.0
        decode = s.decode_tokens / s.decode_s if s.decode_s else 0.0
        return f"prefill: {prefill:.4f} tokens/sec, decoding: {decode:.4f} tokens/sec"

    async def forward_tokens_and_sample(
        self, input_ids: list[int], is_prefill: bool, model: str | None = None
    ) -> int:
        """Feed tokens on top of the cache (prefill, or one decode step each) and sample greedily
        per the model's defaults. For callers that drive generation themselves."""
        target = self.pick(model, "forwardTokensAndSample", embedding=False)
        if not input_ids:
            raise InvalidRequestFieldError("inputIds must not be empty.", field="inputIds")
        target.check_token_ids(input_ids, "inputIds")
        async with self.locks.hold(target.model_id):
            await self._hold(target)
            target.forget_chat()
            if is_prefill:
                for i in range(0, len(input_ids), target.prefill_chunk):
                    await finish_call(
                        self.kernels.prefill(target.handle, input_ids[i : i + target.prefill_chunk])
                    )
            else:
                for token in input_ids:
                    await finish_call(self.kernels.decode(target.handle, token))
            target.kv_length += len(input_ids)
            defaults = {k: float(target.config.get(k, v)) for k, v in SAMPLING_DEFAULTS.items()}
            params = SamplingParams(
                temperature=defaults["temperature"],
                top_p=defaults["top_p"],
                frequency_penalty=defaults["frequency_penalty"],
                presence_penalty=defaults["presence_penalty"],
                repetition_penalty=defaults["repetition_penalty"],
                uniforms=[random.random()],
            )
            sampled = await finish_call(self.kernels.sample(target.handle, params))
            return sampled.token

    # ---- generation ---------------------------------------------------------------------

    def settings(self, model: Model, config: protocol.GenerationConfig) -> Settings:
        def pick(value: float | None, key: str) -> float:
            return float(value if value is not None else model.config.get(key, SAMPLING_DEFAULTS[key]))

        conv = model.conversation
        return Settings(
            temperature=pick(config.temperature, "temperature"),
            top_p=pick(config.top_p, "top_p"),
            frequency_penalty=pick(config.frequency_penalty, "frequency_penalty"),
            presence_penalty=pick(config.presence_penalty, "presence_penalty"),
            repetition_penalty=pick(config.repetition_penalty, "repetition_penalty"),
            logit_bias=dict(config.logit_bias),
            max_tokens=config.max_tokens,
            stop=list(config.stop),
            stop_token_ids=list(conv.stop_token_ids if conv else []),
            ignore_eos=config.ignore_eos,
            logprobs=config.logprobs,
            top_logprobs=config.top_logprobs,
        )

    async def tokenize_pieces(self, model: Model, pieces: list[str]) -> list[int]:
        ids: list[int] = []
        for piece in pieces:
            ids += await finish_call(self.kernels.tokenize(model.handle, piece))
        return ids

    async def chat_prompt(self, model: Model, messages: list[dict[str, Any]]) -> list[int]:
        """Prompt tokens to prefill: only the new turn when the cache holds the earlier ones."""
        conv = model.conversation
        assert conv is not None
        history = model.messages
        if history and messages[:-1] == history and messages[-1]["role"] in ("user", "tool"):
            answered = len([m for m in history if m["role"] != "system"])
            pieces = conv.continuation_pieces(messages, answered)
            if pieces is not None:  # None: the template's render does not extend the cached one
                return model.pending + await self.tokenize_pieces(model, pieces)
        pieces = conv.prompt_pieces(messages)  # before the reset: a template error keeps the cache
        await finish_call(self.kernels.reset(model.handle))
        model.kv_length = 0
        model.forget_chat()
        return conv.system_prefix_token_ids + await self.tokenize_pieces(model, pieces)

    def new_generation(
        self, model: Model, settings: Settings, rng: random.Random, signal: Interrupt | None = None
    ) -> Generation:
        return Generation(
            self.kernels,
            model.handle,
            settings,
            context_window=model.context_window,
            prefill_chunk=model.prefill_chunk,
            kv_length=model.kv_length,
            rng=rng,
            interrupt=signal,
        )

    async def run(
        self, model: Model, generation: Generation, prompt: list[int]
    ) -> AsyncGenerator[Delta, None]:
        """Run one choice on a held model.

        From its first kernel call the cache no longer matches the recorded chat: the chat is
        forgotten now and recorded again (remember_chat) only when the choice ends normally with
        an exact cache, so an error, an interrupt in prefill or a stream closed early leaves
        "nothing cached" and the next turn prefills from scratch."""
        model.forget_chat()
        try:
            async with contextlib.aclosing(generation.run(prompt)) as deltas:
                async for delta in deltas:
                    yield delta
        finally:
            model.kv_length = generation.kv_length
            model.stats.add(generation.outcome)

    async def one_choice(
        self, model: Model, prompt: list[int], settings: Settings, rng: random.Random, signal: Interrupt
    ) -> tuple[Outcome, list[TokenLogprob] | None]:
        """Run one non-streaming choice to its end; logprobs when the settings ask for them."""
        generation = self.new_generation(model, settings, rng, signal)
        logprobs: list[TokenLogprob] = []
        async with contextlib.aclosing(self.run(model, generation, prompt)) as deltas:
            async for delta in deltas:
                if settings.logprobs:
                    logprobs += await self.token_logprobs(model, delta.sampled)
        return generation.outcome, logprobs if settings.logprobs else None

    async def stream_choice(
        self, model: Model, generation: Generation, prompt: list[int]
    ) -> AsyncGenerator[tuple[str, list[TokenLogprob] | None], None]:
        """Text pieces of one streamed choice, with their logprobs when the settings ask for them."""
        wanted = generation.settings.logprobs
        async with contextlib.aclosing(self.run(model, generation, prompt)) as deltas:
            async for delta in deltas:
                if delta.text or wanted:
                    yield delta.text, await self.token_logprobs(model, delta.sampled) if wanted else None

    async def token_logprobs(self, model: Model, sampled: list[Sampled]) -> list[TokenLogprob]:
        async def text(token: int) -> str:
            if token not in model.token_text:
                model.token_text[token] = await finish_call(self.kernels.detokenize(model.handle, [token]))
            return model.token_text[token]

        out = []
        for s in sampled:
            t = await text(s.token)
            top = [(await text(i), lp, list((await text(i)).encode())) for i, lp in s.top_logprobs]
            out.append(TokenLogprob(t, float(s.logprob or 0.0), list(t.encode()), top))
        return out


def make_model(model_id: str, handle: int, config: dict[str, Any], record: dict[str, Any]) -> Model:
    is_embedding = record.get("model_type") == "embedding" or config.get("model_type") == "bert"
    template = config.get("conv_template")
    conversation: Conversation | ChatTemplate | None = None
    if isinstance(template, dict):  # MLC's conv_template wins (chatOpts may set one over a GGUF's)
        conversation = Conversation.from_template(template)
    elif isinstance(config.get("chat_template"), str) and config["chat_template"]:
        conversation = ChatTemplate.from_config(config)  # a GGUF's tokenizer.chat_template
    return Model(model_id, handle, config, is_embedding, conversation)


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


class Stream:
    """An async iterator of chunks. ``aclose()`` (or leaving ``async for`` early through it)
    stops the generation and frees the model at once.

    A producer task runs the generation and keeps its chunks until they are read. It makes a
    chunk when the reader asks for one, so the generation keeps pace with its reader, except
    when it must not wait for the reader: once the request is interrupted (interruptGenerate,
    reload, unload), or once another request waits for the model this stream holds. It then
    makes the rest of its answer at once and frees the model; the reader still gets every
    chunk. So a request made inside ``for await`` over this stream (resetChat, a non-streaming
    chat, forwardTokensAndSample, another stream on the same model) is served after this
    stream's generation instead of waiting for ever, and the loop then reads the rest.
    """

    def __init__(
        self,
        chunks: AsyncIterator[dict[str, Any]],
        *,
        locks: ModelLocks | None = None,
        model_id: str = "",
        signal: Interrupt | None = None,
        on_end: Callable[[Stream], None] | None = None,
    ) -> None:
        self._chunks = chunks
        self._locks = locks
        self._model_id = model_id
        self._on_end = on_end
        self._buffer: deque[dict[str, Any]] = deque()
        self._error: BaseException | None = None
        self._ended = False
        self._closed = False
        self._readers = 0
        self._drain = False
        self._wake = asyncio.Event()  # the producer's: a reader waits, or drain
        self._ready = asyncio.Event()  # the readers': a chunk, or the end
        self.producer: asyncio.Task[None] = asyncio.ensure_future(self._produce())
        self.producer.add_done_callback(lambda _: self._end())
        if signal is not None:
            signal.listen(self._drain_now)

    def _drain_now(self) -> None:
        self._drain = True
        self._wake.set()

    def _end(self) -> None:
        self._ended = True
        self._ready.set()
        if self._on_end is not None:
            on_end, self._on_end = self._on_end, None
            on_end(self)

    async def _produce(self) -> None:
        stop_watching: Callable[[], None] | None = None
        try:
            while True:
                while not (self._readers or self._drain):
                    self._wake.clear()
                    await self._wake.wait()
                try:
                    chunk = await self._chunks.__anext__()
                except StopAsyncIteration:
                    return
                self._buffer.append(chunk)
                self._ready.set()
                if stop_watching is None and self._locks is not None:
                    # From its first chunk until its generation ends the stream holds its model.
                    stop_watching = self._locks.on_waiter(self._model_id, self._drain_now)
        except asyncio.CancelledError:
            if not self._closed:
                raise
        except Exception as exc:
            self._error = exc
        finally:
            if stop_watching is not None:
                stop_watching()
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()  # a generation parked between chunks ends here, freeing its model

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while not self._buffer:
            if self._ended or self._closed:
                if self._error is not None and not self._closed:
                    error, self._error = self._error, None
                    raise error
                raise StopAsyncIteration
            self._ready.clear()
            self._readers += 1
            self._wake.set()
            try:
                await self._ready.wait()
            finally:
                self._readers -= 1
        return self._buffer.popleft()

    async def aclose(self) -> None:
        self._closed = True
        self._buffer.clear()
        self._ready.set()
        if not self.producer.done():
            self.producer.cancel()
            await asyncio.wait({self.producer})


class Chat:
    def __init__(self, engine: MLCEngine) -> None:
        self.completions = ChatCompletions(engine)


class ChatCompletions:
    """``engine.chat.completions.create(messages=..., stream=..., ...)``."""

    def __init__(self, engine: MLCEngine) -> None:
        self.engine = engine

    async def create(self, **request: Any) -> dict[str, Any] | Stream:
        req = protocol.validate_chat_request(request)
        model = self.engine.pick(req.model, "ChatCompletionRequest", embedding=False)
        model.check_token_ids(list(req.config.logit_bias), "logit_bias")
        if req.config.stream:
            return self.engine.open_stream(model, lambda signal: self._stream(model, req, signal))
        signal = self.engine.accept()
        try:
            return await self._complete(model, req, signal)
        finally:
            self.engine.done(signal)

    async def _complete(self, model: Model, req: protocol.ChatRequest, signal: Interrupt) -> dict[str, Any]:
        engine, started = self.engine, time.perf_counter()
        rng = seeded(req.config)
        choices, outcomes = [], []
        async with engine.locks.hold(model.model_id):
            if not signal.is_set:
                await engine._hold(model)
            settings = engine.settings(model, req.config)
            for index in range(req.config.n):
                if signal.is_set:  # interrupted before this choice began: the model is untouched
                    outcome = aborted(model)
                    logprobs: list[TokenLogprob] | None = [] if settings.logprobs else None
                else:
                    prompt = await engine.chat_prompt(model, req.messages)
                    outcome, logprobs = await engine.one_choice(model, prompt, settings, rng, signal)
                    remember_chat(model, req.messages, outcome, keep=req.config.n == 1)
                outcomes.append(outcome)
                choices.append(Choice(index, outcome.text, outcome.finish_reason, logprobs))
        return protocol.responses.chat_completion(
            protocol.responses.new_id("chatcmpl"),
            model.model_id,
            int(time.time()),
            choices,
            usage_of(outcomes, started),
        )

    async def _stream(
        self, model: Model, req: protocol.ChatRequest, signal: Interrupt
    ) -> AsyncIterator[dict[str, Any]]:
        engine, started = self.engine, time.perf_counter()
        rng = seeded(req.config)
        chunk_id, created = protocol.responses.new_id("chatcmpl"), int(time.time())
        outcome: Outcome | None = None
        if not signal.is_set:
            async with engine.locks.hold(model.model_id):
                if not signal.is_set:
                    await engine._hold(model)
                    settings = engine.settings(model, req.config)
                    prompt = await engine.chat_prompt(model, req.messages)
                    generation = engine.new_generation(model, settings, rng, signal)
                    async with contextlib.aclosing(engine.stream_choice(model, generation, prompt)) as pieces:
                        async for text, logprobs in pieces:
                            yield protocol.responses.chat_chunk(
                                chunk_id, model.model_id, created, 0, text, True, None, logprobs
                            )
                    outcome = generation.outcome
                    remember_chat(model, req.messages, outcome, keep=True)
        if outcome is None:  # interrupted before it began: only the final chunk, model untouched
            outcome = aborted(model)
        yield protocol.responses.chat_chunk(
            chunk_id, model.model_id, created, 0, "", True, outcome.finish_reason, None
        )
        if req.config.include_usage:
            yield protocol.responses.chat_usage_chunk(
                chunk_id, model.model_id, created, usage_of([outcome], started)
            )


def aborted(model: Model) -> Outcome:
    """The outcome of a request interrupted before its generation began."""
    model.last_message = ""
    return Outcome(finish_reason="abort")


def seeded(config: protocol.GenerationConfig) -> random.Random:
    """The request's random stream: reproducible with a seed, fresh without one."""
    return random.Random(config.seed) if config.seed is not None else random.Random()


def remember_chat(model: Model, messages: list[dict[str, Any]], outcome: Outcome, *, keep: bool) -> None:
    """Record what the KV cache now holds, so the next turn can prefill only itself."""
    model.last_message = outcome.text
    if keep and outcome.kv_exact:
        model.messages = [*messages, {"role": "assistant", "content": outcome.text}]
        model.pending = list(outcome.pending)
    else:
        model.forget_chat()


class Completions:
    """``engine.completions.create(prompt=..., ...)``: raw text completion, no chat template."""

    def __init__(self, engine: MLCEngine) -> None:
        self.engine = engine

    async def create(self, **request: Any) -> dict[str, Any] | Stream:
        req = protocol.validate_completion_request(request)
        model = self.engine.pick(req.model, "CompletionCreateParams", embedding=False)
        model.check_token_ids(list(req.config.logit_bias), "logit_bias")
        if req.config.stream:
            return self.engine.open_stream(model, lambda signal: self._stream(model, req, signal))
        signal = self.engine.accept()
        try:
            return await self._complete(model, req, signal)
        finally:
            self.engine.done(signal)

    async def _prompt(self, model: Model, req: protocol.CompletionRequest) -> list[int]:
        ids = list(await finish_call(self.engine.kernels.tokenize(model.handle, req.prompt)))
        if not ids:
            raise InvalidRequestFieldError(
                "prompt has no tokens: there is nothing to continue.", field="prompt"
            )
        await finish_call(self.engine.kernels.reset(model.handle))
        model.kv_length = 0
        model.forget_chat()
        return ids

    async def _complete(
        self, model: Model, req: protocol.CompletionRequest, signal: Interrupt
    ) -> dict[str, Any]:
        engine, started = self.engine, time.perf_counter()
        rng = seeded(req.config)
        choices, outcomes = [], []
        async with engine.locks.hold(model.model_id):
            if not signal.is_set:
                await engine._hold(model)
            settings = engine.settings(model, req.config)
            for index in range(req.config.n):
                if signal.is_set:  # interrupted before this choice began: the model is untouched
                    outcome = aborted(model)
                    logprobs: list[TokenLogprob] | None = [] if settings.logprobs else None
                else:
                    prompt = await self._prompt(model, req)
                    outcome, logprobs = await engine.one_choice(model, prompt, settings, rng, signal)
                    model.last_message = outcome.text
                outcomes.append(outcome)
                text = (req.prompt if req.echo else "") + outcome.text
                choices.append(Choice(index, text, outcome.finish_reason, logprobs))
        return protocol.responses.completion(
            protocol.responses.new_id("cmpl"),
            model.model_id,
            int(time.time()),
            choices,
            usage_of(outcomes, started),
        )

    async def _stream(
        self, model: Model, req: protocol.CompletionRequest, signal: Interrupt
    ) -> AsyncIterator[dict[str, Any]]:
        engine, started = self.engine, time.perf_counter()
        rng = seeded(req.config)
        chunk_id, created = protocol.responses.new_id("cmpl"), int(time.time())
        outcome: Outcome | None = None
        if not signal.is_set:
            async with engine.locks.hold(model.model_id):
                if not signal.is_set:
                    await engine._hold(model)
                    settings = engine.settings(model, req.config)
                    prompt = await self._prompt(model, req)
                    generation = engine.new_generation(model, settings, rng, signal)
                    if req.echo:
                        yield protocol.responses.completion_chunk(
                            chunk_id, model.model_id, created, 0, req.prompt, None, None
                        )
                    async with contextlib.aclosing(engine.stream_choice(model, generation, prompt)) as pieces:
                        async for text, logprobs in pieces:
                            yield protocol.responses.completion_chunk(
                                chunk_id, model.model_id, created, 0, text, None, logprobs
                            )
                    outcome = generation.outcome
                    model.last_message = outcome.text
        if outcome is None:  # interrupted before it began: only the final chunk, model untouched
            outcome = aborted(model)
        yield protocol.responses.completion_chunk(
            chunk_id, model.model_id, created, 0, "", outcome.finish_reason, None
        )
        if req.config.include_usage:
            yield protocol.responses.completion_usage_chunk(
                chunk_id, model.model_id, created, usage_of([outcome], started)
            )


class Embeddings:
    """``engine.embeddings.create(input=...)``."""

    def __init__(self, engine: MLCEngine) -> None:
        self.engine = engine

    async def create(self, **request: Any) -> dict[str, Any]:
        req = protocol.validate_embedding_request(request)
        engine = self.engine
        model = engine.pick(req.model, "EmbeddingCreateParams", embedding=True)
        async with engine.locks.hold(model.model_id):
            await engine._hold(model)
            batch: list[list[int]] = []
            for item in req.input:
                ids = (
                    list(await finish_call(engine.kernels.tokenize(model.handle, item)))
                    if isinstance(item, str)
                    else list(item)
                )
                model.check_token_ids(ids, "input")
                # Encoders add [CLS] and [SEP] around the tokenizer's ids.
                specials = 2 if model.config.get("cls_token_id") is not None else 0
                if len(ids) + specials > model.context_window:
                    raise EmbeddingExceedContextWindowSizeError(
                        f"The embedding input has {len(ids) + specials} tokens, more than the model's "
                        f"context window size of {model.context_window}.",
                        input_tokens=len(ids) + specials,
                        context_window_size=model.context_window,
                    )
                batch.append(ids)
            vectors: list[list[float]] = []
            for i in range(0, len(batch), EMBED_BATCH):
                vectors += await finish_call(engine.kernels.embed(model.handle, batch[i : i + EMBED_BATCH]))
        return protocol.responses.embedding_response(model.model_id, vectors, sum(len(b) for b in batch))
