// The kernel ABI (docs/CONTRACTS.md) over tvmjs (npm @mlc-ai/web-runtime) and an MLC model
// library .wasm: the `mlc` backend, for the MLC model zoo our own WGSL kernels do not cover.
// Load order follows web-llm: instantiate → detectGPUDevice → required_features → initWebGPU →
// fetchTensorCache → VM (model.js) → asyncLoadWebGPUPipelines. Results are plain data.

import { namedError } from "./errors.js";
import { loadTokenizer, DEFAULT_TOKENIZERS_URL } from "./tokenizer.js";
import { Grammars, DEFAULT_XGRAMMAR_URL, grammarCalls } from "./grammar.js";
import { ArtifactStore, resolveURL } from "./mlc/artifacts.js";
import { modelBase } from "./loader.js";
import { MlcModel } from "./mlc/model.js";
import { RUNTIMES, fetchWeights, pickRuntime, runtimeURL } from "./mlc/runtimes.js";

/** @typedef {import("../proxy.d.ts").ModelRecord} ModelRecord */
/** @typedef {import("./mlc/model.js").Instance} Instance */
/** @typedef {import("./mlc/model.js").ChatConfig} ChatConfig */
/** @typedef {(fraction: number, text: string) => void} Progress */

/**
 * What the mlc backend calls of one tvmjs bundle's namespace.
 * @typedef {{adapter: GPUAdapter, adapterInfo?: GPUAdapterInfo, device: GPUDevice}} DetectedGPU
 * @typedef {{
 *   instantiate(bufferSource: ArrayBuffer, importObject: unknown, logger: (msg: string) => void): Promise<Instance>,
 *   detectGPUDevice(powerPreference?: GPUPowerPreference): Promise<DetectedGPU | undefined>,
 *   createPolyfillWASI(): unknown,
 * }} Tvmjs
 */

/**
 * createMlcKernels's options (described there).
 * @typedef {import("./mlc/artifacts.js").FetchOptions & {
 *   tvmjs?: Tvmjs,
 *   tvmjsURL?: string,
 *   tvmjsURLs?: Record<string, string>,
 *   tvmjsBaseURL?: string,
 *   runtimes?: import("./mlc/runtimes.js").Runtime[],
 *   tokenizersURL?: string,
 *   xgrammarURL?: string,
 *   powerPreference?: GPUPowerPreference,
 *   logger?: (msg: string) => void,
 * }} MlcOptions
 */

/**
 * A loaded model: its tokenizer, its MlcModel, its grammars (none for an encoder); `lost` once
 * its device is lost, `pending` the sampled id the next decodeSteps feeds.
 * @typedef {{
 *   lost: GPUDeviceLostInfo | null,
 *   tokenizer: import("./tokenizer.js").Tokenizer,
 *   tokenizerFile: import("./tokenizer.js").TokenizerFile,
 *   model: MlcModel,
 *   grammars: Grammars | null,
 *   pending?: number | null,
 * }} LoadedModel
 */

/**
 * The sampling params this file reads (the rest go to MlcModel.sample as they are).
 * @typedef {{uniforms?: number[], history?: number[], grammar?: number | null}} StepParams
 */

/** What the bundles set or read on globalThis: tvmjs's UMD global, Deno's `process` check. */
const globals = /** @type {typeof globalThis & {tvmjs?: Tvmjs, process?: unknown, Deno?: unknown}} */ (globalThis);

/** tvmjs's UMD bundle, copied next to this file by the site build (like web-tokenizers). */
export const DEFAULT_TVMJS_URL = new URL("./vendor/tvmjs.js", import.meta.url).href;

/** The site's tvmjs/ folder: one tvmjs/<version>/index.js per shipped runtime (tools/site.py). */
export const DEFAULT_TVMJS_BASE = new URL("../tvmjs/", import.meta.url).href;

/**
 * The tvmjs namespace from its bundle: CommonJS default export, or the `tvmjs` global (UMD).
 * @param {string} url
 * @returns {Promise<Tvmjs>}
 */
async function importTvmjs(url) {
  const mod = await import(url);
  const ns = [mod, mod && mod.default, globals.tvmjs].find((m) => m && typeof m.instantiate === "function");
  if (!ns) throw namedError("ModelLoadError", `no tvmjs runtime found at ${url}`, { url });
  return ns;
}

