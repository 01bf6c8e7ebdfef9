// GEMV input hook: RMSNorm folded into the GEMV that follows it (qkv, gate_up, lm_head). Each
// workgroup reduces x's sum of squares itself (every workgroup reads x once more: 1/ROWS of its
// weight reads) and reads x[k] * inv * w[k] instead of a normed buffer. Bindings: 1 = x [K],
// `first` = the norm's weights w [K]. NumPy twin: norm_linear in py_worker/reference/fused.py.
import { GEMV_THREADS } from "./gemv.js";

/** @param {{hidden: number, eps: number}} d @returns {import("./gemv.js").GemvInput} */
export function normInput({ hidden, eps }) {
  const H4 = hidden / 4;
  return {
    decl: (first) => `@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(${first}) var<storage, read> nw: array<vec4<f32>>;
var<workgroup> red: array<f32, ${GEMV_THREADS}>;
var<private> inv: f32;`,
    bindings: 1,
    setup: `var ss = 0.0;
  for (var k = tid; k < ${H4}u; k += THREADS) { let v = x[k]; ss += dot(v, v); }
  red[tid] = ss;
  workgroupBarrier();
  for (var s = THREADS / 2u; s > 0u; s >>= 1u) {
    if (tid < s) { red[tid] += red[tid + s]; }
    workgroupBarrier();
  }
  inv = 1.0 / sqrt(red[0] / ${hidden}.0 + ${eps.toExponential()});`,
    x: (i) => `(x[${i}] * inv * nw[${i}])`,
  };
}
