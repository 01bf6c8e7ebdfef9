// y[m, n] (+)= sum_k x[m, k] * W[n, k] (+ bias[n]): every linear layer, lm_head included.
// Register-tiled: each thread owns a TM x TN tile of y and walks K once, with no workgroup
// memory (SwiftShader is very slow with it). Decode uses TM = 1 (a GEMV), prefill TM > 1 so a
// weight group is dequantised once per TM tokens. `accumulate` adds into y (residual add).
// The tile is unrolled here into named scalars: CPU WebGPU backends (lavapipe, SwiftShader)
// keep those in registers, while indexed private arrays end up in memory.
// Weights: f32 [N, K] (or f16 with `f16w`: q0f16 on an adapter with shader-f16, widened per
// vec4 as it is read); or q4 (MLC q4f*_1): words [N, K/8] read as one vec4<u32> per 32-input
// group, scales [N, K/32] as f32, or as f16 when the adapter has shader-f16 (else they are
// widened on load). The scale multiplies the group's dot product once instead of every weight.
// Or ggml (GGUF) blocks: `ggml: <type id>`, the tensor's file bytes as one array<u32>
// (wgsl/ggml.js), 32 inputs of one weight row dequantised at a time. Bindings:
// [fwd, x, w | (qw, qs) | wq, y, (bias)]; x is [fwd.n, K], W is [N, K], bias [N].
// y[m * ldy + yoff + n]: a row stride and a column offset let the parts of one linear (q, k, v
// of different formats) write side by side into one output; bias stays indexed by n.
import { FWD } from "./common.js";
import { ggmlWeights } from "./ggml.js";

export const MATMUL_WG = 64;

/** @param {number} n */
const range = (n) => Array.from({ length: n }, (_, i) => i);

/**
 * @param {number} TM
 * @param {number} TN
 * @param {number} G 32-input groups per row
 */
function q4Inner(TM, TN, G) {
  const rows = range(TM);
  const cols = range(TN);
  const words = range(4).map((c) => {
    const deq = cols.map(
      (j) => `let lo${j} = vec4<f32>((vec4<u32>(w${j}[${c}]) >> SHL) & M4) - 7.0;
        let hi${j} = vec4<f32>((vec4<u32>(w${j}[${c}]) >> SHH) & M4) - 7.0;`,
    );
    const dots = rows.map(
      (i) => `{ let xa = x[xr${i} + g * 8u + ${2 * c}u]; let xb = x[xr${i} + g * 8u + ${2 * c + 1}u];
          ${cols.map((j) => `d${i}_${j} += dot(xa, lo${j}) + dot(xb, hi${j});`).join(" ")} }`,
    );
    return `{ ${deq.join("\n        ")}\n        ${dots.join("\n        ")} }`;
  });
  return `for (var g = 0u; g < ${G}u; g++) {
    ${cols.map((j) => `let s${j} = f32(qs[(n0 + ${j}u) * ${G}u + g]); let w${j} = qw[(n0 + ${j}u) * ${G}u + g];`).join("\n    ")}
    ${rows.flatMap((i) => cols.map((j) => `var d${i}_${j} = 0.0;`)).join(" ")}
    ${words.join("\n    ")}
    ${rows.flatMap((i) => cols.map((j) => `a${i}_${j} += d${i}_${j} * s${j};`)).join(" ")}
  }`;
}

/**
 * @param {number} TM
 * @param {number} TN
 * @param {number} K4 vec4s per row
 */
function f32Inner(TM, TN, K4) {
  const rows = range(TM);
  const cols = range(TN);
  return `for (var k = 0u; k < ${K4}u; k++) {
    ${cols.map((j) => `let w${j} = vec4<f32>(w[(n0 + ${j}u) * ${K4}u + k]);`).join(" ")}
    ${rows.map((i) => `{ let xv = x[xr${i} + k]; ${cols.map((j) => `a${i}_${j} += dot(xv, w${j});`).join(" ")} }`).join("\n    ")}
  }`;
}

/**
 * ggml: per 32-input group, one weight row's 32 values at a time (dq32), dotted with TM tokens.
 * @param {number} TM
 * @param {number} TN
 * @param {number} G 32-input groups per row
 */
function ggmlInner(TM, TN, G) {
  const rows = range(TM);
  /** @param {number} i */
  const dots = (i) => range(8).map((c) => `dot(x[xr${i} + g * 8u + ${c}u], w[${c}])`).join(" + ");
  return `for (var g = 0u; g < ${G}u; g++) {
    ${range(TN)
      .map((j) => `{ let w = dq32(n0 + ${j}u, g);
      ${rows.map((i) => `a${i}_${j} += ${dots(i)};`).join("\n      ")} }`)
      .join("\n    ")}
  }`;
}

/**
 * @param {{K: number, N: number, TM: number, TN: number, q4?: boolean, ggml?: number, f16?: boolean, f16w?: boolean,
 *   bias?: boolean, accumulate?: boolean, ldy?: number, yoff?: number}} shape
 */
export function matmul({ K, N, TM, TN, q4, ggml, f16 = false, f16w = false, bias = false, accumulate = false, ldy = N, yoff = 0 }) {
  const K4 = K / 4;
  const rows = range(TM);
  const cols = range(TN);
  const isGgml = ggml !== undefined && ggml !== null;
  const weights = q4
    ? `@group(0) @binding(2) var<storage, read> qw: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> qs: array<${f16 ? "f16" : "f32"}>;`
    : isGgml
      ? ggmlWeights(ggml, K, 2)
      : `@group(0) @binding(2) var<storage, read> w: array<vec4<${f16w ? "f16" : "f32"}>>;`;
  const yBinding = q4 ? 4 : 3;
  const biasDecl = bias ? `@group(0) @binding(${yBinding + 1}) var<storage, read> b: array<f32>;` : "";
  const inner = q4 ? q4Inner(TM, TN, K / 32) : isGgml ? ggmlInner(TM, TN, K / 32) : f32Inner(TM, TN, K4);
  const store = rows.map(
    (i) => `if (m0 + ${i}u < fwd.n) {
    ${cols
      .map((j) => {
        const o = `(m0 + ${i}u) * ${ldy}u + ${yoff ? `${yoff}u + ` : ""}n0 + ${j}u`;
        const extra = (bias ? ` + b[n0 + ${j}u]` : "") + (accumulate ? ` + y[${o}]` : "");
        return `y[${o}] = a${i}_${j}${extra};`;
      })
      .join("\n    ")}
  }`,
  );
  return `${f16 || f16w ? "enable f16;\n" : ""}${FWD}
@group(0) @binding(0) var<uniform> fwd: Fwd;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
${weights}
@group(0) @binding(${yBinding}) var<storage, read_write> y: array<f32>;
${biasDecl}
const SHL = vec4<u32>(0u, 4u, 8u, 12u);
const SHH = vec4<u32>(16u, 20u, 24u, 28u);
const M4 = vec4<u32>(15u);
@compute @workgroup_size(${MATMUL_WG}) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n0 = gid.x * ${TN}u;
  let m0 = gid.y * ${TM}u;
  if (n0 >= ${N}u || m0 >= fwd.n) { return; }
  ${rows.map((i) => `let xr${i} = min(m0 + ${i}u, fwd.n - 1u) * ${K4}u;`).join("\n  ")}
  ${rows.flatMap((i) => cols.map((j) => `var a${i}_${j} = 0.0;`)).join(" ")}
  ${inner}
  ${store.join("\n  ")}
}`;
}
