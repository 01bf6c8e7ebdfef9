// Which tvmjs (npm @mlc-ai/web-runtime) runs an MLC model library. A library links only against
// the tvmjs of its own MLC release, so the site ships several side by side (tools/site.py copies
// each to tvmjs/<version>/index.js) and the mlc backend picks one per library: the record's
// `tvmjs_version` when it names one, else the newest whose imports satisfy the library's import
// section (read here without compiling it). A library that links with none fails fast with
// ModelLibRuntimeError. Also the one place weights are loaded, on every runtime through our
// ArtifactStore (so the sha256 checks hold whatever the runtime's own cache API looks like).

import { namedError } from "../errors.js";

// What each shipped runtime gives a model library at instantiate: the emscripten glue's
// `wasmImports` (offered under both "env" and "wasi_snapshot_preview1") plus the Environment's
// own env functions. tests/mlc/runtimes.test.js checks these lists against node_modules.
const WASI = ["clock_time_get", "environ_get", "environ_sizes_get", "fd_close", "fd_read", "fd_seek", "fd_write", "proc_exit"];
const THREADING = ["_ZN3tvm7runtime9threading10NumThreadsEv", "_ZN3tvm7runtime9threading15ResetThreadPoolEv"];
const FFI_ABI = ["TVMFFIWasmFunctionDeleter", "TVMFFIWasmSafeCall"];
const PACKED_ABI = ["TVMWasmPackedCFunc", "TVMWasmPackedCFuncFinalizer"];
const ENV_OWN = ["__cxa_thread_atexit", "emscripten_notify_memory_growth", "__console_log"];

/**
 * A shipped runtime: its version and, per import module, the names it provides.
 * @typedef {{version: string, provides: Record<string, Set<string> | undefined>}} Runtime
 */

/**
 * One import of a wasm binary.
 * @typedef {{module: string, name: string, kind: string}} WasmImport
 */

/** @param {string} version @param {string[]} glue @returns {Runtime} */
function runtime(version, glue) {
  const all = [...glue, ...WASI, "emscripten_notify_memory_growth"];
  return {
    version,
    provides: { env: new Set([...all, ...ENV_OWN]), wasi_snapshot_preview1: new Set(all) },
  };
}

/** The shipped runtimes, newest first (package.json: @mlc-ai/web-runtime and its -0.xx aliases). */
export const RUNTIMES = [
  runtime("0.27.0-dev0", [...FFI_ABI]),
  runtime("0.24.0-dev1", [...FFI_ABI, ...THREADING]),
  runtime("0.18.0-dev2", [...PACKED_ABI, ...THREADING]),
];

/** Imports that tell what a library was built for, when no shipped runtime has them. */
const HINTS = [
  ["TVMFFIEnvSetStream", "a tvmjs newer than 0.27.0-dev0 (web-llm 0.2.86+, runtime 0.28)"],
  ["TVMWasmPackedCFunc", "a tvmjs of the packed-function ABI (before the TVM FFI), like 0.18.0-dev2"],
  ["_ZN3tvm7runtime9threading15ResetThreadPoolEv", "a tvmjs that still exports the threading stubs (0.24.0-dev1 or older)"],
];

/**
 * The import section of a wasm binary: [{module, name, kind}], without compiling it.
 * @param {Uint8Array | ArrayBuffer} bytes
 * @returns {WasmImport[]}
 */
export function wasmImports(bytes) {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const bad = (/** @type {string} */ why) => namedError("ModelLoadError", `the model library is not a WebAssembly module: ${why}`);
  if (b.length < 8 || b[0] !== 0 || b[1] !== 0x61 || b[2] !== 0x73 || b[3] !== 0x6d) throw bad("no \\0asm magic");
  let p = 8;
  const u32 = () => {
    let v = 0;
    for (let shift = 0; ; shift += 7) {
      if (p >= b.length || shift > 28) throw bad("truncated LEB128");
      const x = b[p++];
      v += (x & 0x7f) * 2 ** shift;
      if (!(x & 0x80)) return v;
    }
  };
  const dec = new TextDecoder();
  const name = () => {
    const n = u32();
    if (p + n > b.length) throw bad("truncated name");
    const s = dec.decode(b.subarray(p, p + n));
    p += n;
    return s;
  };
  const limits = () => {
    const flags = u32();
    u32();
    if (flags & 1) u32();
  };
  const KINDS = ["function", "table", "memory", "global", "tag"];
  while (p < b.length) {
    const id = b[p++];
    const size = u32();
    const end = p + size;
    if (end > b.length) throw bad("truncated section");
    if (id !== 2) {
      p = end;
      continue;
    }
    /** @type {WasmImport[]} */
    const out = [];
    for (let i = u32(); i > 0; i--) {
      const module = name();
      const field = name();
      const kind = b[p++];
      if (kind === 0) {
        u32(); // type index
      } else if (kind === 1) {
        p++; // reftype
        limits();
      } else if (kind === 2) {
        limits();
      } else if (kind === 3) {
        p += 2; // valtype, mutability
      } else if (kind === 4) {
        p++; // attribute
        u32(); // type index
      } else {
        throw bad(`import kind ${kind}`);
      }
      out.push({ module, name: field, kind: KINDS[kind] });
    }
    return out;
  }
  return [];
}

