// Files of an MLC model for the mlc backend, fetched and checked by the shared loader's
// fetchFile (same store and cache name as the wgsl backend, so the worker's prefetch and a later
// load share bytes; the same sha256 rule and IntegrityError fields). `ArtifactStore` also
// implements tvmjs's ArtifactCacheTemplate, so `fetchTensorCache` downloads the shards through
// it: shards are checked against tensor-cache.json's metadata.sha256 and the record's pins
// before they are stored, and re-checked when read from the store.

import { fetchFile, openStore } from "../loader.js";

/**
 * What the mlc backend's options say of fetching: the page to resolve URLs against, the fetch
 * to use, the store when the record names none.
 * @typedef {{baseURL?: string, fetch?: typeof fetch, cache?: "cache" | "indexeddb" | "none"}} FetchOptions
 */

/**
 * Absolute URL of a file (a model library) named relative to the page.
 * @param {unknown} url
 * @param {FetchOptions} [options]
 * @returns {string}
 */
export function resolveURL(url, options = {}) {
  return new URL(String(url), options.baseURL || (globalThis.location ? location.href : undefined)).href;
}

export class ArtifactStore {
  /**
   * record: the model record (cache kind, sha256 pins); modelURL: absolute dir URL.
   * @param {{cache?: "cache" | "indexeddb" | "none", sha256?: Record<string, string>}} record
   * @param {string} modelURL
   * @param {FetchOptions} [options]
   */
  constructor(record, modelURL, options = {}) {
    const kind = record.cache || options.cache || "cache";
    /** fetchFile's context: files are named relative to the model directory. */
    this.ctx = { base: modelURL, fetch: options.fetch || globalThis.fetch.bind(globalThis), store: openStore(kind) };
    // Without a store, shards tvmjs downloads in its first pass are held here for its second.
    const stores = (kind === "cache" && globalThis.caches) || (kind === "indexeddb" && globalThis.indexedDB);
    /** @type {Map<string, Uint8Array> | null} */
    this.held = stores ? null : new Map();
    /** @type {Map<string, string[]>} URL -> the sha256 hex digests it must match */
    this.pins = new Map();
    for (const [name, hex] of Object.entries(record.sha256 || {})) this.pin(new URL(name, modelURL).href, hex);
  }

  /** @param {string} url @param {unknown} hex a sha256 hex digest; none when empty */
  pin(url, hex) {
    if (hex) this.pins.set(url, [...(this.pins.get(url) || []), String(hex).toLowerCase()]);
  }

  /**
   * Bytes of `url`: the stored copy when it still hashes right, else downloaded and stored.
   * @param {string} url
   * @param {AbortSignal} [signal]
   * @returns {Promise<Uint8Array>}
   */
  async bytes(url, signal) {
    const held = this.held?.get(url);
    if (held) {
      /** @type {Map<string, Uint8Array>} */ (this.held).delete(url);
      return held;
    }
    const base = this.ctx.base;
    const name = url.startsWith(base) ? url.slice(base.length) : url;
    // fetchFile's JSDoc leaves `signal` untyped (its `undefined` default types it `undefined`).
    return (await fetchFile(this.ctx, name, this.pins.get(url) || [], () => {}, null, /** @type {any} */ (signal))).bytes;
  }

  /** @param {string} url @param {AbortSignal} [signal] @returns {Promise<any>} the file's JSON, of any shape */
  async json(url, signal) {
    return JSON.parse(new TextDecoder().decode(await this.bytes(url, signal)));
  }

  // ---- tvmjs ArtifactCacheTemplate ----

  /**
   * @param {string} url
   * @param {string} [storetype] "json" for parsed JSON, else the bytes
   * @param {AbortSignal} [signal]
   * @returns {Promise<any>} an ArrayBuffer, or the file's JSON
   */
  async fetchWithCache(url, storetype, signal) {
    if (storetype !== "json") {
      const b = await this.bytes(url, signal);
      return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
    }
    const index = await this.json(url, signal).catch((e) => {
      // Libraries built before the rename ship ndarray-cache.json with the same layout.
      if (e.fields?.status !== 404 || !url.endsWith("/tensor-cache.json")) throw e;
      return this.json(url.replace(/tensor-cache\.json$/, "ndarray-cache.json"), signal);
    });
    if (url.endsWith("-cache.json")) {
      const hashes = (index.metadata && index.metadata.sha256) || {};
      for (const [path, hex] of Object.entries(hashes)) this.pin(new URL(path, url).href, hex);
    }
    return index;
  }

  /** @param {string} url @param {string} [_storetype] @param {AbortSignal} [signal] */
  async addToCache(url, _storetype, signal) {
    const bytes = await this.bytes(url, signal);
    this.held?.set(url, bytes);
  }

  /** @param {string[]} keys */
  async hasAllKeys(keys) {
    for (const k of keys) if (!(await this.ctx.store.get(k))) return false;
    return true;
  }

  /** @param {string} url */
  async deleteInCache(url) {
    await this.ctx.store.delete(url);
  }
}
