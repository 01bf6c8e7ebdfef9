// y[m, n] (+)= sum_k x[m, k] * W[n, k] (+ bias[n]): every linear layer, lm_head included.
// Register-tiled: each thread owns a TM x TN tile of y and walks K once, with no workgroup
// memory (SwiftShader is very slow with it). Decode uses TM = 1 (a GEMV), prefill TM > 1 so a
// weight group is dequantised once per TM tokens. `accumulate` adds into y (residual add).
// Weights: f32 [N, K]; or q4 (MLC q4f*_1): words [N, K/8] read as one vec4<u32> per 32-input
// group, scales [N, K/32] as f32 (f16 scales are widened on load).
import { FWD } from "./common.js";

export const MATMUL_WG = 64;

export function matmul({ K, N, TM, TN, q4, bias = false, accumulate = false }) {
  const K4 = K / 4;
  const G = K / 32;
  const weights = q4
    ? `@group(0) @binding(2) var<storage, read> qw: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> qs: array<f32>;`
    : `@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;`;
  const yBinding = q4 ? 4 : 3;
  const biasDecl = bias ? `@group(0) @binding(${yBinding + 1}) var<storage, read> b: array<f32>;` : "";
  const inner = q4
    ? `for (var g = 0u; g < ${G}u; g++) {
    for (var j = 0u; j < ${TN}u; j++) {
      let row = (n0 + j) * ${G}u + g;
      let s = qs[row];
      let wq = qw[row];
      for (var c = 0u; c < 4u; c++) {
        let word = wq[c];
        let lo = (vec4<f32>(vec4<u32>(word, word >> 4u, word >> 8u, word >> 12u) & vec4<u32>(15u)) - 7.0) * s;
        let hi = (vec4<f32>(vec4<u32>(word >> 16u, word >> 20u, word >> 24u, word >> 28u) & vec4<u32>(15u)) - 7.0) * s;
        for (var i = 0u; i < ${TM}u; i++) {
          let xb = xrow[i] + g * 8u + c * 2u;
          acc[i * ${TN}u + j] += dot(x[xb], lo) + dot(x[xb + 1u], hi);
        }
      }
    }
  }`
    : `for (var k = 0u; k < ${K4}u; k++) {
    for (var j = 0u; j < ${TN}u; j++) {
      let wv = w[(n0 + j) * ${K4}u + k];
      for (var i = 0u; i < ${TM}u; i++) { acc[i * ${TN}u + j] += dot(x[xrow[i] + k], wv); }
    }
  }`;
  return `${FWD}
@group(0) @binding(0) var<uniform> fwd: Fwd;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
${weights}
@group(0) @binding(${yBinding}) var<storage, read_write> y: array<f32>;
${biasDecl}
@compute @workgroup_size(${MATMUL_WG}) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n0 = gid.x * ${TN}u;
  let m0 = gid.y * ${TM}u;
  if (n0 >= ${N}u || m0 >= fwd.n) { return; }
  var xrow: array<u32, ${TM}>;
  for (var i = 0u; i < ${TM}u; i++) { xrow[i] = min(m0 + i, fwd.n - 1u) * ${K4}u; }
  var acc: array<f32, ${TM * TN}>;
  ${inner}
  for (var i = 0u; i < ${TM}u; i++) {
    if (m0 + i >= fwd.n) { break; }
    for (var j = 0u; j < ${TN}u; j++) {
      let o = (m0 + i) * ${N}u + n0 + j;
      var v = acc[i * ${TN}u + j];
      ${bias ? "v += b[n0 + j];" : ""}
      ${accumulate ? "v += y[o];" : ""}
      y[o] = v;
    }
  }
}`;
}
