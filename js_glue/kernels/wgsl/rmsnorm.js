// RMSNorm, one thread per row: y = x / sqrt(mean(x^2) + eps) * w. Rows are few (tokens), the
// reduction is short, and no workgroup memory keeps it fast on SwiftShader.
import { FWD } from "./common.js";

export function rmsnorm({ hidden, eps }) {
  const H4 = hidden / 4;
  return `${FWD}
@group(0) @binding(0) var<uniform> fwd: Fwd;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;
@compute @workgroup_size(8) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let r = gid.x;
  if (r >= fwd.n) { return; }
  var ss = 0.0;
  for (var k = 0u; k < ${H4}u; k++) { let v = x[r * ${H4}u + k]; ss += dot(v, v); }
  let inv = 1.0 / sqrt(ss / ${hidden}.0 + ${eps.toExponential()});
  for (var k = 0u; k < ${H4}u; k++) { y[r * ${H4}u + k] = x[r * ${H4}u + k] * inv * w[k]; }
}`;
}
