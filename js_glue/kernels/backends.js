// Which backend runs a model record, and one kernel-ABI object (docs/CONTRACTS.md) over them:
// `wgsl` (index.js, the project's own kernels), `mlc` (mlc.js, tvmjs + an MLC model library) and
// `wasm` (wasm.js, llama.cpp on the CPU), with the request-level API of remote models beside it
// (remote.js: `remoteOpen` …). Handles are this file's own; each maps to a backend and that
// backend's handle, so the backends' handle counters never collide.

import { createKernels as createWgslKernels } from "./index.js";
import { createMlcKernels } from "./mlc.js";
import { createWasmKernels, workerlessContext } from "./wasm.js";
import { isGgufRecord } from "./gguf.js";
import { namedError } from "./errors.js";
import { createRemote } from "./remote.js";

export * from "./index.js";
export { siteOptions } from "./site_options.js";

const BACKENDS = ["wgsl", "mlc", "wasm"];

/** @typedef {import("./loader.js").ModelRecord} ModelRecord */
/** @typedef {import("./loader.js").Progress} Progress */
/**
 * One backend's kernel ABI (docs/CONTRACTS.md): the calls this file makes by name, and the
 * per-handle ones it routes (ROUTED).
 * @typedef {{
 *   load(record: ModelRecord, progress: Progress): Promise<{handle: number, config: import("./loader.js").ChatConfig}>,
 *   unload(handle: number): Promise<unknown>,
 *   deviceInfo(): Promise<unknown>,
 *   [method: string]: unknown,
 * }} Backend
 */
/**
 * createKernels's options: every backend's, plus `backend` (a name, checked by backendChoice)
 * and `backends` (unit tests of this layer only).
 * @typedef {import("./index.js").WgslOptions & import("./wasm.js").WasmOptions
 *   & NonNullable<Parameters<typeof createMlcKernels>[0]>
 *   & {backend?: string, backends?: Record<string, Backend>}} KernelOptions
 */
/**
 * What probeGpu found: whether WebGPU here has a hardware adapter (and why not), and whether
 * this context can start workers (`workerless` names it where it cannot).
 * @typedef {{hardware: boolean, reason: string, workers?: boolean, workerless?: string | null}} GpuProbe
 */

/**
 * The backend for `record` and why: the user's `options.backend` forces one for every model;
 * else the record's own `backend`; else `mlc` when the record names a `model_lib`; else, for a
 * GGUF, `wasm` when `gpu` (`probeGpu`) found no WebGPU adapter or only a fallback or software
 * one (llama.cpp on the CPU is faster than our kernels on a CPU's WebGPU); else `wgsl`.
 * @param {ModelRecord} record @param {KernelOptions} [options] @param {GpuProbe} [gpu]
 * @returns {{name: string, reason: string}}
 */
export function backendChoice(record, options = {}, gpu = { hardware: true, reason: "" }) {
  const forced = options.backend || record.backend;
  if (forced && !BACKENDS.includes(forced)) {
    throw namedError("ModelLoadError", `unknown backend ${JSON.stringify(forced)}; use one of ${BACKENDS.join(", ")}`, { backend: forced });
  }
  if (forced) return { name: forced, reason: options.backend ? "the engine's backend option" : "the record's backend" };
  if (record.model_lib) return { name: "mlc", reason: "the record names a model library" };
  if (isGgufRecord(record) && !gpu.hardware) {
    if (gpu.workers === false) {
      return { name: "wgsl", reason: `${gpu.reason}, but llama.cpp needs a worker of its own, which ${gpu.workerless || "this context"} cannot start` };
    }
    return { name: "wasm", reason: gpu.reason };
  }
  return { name: "wgsl", reason: gpu.reason || (isGgufRecord(record) ? "a GGUF on our WebGPU kernels" : "an MLC model directory") };
}

/** What our kernels refuse in a GGUF that llama.cpp runs: an architecture, a block format, a tokenizer. */
const WGSL_REFUSALS = ["UnsupportedArchitectureError", "UnsupportedWeightFormatError", "UnsupportedTokenizerError"];

/**
 * The other backend for a GGUF whose machine-chosen backend (not the user's) failed with `e`:
 * our WebGPU kernels where llama.cpp cannot start here (a CSP without `worker-src blob:` stops
 * its worker); llama.cpp where our kernels do not run the file and this context can start its
 * worker; else null (the error stands).
 * @param {string} name @param {Error} e @param {GpuProbe | undefined} gpu
 */
function fallbackFor(name, e, gpu) {
  if (name === "wasm" && e?.name === "ModelLoadError") return "wgsl";
  if (name === "wgsl" && WGSL_REFUSALS.includes(e?.name) && gpu?.workers !== false) return "wasm";
  return null;
}

/**
 * The backend's name alone (backendChoice with a hardware GPU).
 * @param {ModelRecord} record @param {KernelOptions} [options]
 */
export function chooseBackend(record, options = {}) {
  return backendChoice(record, options).name;
}

/** @type {Promise<GpuProbe> | null} */
let probed = null;

