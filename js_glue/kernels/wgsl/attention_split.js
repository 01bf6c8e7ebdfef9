// Decode attention for real GPUs (flash-decoding): the cached keys are split into 64-key
// chunks, one workgroup per (head, chunk) scores its keys in parallel, softmaxes them locally
// and writes (max, sum, weighted V) to a scratch buffer; a second kernel merges the chunks of
// each head. The one-thread-per-head kernel (attention.js) walks all keys serially, which is
// fine on a CPU but leaves a GPU idle. Grouped-query heads as in attention.js; one query token.
// Scale, soft-cap and sliding window as in attention.js: with a window, the keys before it
// score nothing (a chunk wholly before it writes max -3e38 and sum 0, which the merge weighs 0).
// f16 caches (d.kvF16) as in attention.js: widened to f32 as they are read.
import { FWD, TANH } from "./common.js";
import { cappedScore } from "./attention.js";

export const SPLIT = 64;

/** @param {{heads: number, kvHeads: number, headDim: number, ctx: number, attnScale?: number, attnSoftcap?: number, kvF16?: boolean}} d */
export function attentionPartial({ heads, kvHeads, headDim, ctx, attnScale, attnSoftcap, kvF16 = false }, window = 0) {
  const D4 = headDim / 4;
  const scale = attnScale ?? 1 / Math.sqrt(headDim);
  const group = heads / kvHeads;
  const stride = headDim + 2;
  const S = Math.ceil(ctx / SPLIT);
  const R = Math.max(1, Math.floor(SPLIT / D4)); // key strides of the weighted V
  const T = kvF16 ? "f16" : "f32";
  return `${kvF16 ? "enable f16;\n" : ""}${FWD}
@group(0) @binding(0) var<uniform> fwd: Fwd;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kc: array<vec4<${T}>>;
@group(0) @binding(3) var<storage, read> vc: array<vec4<${T}>>;
@group(0) @binding(4) var<storage, read_write> part: array<f32>;
${attnSoftcap ? TANH : ""}
var<workgroup> red: array<f32, ${SPLIT}>;
var<workgroup> p: array<f32, ${SPLIT}>;
var<workgroup> ov: array<vec4<f32>, ${SPLIT}>;
@compute @workgroup_size(${SPLIT}) fn main(@builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>) {
  let h = wid.x;
  let s = wid.y;
  let len = fwd.pos + 1u;
  if (s * ${SPLIT}u >= len) { return; }
  let first = ${window ? `select(0u, len - ${window}u, len > ${window}u)` : "0u"};
  let t = lid.x;
  let j = s * ${SPLIT}u + t;
  let g = h / ${group}u;
  var score = -3.0e38;
  if (j < len && j >= first) {
    var acc = 0.0;
    for (var d = 0u; d < ${D4}u; d++) { acc += dot(qkv[h * ${D4}u + d], vec4<f32>(kc[(j * ${kvHeads}u + g) * ${D4}u + d])); }
    score = ${cappedScore(`acc * ${scale}`, attnSoftcap)};
  }
  red[t] = score;
  workgroupBarrier();
  for (var w = ${SPLIT / 2}u; w > 0u; w >>= 1u) {
    if (t < w) { red[t] = max(red[t], red[t + w]); }
    workgroupBarrier();
  }
  let m = red[0];
  workgroupBarrier();
  var e = 0.0;
  if (j < len && j >= first) { e = exp(score - m); }
  p[t] = e;
  red[t] = e;
  workgroupBarrier();
  for (var w = ${SPLIT / 2}u; w > 0u; w >>= 1u) {
    if (t < w) { red[t] += red[t + w]; }
    workgroupBarrier();
  }
  let base = (h * ${S}u + s) * ${stride}u;
  if (t == 0u) { part[base] = m; part[base + 1u] = red[0]; }
  // Weighted V: thread t adds vec4 column t % D4 over every ${R}th key from t / D4 on, so all
  // the workgroup's threads load V rows at once; then the ${R} sums of each column are added.
  let c = t % ${D4}u;
  let r = t / ${D4}u;
  var o = vec4<f32>(0.0);
  if (r < ${R}u) {
    let n = min(len - s * ${SPLIT}u, ${SPLIT}u);
    for (var k = r; k < n; k += ${R}u) { o += p[k] * vec4<f32>(vc[((s * ${SPLIT}u + k) * ${kvHeads}u + g) * ${D4}u + c]); }
  }
  ov[t] = o;
  workgroupBarrier();
  if (t < ${D4}u) {
    for (var q = 1u; q < ${R}u; q++) { o += ov[q * ${D4}u + t]; }
    part[base + 2u + t * 4u] = o.x;
    part[base + 3u + t * 4u] = o.y;
    part[base + 4u + t * 4u] = o.z;
    part[base + 5u + t * 4u] = o.w;
  }
}`;
}

/** @param {{heads: number, headDim: number, ctx: number}} d */
export function attentionCombine({ heads, headDim, ctx }) {
  const stride = headDim + 2;
  const S = Math.ceil(ctx / SPLIT);
  return `${FWD}
@group(0) @binding(0) var<uniform> fwd: Fwd;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let h = gid.x / ${headDim}u;
  let d = gid.x % ${headDim}u;
  if (h >= ${heads}u) { return; }
  let n = (fwd.pos + ${SPLIT}u) / ${SPLIT}u;
  var m = -3.0e38;
  for (var s = 0u; s < n; s++) { m = max(m, part[(h * ${S}u + s) * ${stride}u]); }
  var l = 0.0;
  var o = 0.0;
  for (var s = 0u; s < n; s++) {
    let b = (h * ${S}u + s) * ${stride}u;
    let c = exp(part[b] - m);
    l += part[b + 1u] * c;
    o += part[b + 2u + d] * c;
  }
  out[gid.x] = o / l;
}`;
}