/**
 * Imports of `imports` the runtime does not provide, as "module.name".
 * @param {Runtime} rt
 * @param {WasmImport[]} imports
 * @returns {string[]}
 */
export function missingImports(rt, imports) {
  return imports.filter((i) => !rt.provides[i.module]?.has(i.name)).map((i) => `${i.module}.${i.name}`);
}

/**
 * @param {string} modelLib @param {string} message @param {string} needs what the library needs
 * @param {string[]} missing @param {Runtime[]} runtimes
 */
function runtimeError(modelLib, message, needs, missing, runtimes) {
  return namedError("ModelLibRuntimeError", message, {
    model_lib: modelLib,
    needs,
    missing,
    shipped: runtimes.map((r) => r.version),
  });
}

/**
 * The runtime for a library: the record's `tvmjs_version` when set (it must be shipped and
 * satisfy the imports), else the newest shipped one that satisfies them.
 * @param {{model_lib?: string, tvmjs_version?: string}} record
 * @param {Uint8Array | ArrayBuffer} libBytes
 * @param {Runtime[]} [runtimes]
 * @returns {Runtime}
 */
export function pickRuntime(record, libBytes, runtimes = RUNTIMES) {
  const lib = String(record.model_lib);
  const imports = wasmImports(libBytes);
  const wanted = record.tvmjs_version;
  if (wanted) {
    const rt = runtimes.find((r) => r.version === String(wanted));
    if (!rt) {
      throw runtimeError(lib, `${lib}: its record asks for tvmjs ${wanted}, which this site does not ship (it ships ${runtimes.map((r) => r.version).join(", ")})`, `tvmjs ${wanted}`, [], runtimes);
    }
    const missing = missingImports(rt, imports);
    if (!missing.length) return rt;
    throw runtimeError(lib, `${lib} does not link with tvmjs ${wanted} (its record's tvmjs_version): it imports ${missing.join(", ")}`, `a tvmjs providing ${missing.join(", ")}`, missing, runtimes);
  }
  /** @type {string[] | null} the fewest imports a runtime lacks */
  let best = null;
  for (const rt of runtimes) {
    const missing = missingImports(rt, imports);
    if (!missing.length) return rt;
    if (!best || missing.length < best.length) best = missing;
  }
  const missing = best || [];
  const names = new Set(imports.map((i) => i.name));
  const hint = HINTS.find(([symbol]) => names.has(symbol));
  const needs = hint ? hint[1] : `a tvmjs providing ${missing.join(", ")}`;
  throw runtimeError(
    lib,
    `${lib} links with none of the shipped tvmjs runtimes (${runtimes.map((r) => r.version).join(", ")}): it needs ${needs}; unresolved imports: ${missing.join(", ")}`,
    needs,
    missing,
    runtimes,
  );
}

/**
 * Load the weights into `tvm`'s tensor cache through `store` (our ArtifactStore: sha256 pins,
 * the shared cache). The runtimes' public calls differ (0.18 `fetchNDArrayCache`, 0.24
 * `fetchTensorCache(url, device, cacheScope)` which builds its own unchecked cache, 0.27
 * `fetchTensorCache(url, device, {artifactCache})`); their internal loader is the same on all
 * three and takes the cache as an argument, so that one is called.
 * @param {import("./model.js").Instance} tvm
 * @param {string} modelURL
 * @param {import("./model.js").Device} device
 * @param {import("./artifacts.js").ArtifactStore} store
 */
export async function fetchWeights(tvm, modelURL, device, store) {
  const internal = tvm.fetchTensorCacheInternal || tvm.fetchNDArrayCacheInternal;
  if (typeof internal === "function") {
    const index = await store.fetchWithCache(new URL("tensor-cache.json", modelURL).href, "json");
    await internal.call(tvm, modelURL, index.records, device, store);
    tvm.cacheMetadata = { ...(tvm.cacheMetadata || {}), ...(index.metadata || {}) };
    return;
  }
  if (typeof tvm.fetchTensorCache !== "function") {
    throw namedError("ModelLoadError", "this tvmjs has no tensor-cache loader the mlc backend knows");
  }
  // A runtime without the internal loader (e.g. a test's fake): 0.27's options form.
  await tvm.fetchTensorCache(modelURL, device, { artifactCache: store });
}

/**
 * The URL of a shipped runtime's bundle under `base` (the site's tvmjs/ folder).
 * @param {string} base
 * @param {string} version
 */
export function runtimeURL(base, version) {
  return new URL(`${version}/index.js`, base).href;
}
