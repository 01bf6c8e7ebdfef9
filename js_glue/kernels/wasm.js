// The kernel ABI (docs/CONTRACTS.md) on the CPU: llama.cpp compiled to WebAssembly, through the
// token-level API of npm @wllama/wllama 2.4.0 (tokenize, decode, logits, KV-cache removal,
// embeddings), for browsers and machines without a usable GPU. A GGUF is fetched, cached and
// pinned by our own loader (gguf.js); llama.cpp tokenizes and runs it; sampling is py_worker's
// one rule (sampling.js) on the logits read back each step, so grammars work here too.
//
// What differs from the GPU backends: wllama hands out probabilities, not raw logits, so the
// rule runs on log-probabilities, which differ from the logits by a constant. Every step of the
// rule is blind to that constant except the repetition penalty, which divides a positive logit
// and multiplies a negative one: on log-probabilities (never positive) it always multiplies. So a
// seed gives the same tokens as on the other backends where their logits agree and
// repetition_penalty is 1. llama.cpp runs its work in a worker of its own (a blob: URL module
// worker): a page's CSP needs `worker-src 'self' blob:` for this backend (without it, `load`
// fails by name, and backends.js goes on with our WebGPU kernels where it chose wasm itself).

import { fetchGguf, ggufBasics, ggufTokenizerFile, isGgufRecord } from "./gguf.js";
import { namedError } from "./errors.js";
import { withSpecials } from "./bert.js";
import { processLogits, sampleProcessed } from "./sampling.js";
import { Grammars, DEFAULT_XGRAMMAR_URL, grammarCalls } from "./grammar.js";

export const DEFAULT_WLLAMA_URL = new URL("../wllama/index.js", import.meta.url).href;
const DEFAULT_CONTEXT = 2048; // py_worker/kernels.py DEFAULT_CONTEXT_WINDOW
const DEFAULT_BATCH = 128; // py_worker/kernels.py DEFAULT_PREFILL_CHUNK

/** @typedef {import("./loader.js").ModelRecord} ModelRecord */
/** @typedef {import("./sampling.js").SampleParams} SampleParams */
/** @typedef {import("./sampling.js").Sampled} Sampled */
/** @typedef {import("./grammar.js").Constraint} Constraint */
/**
 * The wasm backend's options (see createWasmKernels).
 * @typedef {import("./loader.js").LoadOptions & {wllamaURL?: string, xgrammarURL?: string, threads?: number}} WasmOptions
 */
/**
 * One loaded model: its wllama instance (`w`: untyped, as the module is), what the ABI calls keep
 * of it, and its counters.
 * `pending` is the sampled id not yet fed to llama.cpp; `greedy`, llama.cpp's greedy sampler once set up.
 * @typedef {{
 *   w: any, vocab: number, embedding: boolean, cls: number | null, sep: number | null, ctx: number,
 *   makeGrammars: () => Grammars, grammars: Grammars | null, len: number, pending: number | null,
 *   greedy: Promise<unknown> | null, threads: number,
 *   stats: {prefill_tokens: number, prefill_seconds: number, decode_tokens: number, decode_seconds: number},
 * }} WasmModel
 */

/** @type {Promise<any> | null} the wllama module: imported by URL from the site, it has no types here */
let libPromise = null;

/** @param {string} url */
function library(url) {
  libPromise ??= import(url).catch((e) => {
    libPromise = null;
    throw namedError("ModelLoadError", `cannot load llama.cpp (wllama) from ${url}: ${e.message}`, { backend: "wasm" });
  });
  return libPromise;
}

/** @type {Promise<string | null> | null} */
let blobWorkers = null;

/**
 * Null where this context can start workers, else its name: a service worker cannot, nor can
 * Chromium's SharedWorker (no nested workers there).
 */
export function workerlessContext() {
  if (typeof Worker !== "undefined") return null;
  if (typeof ServiceWorkerGlobalScope !== "undefined") return "a service worker";
  if (typeof SharedWorkerGlobalScope !== "undefined") return "a shared worker";
  return "this context";
}