/**
 * Under Deno tvmjs's emscripten WASI takes its Node path when it sees `process`: hide it.
 * @template T
 * @param {() => T} fn
 * @returns {T}
 */
function withoutProcess(fn) {
  const hide = globals.Deno && "process" in globalThis;
  const saved = globals.process;
  if (hide) delete globals.process;
  try {
    return fn();
  } finally {
    if (hide) globals.process = saved;
  }
}

/**
 * Progress of tvmjs's reports mapped onto one 0..1 load: fetch, upload, then shaders.
 * @param {Progress} progress
 * @returns {(report: {progress: number, text: string}) => void}
 */
function progressMapper(progress) {
  return (r) => {
    const p = Math.min(1, Math.max(0, Number(r.progress) || 0));
    if (r.text.startsWith("Fetching")) progress(0.4 * p, r.text);
    else if (r.text.startsWith("Loading model")) progress(0.4 + 0.4 * p, r.text);
    else if (r.text.startsWith("Loading GPU shader")) progress(0.8 + 0.19 * p, r.text);
    else progress(0, r.text);
  };
}

/** @param {ModelRecord} record @param {GPUDevice} device */
function checkFeatures(record, device) {
  for (const feature of record.required_features || []) {
    if (device.features.has(feature)) continue;
    if (feature === "shader-f16") {
      throw namedError(
        "ShaderF16SupportError",
        `model ${record.model_id} needs the WebGPU feature shader-f16, which this adapter lacks; pick a q4f32 variant`,
        { feature, model_id: record.model_id },
      );
    }
    throw namedError("FeatureSupportError", `model ${record.model_id} needs the WebGPU feature ${feature}`, { feature });
  }
}

/**
 * options: {tvmjs (one tvmjs namespace for every library), tvmjsURL (one bundle for every
 * library), else per library the runtime mlc/runtimes.js picks, imported from
 * tvmjsURLs[version] or tvmjsBaseURL (default DEFAULT_TVMJS_BASE) + `<version>/index.js`;
 * runtimes (default RUNTIMES), tokenizersURL, baseURL (to resolve relative model / model_lib
 * URLs), fetch, cache, powerPreference, logger}.
 * @param {MlcOptions} [options]
 */
