// Which backend runs a model record, and one kernel-ABI object (docs/CONTRACTS.md) over both:
// `wgsl` (index.js, the project's own kernels) and `mlc` (mlc.js, tvmjs + an MLC model library),
// with the request-level API of remote models beside it (remote.js: `remoteOpen` …).
// Handles are this file's own; each maps to a backend and that backend's handle, so the two
// backends' handle counters never collide.

import { createKernels as createWgslKernels } from "./index.js";
import { createMlcKernels } from "./mlc.js";
import { namedError } from "./errors.js";
import { createRemote } from "./remote.js";

export * from "./index.js";

const BACKENDS = ["wgsl", "mlc"];

/**
 * The backend for `record`: the user's `options.backend` forces one for every model; else the
 * record's own `backend`; else `mlc` when the record names a `model_lib`, `wgsl` otherwise.
 */
export function chooseBackend(record, options = {}) {
  const forced = options.backend || record.backend;
  if (forced && !BACKENDS.includes(forced)) {
    throw namedError("ModelLoadError", `unknown backend ${JSON.stringify(forced)}; use "wgsl" or "mlc"`, { backend: forced });
  }
  return forced || (record.model_lib ? "mlc" : "wgsl");
}

/** Per-handle ABI calls that are routed unchanged to the backend that loaded the handle. */
const ROUTED = [
  "tokenize", "detokenize", "prefill", "decode", "sample", "decodeSteps", "openGrammar", "closeGrammar", "rewind", "reset", "embed", "stats", "logits",
];

/**
 * options: everything index.js and mlc.js take, plus `backend` ("wgsl" | "mlc": force one for
 * every model). `options.backends` replaces the two backends (unit tests of this layer only).
 */
export async function createKernels(options = {}) {
  const made = {};
  const make = {
    wgsl: () => createWgslKernels(options),
    mlc: () => createMlcKernels(options),
  };
  const backend = (name) => (made[name] ??= Promise.resolve(options.backends ? options.backends[name] : make[name]()));
  const handles = new Map();
  let nextHandle = 1;

  const route = (handle) => {
    const h = handles.get(handle);
    if (!h) throw namedError("ModelNotLoadedError", `no model is loaded under handle ${handle}`, { handle });
    return h;
  };

  const api = {
    backend: "auto",
    ...createRemote(),

    async load(record, progress = () => {}) {
      const name = chooseBackend(record, options);
      const kernels = await backend(name);
      const { handle, config } = await kernels.load(record, progress);
      const outer = nextHandle++;
      handles.set(outer, { name, kernels, handle });
      return { handle: outer, config, backend: name };
    },

    async unload(handle) {
      const h = handles.get(handle);
      if (!h) return;
      handles.delete(handle);
      await h.kernels.unload(h.handle);
    },

    /** The forced backend's device, else the wgsl backend's (the one that opens a device eagerly). */
    async deviceInfo() {
      return (await backend(options.backend || "wgsl")).deviceInfo();
    },
  };
  for (const method of ROUTED) {
    api[method] = async (handle, ...args) => {
      const h = route(handle);
      if (typeof h.kernels[method] !== "function") {
        throw namedError("ModelLoadError", `the ${h.name} backend has no ${method}`, { backend: h.name });
      }
      return h.kernels[method](h.handle, ...args);
    };
  }
  return api;
}
