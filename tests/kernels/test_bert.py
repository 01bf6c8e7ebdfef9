"""BERT embeddings on the WGSL kernels vs the NumPy reference encoder (itself checked against
sentence-transformers in tests/host): the tiny BERT on both runners, all-MiniLM-L6-v2 on
lavapipe (8 sentences, cosine >= 0.999 required; in practice ~1 - 1e-7)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.kernels.test_tiny_model import Ref, values
from tools.kernel_runners import ROOT, Runner, deno_run
from tools.make_tiny_bert import ensure_tiny_bert

SENTENCES = [
    "The cat sits on the mat.",
    "A quick brown fox jumps over the lazy dog.",
    "WebGPU runs compute shaders in the browser.",
    "Python inside a Web Worker routes the requests.",
    "Embeddings are mean pooled and L2 normalised.",
    "Paris is the capital of France.",
    "I like green tea in the morning.",
    "Numbers: 3.14159 and 2.71828, emoji 🙂.",
]


def tiny_bert() -> str:
    """build/models/tiny-bert-q0f32 (written by tools/make_tiny_bert.py on first use)."""
    return str(ensure_tiny_bert().relative_to(ROOT))


def compare(run: Runner, model: str) -> list[float]:
    ref = Ref(model)
    batch = [ref("tokenize", s) for s in SENTENCES]
    out = run({"record": {"model": model}, "calls": [["embed", batch], ["stats"], ["prefill", [1, 2]]]})
    got = values({"results": out["results"][:2]})
    assert out["results"][2]["error"]["name"] == "IncorrectPipelineLoadedError"
    want = np.asarray(ref("embed", batch))
    vecs = np.asarray(got[0])
    assert vecs.shape == want.shape
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    cos = [float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(vecs, want, strict=True)]
    # Different sentences must give different vectors, or the check could not see a mix-up.
    assert float(vecs[0] @ vecs[1]) < 0.99
    return cos


def test_tiny_bert(runner: Runner) -> None:
    model = tiny_bert()
    cos = compare(runner, model)
    assert min(cos) > 1 - 1e-5, cos


@pytest.mark.skipif(
    not (ROOT / "build/models/all-MiniLM-L6-v2-q0f32/tensor-cache.json").exists(),
    reason="all-MiniLM-L6-v2 not converted (tools/convert_minilm.py)",
)
def test_minilm_on_lavapipe() -> None:
    cos = compare(deno_run, "build/models/all-MiniLM-L6-v2-q0f32")
    print(f"MiniLM cosine vs reference: min {min(cos):.7f}")
    assert min(cos) >= 0.999
