// web-llm 0.2.79's own engine (MLCEngine, on the main thread) in Deno's WebGPU, on a real MLC model
// library (v0_2_48 Qwen2-0.5B q4f32_1, which links with the tvmjs 0.18.0-dev2 bundled in web-llm)
// and a model dir of random weights written from that library's parameter list. Imported by
// bench/engine_gpu.js, which alternates its rounds with ours in one process; run alone it prints
// its own rounds:
//
//   deno run --allow-read --allow-env --location http://127.0.0.1/ bench/webllm_gpu.js CONFIG.json
//
// config: {modelDir: absolute dir, modelLib: absolute .wasm path, prompt, maxTokens, rounds, warmupTokens}
//
// web-llm reads the chat config, tokenizer and weights through the Cache API (Deno's lacks
// Cache.add and keys) or IndexedDB (absent in Deno), so `caches` is replaced by an in-memory one
// that reads the model dir's files; the library it fetches from its file URL itself.

import * as webllm from "../node_modules/@mlc-ai/web-llm-0.2.79/lib/index.js";
import { callsSince, countGpuCalls } from "../tools/gpu_calls.js";

/** A model file web-llm asked for is not in the model dir. */
export class ModelFileMissingError extends Error {
  name = "ModelFileMissingError";
}

/**
 * The Cache API over a local model dir, in memory. web-llm asks for `<model>/resolve/main/<file>`
 * (it appends Hugging Face's path to every model URL) and for `ndarray-cache.json` (the weight
 * index's name before MLC renamed it tensor-cache.json; same layout).
 */
export class DirCaches {
  /** @param {string} modelURL file URL of the model dir, with a trailing slash */
  constructor(modelURL) {
    this.modelURL = modelURL;
    this.stores = new Map();
  }

  /** The file under the model dir that ``url`` names. */
  file(url) {
    if (!url.startsWith(this.modelURL)) throw new ModelFileMissingError(`not under the model dir: ${url}`);
    const rel = url.slice(this.modelURL.length).replace(/^resolve\/main\//, "");
    return new URL(rel === "ndarray-cache.json" ? "tensor-cache.json" : rel, this.modelURL);
  }

  open(scope) {
    if (!this.stores.has(scope)) this.stores.set(scope, new DirCache(this));
    return Promise.resolve(this.stores.get(scope));
  }

  has(scope) {
    return Promise.resolve(this.stores.has(scope));
  }

  delete(scope) {
    return Promise.resolve(this.stores.delete(scope));
  }
}

/** One scope of DirCaches: url -> bytes read once from the model dir. */
class DirCache {
  constructor(caches) {
    this.caches = caches;
    this.bytes = new Map();
  }

  async add(request) {
    const url = typeof request === "string" ? request : request.url;
    const path = this.caches.file(url);
    try {
      this.bytes.set(url, await Deno.readFile(path));
    } catch (e) {
      throw new ModelFileMissingError(`${path.pathname}: ${e.message}`);
    }
  }

  match(request) {
    const url = typeof request === "string" ? request : request.url;
    const bytes = this.bytes.get(url);
    return Promise.resolve(bytes === undefined ? undefined : new Response(bytes));
  }

  keys() {
    return Promise.resolve([...this.bytes.keys()].map((url) => new Request(url)));
  }

