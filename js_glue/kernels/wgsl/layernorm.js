// LayerNorm in place, one thread per row: x = (x - mean) / sqrt(var + eps) * w + b (BERT).
import { FWD } from "./common.js";

/** @param {{hidden: number, eps: number}} d */
export function layernorm({ hidden, eps }) {
  const H4 = hidden / 4;
  return `${FWD}
@group(0) @binding(0) var<uniform> fwd: Fwd;
@group(0) @binding(1) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b: array<vec4<f32>>;
@compute @workgroup_size(8) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let r = gid.x;
  if (r >= fwd.n) { return; }
  var s = vec4<f32>(0.0);
  for (var k = 0u; k < ${H4}u; k++) { s += x[r * ${H4}u + k]; }
  let mean = (s.x + s.y + s.z + s.w) / ${hidden}.0;
  var v = 0.0;
  for (var k = 0u; k < ${H4}u; k++) { let d = x[r * ${H4}u + k] - mean; v += dot(d, d); }
  let inv = 1.0 / sqrt(v / ${hidden}.0 + ${eps.toExponential()});
  for (var k = 0u; k < ${H4}u; k++) { x[r * ${H4}u + k] = (x[r * ${H4}u + k] - mean) * inv * w[k] + b[k]; }
}`;
}
