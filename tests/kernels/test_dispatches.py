"""WebGPU calls per decoded token on the "gpu" kernel set (split-K GEMVs), counted on lavapipe.

The Deno runner wraps ``dispatchWorkgroups`` and ``queue.submit`` (tests/kernels/deno_runner.js,
``countGpuCalls``) and reports them per kernel call. The model is Qwen2-0.5B's shape, all 24
layers and the 151936-token vocabulary, with random q4f16_1 weights (tools/make_random_model.py).
With the norms, RoPE + KV append, the attention merge and SwiGLU inside the GEMVs
(js_glue/kernels/wgsl/gemv.js and its hooks) a token costs the embedding lookup, 5 dispatches a
layer (norm+qkv+rope+kv, attention partials, merge+o_proj, norm+gate_up, act+down) and the
norm+lm_head: 2 + 5 * 24 = 122, plus the sampler's two stages (every block of ids in parallel,
then one workgroup) in the GPU-resident loop. A decode is one submit; the loop submits every 4
steps, so the GPU starts on them while the CPU records the rest.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.kernels.test_mlc_zoo import zoo_model
from tests.kernels.test_tiny_model import values
from tools.kernel_runners import Unavailable, deno_run

LAYERS = 24
BUDGET = 130
"""Most dispatches one decoded token may take (issue 19)."""
STEPS = 6
SAMPLER = 2
"""Dispatches of one sample: stage 1 over blocks of ids, stage 2 in one workgroup."""


def per_call(out: dict[str, Any]) -> list[dict[str, int]]:
    values(out)  # no call failed
    return [r["gpu"] for r in out["results"]]


def test_qwen2_0_5b_decode_fits_the_dispatch_budget() -> None:
    model = zoo_model("qwen2-0.5b", "q4f16_1")
    calls: list[list[Any]] = [
        ["prefill", [1, 2, 3, 4, 5]],
        ["decode", 6],
        ["decode", 7],
        ["sample", {"temperature": 0.0, "uniforms": [0.5]}],
        ["decodeSteps", STEPS, {"temperature": 0.0, "uniforms": [0.5] * STEPS}],
    ]
    scenario = {"record": {"model": model}, "calls": calls, "options": {"kernels": "gpu"}}
    try:
        out = deno_run({**scenario, "countGpuCalls": True})
    except Unavailable as e:
        pytest.skip(str(e))
    _, decode, again, sample, steps = per_call(out)
    loop_dispatches = steps["dispatches"] / STEPS
    print(f"one decode: {decode}; GPU-resident loop of {STEPS} tokens: {steps}")
    assert decode == again
    assert decode["submits"] == 1
    assert decode["dispatches"] == 2 + 5 * LAYERS <= BUDGET
    assert sample == {"dispatches": SAMPLER, "submits": 1}
    assert loop_dispatches == decode["dispatches"] + SAMPLER <= BUDGET
    assert steps["submits"] == -(-STEPS // 4)
