// Sampling, stage 1 of 2: the whole vocabulary at once, one workgroup per block of BLOCK ids.
// Each id gets the grammar mask (sp.has_mask: an id whose bit is 0 in mask[] is out, its logit
// "-inf"), the logit bias and the penalties (counts of generated ids) into work[]; each block
// writes its best (logit, id), lowest id on ties, and the sum of exp((work - best) / T) over its
// ids (T = 1 when greedy) to blocks[]. Stage 2 (sample.js), one workgroup, then starts from
// vocab / BLOCK partials: the max is the best of the blocks' bests and the softmax mass is
// sum_b s_b * exp((best_b - max) / T). A block whose ids are all masked has best OUT, which
// exp((OUT - max) / T) scales to 0. Before this stage existed one workgroup walked all
// 151,936 ids of a Qwen2 vocabulary three times for a greedy token: ~15% of the H200's decode.

/** The sampling knobs' uniform (llama.js #prepareSampling writes it). */
export const SP = `struct SP { temperature: f32, top_p: f32, freq: f32, pres: f32, rep: f32, has_bias: u32, top_k: u32, has_mask: u32 }`;
/** A masked id's logit: exp((OUT - max) / T) is 0, and no allowed id is below it. */
export const OUT_LOGIT = "-3.4e38";

/**
 * WGSL both stages share: `Best` (a logit and its id; `better` prefers the larger logit, then the
 * lower id) and workgroup reductions of a sum and of a Best over `wgs` threads (every thread
 * calls them, in uniform control flow; each returns the same value to every thread).
 * @param {number} wgs
 */
export const reductions = (wgs) => `struct Best { v: f32, i: u32 }
var<workgroup> rf: array<f32, ${wgs}>;
var<workgroup> ru: array<u32, ${wgs}>;

fn better(av: f32, ai: u32, bv: f32, bi: u32) -> bool { return bv > av || (bv == av && bi < ai); }

fn reduceSum(t: u32, v: f32) -> f32 {
  rf[t] = v;
  workgroupBarrier();
  for (var s = ${wgs / 2}u; s > 0u; s >>= 1u) {
    if (t < s) { rf[t] += rf[t + s]; }
    workgroupBarrier();
  }
  let r = rf[0];
  workgroupBarrier();
  return r;
}

fn reduceBest(t: u32, v: f32, i: u32) -> Best {
  rf[t] = v;
  ru[t] = i;
  workgroupBarrier();
  for (var s = ${wgs / 2}u; s > 0u; s >>= 1u) {
    if (t < s && better(rf[t], ru[t], rf[t + s], ru[t + s])) { rf[t] = rf[t + s]; ru[t] = ru[t + s]; }
    workgroupBarrier();
  }
  let r = Best(rf[0], ru[0]);
  workgroupBarrier();
  return r;
}`;

export const SAMPLE_BLOCK_WG = 256;
export const SAMPLE_PER_THREAD = 4;
/** Ids per block (one workgroup's): stage 2 reduces ceil(vocab / BLOCK) of them. */
export const SAMPLE_BLOCK = SAMPLE_BLOCK_WG * SAMPLE_PER_THREAD;

/** @param {{vocab: number}} d */
export function sampleBlocks({ vocab }) {
  const WGS = SAMPLE_BLOCK_WG;
  return `${SP}
${reductions(WGS)}
@group(0) @binding(0) var<uniform> sp: SP;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> counts: array<u32>;
@group(0) @binding(4) var<storage, read> mask: array<u32>;
@group(0) @binding(5) var<storage, read_write> work: array<f32>;
@group(0) @binding(6) var<storage, read_write> blocks: array<vec4<u32>>; // (best logit, its id, sum, 0)
const NONE = 0xffffffffu;
const OUT = ${OUT_LOGIT};

fn allowed(i: u32) -> bool { return sp.has_mask == 0u || (mask[i >> 5u] & (1u << (i & 31u))) != 0u; }

@compute @workgroup_size(${WGS}) fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let t = lid.x;
  let base = wid.x * ${SAMPLE_BLOCK}u;
  var l: array<f32, ${SAMPLE_PER_THREAD}>;
  var b = Best(OUT, NONE);
  for (var j = 0u; j < ${SAMPLE_PER_THREAD}u; j++) {
    let i = base + j * ${WGS}u + t; // neighbouring threads read neighbouring ids
    l[j] = OUT;
    if (i >= ${vocab}u) { continue; }
    if (allowed(i)) {
      var x = logits[i];
      if (sp.has_bias != 0u) { x += bias[i]; }
      let c = counts[i];
      if (c > 0u) {
        if (x > 0.0) { x = x / sp.rep; } else { x = x * sp.rep; }
        x -= sp.freq * f32(c) + sp.pres;
      }
      l[j] = x;
    }
    work[i] = l[j];
    if (better(b.v, b.i, l[j], i)) { b = Best(l[j], i); }
  }
  let best = reduceBest(t, b.v, b.i);
  let mx = best.v;
  let invT = select(1.0 / sp.temperature, 1.0, sp.temperature == 0.0);
  var z = 0.0;
  for (var j = 0u; j < ${SAMPLE_PER_THREAD}u; j++) {
    if (base + j * ${WGS}u + t < ${vocab}u) { z += exp((l[j] - mx) * invT); }
  }
  let zs = reduceSum(t, z);
  if (t == 0u) { blocks[wid.x] = vec4<u32>(bitcast<u32>(mx), best.i, bitcast<u32>(zs), 0u); }
}`;
}
