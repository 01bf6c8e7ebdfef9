// SwiGLU on the fused gate_up output: act[t, i] = silu(gate[t, i]) * up[t, i].
import { FWD, WG } from "./common.js";

/** @param {{inter: number}} d */
export function swiglu({ inter }) {
  const I4 = inter / 4;
  return `${FWD}
@group(0) @binding(0) var<uniform> fwd: Fwd;
@group(0) @binding(1) var<storage, read> gu: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> act: array<vec4<f32>>;
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x / ${I4}u;
  let i = gid.x % ${I4}u;
  if (t >= fwd.n) { return; }
  let g = gu[t * ${2 * I4}u + i];
  let u = gu[t * ${2 * I4}u + ${I4}u + i];
  act[gid.x] = g / (1.0 + exp(-g)) * u;
}`;
}