  delete(request) {
    return Promise.resolve(this.bytes.delete(typeof request === "string" ? request : request.url));
  }
}

/** web-llm's MLCEngine with the model loaded, and its prefill()/decode() steps clocked and counted. */
export async function loadWebLLM({ modelDir, modelLib }, counter, log = () => {}) {
  const modelURL = new URL(`file://${modelDir.replace(/\/?$/, "/")}`).href;
  Object.defineProperty(globalThis, "caches", { value: new DirCaches(modelURL), configurable: true });
  const modelId = "webllm-qwen2-mlclib";
  const appConfig = {
    model_list: [{ model: modelURL, model_id: modelId, model_lib: new URL(`file://${modelLib}`).href }],
    useIndexedDBCache: false,
  };
  const t0 = performance.now();
  let last = "";
  const engine = new webllm.MLCEngine({
    appConfig,
    initProgressCallback: (p) => {
      last = p.text;
    },
  });
  // tvmjs's emscripten WASI takes its Node path (and fails) when it sees `process`: hidden while
  // web-llm loads (nothing else runs meanwhile), put back after.
  const saved = globalThis.process;
  delete globalThis.process;
  try {
    await engine.reload(modelId);
  } finally {
    globalThis.process = saved;
  }
  const loadS = (performance.now() - t0) / 1000;
  log(`web-llm (its libraries: ${webllm.modelVersion}) loaded in ${loadS.toFixed(1)} s: ${last}`);
  // Phase marks: the end of prefill() (its first token sampled) starts the decode phase.
  const marks = { prefillEnd: null, decodeS: 0, decodes: 0 };
  const prefill = engine.prefill.bind(engine);
  engine.prefill = async (...args) => {
    const out = await prefill(...args);
    marks.prefillEnd = { t: performance.now(), gpu: counter() };
    return out;
  };
  const decode = engine.decode.bind(engine);
  engine.decode = async (...args) => {
    const t = performance.now();
    const out = await decode(...args);
    marks.decodeS += (performance.now() - t) / 1000;
    marks.decodes += 1;
    return out;
  };
  return { engine, modelId, marks, loadS };
}

/** One greedy chat round of a fixed token count (ignore_eos), timed the way engine_gpu.js times ours. */
export async function webllmRound(loaded, counter, prompt, maxTokens) {
  const { engine, marks } = loaded;
  marks.prefillEnd = null;
  marks.decodeS = 0;
  marks.decodes = 0;
  const before = counter();
  const start = performance.now();
  const stream = await engine.chat.completions.create({
    messages: [{ role: "user", content: prompt }],
    stream: true,
    stream_options: { include_usage: true },
    temperature: 0,
    ignore_eos: true,
    max_tokens: maxTokens,
  });
  let usage = null;
  let chars = 0;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices || []) chars += (c.delta?.content || "").length;
  }
  const end = performance.now();
  const after = counter();
  await engine.resetChat();
  const first = marks.prefillEnd;
  // web-llm's usage counts the decode steps' tokens only; prefill() samples the first one.
  const decoded = marks.decodes;
  const completion = decoded + 1;
  const prefillCalls = callsSince(before, first.gpu);
  const decodeCalls = callsSince(first.gpu, after);
  return {
    kind: "webllm",
    prompt_tokens: usage.prompt_tokens,
    completion_tokens: completion,
    ttft_s: (first.t - start) / 1000,
    prefill_tok_s: usage.prompt_tokens / ((first.t - start) / 1000),
    decode_wall_s: (end - first.t) / 1000,
    decode_tok_s: decoded / ((end - first.t) / 1000),
    decode_kernel_tok_s: marks.decodes / marks.decodeS,
    gpu_prefill: prefillCalls,
    dispatches_per_token: decodeCalls.dispatches / decoded,
    submits_per_token: decodeCalls.submits / decoded,
    usage,
    chars,
  };
}

if (import.meta.main) {
  const cfg = JSON.parse(await Deno.readTextFile(Deno.args[0]));
  const log = (...a) => console.error("[webllm_gpu]", ...a);
  const counter = countGpuCalls();
  const loaded = await loadWebLLM(cfg, counter, log);
  await webllmRound(loaded, counter, cfg.prompt, cfg.warmupTokens);
  const rounds = [];
  for (let i = 0; i < cfg.rounds; i++) {
    const r = await webllmRound(loaded, counter, cfg.prompt, cfg.maxTokens);
    log(`round ${i}: decode ${r.decode_tok_s.toFixed(1)} tok/s, prefill ${r.prefill_tok_s.toFixed(0)} tok/s, ` +
      `${r.dispatches_per_token.toFixed(1)} dispatches / ${r.submits_per_token.toFixed(1)} submits a token`);
    rounds.push(r);
  }
  await Deno.stdout.write(new TextEncoder().encode(JSON.stringify({ load_s: loaded.loadS, rounds }) + "\n"));
  Deno.exit(0);
}
