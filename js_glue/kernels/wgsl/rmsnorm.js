// RMSNorm, one thread per row: y = x / sqrt(mean(x^2) + eps) * w. Rows are few (tokens), the
// reduction is short, and no workgroup memory keeps it fast on SwiftShader. `accumulate` adds
// the normed row into y instead (Gemma 2's norms on the attention and MLP outputs, then the
// residual add: x += norm(o)). Bindings [fwd, x [n, hidden], w [hidden], y [n, hidden]].
import { FWD } from "./common.js";

/** @param {boolean} accumulate */
const store = (accumulate) => (accumulate ? "y[r * H4 + k] = y[r * H4 + k] + " : "y[r * H4 + k] = ");

/**
 * @param {{hidden: number, eps: number}} d
 * @param {boolean} [accumulate]
 */
export function rmsnorm({ hidden, eps }, accumulate = false) {
  const H4 = hidden / 4;
  return `${FWD}
@group(0) @binding(0) var<uniform> fwd: Fwd;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;
const H4 = ${H4}u;
@compute @workgroup_size(8) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let r = gid.x;
  if (r >= fwd.n) { return; }
  var ss = 0.0;
  for (var k = 0u; k < ${H4}u; k++) { let v = x[r * ${H4}u + k]; ss += dot(v, v); }
  let inv = 1.0 / sqrt(ss / ${hidden}.0 + ${eps.toExponential()});
  for (var k = 0u; k < H4; k++) { ${store(accumulate)}x[r * H4 + k] * inv * w[k]; }
}`;
}

/**
 * The GPU variant: one 64-thread workgroup per row, the sum of squares reduced in workgroup memory.
 * @param {{hidden: number, eps: number}} d
 * @param {boolean} [accumulate]
 */
export function rmsnormWg({ hidden, eps }, accumulate = false) {
  const H4 = hidden / 4;
  return `${FWD}
@group(0) @binding(0) var<uniform> fwd: Fwd;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;
const H4 = ${H4}u;
var<workgroup> red: array<f32, 64>;
@compute @workgroup_size(64) fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let r = wid.x;
  if (r >= fwd.n) { return; }
  let t = lid.x;
  var ss = 0.0;
  for (var k = t; k < ${H4}u; k += 64u) { let v = x[r * ${H4}u + k]; ss += dot(v, v); }
  red[t] = ss;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (t < s) { red[t] += red[t + s]; }
    workgroupBarrier();
  }
  let inv = 1.0 / sqrt(red[0] / ${hidden}.0 + ${eps.toExponential()});
  for (var k = t; k < H4; k += 64u) { ${store(accumulate)}x[r * H4 + k] * inv * w[k]; }
}`;
}
