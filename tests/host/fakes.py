"""A scripted kernel backend: the layer below the generation loop, for its unit tests only.

It "samples" a fixed script of byte tokens, so tests can put stop strings and multi-byte
characters exactly across token and batch boundaries. Tokens are UTF-8 bytes (ids 0-255) plus
id 300 as an end-of-turn token; the KV cache is a list, so rewinds can be checked.
"""

from __future__ import annotations

import asyncio
from typing import Any

from py_worker.kernels import LoadedModel, ProgressFn, Sampled, SamplingParams

EOT = 300


class ScriptedKernels:
    def __init__(self, script: list[int], config: dict[str, Any] | None = None, delay: float = 0.0) -> None:
        self.script = script
        self.config = config or {"context_window_size": 64, "prefill_chunk_size": 8}
        self.delay = delay
        self.kv: list[int] = []
        self.sampled: list[int] = []
        self.calls: list[str] = []
        self.last: int | None = None

    def _next(self) -> Sampled:
        token = self.script[len(self.sampled)] if len(self.sampled) < len(self.script) else EOT
        self.sampled.append(token)
        self.last = token
        return Sampled(token, -0.5, [(token, -0.5)])

    async def _tick(self, name: str) -> None:
        self.calls.append(name)
        await asyncio.sleep(self.delay)

    async def load(self, record: dict[str, Any], progress: ProgressFn) -> LoadedModel:
        progress(1.0, "loaded")
        return LoadedModel(1, dict(self.config))

    async def unload(self, handle: int) -> None:
        await self._tick("unload")

    async def tokenize(self, handle: int, text: str) -> list[int]:
        return list(text.encode())

    async def detokenize(self, handle: int, ids: list[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    async def prefill(self, handle: int, ids: list[int]) -> None:
        await self._tick("prefill")
        self.kv += ids

    async def decode(self, handle: int, token: int) -> None:
        await self._tick("decode")
        self.kv.append(token)

    async def sample(self, handle: int, params: SamplingParams) -> Sampled:
        await self._tick("sample")
        return self._next()

    async def decode_steps(self, handle: int, n: int, params: SamplingParams) -> list[Sampled]:
        await self._tick("decode_steps")
        assert len(params.uniforms) == n
        out = []
        for _ in range(n):
            assert self.last is not None
            self.kv.append(self.last)
            out.append(self._next())
        return out

    async def rewind(self, handle: int, length: int) -> None:
        await self._tick("rewind")
        del self.kv[length:]

    async def reset(self, handle: int) -> None:
        await self._tick("reset")
        self.kv.clear()

    async def embed(self, handle: int, batch: list[list[int]]) -> list[list[float]]:
        raise NotImplementedError

    async def stats(self, handle: int) -> dict[str, Any]:
        return {}

    async def device_info(self) -> dict[str, Any]:
        return {"vendor": "scripted", "maxStorageBufferBindingSize": 1 << 20}
