// Exact (erf) GELU in place, as BERT's hidden_act "gelu" means. WGSL has no erf: it uses
// Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), the same formula as the NumPy reference.
import { FWD, WG } from "./common.js";

/** @param {{inter: number}} d */
export function gelu({ inter }) {
  const I4 = inter / 4;
  return `${FWD}
@group(0) @binding(0) var<uniform> fwd: Fwd;
@group(0) @binding(1) var<storage, read_write> h: array<vec4<f32>>;
fn erf(x: vec4<f32>) -> vec4<f32> {
  let a = abs(x);
  let t = 1.0 / (1.0 + 0.3275911 * a);
  let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  return sign(x) * (1.0 - poly * exp(-a * a));
}
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x >= fwd.n * ${I4}u) { return; }
  let v = h[gid.x];
  h[gid.x] = 0.5 * v * (1.0 + erf(v * 0.7071067811865476));
}`;
}
