// RMSNorm over each q and each k head of the fused qkv rows, in place (Qwen3's q_norm / k_norm,
// applied before RoPE): head h of token t becomes x / sqrt(mean(x^2) + eps) * w, w = qw for the
// q heads and kw for the k heads (both [headDim]); v is left alone. One thread per (token, head):
// dispatch ceil(n * (heads + kvHeads) / WG). NumPy twin: rms_norm over q and k in
// py_worker/reference/llama.py.
import { FWD, WG } from "./common.js";

/** @param {{heads: number, kvHeads: number, headDim: number, eps: number}} d */
export function headRmsnorm({ heads, kvHeads, headDim, eps }) {
  const D4 = headDim / 4;
  const rowLen4 = ((heads + 2 * kvHeads) * headDim) / 4;
  const per = heads + kvHeads;
  return `${FWD}
@group(0) @binding(0) var<uniform> fwd: Fwd;
@group(0) @binding(1) var<storage, read_write> qkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> qw: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> kw: array<vec4<f32>>;
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x / ${per}u;
  let h = gid.x % ${per}u;
  if (t >= fwd.n) { return; }
  let base = t * ${rowLen4}u + h * ${D4}u;
  var ss = 0.0;
  for (var d = 0u; d < ${D4}u; d++) { let v = qkv[base + d]; ss += dot(v, v); }
  let inv = 1.0 / sqrt(ss / ${headDim}.0 + ${eps.toExponential()});
  for (var d = 0u; d < ${D4}u; d++) {
    var w = kw[d];
    if (h < ${heads}u) { w = qw[d]; }
    qkv[base + d] = qkv[base + d] * inv * w;
  }
}`;
}
