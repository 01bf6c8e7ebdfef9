"""The fused decode GEMVs (js_glue/kernels/wgsl/gemv_*.js) against their NumPy twins, on lavapipe.

Each hook of gemv.js (RMSNorm before the GEMV, RoPE + KV append after it, the split attention's
merge and SwiGLU / GeGLU before it) runs over weights of every format gemv.js reads: f32, f16,
MLC q4 with f32 and with f16 scales, ggml blocks (Q4_K, Q8_0, Q6_K). Biases and accumulating
outputs as the decoder has them; RoPE both rotate-half and interleaved, also with q|k|v in two
parts of two ggml types (as GGUF q4_K_M files are), and in 4-rows-a-thread layouts (q4 weights)
of several workgroups a head, of two heads a workgroup with a partial last one, with headDim 96
(a workgroup's pairs from two heads) and one that must be refused (it would mix pairs and v rows
in a workgroup); the merge with a chunk past the used ones holding garbage. The twins are
py_worker/reference/fused.py. Relative error (max |diff| /
max |want|) < 1e-5, as for the plain GEMV (test_ggml.py); the caches must change in row ``pos``
only. RoPE also into f16 caches (``kvF16``): each stored k and v within one f16 step of the
twin's (the rounding as it is stored), plus the same 1e-5 of max |want|. The q4f16 GEMV with
f16 arithmetic in its groups (``f16Math``) behind every hook, against its own twin
(py_worker/reference/f16math.py) and the f32 one (test_f16_math_gemv_equals_f16_twin says
within what). One Deno process for all of it (the "gpu" kernel set is checked on lavapipe).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from py_worker.reference import fused, ggml
from py_worker.reference.f16math import Q4F16
from py_worker.reference.weights import dequantize_q4
from tools.kernel_runners import Unavailable, deno_run

TOL = 1e-5
RNG = np.random.default_rng(20261202)
D: dict[str, Any] = {
    "hidden": 256, "eps": 1e-6, "heads": 4, "kvHeads": 2, "headDim": 64, "ctx": 256, "inter": 256,
    "act": "silu",
}  # fmt: skip
HD, HEADS, KV_HEADS = D["headDim"], D["heads"], D["kvHeads"]
QKV = (HEADS + 2 * KV_HEADS) * HD
SPLIT = 64  # keys per chunk of the split attention (attention_split.js)


def b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


def f32s(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Weight:
    """W [n, k] as the wire form the harness uploads and as f32 (what the kernel must read);
    MLC q4 ones also as their words and scales (``q4``)."""

    wire: dict[str, Any]
    dense: np.ndarray
    q4: Q4F16 | None = None


def weight(fmt: str, n: int, k: int) -> Weight:
    """A random W of format ``fmt``: f32, f16, q4f32 / q4f16 (MLC q4) or a ggml type name."""
    if fmt.startswith("q4"):
        words = RNG.integers(0, 2**32, size=(n, k // 8), dtype=np.uint32)
        dtype = np.float16 if fmt == "q4f16" else np.float32
        scales = RNG.uniform(0.01, 0.1, size=(n, k // 32)).astype(dtype)
        wire = {"q4": True, "f16": fmt == "q4f16", "N": n, "K": k, "qw": b64(words), "qs": b64(scales)}
        return Weight(wire, dequantize_q4(words, scales.astype(np.float32)), Q4F16(words, scales))
    t = {"f32": ggml.F32, "f16": ggml.F16, "Q4_K": ggml.Q4_K, "Q8_0": ggml.Q8_0, "Q6_K": ggml.Q6_K}[fmt]
    raw = ggml.random_raw(RNG, t, n, k)
    wire = {"type": t, "plain": fmt in ("f32", "f16"), "N": n, "K": k, "bytes": b64(raw)}
    return Weight(wire, ggml.dequantize(raw, t, n, k))


FORMATS = ["f32", "f16", "q4f32", "q4f16", "Q4_K", "Q8_0", "Q6_K"]


@dataclass(eq=False)
class Case:
    """One submit: the parts (weight, yoff, bias) of one linear through one hook, y [y_len]."""

    name: str
    hook: str
    parts: list[tuple[Weight, int, np.ndarray | None]]
    input: np.ndarray
    y_len: int
    accumulate: bool = False
    d: dict[str, Any] = field(default_factory=lambda: D)
    pos: int = 0
    norm: np.ndarray | None = None
    table: np.ndarray | None = None
    layout: dict[str, int] | None = None  # gemv.js's GemvLayout, else its default
    f16_math: bool = False  # gemv.js's f16Math (q4f16 parts only)

    def __post_init__(self) -> None:
        self.y_init = f32s(self.y_len)
        kv_type = np.float16 if self.kv_f16 else np.float32
        self.kv_init = f32s(self.d["ctx"], KV_HEADS * self.d["headDim"]).astype(kv_type)

    @property
    def kv_f16(self) -> bool:
        return bool(self.d.get("kvF16"))

    def cache(self, got: list[Any]) -> np.ndarray:
        """A cache the harness read back ([ctx, kvHeads * headDim]; f16 ones come as uint16 words)."""
        raw = np.asarray(got, np.uint16).view(np.float16) if self.kv_f16 else np.asarray(got, np.float32)
        return raw.reshape(self.d["ctx"], -1)

    def matrix(self, f16_math: bool) -> Any:
        """What the twin multiplies by: f64 W, or with ``f16_math`` the q4 words and scales."""
        if f16_math:
            q4 = [p[0].q4 for p in self.parts]
            assert all(q is not None for q in q4)
            words = np.concatenate([q.words for q in q4 if q is not None])
            return Q4F16(words, np.concatenate([q.scales for q in q4 if q is not None]))
        return np.concatenate([p[0].dense for p in self.parts]).astype(np.float64)

    @property
    def bias(self) -> np.ndarray | None:
        biases = [b for _, _, b in self.parts]
        return None if biases[0] is None else np.concatenate(biases).astype(np.float64)

    def wire(self, weights: list[Weight]) -> dict[str, Any]:
        steps = []
        for w, yoff, b in self.parts:
            step: dict[str, Any] = {"w": weights.index(w), "yoff": yoff, "accumulate": self.accumulate}
            if b is not None:
                step["bias"] = b64(b)
            steps.append(step)
        out = {"hook": self.hook, "d": self.d, "pos": self.pos, "input": b64(self.input), "steps": steps}
        out |= {"yLen": self.y_len, "yInit": b64(self.y_init), "kvInit": b64(self.kv_init)}
        if self.norm is not None:
            out["norm"] = b64(self.norm)
        if self.table is not None:
            out["table"] = b64(self.table)
        if self.layout is not None:
            out["layout"] = self.layout
        if self.f16_math:
            out["f16Math"] = True
        return out

    def expect(self, f16_math: bool | None = None) -> dict[str, np.ndarray]:
        """What the twin says y (and for ropeKv the caches) hold afterwards, in float64 (with the
        GEMV's arithmetic in f16 where ``f16_math``, by default the case's own)."""
        x, y0 = self.input.astype(np.float64), self.y_init.astype(np.float64)
        w = self.matrix(self.f16_math if f16_math is None else f16_math)
        if self.hook == "norm":
            assert self.norm is not None
            return {"y": fused.norm_linear(x, self.norm, D["eps"], w, self.bias)}
        if self.hook == "merge":
            partials = x.reshape(HEADS, -1, 2 + HD)
            return {"y": fused.merge_linear(partials, (self.pos + SPLIT) // SPLIT, w, self.bias, y0)}
        if self.hook == "glu":
            return {"y": fused.glu_linear(x, self.d["act"], w, y0)}
        assert self.norm is not None
        assert self.table is not None
        kc = self.kv_init.astype(np.float64).reshape(-1, KV_HEADS, self.d["headDim"])
        vc = kc.copy()
        q = fused.rope_kv_linear(
            x, self.norm, D["eps"], w, self.bias, HEADS, KV_HEADS, self.table[self.pos],
            bool(self.d.get("ropeInterleaved")), kc, vc, self.pos,
        )  # fmt: skip
        return {"y": np.concatenate([q, y0[q.size :]]), "kc": kc.reshape(-1), "vc": vc.reshape(-1)}


def layout_name(layout: dict[str, int] | None) -> str:
    return "" if layout is None else "-rows{rows}x{perThread}u{unroll}".format(**layout)


def norm_case(fmt: str, rows: int = 40, layout: dict[str, int] | None = None) -> Case:
    """rows >= 8192 takes the GEMV's wide-N layout: 32 rows a workgroup (gate_up, lm_head)."""
    x, g = f32s(D["hidden"]), (1.0 + 0.1 * f32s(D["hidden"])).astype(np.float32)
    parts = [(weight(fmt, rows, D["hidden"]), 0, f32s(rows))]
    name = f"norm-{fmt}" + ("" if rows == 40 else f"-N{rows}") + layout_name(layout)
    return Case(name, "norm", parts, x, rows, norm=g, layout=layout)


