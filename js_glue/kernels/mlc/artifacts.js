// Files of an MLC model for the mlc backend, through the shared loader's store (same cache name
// as the wgsl backend, so the worker's prefetch and a later load share bytes) and its sha256.
// `ArtifactStore` also implements tvmjs's ArtifactCacheTemplate, so `fetchTensorCache` downloads
// the shards through it: shards are checked against tensor-cache.json's metadata.sha256 and the
// record's pins before they are stored, and re-checked when read from the store.

import { openStore, sha256Hex } from "../loader.js";
import { namedError } from "../errors.js";

/** Absolute URL of a file (a model library) named relative to the page. */
export function resolveURL(url, options = {}) {
  return new URL(String(url), options.baseURL || (globalThis.location ? location.href : undefined)).href;
}

export class ArtifactStore {
  /** record: the model record (cache kind, sha256 pins); modelURL: absolute dir URL. */
  constructor(record, modelURL, options = {}) {
    this.modelURL = modelURL;
    this.fetchFn = options.fetch || globalThis.fetch.bind(globalThis);
    const kind = record.cache || options.cache || "cache";
    this.store = openStore(kind);
    // Without a store, shards tvmjs downloads in its first pass are held here for its second.
    const stores = (kind === "cache" && globalThis.caches) || (kind === "indexeddb" && globalThis.indexedDB);
    this.held = stores ? null : new Map();
    this.pins = new Map();
    for (const [name, hex] of Object.entries(record.sha256 || {})) this.pin(new URL(name, modelURL).href, hex);
  }

  pin(url, hex) {
    if (hex) this.pins.set(url, [...(this.pins.get(url) || []), String(hex).toLowerCase()]);
  }

  async #verify(url, bytes) {
    const want = this.pins.get(url) || [];
    if (!want.length) return null;
    const got = await sha256Hex(bytes);
    return want.every((h) => h === got) ? null : { expected: want, actual: got };
  }

  async #download(url, signal) {
    let resp;
    try {
      resp = await this.fetchFn(url, signal ? { signal } : undefined);
    } catch (e) {
      if (e && e.name === "AbortError") throw e;
      throw namedError("ArtifactFetchError", `fetch ${url} failed: ${e.message}`, { url });
    }
    if (!resp.ok) throw namedError("ArtifactFetchError", `fetch ${url}: HTTP ${resp.status}`, { url, status: resp.status });
    const bytes = new Uint8Array(await resp.arrayBuffer());
    const bad = await this.#verify(url, bytes);
    if (bad) {
      // The fields of the wgsl loader's IntegrityError: {file, url, expected, actual}.
      const file = url.startsWith(this.modelURL) ? url.slice(this.modelURL.length) : url.split("/").pop();
      throw namedError("IntegrityError", `sha256 of ${file} is ${bad.actual}, expected ${bad.expected.join(" and ")}`, { file, url, ...bad });
    }
    return bytes;
  }

  /** Bytes of `url`: the stored copy when it still hashes right, else downloaded and stored. */
  async bytes(url, signal) {
    const held = this.held?.get(url);
    if (held) {
      /** @type {Map<string, Uint8Array>} */ (this.held).delete(url);
      return held;
    }
    const cached = await this.store.get(url);
    if (cached) {
      if (!(await this.#verify(url, cached))) return cached;
      await this.store.delete(url);
    }
    const bytes = await this.#download(url, signal);
    await this.store.put(url, bytes); // never throws: the store falls back or turns caching off
    return bytes;
  }

  async json(url, signal) {
    return JSON.parse(new TextDecoder().decode(await this.bytes(url, signal)));
  }

  // ---- tvmjs ArtifactCacheTemplate ----

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

  async addToCache(url, _storetype, signal) {
    const bytes = await this.bytes(url, signal);
    this.held?.set(url, bytes);
  }

  async hasAllKeys(keys) {
    for (const k of keys) if (!(await this.store.get(k))) return false;
    return true;
  }

  async deleteInCache(url) {
    await this.store.delete(url);
  }
}
