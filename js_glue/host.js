// The one JS host of the Python handler, for every worker kind: the dedicated worker
// (worker-handler.js), the SharedWorker and the Service Worker (host-handler.js). It boots
// Pyodide from this site's own origin, installs the py_worker wheel, creates the WebGPU kernel
// shim and starts py_worker.worker_main (those steps are pyodide-host.js's), and returns
// `deliver(msg, reply)`. Pyodide and the kernels come from the caller's importers: the dedicated
// worker imports them dynamically (a missing or broken part becomes a WorkerBootError reply, or a
// shim that names why, not a worker that never answers), while a service worker may not use
// import() and so hands in its static imports (Pyodide's emscripten module included).
// Each delivered request is given an internal uuid (`h<N>`) before Python sees it, and Python's
// replies are routed back to the `reply` of the request they answer with the caller's own uuid
// restored (as Python would reply it: a string, a number or a boolean, else null), so several
// callers (ports, service-worker clients) share one handler without seeing each other's replies.
// `connect(send)` is the entry of a host with one caller (the dedicated worker's page): its
// requests are held by uuid from arrival to terminal reply, its heartbeats list them (`held`),
// and a request reusing a held uuid is refused with DuplicateUuidError, which Python's own check
// cannot see behind the internal uuids (sessions.js does the same per client for the others).
// Messages that arrive while booting are queued in order. Answered here, never by Python:
// `heartbeat` (at once, even while Python is busy or booting) and the boot timeline
// (`workerTimeline` on the dedicated worker, `hostTimeline` on the others); `options.kinds` adds
// kinds of a worker script's own, answered once Python is ready (bench-worker.js's measurements).
// Every delivered message gets its one terminal reply even when handing it on fails: after
// `refuse(error)` every request but those two kinds fails with that error; a message over
// limits.js's size is refused with MessageTooLargeError before Python sees it; an error thrown
// while handing a message on becomes that message's `throw`; after a failed boot every request
// gets the boot error. Each host instance has an id of its own (`instance`, in heartbeat and
// timeline answers): a fresh instance (a service worker the browser stopped and started again)
// never passes for the old one. Python gets the site's app-config.json (next to this file)
// before any request, so a caller that passes no appConfig gets this site's models; a caller's
// setAppConfig replaces it. With `options.prefetch`, the first `reload` queued while booting
// starts that model's downloads (prefetch.js). Nothing from a message is ever evaluated as code.

import { loadAppConfig } from "./app-config.js";
import { refusal } from "./limits.js";
import { createPrefetch } from "./prefetch.js";
import {
  BASE, TERMINAL, bootErrorContent, bootPyodide, clock, createShim, duplicateContent, errorContent, plainOf,
  startWorkerMain, unavailableShim, unreadableContent,
} from "./pyodide-host.js";

/** @typedef {{kind: string, uuid: unknown, content?: any}} Reply */
/** @typedef {(reply: Reply) => void} ReplyTo */
/** @typedef {{name: string, message: string, fields: Record<string, unknown>}} ErrorContent */
/**
 * What an extra kind gets besides its content: `request(kind, content)`, a protocol request to
 * the Python handler made from inside the host (its `return` content; a `throw` rejects), and
 * the kernel shim.
 * @typedef {{request: (kind: string, content: unknown) => Promise<any>, shim: any}} HostContext
 */
/** @typedef {(content: any, host: HostContext) => Promise<unknown>} ExtraKind */
/**
 * @typedef {object} HostOptions
 * @property {"worker" | "host"} [name] The host's name on the wire: "worker" (the dedicated
 *   worker: `workerStart` and `workerTimeline`, "worker boot failed", no instance in its timeline)
 *   or "host" (the default: the shared and service hosts, `hostStart` and `hostTimeline`).
 * @property {() => Promise<{loadPyodide: Function, createPyodideModule?: Function}>} importPyodide
 * @property {() => Promise<{createKernels: Function}>} importKernels
 * @property {Map<string, ExtraKind>} [kinds] More kinds answered here once Python is ready.
 * @property {boolean} [prefetch] Start the first queued reload's downloads while booting.
 * @property {(timeline: Record<string, unknown>) => void} [onReady] Called once Python takes
 *   requests, before the queued ones go on (the dedicated worker's `workerReady`).
 */

