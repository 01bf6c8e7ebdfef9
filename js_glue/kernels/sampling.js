// The sampling rule of py_worker/kernels.py on the host, for the backends that read logits back
// (mlc.js, wasm.js). mlc: steps 1-2 (logit bias and penalties) run on the GPU through the model
// library's own `apply_logit_bias_inplace` and `apply_penalty_inplace` (`penaltyPlan` says what
// to upload); wasm: they run here (`processLogits`). Steps 3-5 (temperature, nucleus, the walk in
// id order) run here in f64 (`sampleProcessed`), because MLC's `argsort_probs` /
// `sample_with_top_p` walk the nucleus in probability order, which is a different rule, and its
// softmax is f32.

/**
 * One sampling step's parameters as py_worker/kernels.py SamplingParams.to_wire sends them (a
 * missing field takes its neutral value); `grammar` names a matcher (grammar.js), `uniforms` the
 * draws in [0, 1), one per step.
 * @typedef {{
 *   temperature?: number, top_p?: number, frequency_penalty?: number, presence_penalty?: number,
 *   repetition_penalty?: number, logit_bias?: [number, number][], history?: number[],
 *   uniforms?: number[], logprobs?: boolean, top_logprobs?: number, grammar?: number | null,
 * }} SampleParams
 */
/**
 * One sampled id, with its log-probability and the most likely ids' when params.logprobs is set;
 * `ended` is a grammar's end, set by the mlc backend's sampler before its ABI call drops it.
 * @typedef {{token: number, logprob?: number, top_logprobs?: [number, number][], ended?: boolean}} Sampled
 */

/** Counts of each id in `history`, ascending id order. @param {number[] | undefined} history */
function counts(history) {
  /** @type {Map<number, number>} */
  const c = new Map();
  for (const t of history || []) c.set(t, (c.get(t) || 0) + 1);
  return [...c.entries()].sort((a, b) => a[0] - b[0]);
}

/**
 * What steps 1-2 upload. MLC's penalty kernel subtracts presence + count * frequency first and
 * divides by the repetition penalty second; the rule wants the reverse order. So the kernel runs
 * with penalties (0, 0, repetition) only, and frequency/presence go in as a second logit bias of
 * -(frequency * count + presence), which is the rule's subtraction exactly in f32.
 * Returns {bias: {ids, values} | null, repetition: {ids, counts, penalty} | null, penalty: {ids, values} | null}.
 * @param {SampleParams} params
 */
export function penaltyPlan(params) {
  const bias = (params.logit_bias || []).filter(([, v]) => Number(v) !== 0);
  const seen = counts(params.history);
  const rep = Number(params.repetition_penalty ?? 1);
  const freq = Number(params.frequency_penalty || 0);
  const pres = Number(params.presence_penalty || 0);
  return {
    bias: bias.length
      ? { ids: Int32Array.from(bias, ([t]) => t), values: Float32Array.from(bias, ([, v]) => v) }
      : null,
    repetition:
      seen.length && rep !== 1
        ? { ids: Int32Array.from(seen, ([t]) => t), counts: Int32Array.from(seen, ([, c]) => c), penalty: rep }
        : null,
    penalty:
      seen.length && (freq !== 0 || pres !== 0)
        ? { ids: Int32Array.from(seen, ([t]) => t), values: Float32Array.from(seen, ([, c]) => -(freq * c + pres)) }
        : null,
  };
}

/**
 * Steps 1-2 in f32 on host logits: the logit bias, then for each id generated `c > 0` times the
 * repetition penalty (divide a positive logit, multiply a negative one) and the subtraction of
 * frequency * c + presence. Returns a new Float32Array.
 * @param {Float32Array} logits
 * @param {SampleParams} params
 */
export function processLogits(logits, params) {
  const out = Float32Array.from(logits);
  for (const [id, b] of params.logit_bias || []) if (id >= 0 && id < out.length) out[id] = Math.fround(out[id] + Number(b));
  const rep = Math.fround(Number(params.repetition_penalty ?? 1));
  const freq = Number(params.frequency_penalty || 0);
  const pres = Number(params.presence_penalty || 0);
  for (const [id, c] of counts(params.history)) {
    if (id < 0 || id >= out.length) continue;
    const l = out[id];
    const penalised = l > 0 ? Math.fround(l / rep) : Math.fround(l * rep);
    out[id] = Math.fround(penalised - Math.fround(freq * c + pres));
  }
  return out;
}

/** log-softmax of `x` in f64. @param {Float32Array} x */
function logSoftmax(x) {
  let max = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i] > max) max = x[i];
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += Math.exp(x[i] - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] - lse;
  return out;
}