def glu_case(fmt: str, act: str, inter: int = D["inter"], layout: dict[str, int] | None = None) -> Case:
    """inter >= 4096 (128 groups of 32) takes the GEMV's long-K layout: 2 rows a workgroup."""
    parts = [(weight(fmt, 40, inter), 0, None)]
    name = f"glu-{act}-{fmt}" + ("" if inter == D["inter"] else f"-K{inter}") + layout_name(layout)
    return Case(
        name, "glu", parts, f32s(2 * inter), 40, True, {**D, "inter": inter, "act": act}, layout=layout
    )


def merge_case(fmt: str) -> Case:
    """pos 150: 151 keys in 3 chunks of the 4 a 256-key cache has; the 4th holds garbage."""
    chunks = math.ceil(D["ctx"] / SPLIT)
    partials = np.zeros((HEADS, chunks, 2 + HD), np.float32)
    partials[:, :, 0] = 3.0 * f32s(HEADS, chunks)
    partials[:, :, 1] = RNG.uniform(0.5, 5.0, (HEADS, chunks))
    partials[:, :, 2:] = f32s(HEADS, chunks, HD)
    partials[:, 3, :2] = (50.0, 1e-3)  # weighed in, it would swamp the others
    parts = [(weight(fmt, 40, HEADS * HD), 0, f32s(40))]  # o_proj's bias: Qwen3 with attention_bias
    return Case(f"merge-{fmt}", "merge", parts, partials.reshape(-1), 40, True, pos=150)


