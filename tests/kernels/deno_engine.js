// Deno entry for the whole user path: the site's main-thread proxy (proxy.js) over the site's
// module worker (site/worker.js, imported by deno_engine_worker.js), which boots Pyodide and
// py_worker and runs the models on the kernel shim. The site is read from file: URLs, the models
// from wherever the app config points (the test's 127.0.0.1 server; Deno's --allow-net denies
// every other host). `deno run ... deno_engine.js scenario.json` prints one JSON line.
//   scenario: {base: this repository's site/ as a file: URL, appConfig, modelId (what
//              CreateWebWorkerMLCEngine loads), steps: [[name, method, ...args]]}
// A step's method is `reload`, `unload`, `chat` (a streamed chat completion, its chunks
// collected), `embed`, `gpuBuffers` (the worker's WebGPU buffer counts) or `fetch` (a URL's
// HTTP status, from the main thread); each step's result
// is {value, seconds} or {error: {name, message, className}, seconds}.

const scenario = JSON.parse(await Deno.readTextFile(Deno.args[0]));
const { CreateWebWorkerMLCEngine } = await import(new URL("proxy.js", scenario.base).href);

const progress = [];
let worker = null;
const startWorker = () => {
  worker = new Worker(new URL("./deno_engine_worker.js", import.meta.url).href, { type: "module" });
  return worker;
};
/** The worker's buffer counts (deno_engine_counter.js answers; the proxy ignores the reply). */
const gpuBuffers = () =>
  new Promise((resolve) => {
    const w = worker;
    const listener = (event) => {
      if (event.data?.kind !== "gpuBuffers") return;
      w.removeEventListener("message", listener);
      resolve(event.data.content);
    };
    w.addEventListener("message", listener);
    w.postMessage({ kind: "countGpuBuffers" });
  });
const t0 = performance.now();
const engine = await CreateWebWorkerMLCEngine(
  startWorker,
  scenario.modelId,
  {
    appConfig: scenario.appConfig,
    initProgressCallback: (r) => progress.push(r.text),
    // Hang guards only: lavapipe keeps the worker's thread busy for seconds at a time.
    heartbeatTimeoutMs: 300_000,
    bootTimeoutMs: 300_000,
  },
);
const createSeconds = (performance.now() - t0) / 1000;
const modelId = structuredClone(engine.modelId); // what the create loaded

async function chat(request) {
  const stream = await engine.chat.completions.create({ ...request, stream: true });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

const methods = {
  reload: (ids) => engine.reload(ids),
  unload: () => engine.unload(),
  chat,
  embed: (request) => engine.embeddings.create(request),
  gpuBuffers,
  fetch: async (url) => (await fetch(url)).status,
};

const results = {};
for (const [name, method, ...args] of scenario.steps) {
  const t0 = performance.now();
  try {
    const value = await methods[method](...args);
    results[name] = { value: value ?? null, seconds: (performance.now() - t0) / 1000 };
  } catch (e) {
    const error = { name: e.name, message: e.message, className: e.constructor.name };
    results[name] = { error, seconds: (performance.now() - t0) / 1000 };
  }
}
const out = { createSeconds, modelId, results, progress, workerTimeline: engine.workerTimeline };
await Deno.stdout.write(new TextEncoder().encode(JSON.stringify(out) + "\n"));
Deno.exit(0);
