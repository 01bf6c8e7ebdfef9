// The kernel ABI (docs/CONTRACTS.md) over the project's own WebGPU kernels: the `wgsl` backend.
// Every method returns a Promise of plain data (numbers, arrays, plain objects), so results
// cross the Pyodide FFI without keeping JS objects alive in Python.

import { Gpu } from "./gpu.js";
import { LlamaModel, DECODER_TYPES, unsupportedArchitecture } from "./llama.js";
import { BertModel } from "./bert.js";
import { loadArtifacts, modelBase } from "./loader.js";
import { isGgufRecord, loadGguf } from "./gguf.js";
import { loadTokenizer, DEFAULT_TOKENIZERS_URL } from "./tokenizer.js";
import { Grammars, DEFAULT_XGRAMMAR_URL, grammarCalls } from "./grammar.js";
import { namedError } from "./errors.js";

/** @typedef {import("./loader.js").ModelRecord} ModelRecord */
/** @typedef {import("./loader.js").Progress} Progress */
/** @typedef {import("./sampling.js").SampleParams} SampleParams */
/**
 * The wgsl backend's options (see createKernels).
 * @typedef {import("./loader.js").LoadOptions & {
 *   tokenizersURL?: string, xgrammarURL?: string, powerPreference?: GPUPowerPreference, f16?: boolean,
 *   kernels?: "cpu" | "gpu", maxBindingBytes?: number, kvF16?: boolean, f16Math?: boolean,
 * }} WgslOptions
 */

const DECODERS = new Set(DECODER_TYPES); // llama, mistral, qwen2, qwen3, phi3, gemma2 (llama.js: MLC_NAMES)
const ENCODERS = new Set(["bert"]);

// Artifacts fetched ahead of `load` (js_glue/worker.js starts this while Pyodide boots), by
// model URL and pins; a load with the same URL takes the download over instead of starting one.
/** @type {Map<string, ReturnType<typeof fetchArtifacts>>} */
const prefetched = new Map();
/** @param {ModelRecord} record @param {WgslOptions} options */
const prefetchKey = (record, options) => `${modelBase(record, options)} ${JSON.stringify(record.sha256 || {})}`;

/**
 * An MLC model directory or a GGUF file, by what `record.model` names.
 * @param {ModelRecord} record @param {Progress} progress @param {WgslOptions} options
 */
const fetchArtifacts = (record, progress, options) =>
  isGgufRecord(record) ? loadGguf(record, progress, options) : loadArtifacts(record, progress, options);

/**
 * Start fetching (and caching, and checking) a record's artifacts before the engine asks.
 * @param {ModelRecord} record @param {WgslOptions} [options]
 */
export function prefetchModel(record, options = {}) {
  const key = prefetchKey(record, options);
  if (!prefetched.has(key)) {
    const pending = fetchArtifacts(record, () => {}, options);
    pending.catch(() => prefetched.delete(key));
    prefetched.set(key, pending);
  }
  return /** @type {ReturnType<typeof fetchArtifacts>} */ (prefetched.get(key)).then(() => undefined);
}

/**
 * A prefetched download of this record if one succeeded or is under way, else a fresh one.
 * @param {ModelRecord} record @param {Progress} progress @param {WgslOptions} options
 */
async function artifacts(record, progress, options) {
  const key = prefetchKey(record, options);
  const pending = prefetched.get(key);
  prefetched.delete(key);
  if (pending) {
    progress(0, "Start to fetch params");
    try {
      const art = await pending;
      progress(1, "Loading model from cache[1/1]: prefetched while the worker started.");
      return art;
    } catch {
      // the prefetch failed: fetch again below, reporting progress (and any error) for real
    }
  }
  return fetchArtifacts(record, progress, options);
}

