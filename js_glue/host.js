// What every host of the Python handler shares (dedicated, shared and service worker): boot
// Pyodide from this site's own origin, install the py_worker wheel, create the WebGPU kernel
// shim, start py_worker.worker_main and return `deliver(msg, reply)`. Each delivered request is
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

const BASE = new URL("./", import.meta.url);
const PYODIDE_URL = new URL("pyodide/", BASE).href;
const TERMINAL = new Set(["return", "throw"]);
const clock = () => performance.timeOrigin + performance.now();

/** {name, message, fields}: the `throw` content the proxy re-throws as the class of that name. */
export function errorContent(error) {
  return {
    name: (error && error.name) || "Error",
    message: String(error && error.message !== undefined ? error.message : error),
    fields: (error && error.fields) || {},
  };
}

/** A shim that refuses every call, naming why the real one could not be created. */
function unavailableShim(reason) {
  const fail = async () => {
    const err = new Error(`WebGPU kernels unavailable: ${reason}`);
    err.name = "WebGPUNotAvailableError";
    throw err;
  };
  return new Proxy({}, { get: () => fail });
}

async function createShim() {
  try {
    const tokenizersURL = new URL("web-tokenizers/index.js", BASE).href;
    const tvmjsBaseURL = new URL("tvmjs/", BASE).href; // tvmjs/<version>/index.js, one per shipped runtime
    return await createKernels({ baseURL: BASE.href, tokenizersURL, tvmjsBaseURL });
  } catch (err) {
    return unavailableShim(String(err && err.message ? err.message : err));
  }
}

function plainOf(message) {
  if (message && typeof message.toJs === "function") {
    const plain = message.toJs({ dict_converter: Object.fromEntries, create_pyproxies: false });
    message.destroy();
    return plain;
  }
  return message;
}

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
      const message = `The message could not be handed to Python: ${err && err.message ? err.message : err}`;
      const fields = { reason: "unreadable", error: (err && err.name) || "Error" };
      reply({ kind: "throw", uuid: msg.uuid, content: { name: "MalformedMessageError", message, fields } });
    }
  }

  function deliver(msg, reply) {
    const refused = msg && typeof msg === "object" ? refusal(msg.kind, msg.content) : null;
    if (!msg || typeof msg !== "object") {
      reply({ kind: "throw", uuid: null, content: { name: "MalformedMessageError", message: "A message must be an object.", fields: {} } });
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
    const shimReady = createShim();
    const appConfigReady = loadAppConfig(BASE);
    const pyodide = await loadPyodide({
      indexURL: PYODIDE_URL,
      lockFileURL: `${PYODIDE_URL}pyodide-lock.json`,
      createPyodideModule,
      stdout: (line) => console.log(line),
      stderr: (line) => console.warn(line),
    });
    timeline.pyodideReady = clock();
    const installErrors = [];
    await pyodide.loadPackage(["py-worker"], { messageCallback: () => {}, errorCallback: (m) => installErrors.push(m) });
    if (installErrors.length) throw new Error(`installing the py_worker wheel: ${installErrors.join("; ")}`);
    timeline.wheelInstalled = clock();
    const shim = await shimReady;
    timeline.shimReady = clock();
    const appConfig = await appConfigReady; // before onMessage is set: requests queue until then
    const workerMain = pyodide.pyimport("py_worker.worker_main");
    onMessage = workerMain.start(shim, fromPython);
    workerMain.destroy();
    if (appConfig.model_list.length) toPython({ kind: "setAppConfig", uuid: "host-default-app-config", content: { appConfig } }, () => {});
    timeline.pythonReady = clock();
    for (const [msg, reply] of queue.splice(0)) toPython(msg, reply);
    return { ...timeline };
  }

  const ready = boot().catch((err) => {
    bootError = { name: "WorkerBootError", message: `host boot failed: ${err && err.message ? err.message : err}`, fields: {} };
    timeline.bootError = bootError.message;
    for (const [msg, reply] of queue.splice(0)) toPython(msg, reply);
    throw err;
  });
  ready.catch(() => {});
  return { deliver, ready, timeline, instance };
}
