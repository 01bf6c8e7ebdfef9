"""MLCEngine: the loaded models, their locks, and what runs outside a generation request.

The engine owns no GPU objects: it drives a ``Kernels`` backend (py_worker/kernels.py), behind
``finishing`` so no kernel call is ever abandoned half way. Every request takes its model's
FIFO lock through ``holding`` for the whole of its kernel work and gives it back in a
``finally``, so an error, an interrupt, a cancelled task or a stream closed early all free the
model for the next request. The openai-style resources (``engine.chat.completions``,
``engine.completions``, ``engine.embeddings``) live in py_worker/resources/.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from .errors import (
    InvalidRequestFieldError,
    ModelNotLoadedError,
    ReloadInterruptedError,
    UnsupportedModelIdError,
)
from .generate import Interrupt
from .kernels import Kernels, Knobs, SamplingParams, finishing
from .locks import ModelLocks
from .model import Model, Stats, make_model
from .remote import RemoteModel, Transport, is_remote_record, remote_model
from .resources import Chat, Completions, Embeddings
from .router import check_pipeline, check_reload_args, find_record, select_model
from .stream import Stream

__all__ = ["MLCEngine", "Model", "ProgressReport", "Stream", "make_model"]

log = logging.getLogger("py_worker")

ProgressReport = Callable[[dict[str, Any]], None]
"""Receives web-llm's InitProgressReport: ``{progress, timeElapsed, text}``."""


class MLCEngine:
    """The engine. ``await engine.reload(model_id)``, then ``engine.chat.completions.create(...)``."""

    def __init__(
        self,
        kernels: Kernels,
        app_config: dict[str, Any] | None = None,
        *,
        init_progress_callback: ProgressReport | None = None,
    ) -> None:
        self.kernels = finishing(kernels)
        self.app_config: dict[str, Any] = app_config or {"model_list": []}
        self.init_progress_callback = init_progress_callback
        self.models: dict[str, Model] = {}
        self.remotes: dict[str, RemoteModel] = {}
        """Models served by an OpenAI-compatible server (py_worker/remote.py)."""
        self.remote: Transport | None = getattr(kernels, "remote", None)
        self._order: list[str] = []
        self.locks = ModelLocks()
        self.running: set[Interrupt] = set()
        """The interrupt flag of every request accepted and not yet finished."""
        self.streams: set[Stream] = set()
        """Every stream whose generation has not ended."""
        self._epoch = 0
        self._loading = asyncio.Lock()
        self._rng = random.Random()
        """Uniforms for forward_tokens_and_sample (a request's own come from its seed)."""
        self.chat = Chat(self)
        self.completions = Completions(self)
        self.embeddings = Embeddings(self)

    # ---- models -------------------------------------------------------------------------

    def set_app_config(self, app_config: dict[str, Any]) -> None:
        self.app_config = app_config

    def loaded_model_ids(self) -> list[str]:
        return [m for m in self._order if m in self.models or m in self.remotes]

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
        self._order = ids
        report = progress or self.init_progress_callback
        async with self._loading:
            for record, opt in zip(records, opts, strict=True):
                self._check_epoch(epoch)
                if is_remote_record(record):  # nothing to load: checked, then served by its server
                    self.remotes[str(record["model_id"])] = remote_model(record, self.remote)
                    continue
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
        self.remotes.clear()
        for model_id in list(self.models):
            async with self.locks.hold(model_id):
                model = self.models.pop(model_id, None)
                if model is not None:
                    await self.kernels.unload(model.handle)

    @contextlib.asynccontextmanager
    async def holding(self, model: Model, signal: Interrupt | None = None) -> AsyncIterator[Model]:
        """Hold ``model``'s lock for a request's kernel work; once the lock is taken, the model
        must still be loaded (it may have been unloaded while the request queued), unless the
        request was interrupted meanwhile: it then touches nothing and ends as "abort"."""
        async with self.locks.hold(model.model_id):
            if (signal is None or not signal.is_set) and self.models.get(model.model_id) is not model:
                raise ModelNotLoadedError(f"Model {model.model_id} was unloaded before the request ran.")
            yield model

    def pick(self, requested: str | None, request_name: str, *, embedding: bool) -> Model:
        """Route a request to a loaded model and check it has the right pipeline."""
        model_id = select_model(self.loaded_model_ids(), requested, request_name)
        if model_id in self.remotes:
            raise UnsupportedModelIdError(
                f"{request_name} needs a model on this engine's own kernels; {model_id} is remote.",
                model_id=model_id,
                request_name=request_name,
            )
        model = self.models[model_id]
        check_pipeline(model.model_id, model.is_embedding, embedding, request_name)
        return model

    def remote_for(self, requested: Any) -> RemoteModel | None:
        """The remote model a request goes to: the one it names, or the only one loaded. Any
        other case is the local path's (whose ``pick`` raises web-llm's selection errors)."""
        if isinstance(requested, str) and requested:
            return self.remotes.get(requested)
        ids = self.loaded_model_ids()
        return self.remotes.get(ids[0]) if not requested and len(ids) == 1 else None

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
        self, model: Model | RemoteModel, chunks: Callable[[Interrupt], AsyncIterator[dict[str, Any]]]
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
        if self.remote_for(model) is not None:  # a server keeps no chat between requests
            return
        target = self.pick(model, "resetChat", embedding=False)
        async with self.holding(target):
            await target.chat.reset(self.kernels, target.handle)
            target.last_message = ""
            if not keep_stats:
                target.stats = Stats(backend=target.stats.backend)

    async def runtime_stats_text(self, model: str | None = None) -> str:
        return self.pick(model, "runtimeStatsText", embedding=False).stats.text()

    async def forward_tokens_and_sample(
        self, input_ids: list[int], is_prefill: bool, model: str | None = None
    ) -> int:
        """Feed tokens on top of the cache (a prefill, or one decode step each), then sample one
        token with the model's default knobs (its config's temperature, top_p and penalties,
        as web-llm does) and a uniform from the engine's own random stream. For callers that
        drive generation themselves; the cache no longer holds a chat afterwards."""
        target = self.pick(model, "forwardTokensAndSample", embedding=False)
        if not input_ids:
            raise InvalidRequestFieldError("inputIds must not be empty.", field="inputIds")
        target.check_token_ids(input_ids, "inputIds")
        async with self.holding(target):
            target.chat.forget()
            if is_prefill:
                for i in range(0, len(input_ids), target.prefill_chunk):
                    await self.kernels.prefill(target.handle, input_ids[i : i + target.prefill_chunk])
            else:
                for token in input_ids:
                    await self.kernels.decode(target.handle, token)
            target.chat.kv_length += len(input_ids)
            knobs = Knobs.resolve(target.config).knobs()
            sampled = await self.kernels.sample(
                target.handle, SamplingParams(**knobs, uniforms=[self._rng.random()])
            )
            return sampled.token
