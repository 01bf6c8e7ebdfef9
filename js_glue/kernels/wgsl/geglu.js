// GeGLU on the fused gate_up output (Gemma): act[t, i] = gelu_tanh(gate[t, i]) * up[t, i], with
// GELU's tanh approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) as MLC's Gemma MLP
// and HF's gelu_pytorch_tanh compute it. NumPy twin: gelu_tanh in py_worker/reference/llama.py.
import { FWD, WG, TANH } from "./common.js";

/** @param {{inter: number}} d */
export function geglu({ inter }) {
  const I4 = inter / 4;
  return `${FWD}
@group(0) @binding(0) var<uniform> fwd: Fwd;
@group(0) @binding(1) var<storage, read> gu: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> act: array<vec4<f32>>;
${TANH}
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x / ${I4}u;
  let i = gid.x % ${I4}u;
  if (t >= fwd.n) { return; }
  let g = gu[t * ${2 * I4}u + i];
  let u = gu[t * ${2 * I4}u + ${I4}u + i];
  act[gid.x] = 0.5 * g * (1.0 + tanh4(0.7978845608028654 * (g + 0.044715 * g * g * g))) * u;
}`;
}
