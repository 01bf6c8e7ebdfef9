// GEMV input hook: the gated activation folded into the down projection's input reads. Binding 1
// is the fused gate_up output [2 * inter] (gate, then up); input i is act(gate[i]) * up[i], with
// act = SiLU (SwiGLU, as swiglu.js) or GELU's tanh form (GeGLU, as geglu.js), computed where the
// GEMV reads it. NumPy twin: glu_linear in py_worker/reference/fused.py.
import { TANH } from "./common.js";

/** @param {{inter: number, act: string}} d @returns {import("./gemv.js").GemvInput} */
export function gluInput({ inter, act }) {
  const I4 = inter / 4;
  const gelu = act === "gelu_tanh";
  const f = gelu ? "0.5 * g * (1.0 + tanh4(0.7978845608028654 * (g + 0.044715 * g * g * g)))" : "g / (1.0 + exp(-g))";
  return {
    decl: () => `@group(0) @binding(1) var<storage, read> gu: array<vec4<f32>>;
${gelu ? TANH : ""}
fn glu(i: u32) -> vec4<f32> { let g = gu[i]; return ${f} * gu[${I4}u + i]; }`,
    bindings: 0,
    setup: "",
    x: (i) => `glu(${i})`,
  };
}
