// One way for the proxy to reach the Python handler whichever host runs it:
//   connect("worker" | "shared" | "service", {url?, name?, scope?, registered?})
// returns an object with the Worker's surface — postMessage(msg), onmessage / onerror setters,
// addEventListener("message" | "error"), terminate() (= close()) — so
// `new WebWorkerMLCEngine(() => connect("shared"))` works with the proxy unchanged.
// The shared and service transports answer the host's liveness pings themselves and say "bye"
// when the page goes away (pagehide) or the transport is closed, so the host frees the page's
// streams and model locks at once. `registered: true` (service only) registers nothing: it talks to
// the service worker the page registered itself (navigator.serviceWorker.ready), as web-llm's
// CreateServiceWorkerMLCEngine does.

const BASE = new URL("./", import.meta.url);
const SCRIPTS = new Map([["worker", "worker.js"], ["shared", "shared-worker.js"], ["service", "service-worker.js"]]);
const HOST_ONLY = new Set(["hostPing", "hostHello"]);

/**
 * What a transport's listeners get: a message, or an error (a SharedWorker's ErrorEvent, or
 * {message, error} when a service worker failed to install).
 * @typedef {MessageEvent | ErrorEvent | {message: string, error: unknown}} TransportEvent
 */
/** @typedef {(event: TransportEvent) => void} Listener */
/** @typedef {"worker" | "shared" | "service"} HostKind */
/** @typedef {{url?: string, name?: string, scope?: string, registered?: boolean}} ConnectOptions */

/** The message/error plumbing every transport shares, shaped like a Worker's. */
class Endpoint {
  constructor() {
    /** @type {Map<string, Set<Listener>>} */
    this.listeners = new Map([["message", new Set()], ["error", new Set()]]);
    /** @type {Listener | null} */
    this.onmessage = null;
    /** @type {Listener | null} */
    this.onerror = null;
  }

  /** @param {string} type "message" or "error" (others are ignored) @param {Listener} fn */
  addEventListener(type, fn) {
    this.listeners.get(type)?.add(fn);
  }

  /** @param {string} type @param {Listener} fn */
  removeEventListener(type, fn) {
    this.listeners.get(type)?.delete(fn);
  }

  /** @param {"message" | "error"} type @param {TransportEvent} event */
  _emit(type, event) {
    const own = type === "message" ? this.onmessage : this.onerror;
    if (own) own.call(this, event);
    for (const fn of [.../** @type {Set<Function>} */ (this.listeners.get(type))]) fn.call(this, event);
  }
}

class SharedTransport extends Endpoint {
  /** @param {URL} url @param {string} name */
  constructor(url, name) {
    super();
    this.kind = "shared";
    this.worker = new SharedWorker(url, { type: "module", name });
    this.port = this.worker.port;
    /** @type {string | null} the id the host gave this page (hostHello) */
    this.clientId = null;
    this.port.onmessage = (event) => this._receive(event);
    this.worker.onerror = (event) => this._emit("error", event);
    this.onPageHide = () => this.port.postMessage({ kind: "bye" });
    addEventListener("pagehide", this.onPageHide);
    this.port.start();
  }

  /** @param {MessageEvent} event */
  _receive(event) {
    const msg = event.data;
    if (msg && msg.kind === "hostPing") this.port.postMessage({ kind: "hostPong" });
    if (msg && msg.kind === "hostHello") this.clientId = msg.content.clientId;
    if (!msg || !HOST_ONLY.has(msg.kind)) this._emit("message", event);
  }

  /** @param {unknown} msg */
  postMessage(msg) {
    this.port.postMessage(msg);
  }

  terminate() {
    removeEventListener("pagehide", this.onPageHide);
    this.port.postMessage({ kind: "bye" });
    this.port.close();
  }

  close() {
    this.terminate();
  }
}

/**
 * The registration's worker once it is activated (a fresh install passes through states).
 * @param {ServiceWorkerRegistration} registration
 * @returns {Promise<ServiceWorker>}
 */
function activated(registration) {
  if (registration.active) return Promise.resolve(registration.active);
  const worker = /** @type {ServiceWorker} not active yet: installing or waiting */ (registration.installing || registration.waiting);
  return new Promise((resolve, reject) => {
    worker.addEventListener("statechange", () => {
      if (worker.state === "activated") resolve(worker);
      if (worker.state === "redundant") reject(new Error("the service worker failed to install"));
    });
  });
}

class ServiceTransport extends Endpoint {
  /** @param {URL} url @param {string | undefined} scope @param {boolean} [registered] */
  constructor(url, scope, registered = false) {
    super();
    this.kind = "service";
    /** @type {unknown[]} clones of what was posted before the worker was activated */
    this.outbox = [];
    /** @type {ServiceWorker | null} */
    this.target = null;
    this.closed = false;
    this.container = navigator.serviceWorker;
    this.onContainerMessage = (/** @type {MessageEvent} */ event) => this._receive(event);
    this.container.addEventListener("message", this.onContainerMessage);
    this.container.startMessages();
    this.onPageHide = () => this.postMessage({ kind: "bye" });
    addEventListener("pagehide", this.onPageHide);
    const registration = registered ? this.container.ready : this.container.register(url, { type: "module", ...(scope ? { scope } : {}) });
    this.ready = registration
      .then(activated)
      .then((worker) => {
        this.target = worker;
        for (const msg of this.outbox.splice(0)) worker.postMessage(msg); // clones: they post
        return worker;
      });
    this.ready.catch((error) => this._emit("error", { message: String(error && error.message), error }));
  }

  /** @param {MessageEvent} event */
  _receive(event) {
    if (this.closed || event.origin !== location.origin || event.source !== this.target) return;
    const msg = event.data;
    if (msg && msg.kind === "hostPing") this.postMessage({ kind: "hostPong" });
    if (!msg || !HOST_ONLY.has(msg.kind)) this._emit("message", event);
  }

  /** Throws at once what postMessage would throw (DataCloneError, ...), even before the
   * worker is activated: the outbox keeps a clone taken now, as postMessage would.
   * @param {unknown} msg
   */
  postMessage(msg) {
    if (this.target) this.target.postMessage(msg);
    else this.outbox.push(structuredClone(msg));
  }

  terminate() {
    if (this.closed) return;
    this.postMessage({ kind: "bye" });
    this.closed = true;
    removeEventListener("pagehide", this.onPageHide);
    this.container.removeEventListener("message", this.onContainerMessage);
  }

  close() {
    this.terminate();
  }
}

/**
 * A transport to the Python handler on the chosen host (see the top of this file).
 * @param {HostKind} [kind] (checked: JS callers may pass anything)
 * @param {ConnectOptions} [options]
 * @returns {Worker | SharedTransport | ServiceTransport}
 */
export function connect(kind = "worker", options = {}) {
  const script = SCRIPTS.get(kind);
  if (script === undefined) throw new TypeError(`unknown host kind ${JSON.stringify(kind)}: expected worker, shared or service`);
  const url = new URL(options.url || script, BASE);
  if (kind === "worker") return new Worker(url, { type: "module", name: options.name || "py-worker" });
  if (kind === "shared") return new SharedTransport(url, options.name || "py-worker-shared");
  return new ServiceTransport(url, options.scope, options.registered === true);
}

/**
 * A factory for the proxy (it replaces an unresponsive host by calling it again).
 * @param {HostKind} [kind]
 * @param {ConnectOptions} [options]
 */
export function transportFactory(kind = "worker", options = {}) {
  return () => connect(kind, options);
}
