/* @ts-self-types="./worker-handler.d.ts" */
// The worker side of the web-llm API: `WebWorkerMLCEngineHandler`, so a worker script written
// for web-llm runs unchanged with only its import pointed here:
//   import { WebWorkerMLCEngineHandler } from "./worker-handler.js";
//   const handler = new WebWorkerMLCEngineHandler();
//   self.onmessage = (msg) => handler.onmessage(msg);
// (worker.js, this site's own module worker, is exactly those three lines.) The handler boots
// Pyodide from this site's own origin, installs the py_worker wheel, creates the WebGPU kernel
// shim and hands every protocol message to the Python handler (py_worker.worker_main). The site's
// app-config.json (next to this file) is given to Python first, so a page that passes no appConfig
// gets this site's models; a setAppConfig from the page replaces it.
// Messages that arrive while booting are queued in order; once Python is ready the worker posts
// one unsolicited {kind: "workerReady", content: timeline}. Some kinds are answered here, never by
// Python: `heartbeat` (the proxy's liveness check, which must be answered even while Python is
// busy) and `workerTimeline` (boot timings); a worker script may add kinds of its own
// (`createWorkerHost`'s `kinds`: bench-worker.js's measurements).
// The first `reload` seen while booting starts that model's downloads at once, so the network
// overlaps Pyodide's boot (see `prefetch`). Nothing from a message is ever evaluated as code.
// Every message gets its reply here even when handing it on fails: a kind is looked up only
// among this file's own diagnostics (never an inherited property such as "constructor"), a
// message over limits.js's size is refused with MessageTooLargeError before Python sees it, and
// an error thrown while delivering becomes that message's `throw`, never the worker's error event.
// A heartbeat's answer names this instance and the requests it holds (received, not yet
// answered), which lets the proxy tell a request that was lost from one that is still running.
// Pyodide and the kernels are imported dynamically, so a missing or broken part is reported as a
// reply (WorkerBootError), not as a worker that never answers; the boot steps themselves are
// pyodide-host.js's, shared with host.js.

import { loadAppConfig } from "./app-config.js";
import { LogitProcessorNotSupportedError, UnsupportedEngineOptionError } from "./errors.js";
import { refusal } from "./limits.js";
import { modelDirURL } from "./kernels/loader.js";
import {
  BASE, PYODIDE_URL, TERMINAL, bootErrorContent, bootPyodide, clock, createShim, errorContent, plainOf,
  startWorkerMain, unavailableShim, unreadableContent,
} from "./pyodide-host.js";

/**
 * Boot Pyodide, the wheel and the kernel shim now, and return `{receive(msg), refuse(error)}`:
 * `receive` takes one message as postMessage delivered it and every reply leaves through
 * `send(plain)`; `refuse(error)` makes every later request fail with that error (heartbeats are
 * still answered). This is the whole of the module worker; WebWorkerMLCEngineHandler wraps it.
 * `options.kinds` (none in production) maps more kinds to `(content, worker) => Promise<content>`,
 * answered here once Python is ready; `worker` is `{request(kind, content), shim}`: a protocol
 * request to the Python handler made from inside the worker, and the kernel shim.
 */