/** The uuid Python's handler would reply with (protocol/message.py's message_uuid). */
const replyUuid = (/** @type {unknown} */ uuid) =>
  typeof uuid === "string" || typeof uuid === "number" || typeof uuid === "boolean" ? uuid : null;

/**
 * Start booting now. Returns {deliver(msg, reply), connect(send), refuse(error), ready, timeline,
 * instance}: `reply(plain)` receives every progress report and the one terminal reply of `msg`;
 * `ready` resolves with the boot timeline (rejects with the boot error).
 * @param {HostOptions} options
 */
export function createHost(options) {
  const { name = "host", importPyodide, importKernels, kinds = new Map(), onReady = () => {} } = options;
  const instance = crypto.randomUUID();
  /** @type {Record<string, unknown>} */
  const timeline = name === "worker" ? { workerStart: clock() } : { hostStart: clock(), instance };
  const timelineKind = `${name}Timeline`;
  const routes = new Map(); // internal uuid -> {uuid, reply}
  /** @type {[any, ReplyTo][]} */
  const queue = [];
  let seq = 0;
  /** @type {((msg: object) => void) | null} */
  let python = null; // hands Python one message, once it runs
  let accepting = false; // Python takes the callers' messages (after the site's app config)
  /** @type {ErrorContent | null} */
  let bootError = null;
  /** @type {ErrorContent | null} */
  let refused = null;
  /** @type {any} */
  let shim = null;
  const appConfigReady = loadAppConfig(BASE); // app-config.json next to this module
  const prefetch = options.prefetch ? createPrefetch(appConfigReady, timeline) : null;

  /** @param {unknown} message */
  function fromPython(message) {
    const plain = plainOf(message);
    const route = plain && routes.get(plain.uuid);
    if (route === undefined) return; // unsolicited: the hosts announce readiness themselves
    if (TERMINAL.has(plain.kind)) routes.delete(plain.uuid);
    route.reply({ ...plain, uuid: route.uuid });
  }

  /** @param {any} msg @param {ReplyTo} reply */
  function toPython(msg, reply) {
    const internal = `h${++seq}`;
    const uuid = replyUuid(msg.uuid);
    routes.set(internal, { uuid, reply });
    try {
      /** @type {(msg: object) => void} */ (python)({ ...msg, uuid: internal });
    } catch (err) {
      if (!routes.delete(internal)) return; // already answered
      reply({ kind: "throw", uuid, content: unreadableContent(err) });
    }
  }

  /** A protocol request to Python from inside the host. @param {string} kind @param {unknown} content */
  function request(kind, content) {
    return new Promise((resolve, reject) => {
      toPython({ kind, uuid: null, content }, (reply) => {
        if (reply.kind === "return") resolve(reply.content);
        if (reply.kind === "throw") reject(Object.assign(new Error(reply.content.message), reply.content));
      });
    });
  }

  /** A message once Python takes messages (or the boot failed). @param {any} msg @param {ReplyTo} reply */
  function dispatch(msg, reply) {
    const uuid = replyUuid(msg.uuid);
    const extra = typeof msg.kind === "string" ? kinds.get(msg.kind) : undefined; // a Map: own entries only
    if (bootError !== null) {
      reply({ kind: "throw", uuid, content: bootError });
    } else if (extra !== undefined) {
      Promise.resolve()
        .then(() => extra(msg.content || {}, { request, shim }))
        .then((content) => reply({ kind: "return", uuid, content }), (error) => reply({ kind: "throw", uuid, content: errorContent(error) }));
    } else {
      toPython(msg, reply);
    }
  }

  /** `reply`, and the prefetch's downloads dropped once `msg` (its reload) is answered. @param {any} msg @param {ReplyTo} reply */
  function queued(msg, reply) {
    if (prefetch === null) return reply;
    try {
      if (!prefetch.observe(msg)) return reply;
    } catch (err) {
      console.warn(`py_worker ${name}: no prefetch: ${err}`); // only an optimisation
      return reply;
    }
    return (/** @type {Reply} */ plain) => {
      if (TERMINAL.has(plain.kind)) prefetch.settled();
      reply(plain);
    };
  }

  /** One message of any caller; every reply to it goes to `reply`. @param {any} msg @param {ReplyTo} reply */
  function deliver(msg, reply) {
    if (!msg || typeof msg !== "object") {
      reply({ kind: "throw", uuid: null, content: { name: "MalformedMessageError", message: "A message must be an object.", fields: { reason: "kind" } } });
      return;
    }
    const uuid = replyUuid(msg.uuid);
    if (msg.kind === "heartbeat") {
      reply({ kind: "return", uuid, content: { alive: true, booted: accepting, instance } });
      return;
    }
    if (msg.kind === timelineKind) {
      reply({ kind: "return", uuid, content: { ...timeline, instance, now: clock() } });
      return;
    }
    const refusedNow = refused ?? refusal(msg.kind, msg.content);
    if (refusedNow !== null) {
      reply({ kind: "throw", uuid, content: refusedNow });
    } else if (accepting || bootError !== null) {
      dispatch(msg, reply);
    } else {
      queue.push([msg, queued(msg, reply)]);
    }
  }

  /**
   * The entry of a host with one caller: `receive(msg)` for each of its messages, every reply
   * through `send`; its requests held by uuid until answered (see above).
   * @param {ReplyTo} send
   */
  function connect(send) {
    const held = new Map(); // uuid -> count: requests received and not yet answered
    /** @param {Reply} reply */
    const release = (reply) => {
      if (!TERMINAL.has(reply.kind) || !held.has(reply.uuid)) return;
      const n = held.get(reply.uuid) - 1;
      if (n > 0) held.set(reply.uuid, n);
      else held.delete(reply.uuid);
    };
    /** @param {any} msg */
    function receive(msg) {
      const isObject = msg !== null && typeof msg === "object";
      const uuid = isObject ? replyUuid(msg.uuid) : null;
      if (isObject && msg.kind === "heartbeat") {
        deliver(msg, (reply) => send(reply.kind === "return" ? { ...reply, content: { ...reply.content, held: [...held.keys()] } } : reply));
      } else if (uuid !== null && held.has(uuid)) {
        send({ kind: "throw", uuid, content: duplicateContent(uuid) }); // the request in flight runs on
      } else {
        if (uuid !== null) held.set(uuid, (held.get(uuid) || 0) + 1);
        deliver(msg, (reply) => {
          release(reply);
          send(reply);
        });
      }
    }
    return (/** @type {unknown} */ msg) => {
      try {
        receive(msg);
      } catch (err) {
        // This host's own bug: still one reply, never the worker's error event.
        send({ kind: "throw", uuid: msg && typeof msg === "object" ? replyUuid(/** @type {any} */ (msg).uuid) : null, content: errorContent(err) });
      }
    };
  }

  /** The kernel shim over the imported kernels (with the prefetched responses), or one that names why not. */
  async function createHostShim() {
    let kernels;
    try {
      kernels = await importKernels();
    } catch (err) {
      const reason = String(err);
      timeline.kernelsImportError = reason;
      return unavailableShim(reason);
    }
    const backend = new URL(self.location.href).searchParams.get("backend");
    return createShim(kernels.createKernels, { ...(backend ? { backend } : {}), ...(prefetch ? { fetch: prefetch.fetch } : {}) });
  }

  async function boot() {
    const shimReady = createHostShim();
    const { loadPyodide, createPyodideModule } = await importPyodide();
    const pyodide = await bootPyodide(loadPyodide, timeline, createPyodideModule ? { createPyodideModule } : {});
    shim = await shimReady;
    timeline.shimReady = clock();
    python = startWorkerMain(pyodide, shim, fromPython);
    // The site's own app config first: a caller's setAppConfig (queued) replaces it. Until
    // `accepting` is set, the callers' messages keep queueing, so they stay in order.
    const appConfig = await appConfigReady;
    if (appConfig.model_list.length) {
      await request("setAppConfig", { appConfig }).catch((err) => console.warn(`py_worker ${name}: default app config refused: ${err.message}`));
    }
    accepting = true;
    timeline.pythonReady = clock();
    onReady({ ...timeline });
    for (const [msg, reply] of queue.splice(0)) dispatch(msg, reply);
    return { ...timeline };
  }

  const ready = boot().catch((err) => {
    bootError = bootErrorContent(name, err);
    timeline.bootError = bootError.message;
    for (const [msg, reply] of queue.splice(0)) dispatch(msg, reply);
    throw err;
  });
  ready.catch(() => {});
  return {
    deliver,
    connect,
    /** Every later request (not heartbeats nor the timeline) fails with `error`. @param {{name: string, message: string, fields?: Record<string, unknown>}} error */
    refuse(error) {
      refused = errorContent(error);
    },
    ready,
    timeline,
    instance,
  };
}
