"""The KV cache in f16 or f32 (createKernels' ``kvF16``) against the NumPy reference's twin of it.

The f16 cache rounds each stored k and v to f16 and widens it back to f32 in attention; the
reference with ``kv_f16`` does the same (``KVCache``). Logits after a prefill longer than a chunk
and 64 keys (prefill chunking; the split attention's merge on the "gpu" set) and after each of 8
decode steps must match the reference of the same cache at the tolerance of test_tiny_model.py
(relative error < 1e-4), and be further than that from the other one: over these calls the f16
and f32 references differ by 1.5e-4 to 2.2e-4, so a run that kept f32 fails the f16 check and
the other way round. The f16 cache is forced on where the device has shader-f16 (lavapipe, both
kernel sets); without shader-f16 it is refused by name. By default the CPU backends keep f32
(llama.js: f16 conversions are slow there).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.kernels.test_mlc_zoo import zoo_model
from tests.kernels.test_tiny_model import DECODE_TOKENS, PROMPT, Ref, rel_err, values
from tools.kernel_runners import Runner, Unavailable, deno_run, tiny_model

TOL = 1e-4


def deno(scenario: dict[str, Any]) -> dict[str, Any]:
    try:
        return deno_run(scenario)
    except Unavailable as e:
        pytest.skip(str(e))


@pytest.fixture(params=["cpu", "gpu"])
def lavapipe(request: pytest.FixtureRequest) -> Runner:
    """Deno on lavapipe (shader-f16) with either kernel set."""
    return lambda s: deno({**s, "options": {**s.get("options", {}), "kernels": request.param}})


Stats = dict[str, Any]


def run_logits(run: Runner, model: str, ids: list[int], options: dict[str, Any]) -> tuple[list[Any], Stats]:
    """Logits after prefilling ids and after each decode step, and the run's stats."""
    calls: list[list[Any]] = [["prefill", ids], ["logits"]]
    for t in DECODE_TOKENS:
        calls += [["decode", t], ["logits"]]
    out = run({"record": {"model": model}, "options": options, "calls": [*calls, ["stats"]]})
    got = values(out)
    return got[1:-1:2], got[-1]


def ref_logits(model: str, ids: list[int], kv_f16: bool) -> list[Any]:
    ref = Ref(model, kv_f16)
    ref("prefill", ids)
    out = [ref("logits")]
    for t in DECODE_TOKENS:
        ref("decode", t)
        out.append(ref("logits"))
    return out


def errors(got: list[Any], want: list[Any]) -> float:
    return max(rel_err(g, w) for g, w in zip(got, want, strict=True))


def long_prompt(model: str) -> list[int]:
    ids = Ref(model)("tokenize", PROMPT * 4)
    assert len(ids) > 2 * 64  # several chunks of prefill and of the split attention
    return list(ids)


F16_CASES = [("tiny-llama", "q0f32"), ("tiny-llama", "q4f16_1"), ("tiny-gemma3", "q4f16_1")]


@pytest.mark.parametrize(("shape", "quant"), F16_CASES, ids=[f"{s}-{q}" for s, q in F16_CASES])
def test_f16_cache_matches_f16_reference(lavapipe: Runner, shape: str, quant: str) -> None:
    """The tiny Llama (RoPE + KV append in the qkv GEMV on the "gpu" set), and Gemma 3 (the
    separate append after its q/k norms; sliding layers whose 8-key window lies past whole chunks)."""
    model = tiny_model(quant) if shape == "tiny-llama" else zoo_model(shape, quant)
    ids = long_prompt(model)
    got, stats = run_logits(lavapipe, model, ids, {"kvF16": True})
    assert stats["f16_kv"] == 1
    f16, f32 = errors(got, ref_logits(model, ids, True)), errors(got, ref_logits(model, ids, False))
    print(f"{shape} {quant} f16 cache: max rel err {f16:.2e} vs the f16 reference, {f32:.2e} vs the f32 one")
    assert f16 < TOL
    assert f32 > TOL  # the cache really is f16


@pytest.mark.parametrize("quant", ["q4f32_1"])
def test_f32_cache_matches_f32_reference(runner: Runner, quant: str) -> None:
    model = tiny_model(quant)
    ids = long_prompt(model)
    got, stats = run_logits(runner, model, ids, {"kvF16": False})
    assert stats["f16_kv"] == 0
    f32, f16 = errors(got, ref_logits(model, ids, False)), errors(got, ref_logits(model, ids, True))
    print(f"{quant} f32 cache: max rel err {f32:.2e} vs the f32 reference, {f16:.2e} vs the f16 one")
    assert f32 < TOL
    assert f16 > TOL


def test_f16_cache_halves_its_bytes() -> None:
    """Two loads that differ only in the cache's type: the bytes of the buffers made differ by
    half the f32 cache (layers x k and v x [ctx, kvHeads, headDim] x 2 bytes)."""
    record = {"model": tiny_model("q0f32")}
    made = {}
    for f16 in (False, True):
        out = deno({"record": record, "options": {"kvF16": f16}, "countGpuBuffers": True})
        made[f16] = out["gpuBuffers"]["bytes"]
    config = out["config"]
    mc = config["model_config"]
    per_layer = 2 * config["context_window_size"] * mc["num_key_value_heads"] * mc["head_dim"]  # k and v
    f32_cache = mc["num_hidden_layers"] * per_layer * 4
    assert made[False] - made[True] == f32_cache // 2


def test_default_cache() -> None:
    """With no kvF16 the cache is f32 on the CPU backends (lavapipe here), whatever the kernel set."""
    model = tiny_model("q0f32")
    for kernels in ("cpu", "gpu"):
        out = deno({"record": {"model": model}, "options": {"kernels": kernels}, "calls": [["stats"]]})
        assert "shader-f16" in out["device"]["features"]
        assert values(out)[0]["f16_kv"] == 0


def test_f16_cache_needs_shader_f16() -> None:
    """A device without shader-f16 (asked for without it: ``f16: false``) refuses an f16 cache by name."""
    model = tiny_model("q0f32")
    with pytest.raises(RuntimeError, match="ShaderF16SupportError"):
        deno({"record": {"model": model}, "options": {"f16": False, "kvF16": True}, "calls": []})
