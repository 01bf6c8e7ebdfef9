// Logit soft-capping in place (Gemma 2's final_logit_softcapping): y = cap * tanh(y / cap), which
// keeps the order of the logits and bounds them by cap. The attention scores' cap is applied
// inside attention.js / attention_split.js. NumPy twin: softcap in py_worker/reference/llama.py.
import { WG, TANH, f32Literal } from "./common.js";

/**
 * @param {{vocab: number}} d
 * @param {number} cap
 */
export function softcap({ vocab }, cap) {
  return `@group(0) @binding(0) var<storage, read_write> y: array<f32>;
${TANH}
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x >= ${vocab}u) { return; }
  y[gid.x] = ${f32Literal(cap)} * tanh_safe(y[gid.x] / ${f32Literal(cap)});
}`;
}
