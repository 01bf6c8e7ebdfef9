"""The kernel ABI: the one seam between the Python engine and a compute backend.

Python never touches GPU objects. It awaits these calls; a backend (the WebGPU shim in
`js_glue/kernels`, the tvmjs `mlc` shim, or the NumPy reference on host CPython) implements
them. Arguments and results are plain numbers, strings, lists and dicts, so they cross the
Pyodide FFI without keeping objects alive on either side.

Sampling is defined here once, so every backend picks the same token for the same logits and
the same uniform random number (the engine draws the uniforms from a seeded Python RNG):

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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

ProgressFn = Callable[[float, str], None]
"""``progress(fraction in [0, 1], text)`` — web-llm's InitProgressReport, minus the clock."""


@dataclass
class SamplingParams:
    """What one sampling step needs. ``uniforms`` holds one draw in [0, 1) per step."""

    temperature: float = 1.0
    top_p: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    history: list[int] = field(default_factory=list)
    uniforms: list[float] = field(default_factory=lambda: [0.0])
    logprobs: bool = False
    top_logprobs: int = 0

    def to_wire(self) -> dict[str, Any]:
        """Plain dict for the FFI (dict keys become strings for JSON-like transports)."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "frequency_penalty": self.frequency_penalty,
            "presence_penalty": self.presence_penalty,
            "repetition_penalty": self.repetition_penalty,
            "logit_bias": [[int(k), float(v)] for k, v in self.logit_bias.items()],
            "history": list(self.history),
            "uniforms": list(self.uniforms),
            "logprobs": self.logprobs,
            "top_logprobs": self.top_logprobs,
        }


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
    """The kernel ABI (DESIGN.md). All calls are awaitable; handles are small ints.

    KV-cache semantics: ``prefill`` and ``decode`` append to the cache at its current length
    and leave logits for ``sample``. ``decode_steps(n)`` runs n times "decode the last sampled
    token, sample the next" on the device and returns the n new samples; it appends n tokens.
    ``rewind(length)`` truncates the cache so a stop condition can drop what it rejected.
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

    async def embed(self, handle: int, batch: list[list[int]]) -> list[list[float]]: ...

    async def stats(self, handle: int) -> dict[str, Any]: ...

    async def device_info(self) -> dict[str, Any]:
        """``{vendor, architecture, maxStorageBufferBindingSize, features}`` of the device."""
        ...
