// Classic-script build: <script src=".../py-worker.js"></script> and nothing else. No bundler:
// it finds the worker, the Pyodide files, the models and the app config relative to its own URL
// (document.currentScript) and exposes the proxy API on one global, `PyWorker`:
//   const engine = await PyWorker.CreateWebWorkerMLCEngine("tiny-llama-...", {initProgressCallback});
// The same API as the ES module (proxy.js); the worker argument may be left out (this site's
// worker is used, restartable) and so may appConfig (this site's app-config.json). Every export of proxy.js
// (the error classes included) is copied onto `PyWorker` once loaded (`await PyWorker.ready`,
// which CreateWebWorkerMLCEngine awaits for you).

/** @typedef {import("./proxy.d.ts").WebWorkerMLCEngine} WebWorkerMLCEngine */
/**
 * `PyWorker`: this file's entries, then every export of proxy.js, copied on at run time (so
 * looked up by name: any).
 * @typedef {{
 *   baseURL: string,
 *   defaultAppConfig: () => Promise<import("./proxy.d.ts").AppConfig>,
 *   newWorker: () => Worker,
 *   ready: Promise<Required<PyWorkerGlobal>>,
 *   CreateWebWorkerMLCEngine?: (...args: any[]) => Promise<WebWorkerMLCEngine>,
 *   createEngine?: (engineConfig?: import("./proxy.d.ts").MLCEngineConfig) => Promise<WebWorkerMLCEngine>,
 *   [name: string]: any,
 * }} PyWorkerGlobal
 */

(function () {
  "use strict";
  const script = /** @type {HTMLScriptElement | null} */ (document.currentScript);
  const base = new URL("./", script ? script.src : document.baseURI);

  const newWorker = () => new Worker(new URL("worker.js", base), { type: "module", name: "py-worker" });

  /** The site's app config with model URLs made absolute (the worker needs absolute URLs). */
  async function defaultAppConfig() {
    const response = await fetch(new URL("app-config.json", base));
    if (!response.ok) throw new Error(`app-config.json: HTTP ${response.status}`);
    const config = await response.json();
    for (const record of config.model_list || []) {
      record.model = new URL(record.model, base).href;
      if (record.model_lib) record.model_lib = new URL(record.model_lib, base).href;
    }
    return config;
  }

  /** @type {PyWorkerGlobal} */
  const api = {
    baseURL: base.href,
    defaultAppConfig,
    newWorker,
    ready: import(new URL("proxy.js", base).href).then((mod) => {
      Object.assign(api, mod, {
        /** CreateWebWorkerMLCEngine([worker,] modelId, engineConfig?, chatOpts?): proxy.js's arguments. */
        CreateWebWorkerMLCEngine: async (/** @type {any[]} */ ...args) => {
          const first = args[0];
          const hasWorker =
            first instanceof Worker || typeof first === "function" || (typeof first === "object" && first && "host" in first);
          const [worker, modelId, engineConfig = {}, chatOpts] = hasWorker ? args : [newWorker, ...args];
          const appConfig = engineConfig.appConfig || (await defaultAppConfig());
          return mod.CreateWebWorkerMLCEngine(worker, modelId, { ...engineConfig, appConfig }, chatOpts);
        },
        /** new WebWorkerMLCEngine(engineConfig?) over this site's worker (load with reload()). */
        createEngine: async (/** @type {import("./proxy.d.ts").MLCEngineConfig} */ engineConfig = {}) => {
          const appConfig = engineConfig.appConfig || (await defaultAppConfig());
          return new mod.WebWorkerMLCEngine(newWorker, { ...engineConfig, appConfig });
        },
      });
      return /** @type {Required<PyWorkerGlobal>} both engine entries were set just above */ (api);
    }),
  };
  api.CreateWebWorkerMLCEngine = async (...args) => (await api.ready).CreateWebWorkerMLCEngine(...args);
  api.createEngine = async (...args) => (await api.ready).createEngine(...args);
  // web-llm's other entry points, usable before `ready` too (the rest of proxy.js's exports appear once loaded).
  for (const name of ["CreateMLCEngine", "CreateServiceWorkerMLCEngine"]) {
    api[name] = async (/** @type {any[]} */ ...args) => (await api.ready)[name](...args);
  }
  /** @type {typeof globalThis & {PyWorker: PyWorkerGlobal}} */ (globalThis).PyWorker = api;
})();
