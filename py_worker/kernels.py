"""The kernel ABI: the one seam between the Python engine and a compute backend.

Python never touches GPU objects. It awaits these calls; a backend (the WebGPU shim in
`js_glue/kernels`, the tvmjs `mlc` shim, or the NumPy reference on host CPython) implements
them. Arguments and results are plain numbers, strings, lists and dicts, so they cross the
Pyodide FFI without keeping objects alive on either side.

Sampling is defined here once, so every backend picks the same token for the same logits and
the same uniform random number (the engine draws the uniforms from a seeded Python RNG):

0. a constrained request (``grammar``, a matcher from ``open_grammar``): every id the grammar
   rejects at this step is out: its logit is −∞, so it is never picked, never in the nucleus and
   never in ``top_logprobs``; the picked id then advances the matcher.
1. ``logits[id] += logit_bias[id]``
2. for every token id with count ``c > 0`` in ``history`` (the ids generated so far in this
   request): ``l = l / repetition_penalty if l > 0 else l * repetition_penalty``, then
   ``l -= frequency_penalty * c + presence_penalty``
3. ``temperature == 0``: greedy, the largest logit (lowest id on a tie); logprobs use T = 1.
4. otherwise ``p = softmax(l / temperature)``. The nucleus is every id whose probability is at
   least ``t``, where ``t`` is the probability of the last id taken when ids are taken in
   descending probability until their sum reaches ``top_p`` (ties with ``t`` are all in).
5. Walk the nucleus in ascending id order, summing probabilities; the token is the first id
   where the running sum exceeds ``uniform * nucleus_mass`` (the last nucleus id if rounding
   leaves none). Walking by id, not by probability, keeps the GPU kernel a prefix sum.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

ProgressFn = Callable[[float, str], None]
"""``progress(fraction in [0, 1], text)`` — web-llm's InitProgressReport, minus the clock."""

# What every backend assumes when an mlc-chat-config.json lacks a key (MLC's converter always
# writes them; MLC itself has no default for the window or the epsilon). Twin: ``llamaDims`` in
# js_glue/kernels/llama.js; tests/host/test_config_defaults.py keeps the two equal.
DEFAULT_CONTEXT_WINDOW = 2048
"""Tokens a model holds when its config says nothing (Hugging Face's LlamaConfig default)."""
DEFAULT_PREFILL_CHUNK = 128
"""Prompt tokens per prefill call when its config says nothing (the WGSL kernels' own size)."""
DEFAULT_RMS_NORM_EPS = 1e-6
"""RMSNorm epsilon when ``model_config`` says nothing (Hugging Face's Llama and Qwen2 default)."""


@dataclass
class Knobs:
    """The five sampling knobs and their defaults, defined here once: a request may set each,
    a model's config (its ``mlc-chat-config.json``, or a record's ``overrides``) gives the
    default, and these values are the default of last resort."""

    temperature: float = 1.0
    top_p: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0

    @classmethod
    def resolve(cls, config: Mapping[str, Any], request: Mapping[str, float | None] | None = None) -> Knobs:
        """The request's value of each knob, else the model config's, else the default."""
        asked = request or {}
        values = {}
        for f in fields(Knobs):
            value = asked.get(f.name)
            values[f.name] = float(value if value is not None else config.get(f.name, f.default))
        return Knobs(**values)

    def knobs(self) -> dict[str, Any]:
        """The knob values alone (of a Knobs or of a subclass carrying more)."""
        return {name: value for name, value in vars(self).items() if name in KNOB_NAMES}


KNOB_NAMES = tuple(f.name for f in fields(Knobs))


@dataclass
class SamplingParams(Knobs):
    """What one sampling step needs. ``uniforms`` holds one draw in [0, 1) per step."""

    logit_bias: dict[int, float] = field(default_factory=dict)
    history: list[int] = field(default_factory=list)
    uniforms: list[float] = field(default_factory=lambda: [0.0])
    logprobs: bool = False
    top_logprobs: int = 0
    grammar: int | None = None
    """A matcher of ``open_grammar`` that constrains every step (rule step 0), or None."""

    def to_wire(self) -> dict[str, Any]:
        """Plain dict for the FFI (dict keys become strings for JSON-like transports)."""
        return {
            "grammar": self.grammar,
            **self.knobs(),
            "logit_bias": [[int(k), float(v)] for k, v in self.logit_bias.items()],
            "history": list(self.history),
            "uniforms": list(self.uniforms),
            "logprobs": self.logprobs,
            "top_logprobs": self.top_logprobs,
        }


GRAMMAR_KINDS = ("json_schema", "ebnf", "structural_tag")


def grammar_spec(kind: str, source: str, stop_token_ids: list[int] | None = None) -> dict[str, Any]:
    """The wire form of what ``open_grammar`` compiles, the same for every backend:

    - ``kind``: "json_schema" (``source`` is the schema as JSON text), "ebnf" (``source`` is an
      EBNF grammar whose root rule is ``root``) or "structural_tag" (``source`` is xgrammar's
      structural tag as JSON text).
    - ``stop_token_ids``: the ids that end the answer; the grammar ends only on one of them.

    JSON comes out in one line with ", " and ": " separators (no free whitespace: a model that
    loops on spaces could otherwise never finish), and a schema is strict: no property or item
    it does not list."""
    if kind not in GRAMMAR_KINDS:
        raise ValueError(f"grammar kind must be one of {GRAMMAR_KINDS}, not {kind!r}")
    return {"kind": kind, "source": source, "stop_token_ids": list(stop_token_ids or [])}