/**
 * Why this context cannot start llama.cpp's worker (wllama makes it from a blob: URL), or null.
 * A Content-Security-Policy without `worker-src blob:` refuses it without an exception, and
 * wllama would then wait for it for ever: so a one-line blob: worker is tried first (once).
 */
function blobWorkerRefusal() {
  blobWorkers ??= new Promise((resolve) => {
    const workerless = workerlessContext();
    if (workerless) {
      resolve(`${workerless} cannot start workers`);
      return;
    }
    let worker;
    try {
      worker = new Worker(URL.createObjectURL(new Blob(["postMessage(1)"], { type: "text/javascript" })), { type: "module" });
    } catch (e) {
      resolve(`a blob: worker cannot start here (${e.message})`);
      return;
    }
    /** @param {string | null} why */
    const done = (why) => {
      clearTimeout(guard);
      worker.terminate();
      resolve(why);
    };
    const guard = setTimeout(() => done("a blob: worker did not start within 20 s"), 20000);
    worker.onmessage = () => done(null);
    worker.onerror = (e) => {
      e.preventDefault();
      done("a blob: worker was refused (a Content-Security-Policy without `worker-src blob:`?)");
    };
  });
  return blobWorkers;
}

/**
 * A vocabulary view of a tokenizer.json ({name, bytes}) for grammar.js: getVocabSize, idToToken.
 * @param {import("./loader.js").TokenizerFile} file
 */
function vocabOf(file) {
  const json = JSON.parse(new TextDecoder().decode(file.bytes));
  /** @type {string[]} */
  const tokens = [];
  for (const [token, id] of Object.entries(json.model?.vocab || {})) tokens[Number(id)] = token;
  for (const added of json.added_tokens || []) tokens[added.id] = added.content;
  return { getVocabSize: () => tokens.length, idToToken: (/** @type {number} */ i) => tokens[i] ?? "" };
}

/**
 * llama.cpp's own log, kept rather than printed: its last warnings and errors, so that a failed
 * load can say why (wllama itself then reports only that its reply could not be read).
 */
function nativeLog() {
  /** @type {string[]} */
  const lines = [];
  /** @param {unknown[]} args */
  const keep = (...args) => {
    lines.push(args.map(String).join(" ").trim());
    if (lines.length > 20) lines.shift();
  };
  return { logger: { debug: () => {}, log: () => {}, info: () => {}, warn: keep, error: keep }, lines };
}

/**
 * A wllama error as a py_worker one: a full KV cache is the context window's.
 * @param {{name?: string, fields?: unknown, type?: string, message?: string} | null | undefined} e what was thrown
 * @param {string} what @param {string[]} [log] llama.cpp's last lines (nativeLog)
 */
function named(e, what, log = []) {
  if (e?.name && e.fields) return e;
  if (e?.type === "kv_cache_full") {
    return namedError("ContextWindowSizeExceededError", `${what}: the context window is full`, { backend: "wasm" });
  }
  // llama.cpp says why in its "error loading model: <reason>" line; the lines after it are generic.
  const reason = log.findLast((line) => line.includes("error loading model:"));
  const why = reason ? reason.slice(reason.indexOf("error loading model:")) : log.filter((line) => /error|fail/i.test(line)).slice(-2).join("; ");
  return namedError("ModelLoadError", `${what} failed in llama.cpp: ${why || e?.message || e}`, { backend: "wasm" });
}

/**
 * How many threads llama.cpp runs on: `asked` (a record's `threads`, or createKernels's), else half
 * the cores where the page is cross-origin isolated (threads share memory only there: the page
 * and its workers need COOP/COEP), else 1. More than one where that cannot be is refused by name.
 * @param {any} asked a record's field as it came (JSON): checked here
 * @returns {number}
 */
function threadCount(asked) {
  const isolated = globalThis.crossOriginIsolated === true;
  if (asked === undefined || asked === null) return isolated ? Math.max(1, Math.floor((navigator.hardwareConcurrency || 2) / 2)) : 1;
  if (!Number.isInteger(asked) || asked < 1) {
    throw namedError("WasmThreadsError", `threads must be a whole number of at least 1, got ${JSON.stringify(asked)}`, { threads: asked, isolated });
  }
  if (asked > 1 && !isolated) {
    throw namedError(
      "WasmThreadsError",
      `${asked} llama.cpp threads need a cross-origin isolated page (the server must send Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp); this one runs one thread`,
      { threads: asked, isolated },
    );
  }
  return asked;
}

