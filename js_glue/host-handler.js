/* @ts-self-types="./host-handler.d.ts" */
// The many-client hosts of the web-llm API: `ServiceWorkerMLCEngineHandler` (one engine for every
// same-origin page, in a module service worker) and `SharedWorkerMLCEngineHandler` (one engine per
// origin, in a module SharedWorker; web-llm has none). A service worker written for web-llm runs
// with only its import pointed here:
//   import { ServiceWorkerMLCEngineHandler } from "./host-handler.js";
//   let handler;
//   self.addEventListener("activate", () => { handler = new ServiceWorkerMLCEngineHandler(); });
// and a shared worker is
//   import { SharedWorkerMLCEngineHandler } from "./host-handler.js";
//   const handler = new SharedWorkerMLCEngineHandler();
//   self.onconnect = (event) => handler.onconnect(event);
// (service-worker.js and shared-worker.js, this site's own hosts, are exactly these.) Both run
// host.js's one host (the dedicated worker's too) with many clients over it through sessions.js.
//
// The service worker host is installed while this module is first evaluated, whether or not a
// handler is constructed then: the browser stops a service worker at any time and, when a
// message wakes it, calls only the listeners registered during that first evaluation ("activate"
// does not fire again). So:
// - a reply goes only to the client that asked (event.source), through sessions.js, which also
//   keeps each client's stream ids and its view of the shared models;
// - messages whose origin is not this worker's own are ignored, never answered;
// - keep-alive: every message event waits (event.waitUntil) until that request's last reply is
//   sent, and while a client has requests or streams open the worker pings it; the client's
//   answer is a new message event, which extends the worker's life again;
// - recovery: the app config is kept in Cache Storage and given to a fresh instance before any
//   request, so after the browser stopped the worker the next inference request (which carries
//   the model ids the client expects) reloads those models once, through the handler's
//   reload-if-unmatched.
// Query parameters of the worker script's URL: pingMs, deadMs (defaults: shared 2000 / 10000,
// service 5000 / 20000). Imports are static: a service worker may not use import(), so Pyodide
// (its emscripten module included) and the kernels are imported here and handed to host.js.
// A refused handler option is checked here, per client message, before sessions.js, which
// answers some requests itself (a reload of what is loaded, an unknown stream).

import { loadPyodide } from "./pyodide/pyodide.mjs";
import createPyodideModule from "./pyodide/pyodide.asm.mjs";
import { createHost } from "./host.js";
import { createKernels } from "./kernels/backends.js";
import { errorContent } from "./pyodide-host.js";
import { createSessions } from "./sessions.js";
import { unsupportedHandlerOption } from "./worker-handler.js";
import "./web-tokenizers/index.js";
import "./web-xgrammar/index.js"; // sets globalThis.xgrammar: kernels/grammar.js takes it from there

const params = new URL(self.location.href).searchParams;
const isServiceWorker = typeof ServiceWorkerGlobalScope !== "undefined" && self instanceof ServiceWorkerGlobalScope;

/** What host.js boots from: this module's static imports. */
const staticParts = {
  importPyodide: async () => ({ loadPyodide, createPyodideModule }),
  importKernels: async () => ({ createKernels }),
};

/**
 * A web-llm logitProcessorRegistry that is not empty (model ids), else null.
 * @param {Map<string, unknown> | Record<string, unknown> | undefined} registry
 */
function registryModels(registry) {
  if (registry === undefined || registry === null) return null;
  const models = registry instanceof Map ? [...registry.keys()].map(String) : Object.keys(registry);
  return models.length ? models : null;
}

// ---- the service worker host ------------------------------------------------------------------

/** @type {{host: ReturnType<typeof createHost>, refuse: (error: Error) => void} | null} */
let serviceHost = null; // {refuse(error)} once installed

function installServiceHost() {
  const PING_MS = Number(params.get("pingMs")) || 5000;
  const DEAD_MS = Number(params.get("deadMs")) || 20000;
  const STATE_CACHE = "py-worker-host";
  const sw = /** @type {ServiceWorkerGlobalScope} */ (/** @type {unknown} */ (self));
  const APP_CONFIG_KEY = new URL("./__py_worker_host/app-config.json", sw.registration.scope).href;

  const host = createHost(staticParts);
  const sessions = createSessions(host);
  /** @type {object | null} */
  let refused = null;

  async function restoreAppConfig() {
    try {
      const stored = await (await caches.open(STATE_CACHE)).match(APP_CONFIG_KEY);
      if (stored) host.deliver({ kind: "setAppConfig", uuid: null, content: await stored.json() }, () => {});
    } catch (err) {
      console.warn(`py_worker service host: app config not restored: ${err}`);
    }
  }

  /** @param {unknown} appConfig */
  async function keepAppConfig(appConfig) {
    const body = JSON.stringify(appConfig);
    await (await caches.open(STATE_CACHE)).put(APP_CONFIG_KEY, new Response(body, { headers: { "Content-Type": "application/json" } }));
  }

  // Requests wait for this, so the restored app config reaches Python before any of them.
  const restored = restoreAppConfig();

  /** @param {Client} source */
  function clientOf(source) {
    const known = sessions.clients.get(source.id);
    if (known) return known;
    return sessions.join(source.id, (/** @type {unknown} */ message) => source.postMessage(message));
  }

  /** @param {Client} source @param {any} msg */
  async function handle(source, msg) {
    await restored;
    if (refused !== null && msg && typeof msg === "object" && msg.uuid && msg.kind !== "heartbeat") {
      source.postMessage({ kind: "throw", uuid: msg.uuid, content: refused });
      return;
    }
    const client = clientOf(source);
    const done = sessions.receive(client, msg);
    if (msg && msg.kind === "setAppConfig" && msg.content) {
      await keepAppConfig(msg.content).catch((err) => console.warn(`py_worker service host: app config not kept: ${err}`));
    }
    await done;
  }

  sw.addEventListener("message", (event) => {
    if (event.origin !== self.location.origin) return;
    const source = /** @type {Client} */ (event.source);
    if (!source || typeof source.id !== "string" || typeof source.postMessage !== "function") return;
    event.waitUntil(handle(source, event.data));
  });

  sw.addEventListener("install", () => sw.skipWaiting());
  sw.addEventListener("activate", (event) => event.waitUntil(sw.clients.claim()));

  // Clients that are gone leave (their streams are returned); clients with work in flight are
  // pinged, and their answers keep this worker alive while they wait.
  setInterval(async () => {
    const now = performance.now();
    for (const client of [...sessions.clients.values()]) {
      if (!(await sw.clients.get(client.id))) {
        client.leave("client gone");
      } else if (client.pending > 0 || client.streams.size > 0) {
        if (client.silent(now, DEAD_MS)) client.leave("no answer to pings");
        else client.ping();
      }
    }
  }, PING_MS);

  return {
    host,
    /** @param {Error & {fields?: Record<string, unknown>}} error */
    refuse(error) {
      refused = errorContent(error);
    },
  };
}

