// What the SharedWorker and Service Worker hosts of the Python handler share: boot Pyodide from
// this site's own origin, install the py_worker wheel, create the WebGPU kernel shim, start
// py_worker.worker_main (those steps are pyodide-host.js's, shared with the dedicated worker's
// worker-handler.js) and return `deliver(msg, reply)`. Each delivered request is
// given an internal uuid before Python sees it, and Python's replies are routed back to the
// `reply` of the request they answer with the caller's own uuid restored, so several callers
// (ports, service-worker clients) can share one handler without seeing each other's replies.
// Imports are static on purpose: a service worker may not use import(), so Pyodide's
// emscripten module is handed to loadPyodide instead of being imported by it.
// Every delivered message gets its one terminal reply even when handing it on fails: a message
// over limits.js's size is refused with MessageTooLargeError before Python sees it, and an error
// thrown while handing a message to Python becomes that message's `throw`. Each host instance has
// an id of its own (`instance`, in heartbeat and hostTimeline replies): a fresh instance (a
// service worker the browser stopped and started again) never passes for the old one.
// Python gets the site's app-config.json (next to this file) before any request, so a client
// that passes no appConfig gets this site's models; a client's setAppConfig replaces it.

import { loadPyodide } from "./pyodide/pyodide.mjs";
import createPyodideModule from "./pyodide/pyodide.asm.mjs";
import { loadAppConfig } from "./app-config.js";
import { createKernels } from "./kernels/backends.js";
import { refusal } from "./limits.js";
import { BASE, TERMINAL, bootErrorContent, bootPyodide, clock, createShim, plainOf, startWorkerMain, unreadableContent } from "./pyodide-host.js";

/**
 * Start booting now. Returns {deliver(msg, reply), ready, timeline}: `reply(plain)` receives
 * every progress report and the one terminal reply of `msg`; `ready` resolves with the boot
 * timeline (rejects with the boot error). `heartbeat` and `hostTimeline` are answered here at
 * once, even while Python is busy or still booting.
 */
export function createHost() {
  const instance = crypto.randomUUID();
  const timeline = { hostStart: clock(), instance };
  const routes = new Map(); // internal uuid -> {uuid, reply}
  const queue = [];
  let seq = 0;
  let onMessage = null;
  let bootError = null;

  function fromPython(message) {
    const plain = plainOf(message);
    const route = plain && routes.get(plain.uuid);
    if (route === undefined) return; // unsolicited: the hosts announce readiness themselves
    if (TERMINAL.has(plain.kind)) routes.delete(plain.uuid);
    route.reply({ ...plain, uuid: route.uuid });
  }

  function toPython(msg, reply) {
    if (bootError !== null) {
      reply({ kind: "throw", uuid: msg.uuid, content: bootError });
      return;
    }
    const internal = `h${++seq}`;
    routes.set(internal, { uuid: msg.uuid, reply });
    try {
      onMessage({ ...msg, uuid: internal });
    } catch (err) {
      if (!routes.delete(internal)) return; // already answered
      reply({ kind: "throw", uuid: msg.uuid, content: unreadableContent(err) });
    }
  }

  function deliver(msg, reply) {
    const refused = msg && typeof msg === "object" ? refusal(msg.kind, msg.content) : null;
    if (!msg || typeof msg !== "object") {
      reply({ kind: "throw", uuid: null, content: { name: "MalformedMessageError", message: "A message must be an object.", fields: { reason: "kind" } } });
    } else if (msg.kind === "heartbeat") {
      reply({ kind: "return", uuid: msg.uuid, content: { alive: true, booted: onMessage !== null, instance } });
    } else if (refused !== null) {
      reply({ kind: "throw", uuid: msg.uuid, content: refused });
    } else if (msg.kind === "hostTimeline") {
      reply({ kind: "return", uuid: msg.uuid, content: { ...timeline, now: clock() } });
    } else if (onMessage === null && bootError === null) {
      queue.push([msg, reply]);
    } else {
      toPython(msg, reply);
    }
  }

  async function boot() {
    const shimReady = createShim(createKernels);
    const appConfigReady = loadAppConfig(BASE);
    const pyodide = await bootPyodide(loadPyodide, timeline, { createPyodideModule });
    const shim = await shimReady;
    timeline.shimReady = clock();
    const appConfig = await appConfigReady; // before onMessage is set: requests queue until then
    onMessage = startWorkerMain(pyodide, shim, fromPython);
    if (appConfig.model_list.length) toPython({ kind: "setAppConfig", uuid: "host-default-app-config", content: { appConfig } }, () => {});
    timeline.pythonReady = clock();
    for (const [msg, reply] of queue.splice(0)) toPython(msg, reply);
    return { ...timeline };
  }

  const ready = boot().catch((err) => {
    bootError = bootErrorContent("host", err);
    timeline.bootError = bootError.message;
    for (const [msg, reply] of queue.splice(0)) toPython(msg, reply);
    throw err;
  });
  ready.catch(() => {});
  return { deliver, ready, timeline, instance };
}