export function createWorkerHost(send, options = {}) {
  const timeline = { workerStart: clock() };
  const queue = [];
  let python = null; // hands a message to Python, once it runs
  let deliver = null; // the same, set once Python is ready for the page's messages
  let bootError = null;
  let kernelShim = null;
  const localWaiters = new Map(); // uuid -> {resolve, reject}: replies to requests made in here
  const INSTANCE = crypto.randomUUID();
  const held = new Map(); // uuid -> count: requests received from the page and not yet answered
  let refused = null; // {name, message, fields} once refuse() was called

  function hold(msg) {
    if (msg && typeof msg === "object" && typeof msg.uuid === "string") held.set(msg.uuid, (held.get(msg.uuid) || 0) + 1);
  }

  function release(reply) {
    if (!reply || !TERMINAL.has(reply.kind) || !held.has(reply.uuid)) return;
    const n = held.get(reply.uuid) - 1;
    if (n > 0) held.set(reply.uuid, n);
    else held.delete(reply.uuid);
  }

  function post(message) {
    const plain = plainOf(message);
    prefetch.settled(plain);
    const waiter = plain && localWaiters.get(plain.uuid);
    if (waiter) {
      if (plain.kind === "return" || plain.kind === "throw") localWaiters.delete(plain.uuid);
      if (plain.kind === "return") waiter.resolve(plain.content);
      if (plain.kind === "throw") waiter.reject(Object.assign(new Error(plain.content.message), plain.content));
      return;
    }
    release(plain);
    send(plain);
  }

  /** A protocol request to the Python handler from inside the worker. */
  function localRequest(kind, content) {
    return new Promise((resolve, reject) => {
      const uuid = `local-${crypto.randomUUID()}`;
      localWaiters.set(uuid, { resolve, reject });
      python({ kind, uuid, content });
    });
  }

  /** More kinds answered here (a Map: a kind is looked up among its own entries only). */
  const extraKinds = options.kinds || new Map();

  function replyError(msg, error) {
    post({ kind: "throw", uuid: msg && typeof msg === "object" ? msg.uuid : null, content: errorContent(error) });
  }

  /** Hand a message to Python; if that throws, the message is answered with the error. */
  function deliverSafely(msg) {
    try {
      deliver(msg);
    } catch (err) {
      replyError(msg, unreadableContent(err));
    }
  }

  /** One message from the page (or another host of this worker's protocol). */
  function receive(msg) {
    const isObject = msg !== null && typeof msg === "object";
    const kind = isObject ? msg.kind : undefined;
    if (kind === "heartbeat") {
      post({ kind: "return", uuid: msg.uuid, content: { alive: true, booted: deliver !== null, instance: INSTANCE, held: [...held.keys()] } });
      return;
    }
    if (kind === "workerTimeline") {
      post({ kind: "return", uuid: msg.uuid, content: { ...timeline, instance: INSTANCE, now: clock() } });
      return;
    }
    hold(msg);
    const tooLarge = isObject ? refusal(kind, msg.content) : null;
    if (refused !== null && isObject) {
      post({ kind: "throw", uuid: msg.uuid, content: refused });
    } else if (tooLarge !== null) {
      post({ kind: "throw", uuid: msg.uuid, content: tooLarge });
    } else if (deliver !== null && typeof kind === "string" && extraKinds.has(kind)) {
      const answer = extraKinds.get(kind);
      Promise.resolve()
        .then(() => answer(msg.content || {}, { request: localRequest, shim: kernelShim }))
        .then((content) => post({ kind: "return", uuid: msg.uuid, content }), (error) => replyError(msg, error));
    } else if (deliver !== null) {
      deliverSafely(msg);
    } else if (bootError !== null) {
      replyError(msg, bootError);
    } else {
      queue.push(msg);
      try {
        prefetch.observe(msg);
      } catch (err) {
        console.warn(`py_worker worker: no prefetch: ${err}`); // only an optimisation
      }
    }
  }

  function receiveSafely(msg) {
    try {
      receive(msg);
    } catch (err) {
      replyError(msg, err); // this worker's own bug: still one reply, never an error event
    }
  }

  // Start downloading the first requested model while Pyodide boots. The responses wait in
  // `prefetched` until the shim's loader asks for the same URL (through `shimFetch`); the loader
  // still checks every byte's sha256 and fills its cache as usual. Whatever the loader does not
  // take (it found the files in its cache) is dropped when that reload is answered.
  const prefetched = new Map(); // absolute URL -> Promise<Response>
  const prefetch = {
    appConfig: null,
    reloadUuid: null,
    observe(msg) {
      if (!msg || typeof msg !== "object") return;
      if (msg.kind === "setAppConfig" && msg.content) this.appConfig = msg.content.appConfig;
      if (msg.kind === "reload" && this.reloadUuid === null) {
        this.reloadUuid = msg.uuid;
        const ids = msg.content && Array.isArray(msg.content.modelId) ? msg.content.modelId : [];
        const given = this.appConfig;
        Promise.resolve(given || defaultAppConfig).then((config) => {
          const list = (config && config.model_list) || [];
          const record = list.find((r) => r.model_id === ids[0]);
          if (record && !record.model_lib) return this.start(record);
          return null;
        }).catch(() => {}); // the real load reports failures
      }
    },
    settled(reply) {
      if (reply && reply.uuid === this.reloadUuid && (reply.kind === "return" || reply.kind === "throw")) {
        prefetched.clear();
      }
    },
    async start(record) {
      const model = String(record.model);
      // A GGUF is one file with no mlc-chat-config.json or tensor-cache.json beside it to ask for;
      // fetching it here would also download it again on a visit whose cache already holds it.
      if (/\.gguf([?#].*)?$/i.test(model)) return;
      timeline.prefetchStart = clock();
      const base = modelDirURL(model, BASE);
      const get = (name) => {
        const url = new URL(name, base).href;
        const response = fetch(url);
        response.catch(() => {});
        return { url, response };
      };
      const json = async (name) => {
        const { url, response } = get(name);
        prefetched.set(url, response.then((r) => r.clone()));
        const r = await response;
        return r.ok ? r.json() : null;
      };
      const [config, index] = await Promise.all([json("mlc-chat-config.json"), json("tensor-cache.json")]);
      const names = [...((index && index.records) || []).map((r) => r.dataPath)];
      if (config) names.push(...(config.tokenizer_files || []).filter((f) => f === "tokenizer.json"));
      for (const name of names) {
        const { url, response } = get(name);
        prefetched.set(url, response);
      }
      timeline.prefetchFiles = names.length;
    },
  };

  /** The fetch the kernel shim uses: a prefetched response when there is one, else the network. */
  function shimFetch(input, init) {
    const key = new URL(String(input), BASE).href;
    const early = prefetched.get(key);
    if (early === undefined) return fetch(input, init);
    prefetched.delete(key);
    return early;
  }

  // Imported dynamically so that a missing or broken part is reported as a reply, not as a worker
  // that never answers.
  // backends.js dispatches each model to the wgsl shim or, for records with a model library, to tvmjs.
  const kernelsModule = import("./kernels/backends.js").catch((err) => {
    timeline.kernelsImportError = String(err);
    return null;
  });

  /** pyodide-host.js's shim over the dynamically imported kernels, with the prefetched responses. */
  async function createWorkerShim() {
    const kernels = await kernelsModule;
    if (!kernels) return unavailableShim(timeline.kernelsImportError);
    const backend = new URL(self.location.href).searchParams.get("backend") || undefined;
    return createShim(kernels.createKernels, { backend, fetch: shimFetch });
  }

  async function boot() {
    const { loadPyodide } = await import(`${PYODIDE_URL}pyodide.mjs`);
    const shimReady = createWorkerShim();
    const pyodide = await bootPyodide(loadPyodide, timeline);
    const shim = await shimReady;
    kernelShim = shim;
    timeline.shimReady = clock();
    const onMessage = startWorkerMain(pyodide, shim, post);
    python = (msg) => onMessage(msg);
    // The site's own app config first: a setAppConfig from the page (queued) replaces it. Until
    // `deliver` is set, messages from the page keep queueing, so they stay in order.
    const appConfig = await defaultAppConfig;
    if (appConfig.model_list.length) {
      await localRequest("setAppConfig", { appConfig }).catch((err) => console.warn(`py_worker worker: default app config refused: ${err.message}`));
    }
    deliver = python;
    timeline.pythonReady = clock();
    post({ kind: "workerReady", uuid: null, content: { ...timeline } });
    for (const msg of queue.splice(0)) deliverSafely(msg);
  }

  // app-config.json next to this module: what a page that passes no appConfig gets.
  const defaultAppConfig = loadAppConfig(BASE);

  boot().catch((err) => {
    bootError = bootErrorContent("worker", err);
    timeline.bootError = bootError.message;
    for (const msg of queue.splice(0)) replyError(msg, bootError);
  });

  return {
    receive: receiveSafely,
    refuse(error) {
      refused = { name: error.name, message: error.message, fields: error.fields || {} };
    },
  };
}

const isMessageEvent = (event) => typeof MessageEvent !== "undefined" && event instanceof MessageEvent;

/** A web-llm logitProcessorRegistry (a Map of model id -> processor) that is not empty. */
function nonEmptyRegistry(registry) {
  if (registry === undefined || registry === null) return false;
  if (registry instanceof Map) return registry.size > 0;
  return typeof registry === "object" && Object.keys(registry).length > 0;
}

/** The error every request gets after an unsupported handler option was given. */
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
  constructor(engine) {
    this.engine = null; // the engine is Python's; there is no JS engine object here
    this.modelId = undefined;
    this.chatOpts = undefined;
    this.host = createWorkerHost((message) => this.postMessage(message));
    if (engine !== undefined) this.host.refuse(unsupportedHandlerOption("engine"));
  }

  postMessage(message) {
    self.postMessage(message);
  }

  onmessage(event) {
    this.host.receive(isMessageEvent(event) ? event.data : event);
  }

  /** web-llm's hook for custom logit processors: an empty registry is accepted, any other refused. */
  setLogitProcessorRegistry(registry) {
    if (!nonEmptyRegistry(registry)) return;
    const models = registry instanceof Map ? [...registry.keys()].map(String) : Object.keys(registry);
    const error = unsupportedHandlerOption("logitProcessorRegistry", models);
    console.error(`py_worker: ${error.message}`);
    this.host.refuse(error);
  }
}