/**
 * Descending probability, ties by ascending id: the reference's stable argsort of -probs.
 * @param {Float64Array} probs @returns {(a: number, b: number) => number}
 */
const byProb = (probs) => (a, b) => probs[b] - probs[a] || a - b;

/**
 * Step 4's nucleus as a mask: every id with probability >= the cut-off. top_p >= 1 keeps all.
 * Only ids above a threshold whose mass already reaches top_p are sorted: the descending walk
 * crosses top_p among them, in the same order and with the same sums as a full sort.
 * @param {Float64Array} probs @param {number} topP
 */
function nucleus(probs, topP) {
  const mask = new Uint8Array(probs.length).fill(1);
  if (!(topP < 1)) return mask;
  let thr = probs.reduce((a, b) => (b > a ? b : a), 0);
  /** @type {number[]} */
  let ids = [];
  for (;;) {
    thr /= 2;
    ids = [];
    let mass = 0;
    for (let i = 0; i < probs.length; i++) {
      if (probs[i] >= thr) {
        ids.push(i);
        mass += probs[i];
      }
    }
    if (mass >= topP || thr === 0 || ids.length === probs.length) break;
  }
  if (ids.length === probs.length || thr === 0) ids = Array.from(probs.keys());
  ids.sort(byProb(probs));
  let run = 0;
  let cut = probs[ids[ids.length - 1]];
  for (const id of ids) {
    run += probs[id];
    if (run >= topP) {
      cut = probs[id];
      break;
    }
  }
  for (let i = 0; i < probs.length; i++) mask[i] = probs[i] >= cut ? 1 : 0;
  return mask;
}

/**
 * Step 5: the first nucleus id (ascending) whose running sum exceeds u * mass.
 * @param {Float64Array} probs @param {Uint8Array} mask @param {number} u
 */
function walk(probs, mask, u) {
  let mass = 0;
  let last = -1;
  for (let i = 0; i < probs.length; i++) {
    if (mask[i]) {
      mass += probs[i];
      last = i;
    }
  }
  let run = 0;
  for (let i = 0; i < probs.length; i++) {
    if (!mask[i]) continue;
    run += probs[i];
    if (run > u * mass) return i;
  }
  return last;
}

/**
 * The k most likely ids (ties: lower id first) with their log-probabilities, in one pass.
 * @param {Float64Array} lps @param {number} k @returns {[number, number][]}
 */
function topLogprobs(lps, k) {
  /** @type {number[]} */
  const top = [];
  for (let i = 0; i < lps.length && k > 0; i++) {
    if (top.length === k && !(lps[i] > lps[top[k - 1]])) continue;
    let at = top.length === k ? k - 1 : top.length;
    while (at > 0 && lps[i] > lps[top[at - 1]]) at--;
    top.splice(at, 0, i);
    if (top.length > k) top.pop();
  }
  return top.map((i) => [i, lps[i]]);
}

/**
 * Steps 3-5 on processed f32 logits (after bias and penalties) with one uniform draw; with
 * `allowed` (a grammar's bitmask, grammar.js) step 0 first: a masked id's logit is -Infinity.
 * Returns {token} plus {logprob, top_logprobs} when params.logprobs is set.
 * @param {Float32Array} logits
 * @param {SampleParams} params
 * @param {number} uniform
 * @param {Uint32Array | null} [allowed]
 * @returns {Sampled}
 */
export function sampleProcessed(logits, params, uniform, allowed = null) {
  if (allowed) logits = logits.map((l, i) => ((allowed[i >>> 5] >>> (i & 31)) & 1 ? l : -Infinity));
  const T = Number(params.temperature ?? 1);
  let token;
  let scaled = logits;
  if (T === 0) {
    token = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[token]) token = i;
  } else {
    const t32 = Math.fround(T);
    scaled = new Float32Array(logits.length);
    for (let i = 0; i < logits.length; i++) scaled[i] = logits[i] / t32;
    const probs = logSoftmax(scaled).map(Math.exp);
    const keep = nucleus(probs, Number(params.top_p ?? 1));
    for (let i = 0; i < keep.length; i++) if (scaled[i] === -Infinity) keep[i] = 0;
    token = walk(probs, keep, uniform);
  }
  if (!params.logprobs) return { token };
  const lps = logSoftmax(scaled);
  const top = topLogprobs(lps, Number(params.top_logprobs || 0)).filter(([, lp]) => lp > -Infinity);
  return { token, logprob: lps[token], top_logprobs: top };
}