export function createMlcKernels(options = {}) {
  /** @type {Map<string, Promise<Tvmjs>>} version → its namespace */
  const runtimes = new Map();
  /** @type {Promise<unknown>} */
  let importing = Promise.resolve();
  // Each UMD bundle sets globalThis.tvmjs as it runs: import one at a time, keep each namespace.
  /** @type {(key: string, url: string) => Promise<Tvmjs>} */
  const importOnce = (key, url) => {
    if (!runtimes.has(key)) {
      const p = importing.then(() => importTvmjs(url));
      importing = p.catch(() => {});
      runtimes.set(key, p);
      p.catch(() => runtimes.delete(key));
    }
    return /** @type {Promise<Tvmjs>} */ (runtimes.get(key));
  };
  /** @type {(record: ModelRecord, wasm: Uint8Array) => Promise<{lib: Tvmjs, version: string | null}>} */
  const tvmjs = async (record, wasm) => {
    if (options.tvmjs) return { lib: options.tvmjs, version: null };
    if (options.tvmjsURL) return { lib: await importOnce("", options.tvmjsURL), version: null };
    const rt = pickRuntime(record, wasm, options.runtimes || RUNTIMES);
    const url = (options.tvmjsURLs || {})[rt.version] || runtimeURL(options.tvmjsBaseURL || DEFAULT_TVMJS_BASE, rt.version);
    return { lib: await importOnce(rt.version, url), version: rt.version };
  };
  /** @type {Map<number, LoadedModel>} */
  const models = new Map();
  let nextHandle = 1;
  /** @type {DetectedGPU | null} the last load's */
  let lastGpu = null;

  const get = (/** @type {number} */ handle) => {
    const m = models.get(handle);
    if (!m) throw namedError("ModelNotLoadedError", `no model is loaded under handle ${handle}`, { handle });
    if (m.lost) {
      throw namedError("DeviceLostError", `WebGPU device lost: ${m.lost.message || m.lost.reason || "unknown reason"}`, {
        reason: String(m.lost.reason ?? ""),
      });
    }
    return m;
  };
  const { constraint, openGrammar, closeGrammar } = grammarCalls((handle) => {
    const m = get(handle);
    if (!m.grammars) throw namedError("IncorrectPipelineLoadedError", "this model is an encoder: it only embeds");
    return m.grammars;
  });

  /** @param {ModelRecord} record */
  async function open(record) {
    const modelURL = modelBase(record, options);
    const libURL = resolveURL(record.model_lib, options);
    const files = new ArtifactStore(record, modelURL, options);
    files.pin(libURL, (record.sha256 || {})[/** @type {string} */ (record.model_lib)]); // load() checked it is set
    /** @type {ChatConfig} */
    const config = { ...(await files.json(new URL("mlc-chat-config.json", modelURL).href)), ...(record.overrides || {}) };
    const wasm = await files.bytes(libURL);
    const { lib, version } = await tvmjs(record, wasm);
    const wasi = withoutProcess(() => lib.createPolyfillWASI());
    /** @type {Instance} */
    let tvm;
    try {
      // A fetched file's bytes: never on a SharedArrayBuffer.
      const buffer = /** @type {ArrayBuffer} */ (wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));
      tvm = await lib.instantiate(buffer, wasi, options.logger || console.log);
    } catch (e) {
      throw namedError(
        "ModelLoadError",
        `${libURL} does not link against tvmjs${version ? ` ${version}` : ""} (${e.message}); a model library and tvmjs must come from matching releases`,
        { url: libURL, tvmjs_version: version },
      );
    }
    return { lib, tvm, config, files, modelURL };
  }

  return {
    backend: "mlc",

    /** @param {ModelRecord} record @param {Progress} [progress] */
    async load(record, progress = () => {}) {
      const t0 = performance.now();
      if (!record.model_lib) {
        throw namedError("ModelLibraryMissingError", `model ${record.model_id} has no model_lib (the URL of its MLC library .wasm)`, {
          model_id: record.model_id,
        });
      }
      const { lib, tvm, config, files, modelURL } = await open(record);
      /** @type {{[K in keyof LoadedModel]: LoadedModel[K] | null}} what is loaded so far */
      const entry = { lost: null, tokenizer: null, tokenizerFile: null, model: null, grammars: null };
      /** @type {DetectedGPU | undefined | null} */
      let gpu = null;
      /** @type {GPUDevice | null} */
      let device = null;
      let bound = false;
      try {
        tvm.registerInitProgressCallback(progressMapper(progress));
        gpu = await lib.detectGPUDevice(options.powerPreference || "high-performance");
        if (!gpu) throw namedError("WebGPUNotAvailableError", "navigator.gpu is missing in this context");
        device = gpu.device;
        checkFeatures(record, device);
        device.lost.then((info) => {
          entry.lost = info;
        });
        tvm.initWebGPU(device);
        bound = true;
        const tokName = (config.tokenizer_files || ["tokenizer.json"]).find((/** @type {string} */ f) => f === "tokenizer.json" || f.endsWith(".model"));
        if (!tokName) throw namedError("UnsupportedTokenizerFilesError", `no usable tokenizer in ${config.tokenizer_files}`, {
            files: config.tokenizer_files,
          });
        const tokBytes = await files.bytes(new URL(tokName, modelURL).href);
        entry.tokenizer = await loadTokenizer({ name: tokName, bytes: tokBytes }, options.tokenizersURL || DEFAULT_TOKENIZERS_URL);
        entry.tokenizerFile = { name: tokName, bytes: tokBytes };
        await fetchWeights(tvm, modelURL, tvm.webgpu(), files);
        const embedding = record.model_type === "embedding" || config.model_type === "bert";
        entry.model = new MlcModel(tvm, config, embedding);
        await entry.model.loadPipelines();
      } catch (e) {
        entry.tokenizer?.dispose();
        if (entry.model) entry.model.dispose(entry.lost !== null);
        else if (entry.lost === null) tvm.dispose();
        if (device && !bound) device.destroy();
        throw entry.lost ? namedError("DeviceLostError", `WebGPU device lost while loading: ${e.message}`) : e;
      }
      if (!entry.model.embedding) {
        entry.grammars = new Grammars(entry.tokenizer, entry.tokenizerFile, Number(config.vocab_size), options.xgrammarURL || DEFAULT_XGRAMMAR_URL);
      }
      const handle = nextHandle++;
      models.set(handle, /** @type {LoadedModel} */ (entry));
      lastGpu = gpu;
      const info = /** @type {Partial<GPUAdapterInfo>} */ (gpu.adapterInfo || {});
      const label = info.description || info.vendor || "WebGPU";
      const m = /** @type {MlcModel} */ (entry.model);
      const out = { ...config, prefill_chunk_size: m.chunk, context_window_size: m.ctx };
      progress(1, `Finish loading on WebGPU - ${label} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
      return { handle, config: out };
    },

    /**
     * Resolves to what tvmjs still held just before the instance went (MlcModel.dispose).
     * @param {number} handle
     */
    async unload(handle) {
      const m = models.get(handle);
      if (!m) return null;
      models.delete(handle);
      await m.grammars?.dispose();
      m.tokenizer.dispose();
      return m.model.dispose(m.lost !== null);
    },

    /** @param {number} handle @param {string} text */
    async tokenize(handle, text) {
      return Array.from(get(handle).tokenizer.encode(text));
    },

    /** @param {number} handle @param {number[]} ids */
    async detokenize(handle, ids) {
      return get(handle).tokenizer.decode(Int32Array.from(ids));
    },

    /** @param {number} handle @param {number[]} ids */
    async prefill(handle, ids) {
      const m = get(handle);
      m.pending = null;
      m.model.prefill(Array.from(ids));
    },

    /** @param {number} handle @param {number} token */
    async decode(handle, token) {
      const m = get(handle);
      m.pending = null;
      m.model.decode(Number(token));
    },

    /** @param {number} handle @param {StepParams} params */
    async sample(handle, params) {
      const m = get(handle);
      const out = await m.model.sample(params, (params.uniforms || [0])[0] ?? 0, constraint(handle, params));
      delete out.ended;
      m.pending = out.token;
      return out;
    },

    /** @param {number} handle @param {number} n @param {StepParams} params */
    async decodeSteps(handle, n, params) {
      const m = get(handle);
      const uniforms = params.uniforms || [];
      if (n > 0 && m.pending == null) throw namedError("InvalidRequestFieldError", "decodeSteps needs a sample() first");
      if (uniforms.length < n) throw namedError("InvalidRequestFieldError", `decodeSteps(${n}) needs ${n} uniforms, got ${uniforms.length}`);
      const grammar = constraint(handle, params);
      /** @type {Awaited<ReturnType<MlcModel["sample"]>>[]} */
      const out = [];
      for (let i = 0; i < n; i++) {
        m.model.decode(/** @type {number} */ (m.pending)); // set: checked above, then by each step
        const step = { ...params, history: [...(params.history || []), ...out.map((s) => s.token)] };
        const s = await m.model.sample(step, uniforms[i], grammar);
        const ended = s.ended;
        delete s.ended;
        out.push(s);
        m.pending = s.token;
        if (ended) break; // the grammar is done: the rest of the batch would be unconstrained
      }
      return out;
    },

    openGrammar,
    closeGrammar,

    /**
     * Test hook (mirrors the wgsl shim's and ReferenceKernels.logits): the current logits.
     * @param {number} handle
     */
    async logits(handle) {
      return get(handle).model.readLogits();
    },

    /** @param {number} handle @param {number} length */
    async rewind(handle, length) {
      const m = get(handle);
      m.pending = null;
      m.model.rewind(Number(length));
    },

    /** @param {number} handle */
    async reset(handle) {
      const m = get(handle);
      m.pending = null;
      m.model.reset();
    },

    /** @param {number} handle @param {number[][]} batch */
    async embed(handle, batch) {
      return get(handle).model.embed(batch.map((row) => Array.from(row)));
    },

    /** @param {number} handle */
    async stats(handle) {
      const m = get(handle).model;
      return { ...m.stats, kv_length: m.length, context_window_size: m.ctx };
    },

    /** The device of the last loaded model (tvmjs opens one device per model). */
    async deviceInfo() {
      if (!lastGpu) throw namedError("ModelNotLoadedError", "the mlc backend opens its device when a model loads");
      const { device, adapterInfo: info = /** @type {Partial<GPUAdapterInfo>} */ ({}) } = lastGpu;
      return {
        vendor: info.vendor || "",
        architecture: info.architecture || "",
        description: info.description || "",
        maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
        features: Array.from(device.features),
      };
    },
  };
}
