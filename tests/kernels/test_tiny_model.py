"""The WGSL kernels against the NumPy reference on the tiny Llama, on lavapipe and on SwiftShader.

Logits after a prefill and after each of 8 decode steps must match ``py_worker.reference``
(relative error < 1e-4 in f32); the GPU sampler must pick the reference's ids for the same
uniforms; the GPU-resident loop (decodeSteps) must give the same ids as one-step decode+sample;
rewind must drop exactly what it is told to.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from py_worker.kernels import Sampled, SamplingParams
from py_worker.reference import ReferenceKernels
from tests.threads import run_async
from tools.kernel_runners import ROOT, Runner, tiny_model

PROMPT = "The quick brown fox jumps over the lazy dog."
DECODE_TOKENS = [101, 32, 257, 7, 300, 65, 66, 10]


def rel_err(got: Any, want: Any) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


class Ref:
    """ReferenceKernels with the same call shapes as the harness (handle implied); ``kv_f16``:
    its f16 KV cache mode."""

    def __init__(self, model: str, kv_f16: bool = False) -> None:
        self.k = ReferenceKernels(kv_f16)
        self.h = run_async(self.k.load({"model": str(ROOT / model)}, lambda f, t: None)).handle

    def __call__(self, method: str, *args: Any) -> Any:
        if method == "logits":
            return self.k.logits(self.h)
        return run_async(getattr(self.k, method)(self.h, *args))


def wire(p: SamplingParams) -> dict[str, Any]:
    return p.to_wire()


def values(result: dict[str, Any]) -> list[Any]:
    for r in result["results"]:
        assert "error" not in r, r
    return [r["value"] for r in result["results"]]


@pytest.mark.parametrize("quant", ["q0f32", "q4f32_1", "q4f16_1"])
def test_logits_prefill_and_8_decode_steps(runner: Runner, quant: str) -> None:
    model = tiny_model(quant)
    ref = Ref(model)
    ids = ref("tokenize", PROMPT)
    assert len(ids) > 16  # longer than prefill_chunk_size: exercises chunking
    calls: list[list[Any]] = [["prefill", ids], ["logits"]]
    for t in DECODE_TOKENS:
        calls += [["decode", t], ["logits"]]
    out = runner({"record": {"model": model}, "calls": [["tokenize", PROMPT], *calls]})
    got = values(out)
    assert got[0] == ids
    ref("prefill", ids)
    errors = [rel_err(got[2], ref("logits"))]
    for i, t in enumerate(DECODE_TOKENS):
        ref("decode", t)
        errors.append(rel_err(got[4 + 2 * i], ref("logits")))
    print(f"{quant} on {out['device']['description']}: max rel err {max(errors):.2e}")
    assert max(errors) < 1e-4, errors
    assert out["stats"]["kv_length"] == len(ids) + len(DECODE_TOKENS)
    # q4f16_1 keeps its scales f16 where the adapter has shader-f16 (lavapipe), else widens them.
    has_f16 = "shader-f16" in out["device"]["features"]
    assert out["stats"]["f16_scales"] == (1 if quant == "q4f16_1" and has_f16 else 0)
    assert out["progress"][-1][0] == 1.0


SAMPLING_CASES = [
    SamplingParams(temperature=0.0, uniforms=[0.5], logprobs=True, top_logprobs=3),
    SamplingParams(temperature=1.0, uniforms=[0.05]),
    SamplingParams(temperature=1.0, uniforms=[0.93]),
    SamplingParams(temperature=0.7, top_p=0.9, uniforms=[0.4], logprobs=True, top_logprobs=2),
    SamplingParams(temperature=1.3, top_p=0.5, uniforms=[0.99]),
    SamplingParams(temperature=0.0, logit_bias={7: 100.0}, uniforms=[0.0]),
    SamplingParams(
        temperature=0.9,
        top_p=0.95,
        repetition_penalty=1.3,
        frequency_penalty=0.5,
        presence_penalty=0.4,
        history=[101, 101, 32, 300, 7],
        logit_bias={65: 3.0, 66: -50.0},
        uniforms=[0.61],
        logprobs=True,
        top_logprobs=5,
    ),
]


def assert_same_samples(got: list[dict[str, Any]], want: list[Sampled], logprobs: bool) -> None:
    assert [g["token"] for g in got] == [w.token for w in want]
    if logprobs:
        for g, w in zip(got, want, strict=True):
            assert g["logprob"] == pytest.approx(w.logprob, abs=1e-4)
            assert [t for t, _ in g["top_logprobs"]] == [t for t, _ in w.top_logprobs]
            assert [lp for _, lp in g["top_logprobs"]] == pytest.approx(
                [lp for _, lp in w.top_logprobs], abs=1e-4
            )


def test_sampler_matches_reference(runner: Runner) -> None:
    model = tiny_model("q0f32")
    ref = Ref(model)
    ids = ref("tokenize", PROMPT)[:12]
    calls: list[list[Any]] = [["prefill", ids]] + [["sample", wire(p)] for p in SAMPLING_CASES]
    got = values(runner({"record": {"model": model}, "calls": calls}))[1:]
    ref("prefill", ids)
    for g, p in zip(got, SAMPLING_CASES, strict=True):
        assert_same_samples([g], [ref("sample", p)], p.logprobs)
    # The cases must not all pick the same id, or the test could not see a wrong walk.
    assert len({g["token"] for g in got}) >= 3


@pytest.mark.parametrize("quant", ["q0f32", "q4f32_1"])
def test_decode_steps_equal_one_step_path_and_reference(runner: Runner, quant: str) -> None:
    model = tiny_model(quant)
    ref = Ref(model)
    ids = ref("tokenize", PROMPT)[:10]
    n = 8
    draws = [0.11, 0.52, 0.93, 0.27, 0.74, 0.05, 0.66, 0.38]
    first = SamplingParams(temperature=0.8, top_p=0.9, uniforms=[0.3], logprobs=True, top_logprobs=2)
    loop = SamplingParams(
        temperature=0.8, top_p=0.9, repetition_penalty=1.2, uniforms=draws, logprobs=True, top_logprobs=2
    )
    # GPU-resident loop, then a rewind to 3 generated tokens and one more decode.
    calls: list[list[Any]] = [["prefill", ids], ["sample", wire(first)], ["decodeSteps", n, wire(loop)]]
    out = values(runner({"record": {"model": model}, "calls": calls}))
    s0, steps = out[1], out[2]

    ref("prefill", ids)
    r0 = ref("sample", first)
    assert_same_samples([s0], [r0], True)
    want = ref("decode_steps", n, loop)
    assert_same_samples(steps, want, True)
    assert len({s["token"] for s in steps}) >= 3

    # One-step path on the GPU: decode(prev) + sample(history so far, that step's draw).
    tokens = [s0["token"]] + [s["token"] for s in steps]
    one: list[list[Any]] = [["prefill", ids], ["sample", wire(first)]]
    for i in range(n):
        p = dataclasses.replace(loop, history=tokens[1 : 1 + i], uniforms=[draws[i]])
        one += [["decode", tokens[i]], ["sample", wire(p)]]
    one += [["rewind", len(ids) + 3], ["decode", 42], ["logits"], ["stats"]]
    got = values(runner({"record": {"model": model}, "calls": one}))
    assert [g["token"] for g in got[3 : 3 + 2 * n : 2]] == tokens[1:]
    ref("rewind", len(ids) + 3)
    ref("decode", 42)
    assert rel_err(got[-2], ref("logits")) < 1e-4
    assert got[-1]["kv_length"] == len(ids) + 4


def test_errors_are_named(runner: Runner) -> None:
    model = tiny_model("q0f32")
    calls = [
        ["decodeSteps", 2, wire(SamplingParams(uniforms=[0.1, 0.2]))],
        ["rewind", 5],
        ["prefill", [1] * 300],
    ]
    res = runner({"record": {"model": model}, "calls": calls})["results"]
    assert res[0]["error"]["name"] == "InvalidRequestFieldError"
    assert res[1]["error"]["name"] == "InvalidRequestFieldError"
    assert res[2]["error"]["name"] == "ContextWindowSizeExceededError"


def test_long_context_decode(runner: Runner) -> None:
    """Decode attention over several 64-key chunks (the split kernel's merge) still matches."""
    model = tiny_model("q4f32_1")
    ref = Ref(model)
    ids = ref("tokenize", PROMPT * 4)
    assert len(ids) > 2 * 64
    calls: list[list[Any]] = [["prefill", ids]]
    for t in DECODE_TOKENS[:3]:
        calls += [["decode", t], ["logits"]]
    got = values(runner({"record": {"model": model}, "calls": calls}))
    ref("prefill", ids)
    for i, t in enumerate(DECODE_TOKENS[:3]):
        ref("decode", t)
        assert rel_err(got[2 + 2 * i], ref("logits")) < 1e-4
