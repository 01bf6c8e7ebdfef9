// Embedding lookup: x[t, :] = E[ids[t], :] (* embedScale: Gemma's sqrt(hidden_size)). f32
// tables copy vec4s, f16 tables (q0f16 on an adapter with shader-f16) widen them; q4 tables
// dequantise one 32-wide group per thread (the same group layout as the matmul weights); so do
// ggml tables (a GGUF token_embd tensor's bytes as they are in the file, wgsl/ggml.js).
import { FWD, WG, f32Literal } from "./common.js";
import { ggmlWeights } from "./ggml.js";

/** @typedef {{rowStart?: number, rows?: number | null}} RowRange */

/**
 * @param {string} v
 * @param {number} embedScale
 */
const scaled = (v, embedScale) => (embedScale && embedScale !== 1 ? `${v} * ${f32Literal(embedScale)}` : v);

/**
 * The table row of token t. A table split by rows (larger than one storage binding: llama.js)
 * has one lookup per range {rowStart, rows}: it skips ids outside its range.
 * @param {RowRange} [range]
 */
function row({ rowStart = 0, rows = null } = {}) {
  if (rows === null) return "let id = ids[t];";
  return `if (ids[t] < ${rowStart}u || ids[t] >= ${rowStart + rows}u) { return; }
  let id = ids[t] - ${rowStart}u;`;
}

/**
 * f32 (or, with `f16w`, f16) table [vocab, hidden]; one thread per (token, 4 inputs).
 * @param {{hidden: number, embedScale: number}} d
 * @param {boolean} [f16w]
 * @param {RowRange} [range]
 */
export function embedF32({ hidden, embedScale }, f16w = false, range = {}) {
  const H4 = hidden / 4;
  return `${f16w ? "enable f16;\n" : ""}${FWD}
@group(0) @binding(0) var<uniform> fwd: Fwd;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<vec4<${f16w ? "f16" : "f32"}>>;
@group(0) @binding(3) var<storage, read_write> x: array<vec4<f32>>;
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x / ${H4}u;
  let k = gid.x % ${H4}u;
  if (t >= fwd.n) { return; }
  ${row(range)}
  x[gid.x] = ${scaled(`vec4<f32>(table[id * ${H4}u + k])`, embedScale)};
}`;
}

/**
 * MLC q4 table [vocab, hidden]; one thread per (token, 32-input group).
 * @param {{hidden: number, embedScale: number}} d
 * @param {boolean} [f16] scales are f16
 * @param {RowRange} [range]
 */
export function embedQ4({ hidden, embedScale }, f16 = false, range = {}) {
  const G = hidden / 32;
  return `${f16 ? "enable f16;\n" : ""}${FWD}
@group(0) @binding(0) var<uniform> fwd: Fwd;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> qw: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> qs: array<${f16 ? "f16" : "f32"}>;
@group(0) @binding(4) var<storage, read_write> x: array<vec4<f32>>;
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x / ${G}u;
  let g = gid.x % ${G}u;
  if (t >= fwd.n) { return; }
  ${row(range)}
  let row = id * ${G}u + g;
  let s = f32(qs[row]);
  let w = qw[row];
  for (var j = 0u; j < 4u; j++) {
    let word = w[j];
    let lo = vec4<f32>(vec4<u32>(word, word >> 4u, word >> 8u, word >> 12u) & vec4<u32>(15u));
    let hi = vec4<f32>(vec4<u32>(word >> 16u, word >> 20u, word >> 24u, word >> 28u) & vec4<u32>(15u));
    x[(t * ${G}u + g) * 8u + j * 2u] = ${scaled("(lo - 7.0) * s", embedScale)};
    x[(t * ${G}u + g) * 8u + j * 2u + 1u] = ${scaled("(hi - 7.0) * s", embedScale)};
  }
}`;
}

/**
 * ggml table [vocab, hidden] of ggml type `type`. Bindings [fwd, ids [fwd.n] u32, wq, x [fwd.n,
 * hidden] f32]; one thread per (token, 32-input group): dispatch ceil(n * hidden / 32 / WG).
 * @param {{hidden: number, embedScale: number}} d
 * @param {number} type ggml type id
 */
export function embedGgml({ hidden, embedScale }, type) {
  const G = hidden / 32;
  return `${FWD}
@group(0) @binding(0) var<uniform> fwd: Fwd;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
${ggmlWeights(type, hidden, 2)}
@group(0) @binding(3) var<storage, read_write> x: array<vec4<f32>>;
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x / ${G}u;
  let g = gid.x % ${G}u;
  if (t >= fwd.n) { return; }
  let w = dq32(ids[t], g);
  ${Array.from({ length: 8 }, (_, c) => `x[gid.x * 8u + ${c}u] = ${scaled(`w[${c}]`, embedScale)};`).join("\n  ")}
}`;
}
