"""GGUF decoders read as they are, on the WGSL kernels vs the NumPy reference of the same file.

``tiny-llama-mixed`` uses every ggml block format the kernels read, with q|k fused (one type),
v beside them (another), gate and up side by side and an untied F16 lm_head; ``tiny-qwen2`` has
the qwen2 architecture's NEOX RoPE and q/k/v biases. Logits after a prefill and after each decode
step must match the reference (relative error < 1e-4, f32 arithmetic on both sides); the
GPU-resident loop must pick the reference's greedy ids. Lavapipe (Deno, with both kernel sets)
and SwiftShader (Chromium).
"""

from __future__ import annotations

from typing import Any

import gguf
import pytest

from py_worker.kernels import SamplingParams
from py_worker.reference.gguf_model import gguf_config
from tests.kernels.test_tiny_model import DECODE_TOKENS, PROMPT, Ref, rel_err, values
from tools.kernel_runners import ROOT, Runner, tiny_gguf

STEPS = 6


@pytest.mark.parametrize("variant", ["mixed", "qwen2"])
def test_gguf_logits_and_greedy_loop_match_reference(runner: Runner, variant: str) -> None:
    model = tiny_gguf(variant)
    ref = Ref(model)
    ids = ref("tokenize", PROMPT)
    greedy = SamplingParams(temperature=0.0, uniforms=[0.0] * (STEPS - 1)).to_wire()
    calls: list[list[Any]] = [["tokenize", PROMPT], ["prefill", ids], ["logits"]]
    for t in DECODE_TOKENS[:4]:
        calls += [["decode", t], ["logits"]]
    calls += [["sample", SamplingParams(temperature=0.0).to_wire()], ["decodeSteps", STEPS - 1, greedy]]
    overrides = {"prefill_chunk_size": 16}
    out = runner({"record": {"model": model, "overrides": overrides}, "calls": calls})
    got = values(out)
    assert got[0] == ids, "web-tokenizers on the JS-built tokenizer.json and the Python-built one disagree"
    # gguf.js's ggufConfig and its twin gguf_model.gguf_config read the metadata alike.
    want_config = {**gguf_config(gguf.GGUFReader(ROOT / model)), **overrides}
    assert {k: out["config"].get(k) for k in want_config} == want_config
    ref("prefill", ids)
    errors = [rel_err(got[2], ref("logits"))]
    for i, t in enumerate(DECODE_TOKENS[:4]):
        ref("decode", t)
        errors.append(rel_err(got[4 + 2 * i], ref("logits")))
    print(f"{variant} on {out['device']['description']}: max rel err {max(errors):.2e}")
    assert max(errors) < 1e-4, errors
    tokens = [got[-2]["token"]] + [s["token"] for s in got[-1]]
    want = [ref("sample", SamplingParams(temperature=0.0)).token]
    want += [
        s.token for s in ref("decode_steps", STEPS - 1, SamplingParams(temperature=0.0, uniforms=[0.0] * 5))
    ]
    assert tokens == want
