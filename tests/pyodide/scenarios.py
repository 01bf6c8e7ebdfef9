"""Scenarios run twice, on host CPython and inside Pyodide, whose plain-data results must match.

The test module reads this file as text and ``exec``s it on both sides (inside Pyodide it is
passed as an argument to a ``run_in_pyodide`` function), so nothing here may import test
helpers; only ``py_worker`` and the standard library. Every function returns JSON-like data:
outcomes are the selected value or the error's wire form (class name, message, fields).
"""

from __future__ import annotations

import asyncio
from typing import Any


def outcome(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` as plain data: its result, or the error's wire form."""
    from py_worker.errors import error_to_dict

    try:
        return {"ok": fn(*args)}
    except Exception as exc:
        return {"error": error_to_dict(exc)}


def router_cases() -> list[Any]:
    """web-llm's model selection and reload argument rules over a table of inputs."""
    from py_worker import router

    config = {
        "model_list": [
            {"model_id": "llm-a", "model": "/m/a"},
            {"model_id": "emb", "model": "/m/e", "model_type": "embedding"},
        ]
    }
    llm, emb = (router.is_embedding_model(record) for record in config["model_list"])
    return [
        outcome(router.select_model, [], None, "ChatCompletionRequest"),
        outcome(router.select_model, ["llm-a"], None, "ChatCompletionRequest"),
        outcome(router.select_model, ["llm-a", "emb"], "emb", "EmbeddingCreateParams"),
        outcome(router.select_model, ["llm-a"], "llm-b", "ChatCompletionRequest"),
        outcome(router.select_model, ["llm-a", "emb"], None, "ChatCompletionRequest"),
        outcome(router.check_reload_args, ["a", "a"], None),
        outcome(router.check_reload_args, ["a", "b"], [{}]),
        outcome(router.check_reload_args, ["a", "b"], [{}, {}]),
        outcome(router.find_record, config, "emb"),
        outcome(router.find_record, config, "missing"),
        outcome(router.check_pipeline, "emb", emb, False, "ChatCompletionRequest"),
        outcome(router.check_pipeline, "llm-a", llm, True, "EmbeddingCreateParams"),
        outcome(router.check_pipeline, "llm-a", llm, False, "ChatCompletionRequest"),
    ]


def validation_cases() -> list[Any]:
    """OpenAI request checks: which requests pass and which named error the others raise."""
    from dataclasses import asdict

    from py_worker.protocol.chat import validate_chat_request
    from py_worker.protocol.embedding import validate_embedding_request

    hi = [{"role": "user", "content": "hi"}]
    chats: list[dict[str, Any]] = [
        {"messages": hi},
        {"messages": hi, "stream": True, "n": 2},
        {"messages": hi, "stream_options": {"include_usage": True}},
        {"messages": hi, "seed": 1.5},
        {"messages": hi, "frequency_penalty": 2.5},
        {"messages": hi, "repetition_penalty": 0},
        {"messages": hi, "max_tokens": 0},
        {"messages": hi, "top_p": 0},
        {"messages": hi, "temperature": -1},
        {"messages": hi, "logit_bias": {"12": 101}},
        {"messages": hi, "logit_bias": {"x": 1}},
        {"messages": hi, "top_logprobs": 2},
        {"messages": hi, "logprobs": True, "top_logprobs": 6},
        {"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"}]},
        {"messages": []},
        {"messages": hi, "temperature": 0.5, "top_p": 0.9, "stop": ["x"], "logit_bias": {"3": -100}},
    ]
    embeddings: list[dict[str, Any]] = [
        {"input": "one"},
        {"input": ["a", "b"]},
        {"input": [1, 2, 3]},
        {"input": [[1], [2, 3]]},
        {"input": ""},
        {"input": []},
        {"input": "x", "dimensions": 8},
        {"input": "x", "encoding_format": "base64"},
    ]
    return [outcome(lambda r: asdict(validate_chat_request(r)), c) for c in chats] + [
        outcome(lambda r: asdict(validate_embedding_request(r)), e) for e in embeddings
    ]


def error_round_trip() -> list[Any]:
    """Every named error survives its wire form with class, message and fields."""
    from py_worker import errors

    out = []
    for name in errors.error_names():
        wire = {"name": name, "message": f"m-{name}", "fields": {"k": 1, "message": "field"}}
        back = errors.error_from_dict(wire)
        out.append([type(back).__name__, back.message, back.fields, errors.error_to_dict(back) == wire])
    unknown = errors.error_from_dict({"name": "NotAClass", "message": "m"})
    out.append([type(unknown).__name__, unknown.fields])
    return out


async def lock_trace() -> dict[str, Any]:
    """A scripted workload on ``ModelLocks``: FIFO per model, concurrency across models,
    a cancelled waiter skipped, a raising holder releasing, a holder cancelled mid-hold."""
    from py_worker.locks import ModelLocks

    locks = ModelLocks()
    trace: list[str] = []
    gate = asyncio.Event()

    async def job(name: str, model: str, hold_until_gate: bool = False, fail: bool = False) -> None:
        async with locks.hold(model):
            trace.append(f"start {name}")
            if hold_until_gate:
                await gate.wait()
            await asyncio.sleep(0)
            if fail:
                raise ValueError(name)
            trace.append(f"end {name}")

    first = asyncio.create_task(job("a1", "A", hold_until_gate=True))
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(job(n, "A", fail=(n == "a3"))) for n in ("a2", "a3", "a4", "a5")]
    other = asyncio.create_task(job("b1", "B"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    snapshot = {"held": sorted(locks.held()), "waiting_A": locks.waiting("A")}
    waiters[2].cancel()  # a4 leaves the queue before its turn
    await asyncio.sleep(0)
    snapshot["waiting_A_after_cancel"] = locks.waiting("A")
    await other
    gate.set()
    results = await asyncio.gather(first, *waiters, return_exceptions=True)

    holder = asyncio.create_task(job("c1", "C", hold_until_gate=True))
    gate.clear()
    after = asyncio.create_task(job("c2", "C"))
    await asyncio.sleep(0)
    holder.cancel()
    await asyncio.gather(holder, after, return_exceptions=True)
    return {
        "trace": trace,
        "snapshot": snapshot,
        "results": [type(r).__name__ if isinstance(r, BaseException) else r for r in results],
        "held_at_end": sorted(locks.held()),
    }


class ByteKernels:
    """The layer below the engine, as plain Python: byte tokens, and a model that answers with
    a fixed reply then end-of-turn (id 300). Every call yields to the event loop once."""

    EOT = 300
    REPLY = "Hi from py_worker."

    def __init__(self) -> None:
        self.kv: dict[int, list[int]] = {}
        self.handles = 0
        self.answered: dict[int, int] = {}

    async def _tick(self) -> None:
        await asyncio.sleep(0)

    async def load(self, record: dict[str, Any], progress: Any) -> Any:
        from py_worker.kernels import LoadedModel

        await self._tick()
        progress(0.5, "Fetching param cache[1/2]: byte model")
        progress(1.0, "Finish loading on WebGPU - byte model")
        self.handles += 1
        self.kv[self.handles] = []
        template = {
            "system_template": "<|im_start|>system\n{system_message}<|im_end|>\n",
            "system_message": "Be brief.",
            "roles": {"user": "<|im_start|>user", "assistant": "<|im_start|>assistant"},
            "seps": ["<|im_end|>\n"],
            "role_content_sep": "\n",
            "role_empty_sep": "\n",
            "stop_token_ids": [self.EOT],
        }
        config = {"context_window_size": 512, "prefill_chunk_size": 16, "conv_template": template}
        if record.get("model_type") == "embedding":
            config["model_type"] = "bert"
        return LoadedModel(self.handles, config)

    async def unload(self, handle: int) -> None:
        await self._tick()
        self.kv.pop(handle, None)

    async def tokenize(self, handle: int, text: str) -> list[int]:
        return list(text.encode())

    async def detokenize(self, handle: int, ids: list[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    async def prefill(self, handle: int, ids: list[int]) -> None:
        await self._tick()
        self.kv[handle] += ids
        self.answered[handle] = 0

    async def decode(self, handle: int, token: int) -> None:
        await self._tick()
        self.kv[handle].append(token)

    def _next(self, handle: int) -> Any:
        from py_worker.kernels import Sampled

        i = self.answered.get(handle, 0)
        self.answered[handle] = i + 1
        reply = self.REPLY.encode()
        return Sampled(reply[i] if i < len(reply) else self.EOT)

    async def sample(self, handle: int, params: Any) -> Any:
        await self._tick()
        return self._next(handle)

    async def decode_steps(self, handle: int, n: int, params: Any) -> list[Any]:
        await self._tick()
        out = []
        for _ in range(n):
            self.kv[handle].append(0)
            out.append(self._next(handle))
        return out

    async def rewind(self, handle: int, length: int) -> None:
        await self._tick()
        del self.kv[handle][length:]

    async def reset(self, handle: int) -> None:
        await self._tick()
        self.kv[handle].clear()

    async def embed(self, handle: int, batch: list[list[int]]) -> list[list[float]]:
        await self._tick()
        return [[float(len(ids)), float(sum(ids) % 7)] for ids in batch]

    async def stats(self, handle: int) -> dict[str, Any]:
        return {}

    async def device_info(self) -> dict[str, Any]:
        return {"vendor": "bytes", "architecture": "python", "maxStorageBufferBindingSize": 1 << 20}


VOLATILE = {"id", "created", "timeElapsed", "extra", "system_fingerprint"}


def scrub(value: Any) -> Any:
    """Drop clocks and generated ids, which differ between any two runs."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


async def handler_transcript() -> list[Any]:
    """A session of worker messages through ``Handler`` over ``MLCEngine``: every reply posted."""
    from py_worker.engine import MLCEngine
    from py_worker.handler import Handler

    app_config = {
        "model_list": [
            {"model_id": "byte-llm", "model": "/m/llm"},
            {"model_id": "byte-emb", "model": "/m/emb", "model_type": "embedding"},
        ]
    }
    handler = Handler(MLCEngine(ByteKernels(), app_config))
    posted: list[Any] = []
    chat = {"messages": [{"role": "user", "content": "Hello?"}], "temperature": 0}
    script: list[tuple[str, Any]] = [
        ("noSuchKind", {}),
        ("chatCompletionNonStreaming", {"request": chat}),
        ("reload", {"modelId": ["byte-llm", "byte-emb"]}),
        ("chatCompletionNonStreaming", {"request": chat}),
        ("chatCompletionNonStreaming", {"request": {**chat, "model": "byte-llm"}}),
        ("chatCompletionStreamInit", {"request": {**chat, "model": "byte-llm", "stream": True}}),
        ("completionStreamNextChunk", {"streamId": "$stream"}),
        ("completionStreamNextChunk", {"streamId": "$stream"}),
        ("completionStreamReturn", {"streamId": "$stream"}),
        ("completionStreamNextChunk", {"streamId": "$stream"}),
        ("embedding", {"request": {"input": ["a", "bc"], "model": "byte-emb"}}),
        ("embedding", {"request": {"input": "x", "model": "byte-llm"}}),
        ("getMessage", {"modelId": "byte-llm"}),
        ("unload", {}),
    ]
    stream_id = ""
    for i, (kind, content) in enumerate(script):
        if content.get("streamId") == "$stream":
            content = {"streamId": stream_id}
        await handler.handle({"kind": kind, "uuid": f"u{i}", "content": content}, posted.append)
        stream_id = stream_id or (posted[-1]["content"] or {}).get("streamId", "")
    return [scrub(p) for p in posted]


def run_all_sync() -> dict[str, Any]:
    """The synchronous scenarios, keyed by name."""
    return {
        "router": router_cases(),
        "validation": validation_cases(),
        "errors": error_round_trip(),
    }
