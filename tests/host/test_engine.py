"""MLCEngine over the NumPy reference backend and the tiny deterministic Llama."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import openai.types as ot
import openai.types.chat as oc
import pytest

from py_worker.conversation import Conversation
from py_worker.engine import MLCEngine, Stream
from py_worker.errors import (
    ContextWindowSizeExceededError,
    EmbeddingExceedContextWindowSizeError,
    EmbeddingUnsupportedModelError,
    IncorrectPipelineLoadedError,
    ModelNotLoadedError,
    ReloadInterruptedError,
    UnclearModelToUseError,
    UnsupportedFieldsError,
)
from py_worker.kernels import LoadedModel, ProgressFn
from py_worker.reference import ReferenceKernels

HI = [{"role": "user", "content": "Hi there"}]
NO_SPECIALS = {str(i): -100 for i in range(256, 512)}  # keep the tiny model on byte tokens


class Recording(ReferenceKernels):
    """The reference backend, noting every call (handle, op, n tokens) in order."""

    def __init__(self, load_delay: float = 0.0) -> None:
        super().__init__()
        self.log: list[tuple[int, str, int]] = []
        self.load_delay = load_delay

    async def load(self, record: dict[str, Any], progress: ProgressFn) -> LoadedModel:
        await asyncio.sleep(self.load_delay)
        return await super().load(record, progress)

    async def prefill(self, handle: int, ids: list[int]) -> None:
        self.log.append((handle, "prefill", len(ids)))
        await super().prefill(handle, ids)

    async def decode_steps(self, handle: int, n: int, params: Any) -> Any:
        self.log.append((handle, "decode_steps", n))
        return await super().decode_steps(handle, n, params)

    async def reset(self, handle: int) -> None:
        self.log.append((handle, "reset", 0))
        await super().reset(handle)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def engine_with(app_config: dict[str, Any], ids: list[str], **kw: Any) -> tuple[MLCEngine, Recording]:
    kernels = Recording(**kw)
    engine = MLCEngine(kernels, app_config)
    await engine.reload(ids)
    return engine, kernels


def test_greedy_chat_matches_an_independent_greedy_decode(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        engine, _kernels = await engine_with(app_config, ["tiny-a"])
        reply = await engine.chat.completions.create(
            messages=HI, temperature=0, max_tokens=10, ignore_eos=True
        )
        oc.ChatCompletion.model_validate(reply)
        # Independently: the template text, tokenised whole, stepped with argmax on raw logits.
        model = engine.models["tiny-a"]
        conv = Conversation.from_template(model.config["conv_template"])
        ref = ReferenceKernels()
        loaded = await ref.load(app_config["model_list"][0], lambda f, t: None)
        ids = await ref.tokenize(loaded.handle, "".join(conv.prompt_pieces(HI)))
        await ref.prefill(loaded.handle, ids)
        out = []
        for _ in range(10):
            out.append(int(np.argmax(ref.logits(loaded.handle))))
            await ref.decode(loaded.handle, out[-1])
        assert reply["usage"]["completion_tokens"] == 10
        assert reply["choices"][0]["message"]["content"] == await ref.detokenize(loaded.handle, out)

    run(main())


def test_same_seed_same_text_and_seeds_differ(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        engine, _ = await engine_with(app_config, ["tiny-a"])

        async def answer(seed: int) -> str:
            r = await engine.chat.completions.create(
                messages=HI, temperature=1.0, seed=seed, max_tokens=12, ignore_eos=True
            )
            return str(r["choices"][0]["message"]["content"])

        assert await answer(7) == await answer(7)
        assert len({await answer(s) for s in range(4)}) > 1

    run(main())


def test_two_models_run_concurrently_while_a_third_request_queues(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        engine, kernels = await engine_with(app_config, ["tiny-a", "tiny-b"])
        a_handle, b_handle = engine.models["tiny-a"].handle, engine.models["tiny-b"].handle
        req = {"messages": HI, "temperature": 0, "max_tokens": 24, "ignore_eos": True}
        alone = await engine.chat.completions.create(model="tiny-a", **req)
        kernels.log.clear()
        first, second, queued = await asyncio.gather(
            engine.chat.completions.create(model="tiny-a", **req),
            engine.chat.completions.create(model="tiny-b", **req),
            engine.chat.completions.create(model="tiny-a", **req),
        )
        a_ops = [i for i, (h, _, _) in enumerate(kernels.log) if h == a_handle]
        b_ops = [i for i, (h, _, _) in enumerate(kernels.log) if h == b_handle]
        assert any(a_ops[0] < i < a_ops[-1] for i in b_ops), "the two models never interleaved"
        resets = [i for i in a_ops if kernels.log[i][1] == "reset"]
        assert len(resets) == 2
        first_run_ops = [i for i in a_ops if i < resets[1]]
        assert sum(kernels.log[i][2] for i in first_run_ops if kernels.log[i][1] == "decode_steps") == 23
        for r in (first, queued):
            assert r["choices"][0]["message"]["content"] == alone["choices"][0]["message"]["content"]
        assert second["model"] == "tiny-b"
        assert not engine.locks.held()

    run(main())


def test_abandoned_stream_frees_the_model(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        engine, _ = await engine_with(app_config, ["tiny-a"])
        stream = await engine.chat.completions.create(
            messages=HI, stream=True, temperature=0, max_tokens=40, ignore_eos=True, logit_bias=NO_SPECIALS
        )
        assert isinstance(stream, Stream)
        chunks = [await stream.__anext__(), await stream.__anext__()]
        for c in chunks:
            oc.ChatCompletionChunk.model_validate(c)
        assert engine.locks.is_held("tiny-a")
        await stream.aclose()
        assert not engine.locks.is_held("tiny-a")
        reply = await asyncio.wait_for(
            engine.chat.completions.create(messages=HI, temperature=0, max_tokens=5, ignore_eos=True), 30
        )
        assert reply["choices"][0]["finish_reason"] == "length"

    run(main())


def test_interrupt_stops_the_running_stream_but_never_a_later_request(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        engine, _ = await engine_with(app_config, ["tiny-a"])
        engine.interrupt_generate()  # nothing runs: must not poison what comes next
        stream = await engine.chat.completions.create(
            messages=HI, stream=True, temperature=0, max_tokens=200, ignore_eos=True, logit_bias=NO_SPECIALS
        )
        chunks = []
        async for chunk in stream:
            chunks.append(chunk)
            if len(chunks) == 2:
                engine.interrupt_generate()
        assert chunks[-1]["choices"][0]["finish_reason"] == "abort"
        reply = await engine.chat.completions.create(
            messages=HI, temperature=0, max_tokens=8, ignore_eos=True
        )
        assert reply["choices"][0]["finish_reason"] == "length"
        assert reply["usage"]["completion_tokens"] == 8

    run(main())


def test_stream_chunks_and_usage_chunk_have_openai_shapes(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        engine, _ = await engine_with(app_config, ["tiny-a"])
        stream = await engine.chat.completions.create(
            messages=HI,
            stream=True,
            max_tokens=6,
            ignore_eos=True,
            stream_options={"include_usage": True},
            seed=1,
        )
        chunks = [c async for c in stream]
        for c in chunks:
            oc.ChatCompletionChunk.model_validate(c)
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"]["completion_tokens"] == 6
        assert chunks[-2]["choices"][0]["finish_reason"] == "length"
        extra = chunks[-1]["usage"]["extra"]
        assert extra["decode_tokens_per_s"] > 0
        assert extra["time_to_first_token_s"] > 0
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
        assert text == await engine.get_message()

    run(main())


def test_second_turn_prefills_only_the_new_turn_and_matches_a_fresh_prefill(
    app_config: dict[str, Any],
) -> None:
    async def main() -> None:
        req = {"temperature": 0, "max_tokens": 6, "ignore_eos": True, "logit_bias": NO_SPECIALS}
        engine, kernels = await engine_with(app_config, ["tiny-a"])
        first = await engine.chat.completions.create(messages=HI, **req)
        turn2 = [
            *HI,
            {"role": "assistant", "content": first["choices"][0]["message"]["content"]},
            {"role": "user", "content": "And then?"},
        ]
        kernels.log.clear()
        reused = await engine.chat.completions.create(messages=turn2, **req)
        prefilled = sum(n for _, op, n in kernels.log if op == "prefill")
        assert not any(op == "reset" for _, op, _ in kernels.log)
        fresh_engine, fresh_kernels = await engine_with(app_config, ["tiny-a"])
        fresh = await fresh_engine.chat.completions.create(messages=turn2, **req)
        full = sum(n for _, op, n in fresh_kernels.log if op == "prefill")
        assert prefilled == reused["usage"]["prompt_tokens"] < full
        assert reused["choices"][0]["message"]["content"] == fresh["choices"][0]["message"]["content"]

    run(main())


def test_n_choices_logprobs_and_openai_shape(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        engine, _ = await engine_with(app_config, ["tiny-a"])
        reply = await engine.chat.completions.create(
            messages=HI, n=2, seed=3, max_tokens=5, ignore_eos=True, logprobs=True, top_logprobs=3
        )
        parsed = oc.ChatCompletion.model_validate(reply)
        assert [c.index for c in parsed.choices] == [0, 1]
        for choice in parsed.choices:
            assert choice.logprobs is not None
            assert choice.logprobs.content is not None
            assert len(choice.logprobs.content) == 5
            for lp in choice.logprobs.content:
                assert len(lp.top_logprobs) == 3
                assert lp.logprob <= 0
        assert reply["usage"]["completion_tokens"] == 10
        again = await engine.chat.completions.create(
            messages=HI, n=2, seed=3, max_tokens=5, ignore_eos=True, logprobs=True, top_logprobs=3
        )
        assert [c["message"]["content"] for c in again["choices"]] == [
            c.message.content for c in parsed.choices
        ]

    run(main())


def test_completion_echo_and_shape(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        engine, _ = await engine_with(app_config, ["tiny-a"])
        reply = await engine.completions.create(
            prompt="Once", echo=True, max_tokens=4, ignore_eos=True, seed=0
        )
        ot.Completion.model_validate(reply)
        assert reply["choices"][0]["text"].startswith("Once")
        chunks = [
            c
            async for c in await engine.completions.create(
                prompt="Once", stream=True, max_tokens=4, ignore_eos=True, seed=0
            )
        ]
        assert "".join(c["choices"][0]["text"] for c in chunks) == reply["choices"][0]["text"][4:]

    run(main())


def test_routing_errors_and_context_window(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        empty = MLCEngine(ReferenceKernels(), app_config)
        with pytest.raises(ModelNotLoadedError):
            await empty.chat.completions.create(messages=HI)
        engine, _ = await engine_with(app_config, ["tiny-a", "tiny-b"])
        with pytest.raises(UnclearModelToUseError):
            await engine.chat.completions.create(messages=HI)
        with pytest.raises(EmbeddingUnsupportedModelError):
            await engine.embeddings.create(input="x", model="tiny-a")
        with pytest.raises(ContextWindowSizeExceededError):
            await engine.chat.completions.create(
                model="tiny-a", messages=[{"role": "user", "content": "x" * 400}]
            )
        assert not engine.locks.held()

    run(main())


def test_unload_supersedes_a_reload_in_progress(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        kernels = Recording(load_delay=0.05)
        engine = MLCEngine(kernels, app_config)
        reload = asyncio.ensure_future(engine.reload(["tiny-a", "tiny-b"]))
        await asyncio.sleep(0.01)
        await engine.unload()
        with pytest.raises(ReloadInterruptedError):
            await reload
        assert engine.loaded_model_ids() == []

    run(main())


def test_stats_message_reset_and_forward_tokens(app_config: dict[str, Any]) -> None:
    async def main() -> None:
        engine, _ = await engine_with(app_config, ["tiny-a"])
        await engine.chat.completions.create(messages=HI, max_tokens=4, ignore_eos=True)
        assert (await engine.runtime_stats_text()).startswith("prefill: ")
        token = await engine.forward_tokens_and_sample([72, 105], is_prefill=True)
        assert isinstance(token, int)
        assert 0 <= token < 512
        await engine.reset_chat()
        assert await engine.get_message() == ""
        assert await engine.runtime_stats_text() == "prefill: 0.0000 tokens/sec, decoding: 0.0000 tokens/sec"

    run(main())


def test_embeddings_through_the_engine(app_config: dict[str, Any], minilm_record: dict[str, Any]) -> None:
    async def main() -> None:
        config = {"model_list": [*app_config["model_list"], minilm_record]}
        engine = MLCEngine(ReferenceKernels(), config)
        await engine.reload(["tiny-a", "minilm"])
        reply = await engine.embeddings.create(
            model="minilm", input=["A cat sits on the mat.", "A kitten rests on a rug.", "Stock prices fell."]
        )
        parsed = ot.CreateEmbeddingResponse.model_validate(reply)
        vectors = np.array([d.embedding for d in parsed.data])
        assert vectors.shape == (3, 384)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        sims = vectors @ vectors.T
        assert sims[0, 1] > sims[0, 2] + 0.2
        with pytest.raises(IncorrectPipelineLoadedError):
            await engine.chat.completions.create(model="minilm", messages=HI)
        with pytest.raises(EmbeddingExceedContextWindowSizeError):
            await engine.embeddings.create(model="minilm", input="word " * 300)

    run(main())


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize(
    ("extra", "found"),
    [
        ({"tools": TOOLS, "ignore_eos": True}, ["ignore_eos"]),
        (
            {"tools": TOOLS, "tool_choice": "auto", "response_format": {"type": "json_object"}},
            ["response_format"],
        ),
        ({"ignore_eos": True, "response_format": {"type": "json_object", "schema": "{}"}}, ["ignore_eos"]),
    ],
)
def test_fields_the_engine_cannot_honour_are_refused_by_name_and_nothing_runs(
    app_config: dict[str, Any], extra: dict[str, Any], found: list[str]
) -> None:
    """A grammar (a response_format, or tools) ends on the end-of-answer token that ignore_eos
    would skip, and a tool call is not the JSON a response_format asks for: such a request is
    refused with UnsupportedFieldsError naming the fields, before any kernel call; a request
    that asks for neither (text format, tool_choice "none") runs."""

    async def main() -> None:
        engine, kernels = await engine_with(app_config, ["tiny-a"])
        kernels.log.clear()
        with pytest.raises(UnsupportedFieldsError) as caught:
            await engine.chat.completions.create(messages=HI, max_tokens=2, **extra)
        assert caught.value.fields["fields_found"] == found
        assert kernels.log == []
        ok = await engine.chat.completions.create(
            messages=HI, max_tokens=2, response_format={"type": "text"}, tools=TOOLS, tool_choice="none"
        )
        assert ok["choices"][0]["finish_reason"] in ("stop", "length")

    run(main())
