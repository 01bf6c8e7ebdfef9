// Fetch an MLC model directory: mlc-chat-config.json, tensor-cache.json, the shards and the
// tokenizer file; progress in web-llm's texts; a browser cache (Cache API by default, falling
// back to IndexedDB when it is full; IndexedDB alone as an option); sha256 of every shard
// against tensor-cache.json's metadata.sha256 and the record's pins. Bytes are stored only
// after their hash checked out, and cached bytes are re-hashed when read, so an interrupted or
// corrupt download never poisons the cache.

import { namedError } from "./errors.js";

const CACHE_NAME = "py_worker-wgsl";

/** @typedef {import("../proxy.d.ts").ModelRecord} ModelRecord */
/**
 * A load's progress: `fraction` from 0 to 1, and web-llm's text for it.
 * @typedef {(fraction: number, text: string) => void} Progress
 */
/** @typedef {"cache" | "indexeddb" | "none"} CacheKind */
/**
 * Downloaded bytes: over an ArrayBuffer (never a SharedArrayBuffer), as Response and crypto.subtle take them.
 * @typedef {Uint8Array<ArrayBuffer>} Bytes
 */
/**
 * The fetch a load uses (the global one, or a host's own).
 * @typedef {(url: string, init?: RequestInit) => Promise<Response>} Fetch
 */
/**
 * What every backend's loader reads of createKernels's options.
 * @typedef {{baseURL?: string, fetch?: Fetch, cache?: CacheKind}} LoadOptions
 */
/**
 * One browser store of downloaded bytes, keyed by URL.
 * @typedef {{
 *   label: string,
 *   get(url: string): Promise<Bytes | null>,
 *   put(url: string, bytes: Bytes): Promise<unknown>,
 *   delete(url: string): Promise<unknown>,
 * }} Store
 */
/**
 * fetchFile's context: `name`s resolve against `base`; bytes come from `store` or `fetch`.
 * @typedef {{base: string, fetch: Fetch, store: FallbackStore}} FetchContext
 */
/** @typedef {{dtype: string, shape: number[], bytes: Bytes}} Tensor */
/** @typedef {{name: string, bytes: Bytes}} TokenizerFile */
/**
 * tensor-cache.json (docs/CONTRACTS.md): its shards, each with the tensors it holds.
 * @typedef {{name: string, shape: number[], dtype: string, format: string, byteOffset: number, nbytes: number}} TensorRecord
 * @typedef {{dataPath: string, nbytes: number, records: TensorRecord[]}} ShardRecord
 * @typedef {{metadata?: {sha256?: Record<string, string>}, records: ShardRecord[]}} TensorCache
 */
/**
 * A model's mlc-chat-config.json (or a GGUF's config in its shape): JSON whose fields vary by model.
 * @typedef {Record<string, any>} ChatConfig
 */
/**
 * What a wgsl load needs: the config, the tensors by name and the tokenizer file.
 * @typedef {{config: ChatConfig, tensors: Map<string, Tensor>, tokenizer: TokenizerFile}} Artifacts
 */

