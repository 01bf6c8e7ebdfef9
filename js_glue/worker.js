// The module worker: boots Pyodide from this site's own origin, installs the py_worker wheel,
// creates the WebGPU kernel shim and hands every protocol message to the Python handler
// (py_worker.worker_main). Messages that arrive while booting are queued in order; once Python
// is ready the worker posts one unsolicited {kind: "workerReady", content: timeline}. Two kinds
// are answered here, never by Python: `heartbeat` (the proxy's liveness check, which must be
// answered even while Python is busy) and `workerTimeline` (boot timings for the benchmark).
// The first `reload` seen while booting starts that model's downloads at once, so the network
// overlaps Pyodide's boot. Nothing from a message is ever evaluated as code.

const BASE = new URL("./", import.meta.url);
const PYODIDE_URL = new URL("pyodide/", BASE).href;
const clock = () => performance.timeOrigin + performance.now();

const timeline = { workerStart: clock() };
const queue = [];
let deliver = null; // set once Python is ready
let bootError = null;

function post(message) {
  let plain = message;
  if (message && typeof message.toJs === "function") {
    plain = message.toJs({ dict_converter: Object.fromEntries, create_pyproxies: false });
    message.destroy();
  }
  self.postMessage(plain);
}

function replyError(msg, error) {
  const content = { name: error.name || "Error", message: String(error.message || error), fields: error.fields || {} };
  post({ kind: "throw", uuid: msg.uuid, content });
}

self.onmessage = (event) => {
  const msg = event.data;
  if (msg && msg.kind === "heartbeat") {
    post({ kind: "return", uuid: msg.uuid, content: { alive: true, booted: deliver !== null } });
  } else if (msg && msg.kind === "workerTimeline") {
    post({ kind: "return", uuid: msg.uuid, content: { ...timeline, now: clock() } });
  } else if (deliver !== null) {
    deliver(msg);
  } else if (bootError !== null) {
    replyError(msg, bootError);
  } else {
    queue.push(msg);
    prefetch.observe(msg);
  }
};

// Start fetching the first requested model while Pyodide boots. The fetched responses go into
// the Cache API under the shim's cache name, where the shim's loader looks first.
const prefetch = {
  appConfig: null,
  started: false,
  observe(msg) {
    if (!msg || typeof msg !== "object") return;
    if (msg.kind === "setAppConfig") this.appConfig = msg.content;
    if (msg.kind === "reload" && !this.started) {
      this.started = true;
      const first = msg.content && Array.isArray(msg.content.modelId) ? msg.content.modelId[0] : null;
      this.start(first).catch(() => {}); // best effort: the real load reports any failure
    }
  },
  async start(modelId) {
    const kernels = await kernelsModule;
    if (!modelId || !kernels || typeof kernels.prefetchModel !== "function") return;
    const list = (this.appConfig && this.appConfig.model_list) || [];
    const record = list.find((r) => r.model_id === modelId);
    if (record) {
      timeline.prefetchStart = clock();
      await kernels.prefetchModel(record);
      timeline.prefetchDone = clock();
    }
  },
};

// Imported dynamically so that a missing or broken part is reported as a reply, not as a worker
// that never answers.
const kernelsModule = import("./kernels/index.js").catch((err) => {
  timeline.kernelsImportError = String(err);
  return null;
});

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
  const kernels = await kernelsModule;
  if (!kernels) return unavailableShim(timeline.kernelsImportError);
  try {
    return await kernels.createKernels({ baseURL: BASE.href, tokenizersURL: new URL("web-tokenizers/index.js", BASE).href });
  } catch (err) {
    return unavailableShim(String(err && err.message ? err.message : err));
  }
}

async function boot() {
  const { loadPyodide } = await import(`${PYODIDE_URL}pyodide.mjs`);
  const shimReady = createShim();
  const pyodide = await loadPyodide({
    indexURL: PYODIDE_URL,
    lockFileURL: `${PYODIDE_URL}pyodide-lock.json`,
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
  const workerMain = pyodide.pyimport("py_worker.worker_main");
  const onMessage = workerMain.start(shim, post);
  workerMain.destroy();
  deliver = (msg) => onMessage(msg);
  timeline.pythonReady = clock();
  post({ kind: "workerReady", uuid: null, content: { ...timeline } });
  for (const msg of queue.splice(0)) deliver(msg);
}

boot().catch((err) => {
  bootError = { name: "WorkerBootError", message: `worker boot failed: ${err && err.message ? err.message : err}` };
  timeline.bootError = bootError.message;
  for (const msg of queue.splice(0)) replyError(msg, bootError);
});
