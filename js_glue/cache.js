// web-llm's cache helpers over py_worker's model cache, plus what web-llm lacks: the cached models
// with their sizes, and the origin's storage estimate. Every backend keeps each downloaded file
// under its absolute URL in one Cache API cache and one IndexedDB database (both named
// CACHE_STORE_NAME, kernels/loader.js; the Cache API is preferred and a refused write falls back
// to IndexedDB), so every helper here looks in, and deletes from, both stores whatever the
// record's `cache` option. Files of a model: a GGUF record is its one file; a model directory
// holds mlc-chat-config.json (the chat config), tensor-cache.json or ndarray-cache.json and the
// shards it lists (the weights) and the tokenizer files; a record with `model_lib` also has its
// library .wasm. `appConfig` defaults to prebuiltAppConfig (this site's app-config.json).
// Runs in pages and workers alike; nothing here needs the engine.

import { loadAppConfig } from "./app-config.js";
import { ModelNotFoundError } from "./errors.js";
import { CACHE_STORE_NAME, cachedBytes, cachedEntries, cachedUrls, deleteCachedFiles, modelDirURL } from "./kernels/loader.js";

export { CACHE_STORE_NAME };

/** @typedef {import("./proxy.d.ts").AppConfig} AppConfig */
/** @typedef {import("./proxy.d.ts").ModelRecord} ModelRecord */
/** @typedef {import("./proxy.d.ts").CachedFile} CachedFile */
/** @typedef {CachedFile["part"]} Part */
/** @typedef {{gguf?: string, base?: string, lib?: string}} Places */

