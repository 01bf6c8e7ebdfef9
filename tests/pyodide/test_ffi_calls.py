"""Awaitable JS calls through pyodide.ffi: ``JsKernels`` over a JS backend, from the token loop.

The backend is tests/pyodide/fake_shim.js (a fake only as the layer below the engine): each call
settles on a later macrotask, as a GPU readback does. Proxy counts come from Pyodide itself:
``pyproxy_alloc_map`` (PyProxies handed to JS and not destroyed, with allocation tracing on)
and ``hiwire.num_keys()`` (JS objects Python still references).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_pyodide import run_in_pyodide

SHIM = (Path(__file__).parent / "fake_shim.js").read_text()


@run_in_pyodide(packages=["py-worker"])
async def _generate(selenium: Any, shim_js: str) -> dict[str, Any]:
    import asyncio
    import random

    from pyodide.code import run_js

    from py_worker.generate import Generation, Settings
    from py_worker.jsbridge import JsKernels

    shim = run_js(shim_js)
    kernels = JsKernels(shim)
    progress: list[tuple[float, str]] = []
    loaded = await kernels.load({"model_id": "fake", "model": "/m"}, lambda f, t: progress.append((f, t)))

    async def one(prompt: str, max_tokens: int) -> tuple[str, str, list[int]]:
        ids = await kernels.tokenize(loaded.handle, prompt)
        await kernels.reset(loaded.handle)
        gen = Generation(
            kernels, loaded.handle, Settings(max_tokens=max_tokens, temperature=0.0),
            context_window=4096, prefill_chunk=8, kv_length=0, rng=random.Random(0),
        )  # fmt: skip
        text = "".join([d.text async for d in gen.run(ids)])
        return text, gen.outcome.finish_reason, gen.outcome.tokens

    first = await one("Hello, Pyodide!", 40)
    # Two models' loops interleave on the event loop; each must still get its own answers.
    other = await kernels.load({"model_id": "fake2", "model": "/m2"}, lambda f, t: None)
    pair = await asyncio.gather(one("abc", 20), JsKernels(shim).embed(other.handle, [[1, 2], [3]]))
    stats = shim.counters.to_py()
    return {
        "handle": loaded.handle, "config": loaded.config, "progress": progress, "first": first,
        "second": pair[0], "embed": pair[1], "stats": stats,
    }  # fmt: skip


def _expected(prompt: str, n: int) -> list[int]:
    """The fake model's continuation: after token t comes 97 + (7t + 3) % 26."""
    out, last = [], prompt.encode()[-1]
    for _ in range(n):
        last = 97 + (last * 7 + 3) % 26
        out.append(last)
    return out


def test_generation_loop_awaits_js_calls(selenium: Any) -> None:
    got = _generate(selenium, SHIM)
    assert got["handle"] == 1
    assert got["config"]["prefill_chunk_size"] == 8
    assert got["progress"] == [
        (0.5, "Fetching param cache[1/2]: fake"),
        (1.0, "Finish loading on WebGPU - fake fake"),
    ]
    text, reason, tokens = got["first"]
    assert tokens == _expected("Hello, Pyodide!", 40)
    assert text == bytes(tokens).decode()
    assert reason == "length"
    text2, _, tokens2 = got["second"]
    assert tokens2 == _expected("abc", 20)
    assert text2 == bytes(tokens2).decode()
    assert got["embed"] == [[2.0, 3.0], [1.0, 3.0]]
    # The loop never had two calls in flight on one handle: every call was awaited before the next.
    assert got["stats"]["maxInFlight"] == 1
    assert got["stats"]["calls"] > 30


@run_in_pyodide(packages=["py-worker"])
async def _count_proxies(selenium: Any, shim_js: str, calls: int, leak: int) -> dict[str, Any]:
    import gc
    import random

    import pyodide_js
    from pyodide.code import run_js
    from pyodide.ffi import create_proxy

    from py_worker.generate import Generation, Settings
    from py_worker.jsbridge import JsKernels
    from py_worker.kernels import SamplingParams

    module = pyodide_js._module
    module.enable_pyproxy_allocation_tracing()
    try:
        shim = run_js(shim_js)
        kernels = JsKernels(shim)
        handle = (await kernels.load({"model_id": "warm"}, lambda f, t: None)).handle
        await kernels.prefill(handle, [104, 105])

        def counts() -> tuple[int, int]:
            gc.collect()
            return int(module.pyproxy_alloc_map.size), int(module.hiwire.num_keys())

        before = counts()
        params = SamplingParams(temperature=0.7, logit_bias={3: 1.0}, history=[1, 2], logprobs=True)
        done = 0
        while done < calls:
            kind = done % 10
            if kind == 0:
                await kernels.load({"model_id": f"m{done}", "overrides": {"a": [1]}}, lambda f, t: None)
            elif kind in (1, 2):
                await kernels.sample(handle, params)
            elif kind == 3:
                await kernels.decode_steps(handle, 4, params)
            elif kind == 4:
                await kernels.tokenize(handle, "héllo")
            elif kind == 5:
                await kernels.detokenize(handle, [104, 105])
            elif kind == 6:
                await kernels.decode(handle, 106)
            elif kind == 7:
                await kernels.embed(handle, [[1, 2], [3]])
            elif kind == 8:
                await kernels.stats(handle)
            else:
                await kernels.rewind(handle, 2)
            done += 1
        after_calls = counts()
        # The token loop itself over the same bridge.
        gen = Generation(
            kernels, handle, Settings(max_tokens=60), context_window=4096, prefill_chunk=8,
            kv_length=2, rng=random.Random(1),
        )  # fmt: skip
        tokens = [d.text async for d in gen.run([106, 107, 108])]
        after_generation = counts()
        # Positive control: proxies handed to JS and never destroyed must show in the count.
        kept = [create_proxy(lambda: None) for _ in range(leak)]
        after_leak = counts()
        for p in kept:
            p.destroy()
        return {
            "before": before, "after_calls": after_calls, "after_generation": after_generation,
            "after_leak": after_leak, "calls": int(shim.counters.calls), "text": "".join(tokens),
        }  # fmt: skip
    finally:
        module.disable_pyproxy_allocation_tracing()


def test_no_proxy_leak_across_1000_calls(selenium: Any) -> None:
    got = _count_proxies(selenium, SHIM, 1000, 7)
    assert got["calls"] >= 1000
    assert len(got["text"]) == 60
    assert got["after_calls"] == got["before"]
    assert got["after_generation"] == got["before"]
    # The measurement sees leaks: seven kept proxies are seven more in the map.
    assert got["after_leak"][0] == got["before"][0] + 7
