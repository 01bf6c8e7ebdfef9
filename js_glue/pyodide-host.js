// What the one host of the Python handler (host.js) is made of, apart from its protocol: the
// site's URLs, the clock of the boot timelines, the `throw` contents a host makes itself, the
// kernel shim (or one that refuses every call), the Pyodide boot up to a running
// py_worker.worker_main, and the conversion of Python's replies. This module imports neither
// Pyodide nor the kernels, so every worker kind may import it statically: the caller hands in
// `loadPyodide` and `createKernels`. (kernels/site_options.js, imported here, has no imports:
// the site's runtime URLs.)

import { siteOptions } from "./kernels/site_options.js";

/** The directory of this site's JS (this file, host.js and the handlers lie side by side). */
export const BASE = new URL("./", import.meta.url);
export const PYODIDE_URL = new URL("pyodide/", BASE).href;
/** The kinds of a request's one last reply. */
export const TERMINAL = new Set(["return", "throw"]);
/** Milliseconds since the epoch, as the boot timelines record them. */
export const clock = () => performance.timeOrigin + performance.now();

const reasonOf = (/** @type {any} */ err) => (err && err.message ? err.message : err);

/**
 * {name, message, fields}: the `throw` content the proxy re-throws as the class of that name.
 * @param {any} error
 */
export function errorContent(error) {
  return {
    name: (error && error.name) || "Error",
    message: String(error && error.message !== undefined ? error.message : error),
    fields: (error && error.fields) || {},
  };
}

/** The `throw` content of a message whose handing to Python threw `err`. @param {any} err */
export function unreadableContent(err) {
  const message = `The message could not be handed to Python: ${reasonOf(err)}`;
  return { name: "MalformedMessageError", message, fields: { reason: "unreadable", error: (err && err.name) || "Error" } };
}

/** The `throw` content of a request reusing the uuid of one still in flight (which runs on). @param {unknown} uuid */
export function duplicateContent(uuid) {
  const message = `A request with uuid ${JSON.stringify(uuid)} is still in flight; this one is refused.`;
  return { name: "DuplicateUuidError", message, fields: { uuid } };
}

/**
 * The `throw` content every request gets after the boot failed with `err` (`who`: "worker", "host").
 * @param {string} who @param {unknown} err
 */
export function bootErrorContent(who, err) {
  return { name: "WorkerBootError", message: `${who} boot failed: ${reasonOf(err)}`, fields: {} };
}

/** A shim that refuses every call, naming why the real one could not be created. @param {string} reason */
export function unavailableShim(reason) {
  const fail = async () => {
    const err = new Error(`WebGPU kernels unavailable: ${reason}`);
    err.name = "WebGPUNotAvailableError";
    throw err;
  };
  return new Proxy({}, { get: () => fail });
}

/**
 * The kernel shim over this site's tokenizers and tvmjs runtimes (kernels/backends.js's
 * `createKernels`, handed in); `options` go to it as well (host.js's `backend`, prefetch.js's `fetch`). A
 * shim that cannot be created becomes `unavailableShim`, so every kernel call names why.
 * @param {Function} createKernels @param {Record<string, unknown>} [options]
 */
export async function createShim(createKernels, options = {}) {
  try {
    return await createKernels({ ...siteOptions(BASE), ...options });
  } catch (err) {
    return unavailableShim(String(reasonOf(err)));
  }
}

/**
 * PYODIDE_URL as Pyodide can read it. Under Deno, Pyodide takes its Node path (Deno has a
 * `process`), which opens its own files by path: a file: URL becomes its path there (an
 * http(s) site cannot host Pyodide under Deno).
 */
function pyodideIndex() {
  const url = new URL(PYODIDE_URL);
  return "Deno" in globalThis && url.protocol === "file:" ? decodeURIComponent(url.pathname) : PYODIDE_URL;
}

/**
 * Boot Pyodide from this site's own pyodide/ (`options` go to `loadPyodide` as well: the
 * service worker's `createPyodideModule`) and install the py_worker wheel; records
 * `pyodideReady` and `wheelInstalled` in `timeline`.
 * @param {Function} loadPyodide @param {Record<string, unknown>} timeline
 * @param {Record<string, unknown>} [options]
 */
export async function bootPyodide(loadPyodide, timeline, options = {}) {
  const index = pyodideIndex();
  const pyodide = await loadPyodide({
    indexURL: index,
    lockFileURL: `${index}pyodide-lock.json`,
    ...options,
    stdout: (/** @type {string} */ line) => console.log(line),
    stderr: (/** @type {string} */ line) => console.warn(line),
  });
  timeline.pyodideReady = clock();
  /** @type {string[]} */
  const installErrors = [];
  await pyodide.loadPackage(["py-worker"], { messageCallback: () => {}, errorCallback: (/** @type {string} */ m) => installErrors.push(m) });
  if (installErrors.length) throw new Error(`installing the py_worker wheel: ${installErrors.join("; ")}`);
  timeline.wheelInstalled = clock();
  return pyodide;
}

/**
 * py_worker.worker_main.start(shim, post): returns the function that hands Python one message.
 * @param {any} pyodide @param {object} shim @param {(message: unknown) => void} post
 * @returns {(msg: object) => void}
 */
export function startWorkerMain(pyodide, shim, post) {
  const workerMain = pyodide.pyimport("py_worker.worker_main");
  const onMessage = workerMain.start(shim, post);
  workerMain.destroy();
  return onMessage;
}

/** A message from Python as a plain JS value (dicts as Objects); the proxy is destroyed. @param {any} message */
export function plainOf(message) {
  if (message && typeof message.toJs === "function") {
    const plain = message.toJs({ dict_converter: Object.fromEntries, create_pyproxies: false });
    message.destroy();
    return plain;
  }
  return message;
}
