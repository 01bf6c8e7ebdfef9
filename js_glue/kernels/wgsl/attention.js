// Causal attention with grouped-query heads, one thread per (query token, head): a single pass
// over the cached keys with an online softmax, the head's output accumulated in registers.
// No workgroup memory or barriers (SwiftShader is slow with both); used for prefill and decode.
// causal = false (BERT) lets every query see all n keys of the sequence. q is scaled by
// attnScale (1/sqrt(headDim) unless the model says otherwise: Gemma 2's query_pre_attn_scalar);
// attnSoftcap (Gemma 2) turns each score s into cap * tanh(s / cap) before the softmax.
// window > 0 (Gemma 3's sliding layers) lets the query at position p see only the keys
// p - window < j <= p (transformers' sliding-window mask); NumPy twin: `windowed` in
// py_worker/reference/llama.py. The caches hold f32, or f16 when d.kvF16 (each key and value
// widened to f32 as it is read: the arithmetic is f32 either way).
import { FWD, TANH, f32Literal } from "./common.js";

/**
 * The score expression after q.k (q already scaled): soft-capped when the model caps it.
 * @param {string} s @param {number | undefined} cap
 */
export const cappedScore = (s, cap) => (cap ? `${f32Literal(cap)} * tanh_safe(${s} / ${f32Literal(cap)})` : s);

/** @param {{heads: number, kvHeads: number, headDim: number, attnScale?: number, attnSoftcap?: number, kvF16?: boolean}} d */
export function attention({ heads, kvHeads, headDim, attnScale, attnSoftcap, kvF16 = false }, causal = true, window = 0) {
  const D4 = headDim / 4;
  const rowLen4 = ((heads + 2 * kvHeads) * headDim) / 4;
  const group = heads / kvHeads;
  const scale = attnScale ?? 1 / Math.sqrt(headDim);
  const T = kvF16 ? "f16" : "f32";
  return `${kvF16 ? "enable f16;\n" : ""}${FWD}
${attnSoftcap ? TANH : ""}
@group(0) @binding(0) var<uniform> fwd: Fwd;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kc: array<vec4<${T}>>;
@group(0) @binding(3) var<storage, read> vc: array<vec4<${T}>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;
@compute @workgroup_size(16) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x / ${heads}u;
  let h = gid.x % ${heads}u;
  if (t >= fwd.n) { return; }
  let g = h / ${group}u;
  var q: array<vec4<f32>, ${D4}>;
  var acc: array<vec4<f32>, ${D4}>;
  for (var d = 0u; d < ${D4}u; d++) {
    q[d] = qkv[t * ${rowLen4}u + h * ${D4}u + d] * ${scale};
    acc[d] = vec4<f32>(0.0);
  }
  var m = -3.0e38;
  var l = 0.0;
  let last = ${causal ? "fwd.pos + t" : "fwd.pos + fwd.n - 1u"};
  let first = ${window ? `select(0u, last + 1u - ${window}u, last + 1u > ${window}u)` : "0u"};
  for (var j = first; j <= last; j++) {
    let kb = (j * ${kvHeads}u + g) * ${D4}u;
    var s = 0.0;
    for (var d = 0u; d < ${D4}u; d++) { s += dot(q[d], vec4<f32>(kc[kb + d])); }
    ${attnSoftcap ? `s = ${cappedScore("s", attnSoftcap)};` : ""}
    let mNew = max(m, s);
    let corr = exp(m - mNew);
    let p = exp(s - mNew);
    l = l * corr + p;
    for (var d = 0u; d < ${D4}u; d++) { acc[d] = acc[d] * corr + p * vec4<f32>(vc[kb + d]); }
    m = mNew;
  }
  for (var d = 0u; d < ${D4}u; d++) { out[(t * ${heads}u + h) * ${D4}u + d] = acc[d] / l; }
}`;
}