/**
 * options: {tokenizersURL, xgrammarURL, baseURL (to resolve relative model URLs), fetch, cache
 * ("cache"|"indexeddb"|"none", default for records without `cache`), powerPreference, f16,
 * kernels ("cpu": register tiles everywhere | "gpu": split-K decode GEMVs; default by adapter),
 * maxBindingBytes (split weights at this many bytes per buffer even below the adapter's
 * maxStorageBufferBindingSize: tests of the splitting), kvF16 (decoders' KV cache in f16, as
 * web-llm's q4f16 models keep it: true or false; default f16 where the device has shader-f16 and is
 * not a CPU backend, LlamaModel.create), f16Math (f16 arithmetic inside the q4 groups of q4f16_1's
 * decode GEMVs, gemv.js: true or false; default false, slower than f32 on an H200)}.
 * @param {WgslOptions} [options]
 */
export async function createKernels(options = {}) {
  /** @type {Promise<Gpu> | null} */
  let gpuPromise = null;
  /**
   * @type {Map<number, {model: LlamaModel | BertModel, tokenizer: Awaited<ReturnType<typeof loadTokenizer>>,
   *   type: string, grammars: Grammars | null}>}
   */
  const models = new Map();
  let nextHandle = 1;

  // One device for every model; a lost one is replaced on the next load (that is how a reload
  // recovers), while models still on it keep failing with DeviceLostError until reloaded.
  const gpu = async () => {
    const current = gpuPromise;
    if (current && (await current.catch(() => null))?.lost && gpuPromise === current) gpuPromise = null;
    gpuPromise ??= Gpu.create(options).catch((e) => {
      gpuPromise = null;
      throw e;
    });
    return gpuPromise;
  };
  /** @param {number} handle */
  const get = (handle) => {
    const m = models.get(handle);
    if (!m) throw namedError("ModelNotLoadedError", `no model is loaded under handle ${handle}`, { handle });
    m.model.gpu.check();
    return m;
  };
  /** @param {number} handle */
  const decoder = (handle) => {
    const m = get(handle);
    if (!(m.model instanceof LlamaModel)) {
      throw namedError("IncorrectPipelineLoadedError", `model_type ${m.type} cannot generate text`, { model_type: m.type });
    }
    return m.model;
  };

  /**
   * What LlamaModel.create takes. gguf.js leaves `bytes` null for a ggml type the kernels do
   * not read; llama.js's typedef does not say so (its GEMVs take only the types they know).
   * @typedef {Map<string, import("./llama.js").MlcTensor> | Map<string, import("./llama.js").GgufTensor>} LlamaTensors
   */
  const { constraint, openGrammar, closeGrammar } = grammarCalls(/** @param {number} handle */ (handle) => {
    decoder(handle);
    return /** @type {Grammars} */ (get(handle).grammars); // a decoder's: only encoders have none
  });

  return {
    backend: "wgsl",

    /** @param {ModelRecord} record @param {Progress} [progress] */
    async load(record, progress = () => {}) {
      const t0 = performance.now();
      const art = await artifacts(record, (f, text) => progress(0.9 * f, text), options);
      const config = { ...art.config, ...(record.overrides || {}) };
      const type = config.model_type;
      if (!DECODERS.has(type) && !ENCODERS.has(type)) throw unsupportedArchitecture(type, [...DECODERS, ...ENCODERS]);
      // The engine's rule (py_worker/router.py is_embedding_model): a record that says
      // "embedding" is served by embeddings.create alone, which only an encoder can answer here.
      if (record.model_type === "embedding" && !ENCODERS.has(type)) {
        throw namedError("UnsupportedArchitectureError", `The record says model_type "embedding", but model_type ${type} is a decoder; the wgsl backend embeds with: ${[...ENCODERS].join(", ")}`, {
          architecture: type,
          supported: [...ENCODERS],
        });
      }
      const g = await gpu();
      const kernels = options.kernels || (g.isCpu ? "cpu" : "gpu");
      /** @type {Progress} */
      const shaderProgress = (f, text) => progress(0.9 + 0.09 * f, text);
      const overrides = record.overrides || {};
      // An encoder's tensors are an MLC directory's: ggufConfig refuses a GGUF's BERT architecture.
      const model = ENCODERS.has(type)
        ? await BertModel.create(g, art.config, /** @type {Map<string, import("./loader.js").Tensor>} */ (art.tensors), overrides, shaderProgress)
        : await LlamaModel.create(g, art.config, /** @type {LlamaTensors} */ (art.tensors), overrides, shaderProgress, kernels, options.maxBindingBytes, options.kvF16, options.f16Math);
      const tokenizer = await loadTokenizer(art.tokenizer, options.tokenizersURL || DEFAULT_TOKENIZERS_URL);
      const handle = nextHandle++;
      const grammars = model instanceof LlamaModel ? new Grammars(tokenizer, art.tokenizer, model.d.vocab, options.xgrammarURL || DEFAULT_XGRAMMAR_URL) : null;
      models.set(handle, { model, tokenizer, type, grammars });
      if (model instanceof LlamaModel) {
        config.context_window_size = model.d.ctx;
        config.prefill_chunk_size = model.d.chunk;
      }
      const secs = ((performance.now() - t0) / 1000).toFixed(1);
      progress(1, `Finish loading on WebGPU - ${g.info} (${secs} s)`);
      return { handle, config };
    },

    /** @param {number} handle */
    async unload(handle) {
      const m = models.get(handle);
      if (!m) return;
      models.delete(handle);
      m.model.destroy();
      await m.grammars?.dispose();
      m.tokenizer.dispose();
    },

    /** @param {number} handle @param {string} text */
    async tokenize(handle, text) {
      return Array.from(get(handle).tokenizer.encode(text));
    },

    /** @param {number} handle @param {ArrayLike<number>} ids */
    async detokenize(handle, ids) {
      return get(handle).tokenizer.decode(Int32Array.from(ids));
    },

    /** @param {number} handle @param {number[]} ids */
    async prefill(handle, ids) {
      await decoder(handle).prefill(ids);
    },

    /** @param {number} handle @param {number} token */
    async decode(handle, token) {
      await decoder(handle).decode(token);
    },

    /** @param {number} handle @param {SampleParams} params */
    async sample(handle, params) {
      return decoder(handle).sample(params, constraint(handle, params));
    },

    /** @param {number} handle @param {number} n @param {SampleParams} params */
    async decodeSteps(handle, n, params) {
      return decoder(handle).decodeSteps(n, params, constraint(handle, params));
    },

    /** A matcher of `spec` (py_worker/kernels.py grammar_spec) on this model's vocabulary. */
    openGrammar,
    closeGrammar,

    /** @param {number} handle @param {number} length */
    async rewind(handle, length) {
      decoder(handle).rewind(length);
    },

    /** @param {number} handle */
    async reset(handle) {
      decoder(handle).reset();
    },

    /** @param {number} handle @param {ArrayLike<number>[]} batch */
    async embed(handle, batch) {
      const m = get(handle);
      if (!(m.model instanceof BertModel)) {
        throw namedError("EmbeddingUnsupportedModelError", `model_type ${m.type} is not an embedding model`, {
          model_type: m.type,
        });
      }
      return m.model.embed(batch);
    },

    /** @param {number} handle */
    async stats(handle) {
      const m = get(handle).model;
      if (m instanceof BertModel) return { ...m.stats, context_window_size: m.d.maxLen };
      return { ...m.stats, kv_length: m.len, context_window_size: m.d.ctx, f16_scales: m.f16Scales ? 1 : 0, f16_weights: m.f16Weights ? 1 : 0, f16_kv: m.d.kvF16 ? 1 : 0, f16_math: m.f16Math ? 1 : 0 };
    },

    /** Test hook (mirrors ReferenceKernels.logits): the current logits as a Float32Array. @param {number} handle */
    async logits(handle) {
      return decoder(handle).logits();
    },

    /** {vendor, architecture, description, maxStorageBufferBindingSize, features} of the device. */
    async deviceInfo() {
      const g = await gpu();
      /** @type {Partial<GPUAdapterInfo>} */
      const ai = g.adapter.info || {};
      return {
        vendor: ai.vendor || "",
        architecture: ai.architecture || "",
        description: ai.description || g.info,
        maxStorageBufferBindingSize: g.device.limits.maxStorageBufferBindingSize,
        features: Array.from(g.device.features),
      };
    },
  };
}
