"""Time per generated token spent in Python outside kernel calls (host CPython).

Runs streaming and non-streaming chats on the tiny model over the NumPy reference backend,
timing every kernel call; what is left of the wall time is the Python engine (validation,
routing, locks, the token loop, detokenisation bookkeeping, chunk building).
Writes bench/out/engine_overhead.json.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

from py_worker.engine import MLCEngine  # noqa: E402
from py_worker.reference import ReferenceKernels  # noqa: E402
from tools.make_tiny_model import ensure_tiny  # noqa: E402

KERNEL_CALLS = ("tokenize", "detokenize", "prefill", "decode", "sample", "decode_steps", "rewind", "reset")


class Timed(ReferenceKernels):
    """The reference backend with a stopwatch around every ABI call."""

    def __init__(self) -> None:
        super().__init__()
        self.kernel_s = 0.0
        self.calls = 0
        for name in KERNEL_CALLS:
            setattr(self, name, self._timed(getattr(self, name)))

    def _timed(self, fn: Any) -> Any:
        async def call(*args: Any) -> Any:
            start = time.perf_counter()
            try:
                return await fn(*args)
            finally:
                self.kernel_s += time.perf_counter() - start
                self.calls += 1

        return call


async def measure(stream: bool, tokens: int, rounds: int) -> dict[str, Any]:
    kernels = Timed()
    record = {"model_id": "tiny", "model": str(ensure_tiny("q0f32"))}
    engine = MLCEngine(kernels, {"model_list": [record]})
    await engine.reload("tiny")
    request = {
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": tokens,
        "ignore_eos": True,
        "temperature": 0.7,
        "seed": 1,
        "logit_bias": {str(i): -100 for i in range(256, 512)},
    }
    kernels.kernel_s, kernels.calls = 0.0, 0
    generated, start = 0, time.perf_counter()
    for _ in range(rounds):
        if stream:
            chunks = [
                c
                async for c in await engine.chat.completions.create(
                    **request, stream=True, stream_options={"include_usage": True}
                )
            ]
            generated += chunks[-1]["usage"]["completion_tokens"]
        else:
            reply = await engine.chat.completions.create(**request)
            generated += reply["usage"]["completion_tokens"]
        await engine.reset_chat()
    wall = time.perf_counter() - start
    python_s = wall - kernels.kernel_s
    return {
        "stream": stream,
        "tokens": generated,
        "wall_s": wall,
        "kernel_s": kernels.kernel_s,
        "kernel_calls": kernels.calls,
        "python_ms_per_token": 1000 * python_s / generated,
        "kernel_ms_per_token": 1000 * kernels.kernel_s / generated,
    }


def main() -> None:
    results = [asyncio.run(measure(stream, 200, 5)) for stream in (False, True)]
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "engine_overhead",
        "python": sys.version.split()[0],
        "goal_ms_per_token": 0.2,
        "results": results,
    }
    (out / "engine_overhead.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
