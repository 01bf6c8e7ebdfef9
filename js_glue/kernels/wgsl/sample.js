// Sampling, stage 2 of 2, in one workgroup, exactly the rule in py_worker/kernels.py: stage 1
// (sample_blocks.js) has put the masked, biased and penalised logits in work[] and each block's
// best and softmax sum in blocks[]; here the max and the mass come from the blocks, then greedy
// argmax (T == 0) or the temperature softmax -> top-p threshold -> walk the nucleus in id order
// until the running sum exceeds u * mass. Each thread owns one contiguous chunk of ids, so the
// id-order walk is a prefix sum of chunk sums and no thread reads another's storage writes. The
// top-p threshold t is found by a bitwise search on the f32 bit pattern (probabilities are >= 0,
// so bit order = value order): the largest t with sum(p >= t) >= top_p, which is the probability
// of the last id taken in descending order. The sampled id goes to ids[0] (the next step's
// embedding input), its count is bumped, and {token, logprob, top_logprobs} lands in out[step].
import { FWD } from "./common.js";
import { OUT_LOGIT, SAMPLE_BLOCK, SP, reductions } from "./sample_blocks.js";

export const SAMPLE_WG = 256;
export const OUT_STRIDE = 16; // u32 words per step: token, logprob, k, pad, then k (id, logprob)
export const MAX_TOP_LOGPROBS = 5;

/** @param {{vocab: number}} d */
export function sample({ vocab }) {
  const WGS = SAMPLE_WG;
  const CH = Math.ceil(vocab / WGS);
  const NB = Math.ceil(vocab / SAMPLE_BLOCK);
  return `${FWD}
${SP}
${reductions(WGS)}
@group(0) @binding(0) var<uniform> fwd: Fwd;
@group(0) @binding(1) var<uniform> sp: SP;
@group(0) @binding(2) var<storage, read> draws: array<f32>;
@group(0) @binding(3) var<storage, read_write> counts: array<u32>;
@group(0) @binding(4) var<storage, read> work: array<f32>;
@group(0) @binding(5) var<storage, read_write> ids: array<u32>;
@group(0) @binding(6) var<storage, read_write> out: array<u32>;
@group(0) @binding(7) var<storage, read> blocks: array<vec4<u32>>; // stage 1's (best logit, its id, sum, 0)
var<workgroup> found: atomic<u32>;
var<workgroup> lastIn: atomic<u32>;
const NONE = 0xffffffffu;
const CUT = -1e38; // logits at or below this are masked ones (stage 1 gives them ${OUT_LOGIT})

/** Best id of this thread's chunk not in taken[0..k). */
fn chunkBest(lo: u32, hi: u32, taken: array<u32, ${MAX_TOP_LOGPROBS}>, k: u32) -> Best {
  var b = Best(${OUT_LOGIT}, NONE);
  for (var i = lo; i < hi; i++) {
    var skip = false;
    for (var j = 0u; j < k; j++) { if (taken[j] == i) { skip = true; } }
    if (!skip && better(b.v, b.i, work[i], i)) { b = Best(work[i], i); }
  }
  return b;
}

@compute @workgroup_size(${WGS}) fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  let t = lid.x;
  let lo = min(t * ${CH}u, ${vocab}u);
  let hi = min(lo + ${CH}u, ${vocab}u);
  if (t == 0u) { atomicStore(&found, NONE); atomicStore(&lastIn, 0u); }

  // The max (lowest id on ties) and the softmax mass from stage 1's blocks.
  var cb = Best(${OUT_LOGIT}, NONE);
  for (var b = t; b < ${NB}u; b += ${WGS}u) {
    let e = blocks[b];
    if (better(cb.v, cb.i, bitcast<f32>(e.x), e.y)) { cb = Best(bitcast<f32>(e.x), e.y); }
  }
  let best = reduceBest(t, cb.v, cb.i);
  let mx = best.v;
  let greedy = sp.temperature == 0.0;
  let invT = select(1.0 / sp.temperature, 1.0, greedy);
  var z = 0.0;
  for (var b = t; b < ${NB}u; b += ${WGS}u) {
    let e = blocks[b];
    z += bitcast<f32>(e.z) * exp((bitcast<f32>(e.x) - mx) * invT);
  }
  let Z = reduceSum(t, z);
  let logZ = log(Z);

  var tok = best.i;
  if (!greedy) {
    // 4: top-p threshold (bit pattern of the smallest probability in the nucleus).
    var thr = 0u;
    if (sp.top_p < 1.0) {
      for (var b = 30i; b >= 0i; b--) {
        let cand = thr | (1u << u32(b));
        var a = 0.0;
        for (var i = lo; i < hi; i++) {
          let p = exp((work[i] - mx) * invT) / Z;
          if (bitcast<u32>(p) >= cand && work[i] > CUT) { a += p; }
        }
        if (reduceSum(t, a) >= sp.top_p) { thr = cand; }
      }
    }
    // 5: running sum over the nucleus in id order; chunk sums scanned across threads.
    var cs = 0.0;
    for (var i = lo; i < hi; i++) {
      let p = exp((work[i] - mx) * invT) / Z;
      if (bitcast<u32>(p) >= thr && work[i] > CUT) { cs += p; }
    }
    rf[t] = cs;
    workgroupBarrier();
    for (var off = 1u; off < ${WGS}u; off <<= 1u) {
      var add = 0.0;
      if (t >= off) { add = rf[t - off]; }
      workgroupBarrier();
      rf[t] += add;
      workgroupBarrier();
    }
    let mass = rf[${WGS - 1}u];
    let goal = draws[fwd.step] * mass;
    var run = rf[t] - cs;
    var mine = NONE;
    var lastMine = 0u;
    for (var i = lo; i < hi; i++) {
      let p = exp((work[i] - mx) * invT) / Z;
      if (bitcast<u32>(p) >= thr && work[i] > CUT) {
        run += p;
        lastMine = i;
        if (run > goal && mine == NONE) { mine = i; }
      }
    }
    atomicMin(&found, mine);
    atomicMax(&lastIn, lastMine);
    workgroupBarrier();
    let f = atomicLoad(&found);
    tok = select(f, atomicLoad(&lastIn), f == NONE);
  }

  // logprobs (T = 1 when greedy) and the top-k alternatives (allowed ids only: masked ones
  // come last in descending order, so k counts the allowed ones among the k best).
  var taken: array<u32, ${MAX_TOP_LOGPROBS}>;
  var k = 0u;
  for (var r = 0u; r < ${MAX_TOP_LOGPROBS}u; r++) {
    if (r >= sp.top_k) { break; }
    let c = chunkBest(lo, hi, taken, r);
    let bb = reduceBest(t, c.v, c.i);
    taken[r] = bb.i;
    if (bb.v > CUT) { k = r + 1u; }
    if (t == 0u) {
      out[fwd.step * ${OUT_STRIDE}u + 4u + 2u * r] = bb.i;
      out[fwd.step * ${OUT_STRIDE}u + 5u + 2u * r] = bitcast<u32>((bb.v - mx) * invT - logZ);
    }
  }
  storageBarrier();
  workgroupBarrier();
  if (t == 0u) {
    out[fwd.step * ${OUT_STRIDE}u] = tok;
    out[fwd.step * ${OUT_STRIDE}u + 1u] = bitcast<u32>((work[tok] - mx) * invT - logZ);
    out[fwd.step * ${OUT_STRIDE}u + 2u] = k;
    ids[0] = tok;
    counts[tok] += 1u;
  }
}`;
}
