// Where each backend finds its runtime on a py_worker site: one owner for every host that
// creates the kernels (the dedicated, shared and service workers through pyodide-host.js, and
// Python in a notebook kernel through py_worker/create.py). No imports: any host may load it.

/**
 * The createKernels options of the site at `base` (its root URL, ending "/"): each URL lies
 * inside the site, so no model record or message can name code to load.
 * @param {string | URL} base
 */
export function siteOptions(base) {
  /** @param {string} path */
  const at = (path) => new URL(path, base).href;
  return {
    baseURL: at("./"),
    tokenizersURL: at("web-tokenizers/index.js"),
    tvmjsBaseURL: at("tvmjs/"), // tvmjs/<version>/index.js, one per shipped runtime, chosen per library
    xgrammarURL: at("web-xgrammar/index.js"), // loaded on the first constrained request
    wllamaURL: at("wllama/index.js"), // llama.cpp, for the wasm backend
  };
}
