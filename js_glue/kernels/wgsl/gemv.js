// Decode GEMV for real GPUs: y[n] (+)= sum_k x[k] * W[n, k] (+ bias[n]) for one token.
// A workgroup of ROWS x 32 threads owns ROWS output rows; the 32 threads of a row split K
// (one 32-input group per thread per step, so a row's weights are read as contiguous 512-byte
// runs) and add their partial sums in workgroup memory. Many workgroups in flight keep the
// memory bus busy, which the one-thread-per-row tiles of matmul.js cannot do on a GPU. The CPU
// backends (lavapipe, SwiftShader) use matmul.js instead: barriers are slow there.
// Weights as in matmul.js: f32 (f16 with `f16w`), MLC q4, or ggml blocks (`ggml: <type id>`, wgsl/ggml.js);
// bindings [fwd, x, w | (qw, qs) | wq, y, (bias)]; x is [K], W [N, K], bias [N]. Output
// y[yoff + n] (matmul's `ldy` is ignored here: one token has one output row).
import { FWD } from "./common.js";
import { ggmlWeights } from "./ggml.js";

export const GEMV_ROWS = 8;
const LANES = 32;

/**
 * @param {{K: number, N: number, q4?: boolean, ggml?: number, f16?: boolean, f16w?: boolean, bias?: boolean,
 *   accumulate?: boolean, yoff?: number}} shape
 */
export function gemv({ K, N, q4, ggml, f16 = false, f16w = false, bias = false, accumulate = false, yoff = 0 }) {
  const K4 = K / 4;
  const G = K / 32;
  const isGgml = ggml !== undefined && ggml !== null;
  const weights = q4
    ? `@group(0) @binding(2) var<storage, read> qw: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> qs: array<${f16 ? "f16" : "f32"}>;`
    : isGgml
      ? ggmlWeights(ggml, K, 2)
      : `@group(0) @binding(2) var<storage, read> w: array<vec4<${f16w ? "f16" : "f32"}>>;`;
  const yBinding = q4 ? 4 : 3;
  const biasDecl = bias ? `@group(0) @binding(${yBinding + 1}) var<storage, read> b: array<f32>;` : "";
  const partial = q4
    ? `for (var g = lane; g < ${G}u; g += ${LANES}u) {
      let wq = qw[row * ${G}u + g];
      var d = 0.0;
      for (var c = 0u; c < 4u; c++) {
        let lo = vec4<f32>((vec4<u32>(wq[c]) >> SHL) & M4) - 7.0;
        let hi = vec4<f32>((vec4<u32>(wq[c]) >> SHH) & M4) - 7.0;
        d += dot(x[g * 8u + c * 2u], lo) + dot(x[g * 8u + c * 2u + 1u], hi);
      }
      acc += d * f32(qs[row * ${G}u + g]);
    }`
    : isGgml
      ? `for (var g = lane; g < ${G}u; g += ${LANES}u) {
      let w = dq32(row, g);
      acc += ${Array.from({ length: 8 }, (_, c) => `dot(x[g * 8u + ${c}u], w[${c}])`).join(" + ")};
    }`
      : `for (var k = lane; k < ${K4}u; k += ${LANES}u) { acc += dot(x[k], vec4<f32>(w[row * ${K4}u + k])); }`;
  const o = yoff ? `${yoff}u + row` : "row";
  return `${f16 || f16w ? "enable f16;\n" : ""}${FWD}
@group(0) @binding(0) var<uniform> fwd: Fwd;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
${weights}
@group(0) @binding(${yBinding}) var<storage, read_write> y: array<f32>;
${biasDecl}
const SHL = vec4<u32>(0u, 4u, 8u, 12u);
const SHH = vec4<u32>(16u, 20u, 24u, 28u);
const M4 = vec4<u32>(15u);
var<workgroup> part: array<f32, ${GEMV_ROWS * LANES}>;
@compute @workgroup_size(${LANES}, ${GEMV_ROWS}) fn main(@builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>) {
  if (fwd.n == 0u) { return; } // uniform: also keeps the shared Fwd binding in the layout
  let lane = lid.x;
  let row = wid.x * ${GEMV_ROWS}u + lid.y;
  var acc = 0.0;
  if (row < ${N}u) {
    ${partial}
  }
  let slot = lid.y * ${LANES}u;
  part[slot + lane] = acc;
  workgroupBarrier();
  for (var s = ${LANES / 2}u; s > 0u; s >>= 1u) {
    if (lane < s) { part[slot + lane] += part[slot + lane + s]; }
    workgroupBarrier();
  }
  if (lane == 0u && row < ${N}u) {
    y[${o}] = part[slot]${bias ? " + b[row]" : ""}${accumulate ? ` + y[${o}]` : ""};
  }
}`;
}
