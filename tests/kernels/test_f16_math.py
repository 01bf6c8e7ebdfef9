"""f16 arithmetic in the decode GEMVs of q4f16_1 weights (createKernels' ``f16Math``) on the tiny Llama.

Forced on lavapipe with the "gpu" kernel set (the only one with those GEMVs), against the f32
NumPy reference: the logits after a prefill (whose LM head is the one GEMV) and after each of 8
decode steps must pick the reference's top-1 id, stay within TOL of its logits and be further
than test_tiny_model.py's f32 1e-4 from them (the f16 arithmetic ran). The whole-model greedy
tokens on real weights are test_smollm2.py's (SmolLM2 q4f16_1 with f16 math). By default the
arithmetic is f32 everywhere; models without f16 scales and the "cpu" set never take it; without
shader-f16 it is refused by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.kernels.test_f16_kv import deno, ref_logits, run_logits
from tests.kernels.test_tiny_model import PROMPT, Ref, rel_err, values
from tools.kernel_runners import tiny_model

TOL = 5e-3
"""Relative error of the logits (max |diff| / max |logit|) against the f32 reference.
The q4 GEMVs' group sums carry about u = 2^-11 of f16 rounding (test_fused.py measured 1.2-2.4 u
for one GEMV); a token passes through 2 layers of 4 GEMVs and the LM head, each adding its own
rounding to what the one before handed on, so a few u of the logits (measured 1.2-3.2 u): 5e-3
is 10 u."""


def gpu(s: dict[str, Any]) -> dict[str, Any]:
    return deno({**s, "options": {**s.get("options", {}), "kernels": "gpu"}})


def test_f16_math_decode_matches_reference() -> None:
    model = tiny_model("q4f16_1")
    ids = Ref(model)("tokenize", PROMPT)
    got, stats = run_logits(gpu, model, ids, {"f16Math": True})
    assert stats["f16_math"] == 1
    want = ref_logits(model, ids, False)
    errs = [rel_err(g, w) for g, w in zip(got, want, strict=True)]
    print(f"tiny-llama q4f16_1 f16 math: logits rel err {min(errs):.2e}-{max(errs):.2e}")
    assert all(1e-4 < e < TOL for e in errs), errs
    assert [int(np.argmax(g)) for g in got] == [int(np.argmax(w)) for w in want]


@pytest.mark.parametrize(("quant", "kernels"), [("q4f16_1", "cpu"), ("q4f32_1", "gpu")])
def test_f16_math_only_where_q4f16_gemvs(quant: str, kernels: str) -> None:
    """Forced on, it does not take effect without f16 scales or without the GEMVs."""
    out = deno(
        {
            "record": {"model": tiny_model(quant)},
            "options": {"kernels": kernels, "f16Math": True},
            "calls": [["stats"]],
        }
    )
    assert values(out)[0]["f16_math"] == 0


def test_default_f16_math() -> None:
    """With no f16Math the arithmetic is f32 even on the "gpu" kernel set of an adapter with
    shader-f16: the f16 arithmetic is opt-in (it measured slower than f32 on an H200)."""
    out = gpu({"record": {"model": tiny_model("q4f16_1")}, "calls": [["stats"]]})
    assert "shader-f16" in out["device"]["features"]
    assert values(out)[0]["f16_math"] == 0


def test_f16_math_needs_shader_f16() -> None:
    with pytest.raises(RuntimeError, match="ShaderF16SupportError"):
        gpu(
            {
                "record": {"model": tiny_model("q4f16_1")},
                "options": {"f16": False, "f16Math": True},
                "calls": [],
            }
        )
