"""Load: 64 concurrent requests through the worker message handler, then the same ones serially.

Three models are loaded at once on the NumPy reference backend: the two tiny Llamas (f32 and
4-bit) and a tiny BERT for embeddings. The mix holds non-streaming and streamed chat and text
completions, embeddings, streams abandoned after a few chunks (``completionStreamReturn``) and
streams interrupted mid-way (``interruptGenerate``). Each request has its own seed, so the serial
pass must give the same texts; tests/host/test_load.py checks that, this script reports the
throughput of both passes. Writes bench/out/load.json.

    .venv/bin/python bench/load.py [--requests 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

from py_worker.engine import MLCEngine  # noqa: E402
from py_worker.handler import Handler  # noqa: E402
from py_worker.reference import ReferenceKernels  # noqa: E402
from tools.make_tiny_bert import ensure_tiny_bert  # noqa: E402
from tools.make_tiny_model import ensure_tiny  # noqa: E402

LLMS = ("tiny-a", "tiny-b")
BERT = "tiny-bert"
PROMPTS = ("Hi there", "Tell me a story.", "What is 2 + 2?", "Write a haiku about rain.", "Bonjour, ça va ?")
STREAM_TIMEOUT_S = 60.0


def app_config() -> dict[str, Any]:
    """Two tiny Llamas and the tiny BERT."""
    return {
        "model_list": [
            {"model_id": "tiny-a", "model": str(ensure_tiny("q0f32")), "model_type": "LLM"},
            {"model_id": "tiny-b", "model": str(ensure_tiny("q4f32_1")), "model_type": "LLM"},
            {"model_id": BERT, "model": str(ensure_tiny_bert()), "model_type": "embedding"},
        ]
    }


# ---- the request mix ---------------------------------------------------------------------------


@dataclass
class Job:
    """One request of the mix. ``fate``: "complete", "abandon" (return after a few chunks) or
    "interrupt" (send interruptGenerate after the first chunk, then read to the end)."""

    index: int
    kind: str  # "chat" | "completion" | "embedding"
    stream: bool
    model: str
    request: dict[str, Any]
    fate: str = "complete"


@dataclass
class Result:
    """What the client saw for one job."""

    job: Job
    text: str = ""
    finish_reason: str | None = None
    vectors: list[list[float]] = field(default_factory=list)
    chunk_ids: set[str] = field(default_factory=set)
    models: set[str] = field(default_factory=set)
    completion_tokens: int = 0
    error: dict[str, Any] | None = None
    latency_s: float = 0.0


def make_jobs(n: int = 64, seed: int = 0) -> list[Job]:
    """A deterministic mix: about 1/8 embeddings, 1/8 abandoned and 1/8 interrupted streams."""
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        slot = i % 8
        if slot == 0:
            text = [rng.choice(PROMPTS) for _ in range(rng.randint(1, 3))]
            jobs.append(
                Job(i, "embedding", False, BERT, {"input": text if len(text) > 1 else text[0], "model": BERT})
            )
            continue
        kind = "completion" if slot in (3, 6) else "chat"
        stream = slot in (1, 2, 3, 4, 5)
        fate = "abandon" if slot == 4 else "interrupt" if slot == 5 else "complete"
        prompt = rng.choice(PROMPTS)
        request: dict[str, Any] = {
            "seed": 1000 + i,
            "temperature": rng.choice([0.0, 0.7, 1.0]),
            "max_tokens": 48 if fate != "complete" else rng.randint(4, 24),
            "ignore_eos": fate != "complete" or rng.random() < 0.5,
        }
        if kind == "chat":
            request["messages"] = [{"role": "user", "content": prompt}]
        else:
            request["prompt"] = prompt
        if stream and fate == "complete":
            request["stream_options"] = {"include_usage": True}
        jobs.append(Job(i, kind, stream, LLMS[i % 2], {**request, "model": LLMS[i % 2]}, fate))
    return jobs


# ---- the client side ---------------------------------------------------------------------------


class Client:
    """Sends protocol messages to a handler and keeps every reply, like the JS proxy."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.replies: list[dict[str, Any]] = []
        self.sent: list[str] = []
        self._count = 0

    def post(self, reply: dict[str, Any]) -> None:
        self.replies.append(reply)

    def terminal(self, uuid: str) -> list[dict[str, Any]]:
        return [r for r in self.replies if r.get("uuid") == uuid and r["kind"] in ("return", "throw")]

    async def send(self, kind: str, content: Any = None) -> dict[str, Any]:
        """One request; returns its one terminal reply (raises if there is not exactly one)."""
        self._count += 1
        uuid = f"{kind}-{self._count}"
        self.sent.append(uuid)
        await asyncio.wait_for(
            self.handler.handle({"kind": kind, "uuid": uuid, "content": content}, self.post), STREAM_TIMEOUT_S
        )
        replies = self.terminal(uuid)
        if len(replies) != 1:
            raise AssertionError(f"{uuid} got {len(replies)} terminal replies")
        return replies[0]


NON_STREAMING = {"chat": "chatCompletionNonStreaming", "completion": "completionNonStreaming"}
STREAM_INIT = {"chat": "chatCompletionStreamInit", "completion": "completionStreamInit"}