/** Cache API store (`caches`): keyed by URL. */
class CacheApiStore {
  label = "Cache API";
  /** @type {Cache | undefined} */
  c;
  async #cache() {
    this.c ??= await caches.open(CACHE_NAME);
    return this.c;
  }
  /** @param {string} url */
  async get(url) {
    const r = await (await this.#cache()).match(url);
    return r ? new Uint8Array(await r.arrayBuffer()) : null;
  }
  /** @param {string} url @param {Bytes} bytes */
  async put(url, bytes) {
    await (await this.#cache()).put(url, new Response(bytes));
  }
  /** @param {string} url */
  async delete(url) {
    await (await this.#cache()).delete(url);
  }
}

/** IndexedDB store: one object store of URL -> bytes. */
class IndexedDbStore {
  label = "IndexedDB";
  /** @type {Promise<IDBDatabase> | undefined} */
  db;
  #db() {
    this.db ??= new Promise((resolve, reject) => {
      const req = indexedDB.open(CACHE_NAME, 1);
      req.onupgradeneeded = () => req.result.createObjectStore("files");
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    return this.db;
  }
  /**
   * One request in its own transaction; resolves to its result once the transaction commits.
   * @param {IDBTransactionMode} mode @param {(store: IDBObjectStore) => IDBRequest} fn
   */
  async #tx(mode, fn) {
    const db = await this.#db();
    return new Promise((resolve, reject) => {
      const tx = db.transaction("files", mode);
      const req = fn(tx.objectStore("files"));
      tx.oncomplete = () => resolve(req.result);
      // An abort by the browser (quota) carries an error; one without says so instead of null.
      const failed = () => reject(tx.error || new DOMException("IndexedDB transaction aborted", "AbortError"));
      tx.onerror = failed;
      tx.onabort = failed;
    });
  }
  /** @param {string} url */
  async get(url) {
    const v = await this.#tx("readonly", (s) => s.get(url));
    return v ? new Uint8Array(v) : null;
  }
  /** @param {string} url @param {Bytes} bytes */
  put(url, bytes) {
    const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
    return this.#tx("readwrite", (s) => s.put(whole ? bytes.buffer : bytes.slice().buffer, url));
  }
  /** @param {string} url */
  delete(url) {
    return this.#tx("readwrite", (s) => s.delete(url));
  }
}

/**
 * The stores of one load in order of preference. Reads look in each; a write goes to the first
 * store that has not refused one, so a full Cache API (QuotaExceededError, or any error) moves
 * this and later files to IndexedDB. When every store has refused, `off` names why and the load
 * goes on uncached. A refused write deletes its key, so no half-written entry is left behind.
 */
class FallbackStore {
  /** @param {Store[]} stores */
  constructor(stores) {
    this.stores = stores;
    this.writer = 0;
    /** @type {string[]} */
    this.refusals = [];
    /** @type {string | null} */
    this.off = null;
  }
  /** @param {string} url */
  async get(url) {
    for (const store of this.stores) {
      try {
        const bytes = await store.get(url);
        if (bytes) return bytes;
      } catch (e) {
        console.warn(`py_worker: could not read ${url} from ${store.label}: ${e.name}: ${e.message}`);
      }
    }
    return null;
  }
  /** @param {string} url @param {Bytes} bytes */
  async put(url, bytes) {
    while (this.writer < this.stores.length) {
      const store = this.stores[this.writer];
      try {
        await store.put(url, bytes);
        return;
      } catch (e) {
        await store.delete(url).catch(() => {});
        this.refusals.push(`${store.label} ${e.name}: ${e.message}`);
        this.writer++;
        const next = this.stores[this.writer];
        console.warn(`py_worker: could not cache ${url} (${this.refusals.at(-1)}); ${next ? `using ${next.label}` : "caching is off"}`);
      }
    }
    if (this.stores.length) this.off = this.refusals.join("; ");
  }
  /** @param {string} url */
  async delete(url) {
    await Promise.all(this.stores.map((store) => store.delete(url).catch(() => {})));
  }
}

/**
 * The store a record asks for ("cache" | "indexeddb" | "none"): "cache" falls back to IndexedDB
 * when the Cache API refuses a write; APIs missing in this context are skipped.
 * @param {string} kind any other value stores nothing, as "none"
 */
export function openStore(kind) {
  /** @type {Store[]} */
  const stores = [];
  if (kind === "cache" && globalThis.caches) stores.push(new CacheApiStore());
  if ((kind === "cache" || kind === "indexeddb") && globalThis.indexedDB) stores.push(new IndexedDbStore());
  return new FallbackStore(stores);
}

/** @param {Bytes} bytes */
export async function sha256Hex(bytes) {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Fetch `url` as bytes (an aborted `signal` rejects with its AbortError), calling
 * onBytes(received, total) while the body streams in. With a
 * Content-Length the body is written straight into one buffer of that size, so a large file
 * (a GGUF) is never held twice in memory.
 * @param {Fetch} fetchFn @param {string} url
 * @param {(received: number, total: number) => void} onBytes @param {AbortSignal} [signal]
 */
async function download(fetchFn, url, onBytes, signal) {
  let resp;
  try {
    resp = await fetchFn(url, signal ? { signal } : undefined);
  } catch (e) {
    if (e && e.name === "AbortError") throw e; // the caller gave up: not a fetch failure
    throw namedError("ArtifactFetchError", `fetch ${url} failed: ${e.message}`, { url });
  }
  if (!resp.ok) throw namedError("ArtifactFetchError", `fetch ${url}: HTTP ${resp.status}`, { url, status: resp.status });
  try {
    if (!resp.body) return new Uint8Array(await resp.arrayBuffer());
    const declared = Number(resp.headers.get("content-length"));
    const encoded = resp.headers.get("content-encoding");
    const total = declared > 0 && !encoded ? declared : 0;
    let out = new Uint8Array(total);
    let got = 0;
    const reader = resp.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (got + value.byteLength > out.byteLength) {
        // no (or a wrong) Content-Length: grow geometrically
        const grown = new Uint8Array(Math.max(2 * out.byteLength, got + value.byteLength));
        grown.set(out.subarray(0, got));
        out = grown;
      }
      out.set(value, got);
      got += value.byteLength;
      onBytes(got, total);
    }
    return got === out.byteLength ? out : out.slice(0, got);
  } catch (e) {
    throw namedError("ArtifactFetchError", `download of ${url} was interrupted: ${e.message}`, { url });
  }
}

/**
 * Bytes of one file, from the store when its copy still checks out, else from the network;
 * `name` is relative to `ctx.base` (or an absolute URL), and is the IntegrityError's `file`.
 * `expected` lists hex digests it must match (absent ones are skipped) and `size`, when known,
 * its length, so a download cut short is refused even where no digest is published. A cached
 * copy that fails the check is replaced only by a download that passes it: a wrong pin is
 * refused without evicting the good copy another record (or the right pin) still uses.
 * Both backends fetch every artifact through here (the mlc backend through mlc/artifacts.js).
 * @param {FetchContext} ctx @param {string} name @param {(string | undefined)[]} expected
 * @param {(received: number, total: number) => void} onBytes @param {number | null} [size]
 * @param {AbortSignal} [signal]
 * @returns {Promise<{bytes: Bytes, fromCache: boolean}>}
 */
export async function fetchFile(ctx, name, expected, onBytes, size = null, signal = undefined) {
  const url = new URL(name, ctx.base).href;
  const want = /** @type {string[]} */ (expected.filter((h) => h)).map((h) => h.toLowerCase());
  /** @param {Bytes} bytes */
  const ok = async (bytes) => {
    if (size !== null && bytes.byteLength !== size) return false;
    if (!want.length) return true;
    const got = await sha256Hex(bytes);
    return want.every((h) => h === got);
  };
  let cached = await ctx.store.get(url);
  if (cached && (await ok(cached))) return { bytes: cached, fromCache: true };
  const stale = cached !== null;
  cached = null; // not held while the download fills memory (a GGUF is one large file)
  const bytes = await download(ctx.fetch, url, onBytes, signal);
  if (size !== null && bytes.byteLength !== size) {
    throw namedError("IntegrityError", `${name} has ${bytes.byteLength} bytes, expected ${size}`, { file: name, url });
  }
  if (!(await ok(bytes))) {
    const got = await sha256Hex(bytes);
    throw namedError("IntegrityError", `sha256 of ${name} is ${got}, expected ${want.join(" and ")}`, {
      file: name,
      url,
      expected: want,
      actual: got,
    });
  }
  if (stale) await ctx.store.delete(url); // every store: the new copy may go to another one
  await ctx.store.put(url, bytes);
  return { bytes, fromCache: false };
}

/** @param {Bytes} bytes */
function bf16ToF32(bytes) {
  const src = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  const out = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
  return new Uint8Array(out.buffer);
}

/**
 * Tensors of one shard by name: {dtype, shape, bytes}.
 * @param {Bytes} bytes @param {TensorRecord[]} records @param {Map<string, Tensor>} into
 */
function splitShard(bytes, records, into) {
  for (const r of records) {
    const raw = bytes.subarray(r.byteOffset, r.byteOffset + r.nbytes);
    if (r.format === "f32-to-bf16") into.set(r.name, { dtype: "float32", shape: r.shape, bytes: bf16ToF32(raw) });
    else into.set(r.name, { dtype: r.dtype, shape: r.shape, bytes: raw });
  }
}

const MB = 1024 * 1024;

/**
 * The absolute URL (with a trailing slash) of model directory `model` against `baseHref`. As in
 * web-llm, a Hugging Face repository URL (https://huggingface.co/<org>/<repo>) means the files
 * of its main branch, `<repo>/resolve/main/`, so web-llm's own records load unchanged.
 * @param {unknown} model @param {string | URL | undefined} baseHref
 */
export function modelDirURL(model, baseHref) {
  const s = String(model);
  const url = new URL(s.endsWith("/") ? s : `${s}/`, baseHref);
  const repo = url.hostname === "huggingface.co" && /^\/[^/]+\/[^/]+\/$/.test(url.pathname);
  return repo ? new URL("resolve/main/", url).href : url.href;
}

/**
 * The absolute URL (with a trailing slash) of a record's model directory.
 * @param {{model: unknown}} record @param {LoadOptions} [options]
 */
export function modelBase(record, options = {}) {
  return modelDirURL(record.model, options.baseURL || (globalThis.location ? location.href : undefined));
}

/**
 * Fetch an MLC model dir named by `record.model`. Returns {config, tensors: Map, tokenizer:
 * {name, bytes}}. progress(fraction, text) goes from 0 to 1 over the shard bytes.
 * @param {ModelRecord} record @param {Progress} progress @param {LoadOptions} [options]
 * @returns {Promise<Artifacts>}
 */
export async function loadArtifacts(record, progress, options = {}) {
  const ctx = {
    base: modelBase(record, options),
    fetch: options.fetch || globalThis.fetch.bind(globalThis),
    store: openStore(record.cache || options.cache || "cache"),
  };
  const pins = record.sha256 || {};
  /** @param {string} name */
  const json = async (name) => {
    const { bytes } = await fetchFile(ctx, name, [pins[name]], () => {});
    return JSON.parse(new TextDecoder().decode(bytes));
  };
  const t0 = performance.now();
  progress(0, "Start to fetch params");
  const config = await json("mlc-chat-config.json");
  /** @type {TensorCache} */
  let cacheIndex;
  try {
    cacheIndex = await json("tensor-cache.json");
  } catch (e) {
    if (e.name !== "ArtifactFetchError") throw e;
    cacheIndex = await json("ndarray-cache.json");
  }
  const shardHashes = (cacheIndex.metadata && cacheIndex.metadata.sha256) || {};
  const shards = cacheIndex.records;
  const total = shards.reduce((a, s) => a + s.nbytes, 0) || 1;
  /** @type {Map<string, Tensor>} */
  const tensors = new Map();
  let done = 0;
  for (let i = 0; i < shards.length; i++) {
    const s = shards[i];
    /** @param {boolean} fromCache @param {number} bytes */
    const report = (fromCache, bytes) => {
      const secs = Math.round((performance.now() - t0) / 1000);
      const pct = Math.floor(((done + bytes) / total) * 100);
      const text = fromCache
        ? `Loading model from cache[${i + 1}/${shards.length}]: ${Math.round((done + bytes) / MB)}MB loaded. ${pct}% completed, ${secs} secs elapsed.`
        : `Fetching param cache[${i + 1}/${shards.length}]: ${Math.round((done + bytes) / MB)}MB fetched. ${pct}% completed, ${secs} secs elapsed. It can take a while when we first visit this page to populate the cache. Later refreshes will become faster.`;
      const off = ctx.store.off ? ` Caching is off (${ctx.store.off}): the next visit downloads again.` : "";
      progress((done + bytes) / total, text + off);
    };
    const { bytes, fromCache } = await fetchFile(
      ctx,
      s.dataPath,
      [shardHashes[s.dataPath], pins[s.dataPath]],
      (got) => report(false, Math.min(got, s.nbytes)),
      s.nbytes,
    );
    splitShard(bytes, s.records, tensors);
    report(fromCache, s.nbytes);
    done += s.nbytes;
  }
  /** @type {string[]} */
  const files = config.tokenizer_files || ["tokenizer.json"];
  const name = files.find((f) => f === "tokenizer.json") || files.find((f) => f.endsWith(".model"));
  if (!name) throw namedError("UnsupportedTokenizerFilesError", `no usable tokenizer in ${files.join(", ")}`, { files });
  const tok = await fetchFile(ctx, name, [pins[name]], () => {});
  return { config, tensors, tokenizer: { name, bytes: tok.bytes } };
}

// ---- What is cached: for the web-llm cache helpers (js_glue/cache.js) ----------------------------

/** The Cache API name and IndexedDB database every backend's downloads are kept under. */
export const CACHE_STORE_NAME = CACHE_NAME;

/** The IndexedDB database if it exists (never creates one), else null. */
async function existingDb() {
  if (!globalThis.indexedDB) return null;
  if (typeof indexedDB.databases === "function") {
    const dbs = await indexedDB.databases();
    if (!dbs.some((d) => d.name === CACHE_NAME)) return null;
  }
  const db = await new Promise((resolve, reject) => {
    const req = indexedDB.open(CACHE_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore("files");
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  if (!db.objectStoreNames.contains("files")) {
    db.close();
    return null;
  }
  return db;
}

/**
 * Every cached file: [{url, bytes, store: "cache" | "indexeddb"}] (a URL may be in both stores).
 * `wanted(url)` picks which entries are measured (sizes of the others are not read).
 * @param {(url: string) => boolean} [wanted]
 */
export async function cachedEntries(wanted = () => true) {
  const out = [];
  if (globalThis.caches && (await caches.has(CACHE_NAME))) {
    const cache = await caches.open(CACHE_NAME);
    for (const request of await cache.keys()) {
      if (!wanted(request.url)) continue;
      const response = await cache.match(request);
      if (response) out.push({ url: request.url, bytes: (await response.blob()).size, store: "cache" });
    }
  }
  const db = await existingDb();
  if (db !== null) {
    try {
      await new Promise((resolve, reject) => {
        const tx = db.transaction("files", "readonly");
        const req = tx.objectStore("files").openCursor();
        req.onsuccess = () => {
          const cursor = req.result;
          if (!cursor) return;
          const url = String(cursor.key);
          if (wanted(url)) out.push({ url, bytes: cursor.value ? cursor.value.byteLength : 0, store: "indexeddb" });
          cursor.continue();
        };
        tx.oncomplete = () => resolve(undefined);
        tx.onerror = () => reject(tx.error);
        tx.onabort = () => reject(tx.error);
      });
    } finally {
      db.close();
    }
  }
  return out;
}

/** Bytes of a cached file from either store, or null. @param {string} url */
export async function cachedBytes(url) {
  return openStore("cache").get(url);
}

/** Delete `urls` from both stores. @param {string[]} urls */
export async function deleteCachedFiles(urls) {
  if (!urls.length) return;
  if (globalThis.caches && (await caches.has(CACHE_NAME))) {
    const cache = await caches.open(CACHE_NAME);
    await Promise.all(urls.map((url) => cache.delete(url)));
  }
  const db = await existingDb();
  if (db === null) return;
  try {
    await new Promise((resolve, reject) => {
      const tx = db.transaction("files", "readwrite");
      const store = tx.objectStore("files");
      for (const url of urls) store.delete(url);
      tx.oncomplete = () => resolve(undefined);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

/** Which of `urls` are cached in either store (no file's bytes are read). @param {string[]} urls */
export async function cachedUrls(urls) {
  /** @type {Set<string>} */
  const found = new Set();
  if (globalThis.caches && (await caches.has(CACHE_NAME))) {
    const cache = await caches.open(CACHE_NAME);
    for (const url of urls) if (await cache.match(url)) found.add(url);
  }
  const rest = urls.filter((url) => !found.has(url));
  const db = rest.length ? await existingDb() : null;
  if (db === null) return found;
  try {
    await new Promise((resolve, reject) => {
      const tx = db.transaction("files", "readonly");
      const store = tx.objectStore("files");
      for (const url of rest) {
        const req = store.getKey(url);
        req.onsuccess = () => {
          if (req.result !== undefined) found.add(url);
        };
      }
      tx.oncomplete = () => resolve(undefined);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
  return found;
}