const BASE = new URL("./", import.meta.url);
const CHAT_CONFIG = "mlc-chat-config.json";
const TENSOR_INDEX = new Set(["tensor-cache.json", "ndarray-cache.json"]);
const isGguf = (/** @type {string} */ model) => /\.gguf([?#].*)?$/i.test(model);

/** @type {Promise<AppConfig> | null} */
let defaultConfig = null;
/** This site's app config (fetched once), for helpers called without one. */
function siteAppConfig() {
  defaultConfig ??= loadAppConfig(BASE);
  return defaultConfig;
}

/**
 * The record of `modelId` in `appConfig` (this site's when none), else ModelNotFoundError.
 * @param {string} modelId @param {AppConfig} [appConfig]
 * @returns {Promise<ModelRecord>}
 */
async function recordOf(modelId, appConfig) {
  const config = appConfig ?? (await siteAppConfig());
  const list = (config && Array.isArray(config.model_list) && config.model_list) || [];
  const record = list.find((r) => r && r.model_id === modelId);
  if (record === undefined) {
    throw new ModelNotFoundError(`Cannot find model record in appConfig for ${modelId}.`, {
      model_id: modelId,
      known: list.map((r) => r && r.model_id),
    });
  }
  return record;
}

/**
 * Where a record's files live: {gguf?: url, base?: url with a trailing slash, lib?: url}.
 * @param {ModelRecord} record
 * @returns {Places}
 */
function placesOf(record) {
  const model = String(record.model);
  /** @type {Places} */
  const out = {};
  if (isGguf(model)) out.gguf = new URL(model, BASE).href;
  else out.base = modelDirURL(model, BASE);
  if (record.model_lib) out.lib = new URL(String(record.model_lib), BASE).href;
  return out;
}

/**
 * What one cached URL is to `places`: "weights" | "tensorIndex" | "chatConfig" | "tokenizer" | "wasm" | null.
 * @param {string} url @param {Places} places
 * @returns {Part | null}
 */
function partOf(url, places) {
  if (places.gguf !== undefined && url === places.gguf) return "weights";
  if (places.lib !== undefined && url === places.lib) return "wasm";
  if (places.base === undefined || !url.startsWith(places.base)) return null;
  const name = url.slice(places.base.length);
  if (name === CHAT_CONFIG) return "chatConfig";
  if (TENSOR_INDEX.has(name)) return "tensorIndex";
  if (name.startsWith("tokenizer") || name.endsWith(".json") || name.endsWith(".model") || name.endsWith(".txt")) return "tokenizer";
  return "weights";
}

/**
 * The cached files of `record`, each with its part.
 * @param {ModelRecord} record
 * @returns {Promise<CachedFile[]>}
 */
async function filesOf(record) {
  const places = placesOf(record);
  const entries = await cachedEntries((url) => partOf(url, places) !== null);
  // Each kept entry has a part (the filter above), and a store of loader.js's two.
  return entries.map((e) => /** @type {CachedFile} */ ({ ...e, part: partOf(e.url, places) }));
}

/** @param {string} modelId @param {AppConfig | undefined} appConfig @param {Part[]} parts */
async function deleteParts(modelId, appConfig, parts) {
  const record = await recordOf(modelId, appConfig);
  const files = await filesOf(record);
  await deleteCachedFiles([...new Set(files.filter((f) => parts.includes(f.part)).map((f) => f.url))]);
}

/**
 * True when every weight file of the model is cached: a GGUF's one file, or a directory's tensor
 * index and every shard it lists (web-llm's hasModelInCache checks the same: the tensor cache).
 * @param {string} modelId @param {AppConfig} [appConfig]
 * @returns {Promise<boolean>}
 */
export async function hasModelInCache(modelId, appConfig) {
  const record = await recordOf(modelId, appConfig);
  const places = placesOf(record);
  if (places.gguf !== undefined) return (await cachedUrls([places.gguf])).has(places.gguf);
  for (const name of TENSOR_INDEX) {
    const bytes = await cachedBytes(new URL(name, places.base).href);
    if (bytes === null) continue;
    const index = JSON.parse(new TextDecoder().decode(bytes));
    const shards = (index.records || []).map((/** @type {{dataPath: string}} */ r) => new URL(r.dataPath, places.base).href);
    return (await cachedUrls(shards)).size === new Set(shards).size;
  }
  return false;
}

/** Deletes the weights only: a directory's shards, or a GGUF file. @param {string} modelId @param {AppConfig} [appConfig] */
export async function deleteModelWeightsInCache(modelId, appConfig) {
  await deleteParts(modelId, appConfig, ["weights"]);
}

/** web-llm's deleteModelInCache: the weights, the tensor index and the tokenizer files. @param {string} modelId @param {AppConfig} [appConfig] */
export async function deleteModelInCache(modelId, appConfig) {
  await deleteParts(modelId, appConfig, ["weights", "tensorIndex", "tokenizer"]);
}

/** Deletes the model's mlc-chat-config.json. @param {string} modelId @param {AppConfig} [appConfig] */
export async function deleteChatConfigInCache(modelId, appConfig) {
  await deleteParts(modelId, appConfig, ["chatConfig"]);
}

/** Deletes the model library (.wasm) of a record with `model_lib`. @param {string} modelId @param {AppConfig} [appConfig] */
export async function deleteModelWasmInCache(modelId, appConfig) {
  await deleteParts(modelId, appConfig, ["wasm"]);
}

/** Deletes every cached file of the model. @param {string} modelId @param {AppConfig} [appConfig] */
export async function deleteModelAllInfoInCache(modelId, appConfig) {
  await deleteParts(modelId, appConfig, ["weights", "tensorIndex", "tokenizer", "chatConfig", "wasm"]);
}

/**
 * The models of `appConfig` that have anything cached: [{model_id, bytes, complete, files:
 * [{url, bytes, store, part}]}], `bytes` the sum over its files (a file kept in both stores
 * counts twice: it takes that space twice), `complete` as hasModelInCache.
 * @param {AppConfig} [appConfig]
 * @returns {Promise<import("./proxy.d.ts").CachedModel[]>}
 */
export async function listCachedModels(appConfig) {
  const config = appConfig ?? (await siteAppConfig());
  /** @type {import("./proxy.d.ts").CachedModel[]} */
  const out = [];
  for (const record of (config && config.model_list) || []) {
    if (!record || typeof record.model_id !== "string" || record.model === undefined) continue;
    const files = await filesOf(record);
    if (!files.length) continue;
    const bytes = files.reduce((sum, f) => sum + f.bytes, 0);
    out.push({ model_id: record.model_id, bytes, complete: await hasModelInCache(record.model_id, config), files });
  }
  return out;
}

/** The origin's storage use and quota (navigator.storage.estimate()), {usage, quota} in bytes. */
export async function storageEstimate() {
  if (!globalThis.navigator || !navigator.storage || typeof navigator.storage.estimate !== "function") {
    return { usage: null, quota: null };
  }
  /** @type {StorageEstimate & {usageDetails?: Record<string, number>}} Chromium also says per store */
  const estimate = await navigator.storage.estimate();
  const { usage = null, quota = null, usageDetails } = estimate;
  return usageDetails ? { usage, quota, usageDetails } : { usage, quota };
}
