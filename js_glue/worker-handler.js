/* @ts-self-types="./worker-handler.d.ts" */
// The worker side of the web-llm API: `WebWorkerMLCEngineHandler`, so a worker script written
// for web-llm runs unchanged with only its import pointed here:
//   import { WebWorkerMLCEngineHandler } from "./worker-handler.js";
//   const handler = new WebWorkerMLCEngineHandler();
//   self.onmessage = (msg) => handler.onmessage(msg);
// (worker.js, this site's own module worker, is exactly those three lines.) The worker runs the
// same host as the shared and service workers (host.js: Pyodide from this site's own origin, the
// py_worker wheel, the WebGPU kernel shim, the site's app-config.json given to Python first,
// heartbeats, size limits, one reply per message); `createWorkerHost` is that host as the
// dedicated worker speaks it: one caller (the page) whose heartbeats list its held requests,
// `workerTimeline` and `workerReady` (posted once, unsolicited, when Python is ready, before the
// replies to what was queued meanwhile), "worker boot failed" in WorkerBootError, the first
// `reload` seen while booting prefetched (prefetch.js), and Pyodide and the kernels imported
// dynamically, so a missing or broken part is reported as a reply (WorkerBootError), or as a
// shim that names why, not as a worker that never answers. A worker script may add kinds of its
// own (`createWorkerHost`'s `kinds`: bench-worker.js's measurements).

import { LogitProcessorNotSupportedError, UnsupportedEngineOptionError } from "./errors.js";
import { createHost } from "./host.js";
import { PYODIDE_URL } from "./pyodide-host.js";

/**
 * The dedicated worker: host.js's one host as this worker speaks it, returning
 * `{receive(msg), refuse(error)}`: `receive` takes one message as postMessage delivered it and
 * every reply leaves through `send(plain)`, `workerReady` included; `refuse(error)` makes every
 * later request fail with that error (heartbeats are still answered). WebWorkerMLCEngineHandler
 * wraps it. `options.kinds` (none in production) maps more kinds to
 * `(content, {request, shim}) => Promise<content>`, answered once Python is ready (host.js).
 * @param {(message: unknown) => void} send
 * @param {{kinds?: Map<string, import("./host.js").ExtraKind>}} [options]
 */
export function createWorkerHost(send, options = {}) {
  const host = createHost({
    name: "worker",
    // Imported dynamically so that a missing or broken part is reported as a reply, not as a
    // worker that never answers. backends.js dispatches each model to the wgsl shim or, for
    // records with a model library, to tvmjs.
    importPyodide: () => import(`${PYODIDE_URL}pyodide.mjs`),
    importKernels: () => import("./kernels/backends.js"),
    kinds: options.kinds,
    prefetch: true,
    onReady: (/** @type {Record<string, unknown>} */ timeline) => send({ kind: "workerReady", uuid: null, content: timeline }),
  });
  return { receive: host.connect(send), refuse: host.refuse };
}

/** @param {unknown} event @returns {event is MessageEvent} */
const isMessageEvent = (event) => typeof MessageEvent !== "undefined" && event instanceof MessageEvent;

/**
 * A web-llm logitProcessorRegistry (a Map of model id -> processor) that is not empty.
 * @param {unknown} registry
 */
function nonEmptyRegistry(registry) {
  if (registry === undefined || registry === null) return false;
  if (registry instanceof Map) return registry.size > 0;
  return typeof registry === "object" && Object.keys(registry).length > 0;
}

/**
 * The error every request gets after an unsupported handler option was given.
 * @param {string} option @param {string[]} [models]
 */
export function unsupportedHandlerOption(option, models = []) {
  if (option === "logitProcessorRegistry") {
    return new LogitProcessorNotSupportedError(
      "Custom logit processors (logitProcessorRegistry) are not supported by py_worker: sampling runs in the " +
        "engine's own GPU decode loop, and a processor written in JS cannot run there. Use logit_bias in the request instead.",
      { option, models },
    );
  }
  return new UnsupportedEngineOptionError(
    `WebWorkerMLCEngineHandler takes no ${option}: the handler creates py_worker's own engine in this worker.`,
    { option },
  );
}

/**
 * web-llm's WebWorkerMLCEngineHandler for a dedicated module worker. `onmessage(event)` takes a
 * MessageEvent or the message itself; replies leave through `this.postMessage(msg)` (the worker's
 * postMessage; a subclass may override it, as with web-llm). An unsupported option (an engine
 * argument, a non-empty logit processor registry) makes every request of this handler fail with a
 * named error (UnsupportedEngineOptionError, LogitProcessorNotSupportedError) instead of running.
 */
export class WebWorkerMLCEngineHandler {
  /** @param {unknown} [engine] */
  constructor(engine) {
    /** @type {object | null} */
    this.engine = null; // the engine is Python's; there is no JS engine object here
    /** @type {string | undefined} */
    this.modelId = undefined;
    /** @type {object | undefined} */
    this.chatOpts = undefined;
    this.host = createWorkerHost((message) => this.postMessage(message));
    if (engine !== undefined) this.host.refuse(unsupportedHandlerOption("engine"));
  }

  /** @param {unknown} message */
  postMessage(message) {
    self.postMessage(message);
  }

  /** @param {unknown} event */
  onmessage(event) {
    this.host.receive(isMessageEvent(event) ? event.data : event);
  }

  /**
   * web-llm's hook for custom logit processors: an empty registry is accepted, any other refused.
   * @param {Map<string, unknown> | Record<string, unknown>} [registry]
   */
  setLogitProcessorRegistry(registry) {
    if (!nonEmptyRegistry(registry)) return;
    const models = registry instanceof Map ? [...registry.keys()].map(String) : Object.keys(/** @type {object} */ (registry));
    const error = unsupportedHandlerOption("logitProcessorRegistry", models);
    console.error(`py_worker: ${error.message}`);
    this.host.refuse(error);
  }
}
