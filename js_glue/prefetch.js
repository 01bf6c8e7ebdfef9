// The dedicated worker's head start on the network: the first `reload` seen while Pyodide boots
// starts that model's downloads at once (host.js's `prefetch` option). The responses wait here
// until the kernel shim's loader asks for the same URL (through `fetch`, the shim's fetch); the
// loader still checks every byte's sha256 and fills its cache as usual. Whatever the loader does
// not take (it found the files in its cache) is dropped once that reload is answered. Only an
// optimisation: a failure here is never a reply; the real load reports it.

import { modelDirURL } from "./kernels/loader.js";
import { BASE, clock } from "./pyodide-host.js";

/**
 * @typedef {object} Prefetch
 * @property {(msg: {kind?: unknown, uuid?: unknown, content?: any}) => boolean} observe One
 *   message queued while booting; true when it is the reload whose downloads started (call
 *   `settled` once it is answered).
 * @property {() => void} settled That reload was answered: unclaimed responses are dropped.
 * @property {(input: RequestInfo | URL, init?: RequestInit) => Promise<Response>} fetch A
 *   prefetched response when there is one, else the network.
 */

/**
 * `defaultAppConfig`: the site's app config (what a reload finds its record in unless a queued
 * setAppConfig came first); `timeline` gets `prefetchStart` and `prefetchFiles`.
 * @param {Promise<{model_list: any[]}>} defaultAppConfig
 * @param {Record<string, unknown>} timeline
 * @returns {Prefetch}
 */
export function createPrefetch(defaultAppConfig, timeline) {
  const prefetched = new Map(); // absolute URL -> Promise<Response>
  /** @type {any} */
  let appConfig = null; // the page's, from a queued setAppConfig
  let started = false;

  /** @param {{model: unknown}} record */
  async function start(record) {
    const model = String(record.model);
    // A GGUF is one file with no mlc-chat-config.json or tensor-cache.json beside it to ask for;
    // fetching it here would also download it again on a visit whose cache already holds it.
    if (/\.gguf([?#].*)?$/i.test(model)) return;
    timeline.prefetchStart = clock();
    const base = modelDirURL(model, BASE);
    /** @param {string} name */
    const get = (name) => {
      const url = new URL(name, base).href;
      const response = fetch(url);
      response.catch(() => {});
      return { url, response };
    };
    /** @param {string} name */
    const json = async (name) => {
      const { url, response } = get(name);
      prefetched.set(url, response.then((r) => r.clone()));
      const r = await response;
      return r.ok ? r.json() : null;
    };
    const [config, index] = await Promise.all([json("mlc-chat-config.json"), json("tensor-cache.json")]);
    /** @type {string[]} */
    const names = [...((index && index.records) || []).map((/** @type {{dataPath: string}} */ r) => r.dataPath)];
    if (config) names.push(...(config.tokenizer_files || []).filter((/** @type {string} */ f) => f === "tokenizer.json"));
    for (const name of names) {
      const { url, response } = get(name);
      prefetched.set(url, response);
    }
    timeline.prefetchFiles = names.length;
  }

  return {
    observe(msg) {
      if (msg.kind === "setAppConfig" && msg.content) appConfig = msg.content.appConfig;
      if (msg.kind !== "reload" || started) return false;
      started = true;
      const ids = msg.content && Array.isArray(msg.content.modelId) ? msg.content.modelId : [];
      Promise.resolve(appConfig || defaultAppConfig).then((config) => {
        const list = (config && config.model_list) || [];
        const record = list.find((/** @type {{model_id: unknown}} */ r) => r.model_id === ids[0]);
        if (record && !record.model_lib) return start(record);
        return null;
      }).catch(() => {}); // the real load reports failures
      return true;
    },
    settled() {
      prefetched.clear();
    },
    fetch(input, init) {
      const key = new URL(String(input), BASE).href;
      const early = prefetched.get(key);
      if (early === undefined) return fetch(input, init);
      prefetched.delete(key);
      return early;
    },
  };
}