/**
 * options: {wllamaURL, xgrammarURL, threads (see threadCount; a record's `threads` wins),
 * baseURL, fetch, cache} (the last three as for the wgsl backend).
 * @param {WasmOptions} [options]
 */
export async function createWasmKernels(options = {}) {
  const url = options.wllamaURL || DEFAULT_WLLAMA_URL;
  /** @type {Map<number, WasmModel>} */
  const models = new Map();
  let nextHandle = 1;

  /** @param {number} handle */
  const get = (handle) => {
    const m = models.get(handle);
    if (!m) throw namedError("ModelNotLoadedError", `no model is loaded under handle ${handle}`, { handle });
    return m;
  };
  /** @param {number} handle */
  const decoder = (handle) => {
    const m = get(handle);
    if (m.embedding) throw namedError("IncorrectPipelineLoadedError", "this model is loaded for embeddings only", { backend: "wasm" });
    return m;
  };
  const { constraint, openGrammar, closeGrammar } = grammarCalls(/** @param {number} handle */ (handle) => {
    const m = decoder(handle);
    m.grammars ??= m.makeGrammars();
    return m.grammars;
  });

  /**
   * Append `ids` to llama.cpp's KV cache; its logits are the last id's. Resolves to the seconds it took.
   * @param {WasmModel} m @param {number[]} ids @param {string} what
   */
  async function feed(m, ids, what) {
    const t0 = performance.now();
    try {
      await m.w.decode(ids, {});
    } catch (e) {
      throw named(e, what);
    }
    m.len += ids.length;
    m.pending = null;
    return (performance.now() - t0) / 1000;
  }

  /**
   * The current logits as log-probabilities (llama.cpp's softmax of them, every id), read as the
   * two arrays of wllama's `get_logits` action: its public getLogits() would first build one
   * object per id (49,152 for SmolLM2: ~12 ms a token on top of the action's ~8).
   * @param {WasmModel} m
   */
  async function logProbs(m) {
    const out = new Float32Array(m.vocab).fill(-Infinity);
    const { tokens, probs } = await m.w.proxy.wllamaAction("get_logits", { _name: "glog_req", top_k: -1 });
    for (let i = 0; i < tokens.length; i++) if (tokens[i] < out.length && probs[i] > 0) out[tokens[i]] = Math.log(probs[i]);
    return out;
  }

  /**
   * The rule's token where it needs no distribution: at temperature 0 with nothing that changes
   * or reports the logits (no logit bias, penalties at their neutral values, no grammar, no
   * logprobs) the rule is the argmax, and llama.cpp's own greedy sampler takes it without
   * reading the vocabulary back. Null where the distribution is needed.
   * @param {WasmModel} m @param {SampleParams} params @param {Constraint | null} grammar
   * @returns {Promise<number | null>}
   */
  async function argmax(m, params, grammar) {
    const neutral =
      Number(params.temperature ?? 1) === 0 &&
      !grammar &&
      !params.logprobs &&
      !(params.logit_bias || []).some(([, v]) => Number(v) !== 0) &&
      Number(params.repetition_penalty ?? 1) === 1 &&
      !Number(params.frequency_penalty || 0) &&
      !Number(params.presence_penalty || 0);
    if (!neutral) return null;
    // One init per model, shared by concurrent callers; a failed one is forgotten, so the next
    // call tries again instead of rethrowing the old failure forever.
    m.greedy ??= m.w.samplingInit({ temp: 0, penalty_repeat: 1, penalty_freq: 0, penalty_present: 0 }).catch((/** @type {unknown} */ e) => {
      m.greedy = null;
      throw e;
    });
    await m.greedy;
    return (await m.w.samplingSample()).token;
  }

  /**
   * One step of the rule; `ended` once the grammar has ended.
   * @param {WasmModel} m @param {SampleParams} params @param {number} uniform @param {Constraint | null} grammar
   * @returns {Promise<{out: Sampled, ended: boolean}>}
   */
  async function sampleOne(m, params, uniform, grammar) {
    const greedy = await argmax(m, params, grammar);
    if (greedy !== null) {
      m.pending = greedy;
      return { out: { token: greedy }, ended: false };
    }
    const processed = processLogits(await logProbs(m), params);
    const out = sampleProcessed(processed, params, uniform, grammar ? await grammar.mask() : null);
    const ended = grammar ? grammar.accept(out.token) : false;
    m.pending = out.token;
    return { out, ended };
  }

  return {
    backend: "wasm",

    /** @param {ModelRecord} record @param {import("./loader.js").Progress} [progress] */
    async load(record, progress = () => {}) {
      const t0 = performance.now();
      if (!isGgufRecord(record)) {
        throw namedError("ModelLoadError", `the wasm backend (llama.cpp) runs GGUF files; ${record.model} is not one`, {
          backend: "wasm",
        });
      }
      const refusal = await blobWorkerRefusal();
      if (refusal) {
        throw namedError("ModelLoadError", `the wasm backend runs llama.cpp in a worker of its own, and ${refusal}; use backend "wgsl" here`, {
          backend: "wasm",
        });
      }
      const threads = threadCount(record.threads ?? options.threads);
      // Any architecture llama.cpp runs: only what every GGUF says is read here.
      const art = await fetchGguf(record, (f, text) => progress(0.8 * f, text), options);
      const config = { ...ggufBasics(art.meta), ...(record.overrides || {}) };
      const lib = await library(url);
      const native = nativeLog();
      const w = new lib.Wllama(
        { "single-thread/wllama.wasm": new URL("single-thread/wllama.wasm", url).href, "multi-thread/wllama.wasm": new URL("multi-thread/wllama.wasm", url).href },
        { suppressNativeLog: false, logger: native.logger, allowOffline: true },
      );
      const embedding = record.model_type === "embedding";
      const ctx = Number(config.context_window_size) > 0 ? Number(config.context_window_size) : DEFAULT_CONTEXT;
      // An encoder reads its whole input in one batch: llama.cpp needs the batch to hold it.
      const batch = embedding ? ctx : Number(config.prefill_chunk_size) > 0 ? Number(config.prefill_chunk_size) : DEFAULT_BATCH;
      progress(0.85, `Loading model into llama.cpp (WebAssembly, ${threads} thread${threads === 1 ? "" : "s"})`);
      // wllama resolves its (already absolute) wasm URLs against document.baseURI, which a
      // worker lacks: a stand-in for the time of the call.
      const standIn = typeof document === "undefined";
      /** @type {any} */
      const scope = globalThis;
      if (standIn) scope.document = { baseURI: url };
      try {
        await w.loadModel([new Blob([art.bytes])], { n_ctx: ctx, n_batch: batch, n_ubatch: batch, n_threads: threads, embeddings: embedding, seed: 0 });
      } catch (e) {
        throw named(e, "loading the GGUF", native.lines);
      } finally {
        if (standIn) delete scope.document;
      }
      const running = w.getNumThreads(); // what wllama started (one where threads cannot share memory)
      const vocab = Number(config.vocab_size);
      const handle = nextHandle++;
      // A grammar needs a tokenizer.json of the vocabulary: built on the first constrained
      // request (a tokenizer type we cannot describe fails that request by name, not the load).
      const meta = art.meta;
      const makeGrammars = () => {
        const file = ggufTokenizerFile(meta);
        return new Grammars(vocabOf(file), file, vocab, options.xgrammarURL || DEFAULT_XGRAMMAR_URL);
      };
      models.set(handle, { w, vocab, embedding, cls: config.cls_token_id ?? null, sep: config.sep_token_id ?? null, ctx, makeGrammars, grammars: null, len: 0, pending: null, greedy: null, threads: running, stats: { prefill_tokens: 0, prefill_seconds: 0, decode_tokens: 0, decode_seconds: 0 } });
      config.context_window_size = ctx;
      config.prefill_chunk_size = batch;
      progress(1, `Finish loading on WebAssembly - llama.cpp, ${running} thread${running === 1 ? "" : "s"} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
      return { handle, config };
    },

    /** @param {number} handle */
    async unload(handle) {
      const m = models.get(handle);
      if (!m) return;
      models.delete(handle);
      await m.grammars?.dispose();
      await m.w.exit();
    },

    /** @param {number} handle @param {string} text */
    async tokenize(handle, text) {
      return Array.from(await get(handle).w.tokenize(text, true));
    },

    /** @param {number} handle @param {ArrayLike<number>} ids */
    async detokenize(handle, ids) {
      return get(handle).w.detokenize(Array.from(ids), true);
    },

    /** @param {number} handle @param {ArrayLike<number>} ids */
    async prefill(handle, ids) {
      const m = decoder(handle);
      m.stats.prefill_seconds += await feed(m, Array.from(ids), "prefill");
      m.stats.prefill_tokens += ids.length;
    },

    /** @param {number} handle @param {number} token */
    async decode(handle, token) {
      const m = decoder(handle);
      m.stats.decode_seconds += await feed(m, [Number(token)], "decode");
      m.stats.decode_tokens += 1;
    },

    /** @param {number} handle @param {SampleParams} params */
    async sample(handle, params) {
      const m = decoder(handle);
      return (await sampleOne(m, params, (params.uniforms || [0])[0] ?? 0, constraint(handle, params))).out;
    },

    /** @param {number} handle @param {number} n @param {SampleParams} params */
    async decodeSteps(handle, n, params) {
      const m = decoder(handle);
      const uniforms = params.uniforms || [];
      if (n > 0 && m.pending === null) throw namedError("InvalidRequestFieldError", "decodeSteps needs a sample() first");
      if (uniforms.length < n) throw namedError("InvalidRequestFieldError", `decodeSteps(${n}) needs ${n} uniforms, got ${uniforms.length}`);
      const grammar = constraint(handle, params);
      /** @type {Sampled[]} */
      const out = [];
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        await feed(m, [/** @type {number} */ (m.pending)], "decode"); // every step's sample set it
        const step = { ...params, history: [...(params.history || []), ...out.map((s) => s.token)] };
        const { out: s, ended } = await sampleOne(m, step, uniforms[i], grammar);
        out.push(s);
        if (ended) break; // the grammar is done: the rest of the batch would be unconstrained
      }
      m.stats.decode_tokens += out.length;
      m.stats.decode_seconds += (performance.now() - t0) / 1000;
      return out;
    },

    openGrammar,
    closeGrammar,

    /** @param {number} handle @param {number} length */
    async rewind(handle, length) {
      const m = decoder(handle);
      if (!(length >= 0 && length <= m.len)) {
        throw namedError("InvalidRequestFieldError", `cannot rewind a KV cache of ${m.len} tokens to ${length}`);
      }
      if (length < m.len) await m.w.kvRemove(length, -1);
      m.len = length;
      m.pending = null;
    },

    /** @param {number} handle */
    async reset(handle) {
      const m = decoder(handle);
      await m.w.kvClear();
      m.len = 0;
      m.pending = null;
    },

    /** @param {number} handle @param {ArrayLike<number>[]} batch */
    async embed(handle, batch) {
      const m = get(handle);
      if (!m.embedding) {
        throw namedError("EmbeddingUnsupportedModelError", "this model was not loaded as an embedding model (model_type \"embedding\")", { backend: "wasm" });
      }
      /** @type {number[][]} */
      const out = [];
      for (const row of batch) {
        await m.w.kvClear(); // each input alone: llama.cpp would otherwise attend to the last one too
        out.push(Array.from(await m.w.embeddings(withSpecials(Array.from(row), m.cls, m.sep, m.ctx))));
      }
      return out;
    },

    /** @param {number} handle */
    async stats(handle) {
      const m = get(handle);
      return { ...m.stats, kv_length: m.len, threads: m.threads };
    },

    /** The CPU, in WebGPU's terms. */
    async deviceInfo() {
      return { vendor: "llama.cpp", architecture: "wasm", description: "WebAssembly (llama.cpp)", maxStorageBufferBindingSize: 0, features: [] };
    },
  };
}
