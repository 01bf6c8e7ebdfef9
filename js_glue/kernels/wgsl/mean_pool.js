// Mean pooling over the sequence: pooled[k] = mean over t < n of x[t, k] (L2 normalisation of
// the short pooled vector happens on the CPU, in float64).
import { FWD, WG } from "./common.js";

/** @param {{hidden: number}} d */
export function meanPool({ hidden }) {
  return `${FWD}
@group(0) @binding(0) var<uniform> fwd: Fwd;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> pooled: array<f32>;
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let k = gid.x;
  if (k >= ${hidden}u) { return; }
  var s = 0.0;
  for (var t = 0u; t < fwd.n; t++) { s += x[t * ${hidden}u + k]; }
  pooled[k] = s / f32(fwd.n);
}`;
}