@dataclass
class Sampled:
    """One sampled token; logprob fields are filled only when asked for."""

    token: int
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] = field(default_factory=list)

    @classmethod
    def from_wire(cls, raw: Any) -> Sampled:
        if isinstance(raw, int):
            return cls(int(raw))
        top = [(int(t), float(lp)) for t, lp in (raw.get("top_logprobs") or [])]
        lp = raw.get("logprob")
        return cls(int(raw["token"]), None if lp is None else float(lp), top)


@dataclass
class LoadedModel:
    """What ``load`` returns: a handle and the model's ``mlc-chat-config.json`` as a dict."""

    handle: int
    config: dict[str, Any]


class Kernels(Protocol):
    """The kernel ABI. All calls are awaitable; handles are small ints.

    KV-cache semantics: ``prefill`` and ``decode`` append to the cache at its current length
    and leave logits for ``sample``. ``decode_steps(n)`` runs n times "decode the last sampled
    token, sample the next" on the device and returns the n new samples; it appends n tokens.
    ``rewind(length)`` truncates the cache so a stop condition can drop what it rejected.

    Constrained decoding: ``open_grammar(handle, spec)`` compiles ``spec`` (``grammar_spec``)
    for the model's vocabulary and returns a matcher; a ``sample`` or ``decode_steps`` whose
    params name it masks each step by it and advances it with the picked id. ``decode_steps``
    then stops early, after the step whose id ends the grammar (a stop token), so it may return
    (and append) fewer than n samples. ``close_grammar`` frees the matcher.
    """

    async def load(self, record: dict[str, Any], progress: ProgressFn) -> LoadedModel: ...

    async def unload(self, handle: int) -> None: ...

    async def tokenize(self, handle: int, text: str) -> list[int]: ...

    async def detokenize(self, handle: int, ids: list[int]) -> str: ...

    async def prefill(self, handle: int, ids: list[int]) -> None: ...

    async def decode(self, handle: int, token: int) -> None: ...

    async def sample(self, handle: int, params: SamplingParams) -> Sampled: ...

    async def decode_steps(self, handle: int, n: int, params: SamplingParams) -> list[Sampled]: ...

    async def rewind(self, handle: int, length: int) -> None: ...

    async def reset(self, handle: int) -> None: ...

    async def open_grammar(self, handle: int, spec: dict[str, Any]) -> int: ...

    async def close_grammar(self, handle: int, grammar: int) -> None: ...

    async def embed(self, handle: int, batch: list[list[int]]) -> list[list[float]]: ...

    async def stats(self, handle: int) -> dict[str, Any]: ...

    async def device_info(self) -> dict[str, Any]:
        """``{vendor, architecture, maxStorageBufferBindingSize, features}`` of the device."""
        ...


async def finish_call(call: Awaitable[T]) -> T:
    """Await a kernel call; a cancellation waits for the call to end, then goes on."""
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):  # the cancellation is what we report
            await task
        raise


class Finishing:
    """A backend whose every call runs to its end: the rule "a kernel call is never abandoned
    half way" applied once, at the seam. A cancelled caller (a stream closed early, an
    interrupted request, an unload) waits for the call in flight before the cancellation goes
    on, so the next call on the model finds the device idle and the KV cache in a known state.
    The engine and the generation loop see only this wrapper; ``finishing`` wraps once."""

    def __init__(self, inner: Kernels) -> None:
        self.inner = inner

    async def load(self, record: dict[str, Any], progress: ProgressFn) -> LoadedModel:
        return await finish_call(self.inner.load(record, progress))

    async def unload(self, handle: int) -> None:
        await finish_call(self.inner.unload(handle))

    async def tokenize(self, handle: int, text: str) -> list[int]:
        return await finish_call(self.inner.tokenize(handle, text))

    async def detokenize(self, handle: int, ids: list[int]) -> str:
        return await finish_call(self.inner.detokenize(handle, ids))

    async def prefill(self, handle: int, ids: list[int]) -> None:
        await finish_call(self.inner.prefill(handle, ids))

    async def decode(self, handle: int, token: int) -> None:
        await finish_call(self.inner.decode(handle, token))

    async def sample(self, handle: int, params: SamplingParams) -> Sampled:
        return await finish_call(self.inner.sample(handle, params))

    async def decode_steps(self, handle: int, n: int, params: SamplingParams) -> list[Sampled]:
        return await finish_call(self.inner.decode_steps(handle, n, params))

    async def rewind(self, handle: int, length: int) -> None:
        await finish_call(self.inner.rewind(handle, length))

    async def reset(self, handle: int) -> None:
        await finish_call(self.inner.reset(handle))

    async def open_grammar(self, handle: int, spec: dict[str, Any]) -> int:
        return await finish_call(self.inner.open_grammar(handle, spec))

    async def close_grammar(self, handle: int, grammar: int) -> None:
        await finish_call(self.inner.close_grammar(handle, grammar))

    async def embed(self, handle: int, batch: list[list[int]]) -> list[list[float]]:
        return await finish_call(self.inner.embed(handle, batch))

    async def stats(self, handle: int) -> dict[str, Any]:
        return await finish_call(self.inner.stats(handle))

    async def device_info(self) -> dict[str, Any]:
        return await finish_call(self.inner.device_info())


def finishing(kernels: Kernels) -> Finishing:
    """``kernels`` behind the never-abandon rule (as it is when it already is)."""
    return kernels if isinstance(kernels, Finishing) else Finishing(kernels)
