"""The ggml-weight kernels (js_glue/kernels/wgsl/ggml.js) on lavapipe (Deno) and SwiftShader (Chromium).

For every format, random GGUF-layout bytes of a weight W [N, K] go to the GPU unchanged; matmul
(TM = 1 and 4, for 1 and 5 tokens), the split-K GEMV (1 token) and the embedding lookup must
give ``x @ W.T`` and ``W[ids]`` with W decoded by py_worker/reference/ggml.py and by the gguf
package alike: relative error (max |diff| / max |want|) < 1e-5. The "parts" cases write the
parts of one linear side by side into one output (``ldy``/``yoff``), with biases and an
accumulating part: three ggml formats, and the existing f32 and MLC q4 paths. All of it is one
scenario per runner (one Deno process, one Chromium call).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from py_worker.reference import ggml
from py_worker.reference.weights import dequantize_q4
from tools.kernel_runners import ChromiumHarness, Unavailable, deno_run

gguf = pytest.importorskip("gguf")

TOL = 1e-5
RNG = np.random.default_rng(20240611)


def b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


@dataclass(frozen=True)
class Weight:
    """W [n, k]: GGUF bytes ``raw`` uint8 [n, row_bytes] of ggml type ``type``; or, with type
    None, MLC q4 words ``raw`` uint32 [n, k/8] and scales ``qs`` f32 [n, k/32]."""

    name: str
    type: int | None
    n: int
    k: int
    raw: np.ndarray
    qs: np.ndarray | None = None

    @staticmethod
    def ggml(t: int, n: int, k: int, name: str = "") -> Weight:
        raw = ggml.random_raw(RNG, t, n, k)
        return Weight(name or f"{ggml.type_name(t)}-{n}x{k}", t, n, k, raw)

    @staticmethod
    def mlc_q4(n: int, k: int) -> Weight:
        words = RNG.integers(0, 2**32, size=(n, k // 8), dtype=np.uint32)
        scales = RNG.uniform(0.01, 0.1, size=(n, k // 32)).astype(np.float32)
        return Weight(f"mlc-q4-{n}x{k}", None, n, k, words, scales)

    def ours(self) -> np.ndarray:
        if self.type is None:
            assert self.qs is not None
            return dequantize_q4(self.raw, self.qs)
        return ggml.dequantize(self.raw, self.type, self.n, self.k)

    def theirs(self) -> np.ndarray:
        if self.type is None:  # MLC's format: gguf has no decoder for it
            return self.ours()
        t = gguf.GGMLQuantizationType(self.type)
        return np.asarray(gguf.quants.dequantize(self.raw, t), np.float32).reshape(self.n, self.k)

    def wire(self) -> dict[str, Any]:
        if self.type is None:
            assert self.qs is not None
            return {"q4": True, "N": self.n, "K": self.k, "qw": b64(self.raw), "qs": b64(self.qs)}
        return {"type": self.type, "N": self.n, "K": self.k, "bytes": b64(self.raw)}


# (type, N, K): K = 512 for the 32-input blocks, 256 (one super-block) for the K-quants; plus
# rows of 2 and 3 super-blocks, odd N (TN = 1) and Q6_K rows that start 2 bytes into a word.
SHAPES = [(t, 40, 512) for t in (ggml.F32, ggml.F16, ggml.Q4_0, ggml.Q4_1, ggml.Q8_0)]
SHAPES += [(t, 40, 256) for t in (ggml.Q4_K, ggml.Q5_K, ggml.Q6_K)]
SHAPES += [(ggml.Q4_K, 12, 512), (ggml.Q6_K, 7, 768), (ggml.Q4_0, 7, 96)]
WEIGHTS = [Weight.ggml(t, n, k) for t, n, k in SHAPES]
# Parts of two linears: q Q8_0 [40], k Q4_K [8], v Q6_K [8] of K = 256 -> y [m, 56]; and
# MLC q4 [24] + f32 [40] (WEIGHTS[0], through the f32 path) of K = 512 -> y [m, 64].
PARTS = [
    Weight.ggml(t, n, 256, f"part-{ggml.type_name(t)}")
    for t, n in ((ggml.Q8_0, 40), (ggml.Q4_K, 8), (ggml.Q6_K, 8))
]
MLC_Q4 = Weight.mlc_q4(24, 512)
ALL = [*WEIGHTS, *PARTS, MLC_Q4]


@dataclass(eq=False)
class Case:
    """One submit: steps into one output y [y_len], starting from y_init; x [m, K] or ids [m]."""

    name: str
    m: int
    steps: list[dict[str, Any]]
    y_len: int
    x: np.ndarray | None = None
    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.y_init = RNG.standard_normal(self.y_len).astype(np.float32)

    def wire(self) -> dict[str, Any]:
        steps = [{**s, "bias": b64(s["bias"])} if "bias" in s else s for s in self.steps]
        out = {"m": self.m, "steps": steps, "yLen": self.y_len, "yInit": b64(self.y_init)}
        if self.x is not None:
            out["x"] = b64(self.x)
        if self.ids is not None:
            out["ids"] = self.ids.tolist()
        return out

    def expect(self, decode: Callable[[Weight], np.ndarray]) -> np.ndarray:
        """y after the steps, in float64, with every W decoded by ``decode``."""
        y = self.y_init.astype(np.float64)
        for s in self.steps:
            w = ALL[s["w"]]
            W = decode(w).astype(np.float64)
            if s["op"] == "embed":
                assert self.ids is not None
                y = W[self.ids].reshape(-1)
                continue
            assert self.x is not None
            ldy, yoff = s.get("ldy", w.n), s.get("yoff", 0)
            rows = y.reshape(self.m, ldy)  # a view: parts write into y
            part = self.x.astype(np.float64) @ W.T + s.get("bias", 0.0)
            rows[:, yoff : yoff + w.n] = part + (rows[:, yoff : yoff + w.n] if s.get("accumulate") else 0.0)
        return y


def linear_cases(i: int, w: Weight) -> list[Case]:
    tn = 4 if w.n % 4 == 0 else 1  # as llama.js picks TN
    cases = []
    for m in (1, 5):
        x = RNG.standard_normal((m, w.k)).astype(np.float32)
        for tm in (1, 4):
            step = {"op": "matmul", "w": i, "TM": tm, "TN": tn}
            cases.append(Case(f"{w.name}/matmul-TM{tm}-m{m}", m, [step], m * w.n, x=x))
    x1 = RNG.standard_normal((1, w.k)).astype(np.float32)
    cases.append(Case(f"{w.name}/gemv", 1, [{"op": "gemv", "w": i}], w.n, x=x1))
    ids = np.array([3, 0, w.n - 1, 3, 1], np.uint32)
    cases.append(Case(f"{w.name}/embed", len(ids), [{"op": "embed", "w": i}], len(ids) * w.k, ids=ids))
    return cases


def parts_cases(name: str, parts: list[tuple[Weight, int, dict[str, Any]]], ldy: int) -> list[Case]:
    """Each part (weight, yoff, extra step keys) writes columns [yoff, yoff + N) of y [m, ldy]."""
    k = parts[0][0].k
    cases = []
    for op, m, tm in (("matmul", 5, 4), ("matmul", 1, 1), ("gemv", 1, 1)):
        steps = []
        for w, yoff, extra in parts:
            step = {"op": op, "w": ALL.index(w), "ldy": ldy, "yoff": yoff, **extra}
            if op == "matmul":
                step.update(TM=tm, TN=4 if tm > 1 else 1)
            steps.append(step)
        x = RNG.standard_normal((m, k)).astype(np.float32)
        cases.append(Case(f"parts-{name}/{op}-TM{tm}-m{m}", m, steps, m * ldy, x=x))
    return cases


def bias(n: int) -> dict[str, Any]:
    return {"bias": RNG.standard_normal(n).astype(np.float32)}


ACCUMULATE = {"accumulate": True}
CASES = [c for i, w in enumerate(WEIGHTS) for c in linear_cases(i, w)]
CASES += parts_cases(
    "ggml", [(PARTS[0], 0, bias(40)), (PARTS[1], 40, bias(8)), (PARTS[2], 48, ACCUMULATE)], 56
)
F32_PLAIN = {"plain": True, **ACCUMULATE}  # WEIGHTS[0] through the f32 path, not ggml's
CASES += parts_cases("f32-q4", [(MLC_Q4, 0, bias(24)), (WEIGHTS[0], 24, F32_PLAIN)], 64)


def scenario() -> dict[str, Any]:
    return {"kind": "ggml", "weights": [w.wire() for w in ALL], "cases": [c.wire() for c in CASES]}


def rel_err(got: Any, want: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(got, np.float64) - want)) / np.max(np.abs(want)))


@pytest.fixture(scope="module", params=["deno", "chromium"])
def gpu_out(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Every case's y on one backend (one run of the whole scenario)."""
    if request.param == "deno":
        try:
            return deno_run(scenario())
        except Unavailable as e:
            pytest.skip(str(e))
    harness: ChromiumHarness = request.getfixturevalue("chromium")
    return dict(harness.call("scenario", scenario()))


def test_runs_on_a_cpu_webgpu_backend(gpu_out: dict[str, Any]) -> None:
    dev = gpu_out["device"]
    print("device:", dev["description"])
    assert dev["isCpu"], dev  # lavapipe or SwiftShader: real WebGPU, no GPU needed
    assert len(gpu_out["cases"]) == len(CASES)


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c.name for c in CASES])
def test_kernel_equals_numpy_twin_and_gguf(gpu_out: dict[str, Any], index: int) -> None:
    case, got = CASES[index], gpu_out["cases"][index]
    assert len(got) == case.y_len
    ours = case.expect(Weight.ours)
    theirs = case.expect(Weight.theirs)
    np.testing.assert_array_equal(ours, theirs)  # the twin decodes exactly as gguf does
    assert rel_err(got, ours) < TOL, rel_err(got, ours)
    assert rel_err(got, theirs) < TOL