def rope_case(
    name: str,
    fmts: list[str],
    splits: list[int],
    interleaved: bool = False,
    kv_f16: bool = False,
    layout: dict[str, int] | None = None,
    head_dim: int = HD,
) -> Case:
    """q|k|v rows [0, (HEADS + 2 KV_HEADS) head_dim) in parts [splits[i], splits[i + 1]) of
    formats fmts[i], with biases; ``kv_f16``: into f16 caches."""
    qkv = (HEADS + 2 * KV_HEADS) * head_dim
    bounds = [*splits, qkv]
    parts = []
    for fmt, r0, r1 in zip(fmts, bounds, bounds[1:], strict=False):
        parts.append((weight(fmt, r1 - r0, D["hidden"]), r0, f32s(r1 - r0)))
    angles = RNG.uniform(0.0, 2 * math.pi, (D["ctx"], head_dim // 2))
    table = np.stack([np.cos(angles), np.sin(angles)], axis=-1).astype(np.float32)
    g = (1.0 + 0.1 * f32s(D["hidden"])).astype(np.float32)
    d = {**D, "headDim": head_dim, "ropeInterleaved": interleaved, "kvF16": kv_f16}
    name = f"ropeKv-{name}" + ("" if head_dim == HD else f"-hd{head_dim}") + layout_name(layout)
    x = f32s(D["hidden"])
    return Case(name, "ropeKv", parts, x, qkv, d=d, pos=37, norm=g, table=table, layout=layout)


CASES = [norm_case(f) for f in FORMATS]
CASES += [norm_case(f, 8192 + 40) for f in ("f32", "q4f32", "q4f16", "Q4_K", "Q6_K")]  # last one partial
CASES += [glu_case(f, "silu") for f in FORMATS] + [glu_case(f, "gelu_tanh") for f in ("f32", "q4f16", "Q4_K")]
CASES += [glu_case(f, "silu", 4096) for f in ("f32", "q4f32", "q4f16", "Q4_K", "Q6_K")]
# Rows a thread sharing one input read, groups read ahead (even, and with a guard where the steps
# overrun K's 128 groups), a partial last workgroup; other formats fall back to one row a thread.
LAYOUTS = [
    {"rows": 64, "perThread": 4, "unroll": 1},
    {"rows": 16, "perThread": 4, "unroll": 2},
    {"rows": 8, "perThread": 2, "unroll": 4},
]
CASES += [norm_case(f, 8192 + 40, lay) for f in ("q4f32", "q4f16") for lay in LAYOUTS] + [
    norm_case("Q4_K", 8192 + 40, LAYOUTS[0])
]
CASES += [glu_case(f, "silu", 4096, lay) for f in ("q4f32", "q4f16") for lay in LAYOUTS]
CASES += [merge_case(f) for f in FORMATS]
CASES += [rope_case(f, [f], [0]) for f in FORMATS]
CASES += [rope_case(f"interleaved-{f}", [f], [0], True) for f in ("f32", "q4f32", "Q8_0")]
CASES += [rope_case("parts-Q4_K-Q6_K", ["Q4_K", "Q6_K"], [0, (HEADS + KV_HEADS) * HD])]
CASES += [rope_case("parts-q4f16-f16-f32", ["q4f16", "f16", "f32"], [0, 2 * HD, (HEADS + KV_HEADS) * HD])]
CASES += [rope_case(f"f16-kv-{f}", [f], [0], kv_f16=True) for f in ("f32", "q4f16", "Q4_K")]
CASES += [rope_case("f16-kv-interleaved-f32", ["f32"], [0], True, kv_f16=True)]
# RoPE in the 4-rows-a-thread layouts (the f16 and f32 parts take them one row a thread): 4
# workgroups a head (Llama-3.2-1B's qkv at K = 2048: its rotate-half partners, 32 rows apart, meet
# only through the pair slot map), one a head with groups read ahead, two heads a workgroup with
# parts whose v rows end in a partial last workgroup (parts [256, 448) and [448, 512)).
ROPE_LAYOUTS = [
    {"rows": 16, "perThread": 4, "unroll": 1},
    {"rows": 64, "perThread": 4, "unroll": 2},
    {"rows": 128, "perThread": 4, "unroll": 1},
]
THIRDS = [0, HEADS * HD, (HEADS + 2 * KV_HEADS - 1) * HD]  # q | k and a v head | a v head
for lay in ROPE_LAYOUTS:
    CASES += [rope_case(f, [f], [0], layout=lay) for f in ("q4f32", "q4f16")]
    CASES += [rope_case("interleaved-q4f32", ["q4f32"], [0], True, layout=lay)]
    CASES += [rope_case("f16-kv-q4f16", ["q4f16"], [0], kv_f16=True, layout=lay)]
    CASES += [rope_case("f16-kv-interleaved-q4f32", ["q4f32"], [0], True, True, lay)]
    CASES += [rope_case("parts-q4f32-q4f16-q4f32", ["q4f32", "q4f16", "q4f32"], THIRDS, layout=lay)]
MIXED = [0, 2 * HD, (HEADS + KV_HEADS) * HD]
CASES += [rope_case("parts-q4f16-f16-f32", ["q4f16", "f16", "f32"], MIXED, layout=ROPE_LAYOUTS[0])]
# headDim 96: the pair rows (576) are 9 workgroups of 64, a workgroup's pairs from two heads. 128
# rows do not divide them: the hook must refuse that layout (gemv.js then runs one row a thread),
# for there a workgroup would hold both pairs and v rows, and 16 v rows (608..623) would be lost.
CASES += [rope_case(f"{f}", [f], [0], head_dim=96, layout=ROPE_LAYOUTS[1]) for f in ("q4f32", "q4f16")]
CASES += [rope_case("interleaved-q4f32", ["q4f32"], [0], True, head_dim=96, layout=ROPE_LAYOUTS[1])]
CASES += [rope_case("refused-q4f32", ["q4f32"], [0], head_dim=96, layout=ROPE_LAYOUTS[2])]


def f16_math(case: Case) -> Case:
    """The case with gemv.js's f16Math (its weights q4f16)."""
    case.f16_math = True
    case.name += "-f16math"
    return case


# f16 arithmetic in the q4f16 GEMV behind every input hook; the wide-N and long-K (128 groups a
# row) layouts of 4 rows a thread, one with groups read ahead, and one row a thread (ropeKv).
F16_MATH_CASES = [
    f16_math(c)
    for c in [
        norm_case("q4f16"),
        norm_case("q4f16", 8192 + 40),
        norm_case("q4f16", 8192 + 40, LAYOUTS[1]),
        glu_case("q4f16", "silu"),
        glu_case("q4f16", "gelu_tanh"),
        glu_case("q4f16", "silu", 4096),
        merge_case("q4f16"),
        rope_case("q4f16", ["q4f16"], [0]),
    ]
]


@pytest.fixture(scope="module")
def gpu_out() -> dict[str, Any]:
    weights = list({id(w): w for c in CASES + F16_MATH_CASES for w, _, _ in c.parts}.values())
    cases = [c.wire(weights) for c in CASES + F16_MATH_CASES]
    try:
        return deno_run({"kind": "fused", "weights": [w.wire for w in weights], "cases": cases})
    except Unavailable as e:
        pytest.skip(str(e))


def rel_err(got: Any, want: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(got, np.float64) - want)) / np.max(np.abs(want)))


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c.name for c in CASES])
def test_fused_gemv_equals_numpy_twin(gpu_out: dict[str, Any], index: int) -> None:
    case, got = CASES[index], gpu_out["cases"][index]
    want = case.expect()
    assert set(got) == set(want)
    for key, value in want.items():
        assert len(got[key]) == value.size, key
        if case.kv_f16 and key in ("kc", "vc"):
            stored = case.cache(got[key]).reshape(-1).astype(np.float64)
            step = np.spacing(np.abs(value).astype(np.float16)).astype(np.float64)
            over = np.abs(stored - value) - step - TOL * np.max(np.abs(value))
            assert np.max(over) <= 0, (key, np.max(over))
        else:
            assert rel_err(got[key], value) < TOL, (key, rel_err(got[key], value))
    if case.hook == "ropeKv":  # only row pos of the caches changed
        for key in ("kc", "vc"):
            rows = case.cache(got[key])
            others = np.delete(np.arange(D["ctx"]), case.pos)
            np.testing.assert_array_equal(rows[others], case.kv_init[others])


