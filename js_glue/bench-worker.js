// bench/browser.py's module worker: this site's dedicated worker (worker-handler.js's
// createWorkerHost over host.js, the same host worker.js runs) plus two measurements that must run
// inside the worker, as host.js's extra kinds. Production pages use worker.js, which answers
// neither kind (UnknownMessageKindError).
// - `workerLocalStream {request, modelId}`: the proxy's stream loop driven from inside the worker
//   (no postMessage per chunk): `{chunks, times, totalMs}`;
// - `workerJsLoop {record, prompt, maxTokens, maxBatch?}`: a JS-only generation loop over the same
//   kernel shim, no Python: `{tokens, text, prefillS, decodeS, decodeTokensPerS}`.
// Both are answered once Python is ready (one sent while booting waits in the host's queue).
import { createWorkerHost } from "./worker-handler.js";

/**
 * The proxy's stream loop, run in here: chunk arrival times without the postMessage hop.
 * @param {any} content @param {import("./worker-handler.js").WorkerContext} worker
 */
async function workerLocalStream(content, worker) {
  const t0 = performance.now();
  const { streamId } = await worker.request("chatCompletionStreamInit", content);
  const chunks = [];
  const times = [];
  for (;;) {
    const reply = await worker.request("completionStreamNextChunk", { streamId });
    if (reply.done) break;
    times.push(performance.now() - t0);
    chunks.push(reply.chunk);
  }
  return { chunks, times, totalMs: performance.now() - t0 };
}

/**
 * The engine's decode schedule (py_worker/generate.py: sample, then decodeSteps of 1, 2, 4, …
 * up to maxBatch, detokenizing each batch) written in JS over the same shim: what the loop costs
 * without Python. Greedy, no stop tokens, on its own load of the model. Each batch is detokenized
 * alone (less work than the engine's incremental detokenizer), so Python's cost is not understated.
 * @param {{record: any, prompt: string, maxTokens: number, maxBatch?: number}} content
 * @param {import("./worker-handler.js").WorkerContext} worker
 */
async function workerJsLoop({ record, prompt, maxTokens, maxBatch = 16 }, worker) {
  const shim = worker.shim;
  const { handle, config } = await shim.load(record, () => {});
  try {
    const params = (/** @type {number} */ n) => ({ temperature: 0, top_p: 1, frequency_penalty: 0, presence_penalty: 0,
      repetition_penalty: 1, logit_bias: [], history: [], uniforms: new Array(n).fill(0), logprobs: false, top_logprobs: 0 });
    const ids = Array.from(await shim.tokenize(handle, prompt));
    const chunk = config.prefill_chunk_size || ids.length;
    const t0 = performance.now();
    for (let i = 0; i < ids.length; i += chunk) await shim.prefill(handle, ids.slice(i, i + chunk));
    const tokens = [(await shim.sample(handle, params(1))).token];
    let text = await shim.detokenize(handle, tokens);
    const tDecode = performance.now();
    let next = 1;
    while (tokens.length < maxTokens) {
      const n = Math.min(next, maxTokens - tokens.length);
      const batch = await shim.decodeSteps(handle, n, params(n));
      const fresh = batch.map((/** @type {{token: number}} */ b) => b.token);
      tokens.push(...fresh);
      text += await shim.detokenize(handle, fresh);
      next = Math.min(maxBatch, next * 2);
    }
    const decodeS = (performance.now() - tDecode) / 1000;
    return { tokens: tokens.length, text, prefillS: (tDecode - t0) / 1000, decodeS,
             decodeTokensPerS: (tokens.length - 1) / decodeS };
  } finally {
    await shim.unload(handle);
  }
}

/** @type {Map<string, (content: any, worker: import("./worker-handler.js").WorkerContext) => Promise<unknown>>} */
const kinds = new Map(/** @type {[string, (content: any, worker: import("./worker-handler.js").WorkerContext) => Promise<unknown>][]} */ ([["workerLocalStream", workerLocalStream], ["workerJsLoop", workerJsLoop]]));
const host = createWorkerHost((message) => self.postMessage(message), { kinds });
self.onmessage = (event) => host.receive(event.data);
