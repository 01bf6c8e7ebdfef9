"""The token loop over a scripted backend: stops, UTF-8, budgets, rewinds, interrupts, cancellation."""

from __future__ import annotations

import asyncio
import random

import pytest

from py_worker.errors import ContextWindowSizeExceededError
from py_worker.generate import Generation, Settings, held_back
from tests.host.fakes import EOT, ScriptedKernels

PROMPT = list(b"Q:")


def make(
    script: list[int], settings: Settings | None = None, **kw: int
) -> tuple[ScriptedKernels, Generation]:
    kernels = ScriptedKernels(script)
    gen = Generation(
        kernels,
        1,
        settings or Settings(stop_token_ids=[EOT]),
        context_window=kw.get("context_window", 64),
        prefill_chunk=8,
        kv_length=0,
        rng=random.Random(0),
    )
    return kernels, gen


async def collect(gen: Generation, prompt: list[int] = PROMPT) -> list[str]:
    return [d.text async for d in gen.run(prompt)]


def test_stop_string_across_tokens_is_cut_and_never_leaked() -> None:
    _kernels, gen = make(list(b"Hello STOP world"), Settings(stop=["STOP"], stop_token_ids=[EOT]))
    deltas = asyncio.run(collect(gen))
    assert "".join(deltas) == "Hello "
    assert not any("S" in d for d in deltas)
    assert gen.outcome.finish_reason == "stop"
    assert gen.outcome.kv_exact is False


def test_partial_stop_prefix_is_released_when_it_does_not_complete() -> None:
    _, gen = make([*list(b"a ST b"), EOT], Settings(stop=["STOP"], stop_token_ids=[EOT]))
    assert "".join(asyncio.run(collect(gen))) == "a ST b"


def test_multibyte_character_split_over_tokens_is_never_emitted_half() -> None:
    text = "a😀b€"
    _, gen = make([*list(text.encode()), EOT])
    deltas = asyncio.run(collect(gen))
    assert "".join(deltas) == text
    assert all("\ufffd" not in d for d in deltas)


def test_stop_token_rewinds_cache_to_the_accepted_tokens() -> None:
    kernels, gen = make([*list(b"hi"), EOT, *list(b"xyz")])
    asyncio.run(collect(gen))
    assert gen.outcome.tokens == list(b"hi")
    assert gen.outcome.finish_reason == "stop"
    assert kernels.kv == PROMPT + list(b"hi")
    assert gen.kv_length == len(kernels.kv)
    assert gen.outcome.pending == []


def test_max_tokens_ends_with_length_and_keeps_the_last_token_pending() -> None:
    kernels, gen = make(list(b"abcdefghij"), Settings(max_tokens=5, stop_token_ids=[EOT]))
    assert "".join(asyncio.run(collect(gen))) == "abcde"
    assert gen.outcome.finish_reason == "length"
    assert len(gen.outcome.tokens) == 5
    assert kernels.kv + gen.outcome.pending == PROMPT + list(b"abcde")
    assert kernels.calls.count("decode_steps") >= 2  # batches grow: 1, 2, ...


def test_context_window_bounds_prompt_and_generation() -> None:
    _, gen = make(list(b"x" * 100), context_window=10)
    with pytest.raises(ContextWindowSizeExceededError):
        asyncio.run(collect(gen, list(b"0123456789")))
    kernels, gen = make(list(b"x" * 100), context_window=10)
    asyncio.run(collect(gen, list(b"0123")))
    assert gen.outcome.finish_reason == "length"
    assert len(kernels.kv) <= 10


def test_ignore_eos_generates_through_stop_tokens() -> None:
    _, gen = make([65, EOT, 66], Settings(ignore_eos=True, max_tokens=3, stop_token_ids=[EOT]))
    asyncio.run(collect(gen))
    assert gen.outcome.tokens == [65, EOT, 66]


def test_interrupt_ends_with_abort() -> None:
    _, gen = make(list(b"abcdefghijklmnopqrstuvwxyz" * 2))

    async def run() -> list[str]:
        out = []
        async for d in gen.run(PROMPT):
            out.append(d.text)
            if len(out) == 2:
                gen.interrupt()
        return out

    asyncio.run(run())
    assert gen.outcome.finish_reason == "abort"
    assert len(gen.outcome.tokens) < 52


def test_cancelled_consumer_waits_for_the_kernel_call_in_flight() -> None:
    kernels = ScriptedKernels(list(b"abcdefghijklmnop" * 3), delay=0.02)
    gen = Generation(
        kernels,
        1,
        Settings(stop_token_ids=[EOT]),
        context_window=64,
        prefill_chunk=8,
        kv_length=0,
        rng=random.Random(0),
    )
    in_flight: list[int] = []
    original = kernels._tick

    async def tick(name: str) -> None:
        in_flight.append(1)
        try:
            await original(name)
        finally:
            in_flight.pop()

    kernels._tick = tick  # type: ignore[method-assign]

    async def consume() -> None:
        async for _ in gen.run(PROMPT):
            pass

    async def main() -> None:
        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert in_flight == []  # the call that was running finished before the cancellation went on

    asyncio.run(main())


def test_held_back_is_longest_stop_prefix_suffix() -> None:
    assert held_back("abc ST", ["STOP"]) == 2
    assert held_back("abc", ["STOP"]) == 0
    assert held_back("xS", ["SS", "STOP"]) == 1


def test_long_text_survives_the_detokenizer_window_sliding() -> None:
    text = "".join(f"word{i} 😀 é€ " for i in range(30))  # far more tokens than the window
    _, gen = make([*text.encode(), EOT], context_window=2000)
    deltas = asyncio.run(collect(gen))
    assert "".join(deltas) == text
    assert all("\ufffd" not in d for d in deltas)