/**
 * Whether WebGPU here has a hardware adapter, and whether this context can start workers:
 * {hardware, reason, workers}. Asked once per worker, and only when a choice depends on it.
 */
export function probeGpu() {
  const workerless = workerlessContext();
  probed ??= (async () => ({ ...(await adapterKind()), workers: !workerless, workerless }))();
  return probed;
}

/** {hardware, reason}: no adapter, a fallback one, a software one by its name, or hardware. */
async function adapterKind() {
  if (!globalThis.navigator?.gpu) return { hardware: false, reason: "no WebGPU in this context" };
  /** @type {any} */
  const adapter = await navigator.gpu.requestAdapter().catch(() => null);
  if (!adapter) return { hardware: false, reason: "no WebGPU adapter" };
  const info = adapter.info || {};
  const name = info.description || [info.vendor, info.architecture].filter(Boolean).join(" ") || "unnamed";
  if (adapter.isFallbackAdapter || info.isFallbackAdapter) return { hardware: false, reason: `the WebGPU adapter is a fallback one (${name})` };
  if (/swiftshader|lavapipe|llvmpipe|software|cpu/i.test(`${info.vendor} ${info.architecture} ${info.description}`)) {
    return { hardware: false, reason: `the WebGPU adapter is a software one (${name})` };
  }
  return { hardware: true, reason: `a hardware WebGPU adapter (${name})` };
}

/** Per-handle ABI calls that are routed unchanged to the backend that loaded the handle. */
const ROUTED = [
  "tokenize", "detokenize", "prefill", "decode", "sample", "decodeSteps", "openGrammar", "closeGrammar", "rewind", "reset", "embed", "stats", "logits",
];

/**
 * options: everything index.js, mlc.js and wasm.js take, plus `backend` ("wgsl" | "mlc" | "wasm":
 * force one for every model). `options.backends` replaces the backends (unit tests of this layer
 * only).
 * @param {KernelOptions} [options]
 */
export async function createKernels(options = {}) {
  /** @type {Record<string, Promise<Backend>>} */
  const made = {};
  /** @type {Record<string, () => Backend | Promise<Backend>>} */
  const make = {
    wgsl: () => createWgslKernels(options),
    mlc: () => createMlcKernels(options),
    wasm: () => createWasmKernels(options),
  };
  /** @param {string} name */
  const backend = (name) => (made[name] ??= Promise.resolve(options.backends ? options.backends[name] : make[name]()));
  /** @type {Map<number, {name: string, kernels: Backend, handle: number}>} */
  const handles = new Map();
  let nextHandle = 1;

  /** @param {number} handle */
  const route = (handle) => {
    const h = handles.get(handle);
    if (!h) throw namedError("ModelNotLoadedError", `no model is loaded under handle ${handle}`, { handle });
    return h;
  };

  const api = {
    backend: "auto",
    ...createRemote(),

    /** @param {ModelRecord} record @param {Progress} [progress] */
    async load(record, progress = () => {}) {
      const asks = !options.backend && !record.backend && !record.model_lib && isGgufRecord(record);
      const gpu = asks && !options.backends ? await probeGpu() : undefined;
      let { name, reason } = backendChoice(record, options, gpu);
      // The last report ("Finish loading on …") says which backend and why.
      /** @type {Progress} */
      const report = (f, text) => progress(f, f >= 1 ? `${text} [backend ${name}: ${reason}]` : text);
      let kernels = await backend(name);
      let loaded;
      try {
        loaded = await kernels.load(record, report);
      } catch (e) {
        const other = asks ? fallbackFor(name, e, gpu) : null;
        if (!other) throw e;
        reason = `${reason}, but ${other === "wgsl" ? "llama.cpp did not start" : "our kernels do not run it"} (${e.message})`;
        name = other;
        kernels = await backend(name);
        loaded = await kernels.load(record, report);
      }
      const { handle, config } = loaded;
      const outer = nextHandle++;
      handles.set(outer, { name, kernels, handle });
      return { handle: outer, config: { ...config, backend: name, backend_reason: reason }, backend: name };
    },

    /** Resolves to the backend's own answer (the mlc backend's: what tvmjs still held). @param {number} handle */
    async unload(handle) {
      const h = handles.get(handle);
      if (!h) return null;
      handles.delete(handle);
      return (await h.kernels.unload(h.handle)) ?? null;
    },

    /** The forced backend's device, else the wgsl backend's (the one that opens a device eagerly). */
    async deviceInfo() {
      return (await backend(options.backend || "wgsl")).deviceInfo();
    },
  };
  for (const method of ROUTED) {
    /** @type {Record<string, unknown>} */ (api)[method] = async (/** @type {number} */ handle, /** @type {unknown[]} */ ...args) => {
      const h = route(handle);
      if (typeof h.kernels[method] !== "function") {
        throw namedError("ModelLoadError", `the ${h.name} backend has no ${method}`, { backend: h.name });
      }
      return h.kernels[method](h.handle, ...args);
    };
  }
  return api;
}