def _choice_text(kind: str, choice: dict[str, Any], stream: bool) -> str:
    if kind == "completion":
        return str(choice.get("text") or "")
    part = choice.get("delta" if stream else "message") or {}
    return str(part.get("content") or "")


async def run_job(client: Client, job: Job) -> Result:
    """Drive one job to its end through the protocol; the result holds what the client saw."""
    result, started = Result(job), time.perf_counter()
    try:
        if job.kind == "embedding":
            reply = await client.send("embedding", {"request": job.request})
            if reply["kind"] == "throw":
                result.error = reply["content"]
            else:
                result.vectors = [d["embedding"] for d in reply["content"]["data"]]
                result.models.add(reply["content"]["model"])
        elif not job.stream:
            reply = await client.send(NON_STREAMING[job.kind], {"request": job.request})
            if reply["kind"] == "throw":
                result.error = reply["content"]
            else:
                content = reply["content"]
                choice = content["choices"][0]
                result.text = _choice_text(job.kind, choice, False)
                result.finish_reason = choice["finish_reason"]
                result.chunk_ids.add(content["id"])
                result.models.add(content["model"])
                result.completion_tokens = content["usage"]["completion_tokens"]
        else:
            await _run_stream(client, job, result)
    finally:
        result.latency_s = time.perf_counter() - started
    return result


async def _run_stream(client: Client, job: Job, result: Result) -> None:
    init = await client.send(STREAM_INIT[job.kind], {"request": job.request})
    if init["kind"] == "throw":
        result.error = init["content"]
        return
    stream_id = init["content"]["streamId"]
    chunks = 0
    while True:
        reply = await client.send("completionStreamNextChunk", {"streamId": stream_id})
        if reply["kind"] == "throw":
            result.error = reply["content"]
            return
        if reply["content"].get("done"):
            return
        chunk = reply["content"]["chunk"]
        result.chunk_ids.add(chunk["id"])
        result.models.add(chunk["model"])
        if chunk.get("usage"):
            result.completion_tokens = chunk["usage"]["completion_tokens"]
        for choice in chunk["choices"]:
            result.text += _choice_text(job.kind, choice, True)
            result.finish_reason = choice.get("finish_reason") or result.finish_reason
        chunks += 1
        if job.fate == "abandon" and chunks == 3:
            await client.send("completionStreamReturn", {"streamId": stream_id})
            return
        if job.fate == "interrupt" and chunks == 1:
            await client.send("interruptGenerate", {})


async def start(config: dict[str, Any]) -> tuple[Handler, Client]:
    """A fresh worker (handler + engine + reference kernels) with every model of ``config`` loaded."""
    handler = Handler(MLCEngine(ReferenceKernels(), config))
    client = Client(handler)
    reply = await client.send("reload", {"modelId": [m["model_id"] for m in config["model_list"]]})
    if reply["kind"] != "return":
        raise RuntimeError(f"reload failed: {reply['content']}")
    return handler, client


async def run_all(jobs: list[Job], *, concurrent: bool) -> tuple[list[Result], float, Handler, Client]:
    """Run the jobs on a fresh worker, all at once or one at a time; returns results and wall time."""
    handler, client = await start(app_config())
    started = time.perf_counter()
    if concurrent:
        results = list(await asyncio.gather(*(run_job(client, job) for job in jobs)))
    else:
        results = [await run_job(client, job) for job in jobs]
    return results, time.perf_counter() - started, handler, client


def summary(results: list[Result], wall_s: float) -> dict[str, Any]:
    """Throughput figures of one pass."""
    tokens = sum(r.completion_tokens for r in results)
    embedded = sum(len(r.vectors) for r in results)
    latencies = sorted(r.latency_s for r in results)
    return {
        "requests": len(results),
        "errors": sum(1 for r in results if r.error),
        "aborted": sum(1 for r in results if r.finish_reason == "abort"),
        "wall_s": wall_s,
        "requests_per_s": len(results) / wall_s,
        "completion_tokens": tokens,
        "completion_tokens_per_s": tokens / wall_s,
        "embedded_inputs": embedded,
        "latency_p50_s": statistics.median(latencies),
        "latency_max_s": latencies[-1],
    }


async def measure(n: int, rounds: int) -> dict[str, Any]:
    jobs = make_jobs(n)
    passes: dict[str, list[dict[str, Any]]] = {"concurrent": [], "serial": []}
    for _ in range(rounds):
        for mode in passes:
            results, wall, _, _ = await run_all(jobs, concurrent=mode == "concurrent")
            passes[mode].append(summary(results, wall))
    return {
        "benchmark": "load",
        "python": platform.python_version(),
        "backend": "numpy reference (host CPU)",
        "models": [*LLMS, BERT],
        "mix": dict(Counter(f"{j.kind}{'-stream' if j.stream else ''}-{j.fate}" for j in jobs)),
        "runs": passes,
        "best_concurrent_requests_per_s": max(p["requests_per_s"] for p in passes["concurrent"]),
        "best_serial_requests_per_s": max(p["requests_per_s"] for p in passes["serial"]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "load.json")
    args = parser.parse_args(argv)
    report = asyncio.run(measure(args.requests, args.rounds))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