if (isServiceWorker) serviceHost = installServiceHost();

/**
 * web-llm's ServiceWorkerMLCEngineHandler. The host itself is already running (installed when
 * this module was evaluated, see above); the handler is its handle. Constructing it outside a
 * service worker throws UnsupportedEngineOptionError. A non-empty logit processor registry makes
 * every request fail with LogitProcessorNotSupportedError.
 */
export class ServiceWorkerMLCEngineHandler {
  /** @param {unknown} [engine] */
  constructor(engine) {
    if (serviceHost === null) {
      const error = unsupportedHandlerOption("context");
      error.message = "ServiceWorkerMLCEngineHandler runs only in a module service worker; use WebWorkerMLCEngineHandler (worker-handler.js) in a dedicated worker.";
      throw error;
    }
    /** @type {object | null} */
    this.engine = null;
    this.host = serviceHost;
    if (engine !== undefined) serviceHost.refuse(unsupportedHandlerOption("engine"));
  }

  /** Messages reach the host through its own listener; this exists for web-llm's surface. */
  onmessage() {}

  /** @param {Map<string, unknown> | Record<string, unknown>} [registry] */
  setLogitProcessorRegistry(registry) {
    const models = registryModels(registry);
    if (models === null) return;
    const error = unsupportedHandlerOption("logitProcessorRegistry", models);
    console.error(`py_worker: ${error.message}`);
    this.host.refuse(error);
  }
}

// ---- the shared worker host -------------------------------------------------------------------

/**
 * One engine per origin for every tab that connects (transport.js's connect("shared")). Every
 * connecting port is a client of sessions.js: its own id, only its own replies and streams, the
 * loaded models shared. A port leaves when its tab says "bye" (pagehide), when the port closes,
 * or when it stops answering the host's pings; its streams are then returned and its model locks
 * freed. Use: `self.onconnect = (event) => handler.onconnect(event)`.
 */
export class SharedWorkerMLCEngineHandler {
  /** @param {unknown} [engine] */
  constructor(engine) {
    this.pingMs = Number(params.get("pingMs")) || 2000;
    this.deadMs = Number(params.get("deadMs")) || 10000;
    /** @type {object | null} */
    this.engine = null;
    this.host = createHost(staticParts);
    this.sessions = createSessions(this.host);
    this.nextClient = 0;
    this.booted = null; // the boot timeline once Python is ready
    this.refused = null;
    if (engine !== undefined) this.refused = errorContent(unsupportedHandlerOption("engine"));
    this.host.ready.then(
      (/** @type {Record<string, unknown>} */ timeline) => {
        this.booted = timeline;
        for (const client of this.sessions.clients.values()) client.send({ kind: "workerReady", uuid: null, content: timeline });
      },
      () => {}, // each request is answered with the boot error by host.js
    );
    setInterval(() => this.sessions.sweep(this.deadMs), this.pingMs);
  }

  /** @param {MessageEvent} event */
  onconnect(event) {
    const port = event.ports[0];
    const id = `c${++this.nextClient}`;
    const client = this.sessions.join(id, (/** @type {unknown} */ message) => port.postMessage(message), (/** @type {string} */ why) => {
      port.close();
      console.info(`py_worker shared host: client ${id} left (${why})`);
    });
    port.onmessage = (e) => {
      const msg = e.data;
      if (this.refused !== null && msg && typeof msg === "object" && msg.uuid && msg.kind !== "heartbeat") {
        port.postMessage({ kind: "throw", uuid: msg.uuid, content: this.refused });
        return;
      }
      this.sessions.receive(client, msg);
    };
    port.addEventListener("close", () => client.leave("port closed"));
    port.start();
    client.send({ kind: "hostHello", uuid: null, content: { clientId: id, pingMs: this.pingMs } });
    if (this.booted !== null) client.send({ kind: "workerReady", uuid: null, content: this.booted });
  }

  /** @param {Map<string, unknown> | Record<string, unknown>} [registry] */
  setLogitProcessorRegistry(registry) {
    const models = registryModels(registry);
    if (models === null) return;
    const error = unsupportedHandlerOption("logitProcessorRegistry", models);
    console.error(`py_worker: ${error.message}`);
    this.refused = errorContent(error);
  }
}
