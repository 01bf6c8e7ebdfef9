// The site's default app config and web-llm's config constants. Every entry point (proxy.js,
// py-worker.js, worker-handler.js, host.js) finds `app-config.json` next to its own file
// (import.meta.url, or the script's src), so a page that passes no appConfig gets the models of
// the site the engine was served from. No side effects; works in pages and in every worker kind.

/** @typedef {import("./proxy.d.ts").AppConfig} AppConfig */

/** Folder of MLC's prebuilt model libraries that web-llm 0.2.85 reports as its own, the newest
 * of the releases py_worker lists (py_worker/prebuilt.py MODEL_LIB_VERSION). */
export const modelVersion = "v0_2_84/base";

/** Where MLC's prebuilt model libraries are published (web-llm's constant of the same name). */
export const modelLibURLPrefix = "https://raw.githubusercontent.com/mlc-ai/binary-mlc-llm-libs/main/web-llm-models/";

/** @type {string[]} web-llm's list of models with function calling: py_worker marks none. */
export const functionCallingModelIds = [];

/** web-llm's ModelType names. Here the values are the names themselves, as a record's
 * `model_type` is written in app-config.json ("LLM", "embedding"); web-llm's enum has numbers. */
export const ModelType = Object.freeze({ LLM: "LLM", embedding: "embedding", VLM: "VLM" });

/**
 * A copy of `config` with every record's model and model_lib URL absolute against `base`.
 * @param {any} config parsed app-config.json (JSON from the network: any shape)
 * @param {string | URL} base
 * @returns {AppConfig}
 */
export function resolveAppConfig(config, base) {
  const out = structuredClone(config && typeof config === "object" ? config : {});
  if (!Array.isArray(out.model_list)) out.model_list = [];
  for (const record of out.model_list) {
    if (!record || typeof record !== "object") continue;
    if (typeof record.model === "string") record.model = new URL(record.model, base).href;
    if (typeof record.model_lib === "string") record.model_lib = new URL(record.model_lib, base).href;
  }
  return out;
}

/**
 * `app-config.json` of the site whose root is `base` (a URL), with absolute URLs; a site without
 * one (or a failed fetch) gives `{model_list: []}` unless `strict`, which throws instead.
 * @param {string | URL} base
 * @param {{strict?: boolean, fetchFn?: typeof fetch}} [options]
 * @returns {Promise<AppConfig>}
 */
export async function loadAppConfig(base, { strict = false, fetchFn = globalThis.fetch } = {}) {
  try {
    const response = await fetchFn(new URL("app-config.json", base).href);
    if (!response.ok) throw new Error(`app-config.json: HTTP ${response.status}`);
    return resolveAppConfig(await response.json(), base);
  } catch (err) {
    if (strict) throw err;
    return { model_list: [] };
  }
}