F16_U = 2.0**-11
"""The unit roundoff of float16 (half its ulp at 1)."""


@pytest.mark.parametrize("index", range(len(F16_MATH_CASES)), ids=[c.name for c in F16_MATH_CASES])
def test_f16_math_gemv_equals_f16_twin(gpu_out: dict[str, Any], index: int) -> None:
    """The f16-math GEMV against its twin (py_worker/reference/f16math.py) and the f32 one.

    Against the f16 twin within u of max |want|: lavapipe mostly rounds every f16 operation as
    NumPy does, in the twin's order (< 7e-8 apart), but a shader compiler may fuse a multiply
    into an add (one rounding, not two) or reorder a dot's adds, which lavapipe does in the
    unrolled layout (0.36 u apart); a few of a group's ~40 roundings come to well under u, an
    arithmetic other than the twin's to more (f32 math is 1.2-2.4 u away). Against
    the f32 twin, in units of u: each group's sum carries some 40 f16 roundings (inputs,
    products, adds, the scale) of at most u/2 of a partial sum each, random in sign, which come
    to 1.2-2.4 u of max |want| over these cases; the bound 3 u leaves half again as much. Above
    u/8, since the f32 arithmetic is ~1e-7 away (the f16 arithmetic did run); below 3 u, since an
    f16 accumulation across the 128 groups of the K=4096 case measured 4.2 u.
    """
    case, got = F16_MATH_CASES[index], gpu_out["cases"][len(CASES) + index]
    want = case.expect()
    f16 = max(rel_err(got[key], value) for key, value in want.items())  # ropeKv: q and both caches
    f32 = rel_err(got["y"], case.expect(False)["y"])
    print(f"{case.name}: rel err {f16:.2e} vs the f16 twin, {f32:.2e} vs the f32 one ({f32 / F16_U:.2f} u)")
    assert f16 < F16_U
    assert F16_U / 8 < f32 < 3 * F16_U
