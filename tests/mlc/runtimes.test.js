// Which tvmjs runs which model library (js_glue/kernels/mlc/runtimes.js): the import-section
// parser, the runtime tables against the installed npm packages, the choice (record field or
// imports), ModelLibRuntimeError, and weights going through our ArtifactStore on every runtime.
// No GPU; the real libraries in ../shared/mlc-libs are only parsed (skipped where absent).

import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { RUNTIMES, fetchWeights, missingImports, pickRuntime, wasmImports } from "../../js_glue/kernels/mlc/runtimes.js";
import { ArtifactStore } from "../../js_glue/kernels/mlc/artifacts.js";
import { createMlcKernels } from "../../js_glue/kernels/mlc.js";
import { ORIGIN, RECORD, TOKENIZERS_URL, memoryFetch, modelFiles } from "./fixture.js";

const ROOT = new URL("../../", import.meta.url);
const LIBS = new URL("../shared/mlc-libs/", ROOT);

const THREADING = ["_ZN3tvm7runtime9threading15ResetThreadPoolEv", "_ZN3tvm7runtime9threading10NumThreadsEv"];
const WASI = ["clock_time_get", "proc_exit", "fd_write"].map((n) => ["wasi_snapshot_preview1", n]);
const env = (names) => names.map((n) => ["env", n]);
const LIB_018 = [...env([...THREADING, "TVMWasmPackedCFunc", "TVMWasmPackedCFuncFinalizer", "emscripten_notify_memory_growth"]), ...WASI];
const LIB_024 = [...env([...THREADING, "TVMFFIWasmSafeCall", "TVMFFIWasmFunctionDeleter", "emscripten_notify_memory_growth"]), ...WASI];
const LIB_027 = [...env(["TVMFFIWasmSafeCall", "TVMFFIWasmFunctionDeleter", "emscripten_notify_memory_growth"]), ...WASI];
const LIB_NEWER = [...env(["TVMFFIWasmSafeCall", "TVMFFIWasmFunctionDeleter", "TVMFFIEnvSetStream"]), ...WASI];

/** A valid wasm module importing `funcs` ([module, name] functions) plus a memory and a global. */
function wasmWith(funcs, { extra = true } = {}) {
  const leb = (n) => {
    const out = [];
    do {
      let byte = n & 0x7f;
      n >>>= 7;
      if (n) byte |= 0x80;
      out.push(byte);
    } while (n);
    return out;
  };
  const str = (s) => {
    const b = [...new TextEncoder().encode(s)];
    return [...leb(b.length), ...b];
  };
  const section = (id, body) => [id, ...leb(body.length), ...body];
  const entries = funcs.map(([m, n]) => [...str(m), ...str(n), 0, 0]);
  if (extra) {
    entries.push([...str("env"), ...str("memory"), 2, 1, 1, 300]); // memory, min 1 max 300
    entries.push([...str("env"), ...str("g"), 3, 0x7f, 0]); // immutable i32 global
  }
  const types = section(1, [1, 0x60, 0, 0]); // one type: () -> ()
  const imports = section(2, [...leb(entries.length), ...entries.flat()]);
  return Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...types, ...imports]);
}

test("wasmImports reads the import section as WebAssembly.Module.imports does", () => {
  for (const funcs of [LIB_018, LIB_024, LIB_NEWER, []]) {
    const bytes = wasmWith(funcs);
    const ours = wasmImports(bytes);
    const theirs = WebAssembly.Module.imports(new WebAssembly.Module(bytes));
    assert.deepEqual(ours, theirs.map(({ module, name, kind }) => ({ module, name, kind })));
  }
  assert.deepEqual(wasmImports(Uint8Array.of(0, 0x61, 0x73, 0x6d, 1, 0, 0, 0)), []);
  assert.throws(() => wasmImports(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8)), { name: "ModelLoadError" });
  assert.throws(() => wasmImports(wasmWith(LIB_018).slice(0, 40)), { name: "ModelLoadError" });
});

/** The env/wasi names a runtime bundle gives a library: its glue's wasmImports + Environment's env. */
function bundleProvides(source) {
  const glue = /var wasmImports=\{([^}]*)\}/.exec(source);
  assert.ok(glue, "no wasmImports literal in the bundle");
  const names = glue[1].split(",").map((kv) => kv.split(":")[0]);
  const envStart = source.indexOf("environment(initEnv) {");
  assert.ok(envStart > 0, "no Environment.environment in the bundle");
  const body = source.slice(envStart, source.indexOf("return Object.assign(defaultEnv, initEnv, newEnv)", envStart));
  const own = [...body.matchAll(/^\s*"?([A-Za-z_][A-Za-z0-9_]*)"?: /gm)].map((m) => m[1]);
  return { env: new Set([...names, ...own]), wasi_snapshot_preview1: new Set(names) };
}

test("RUNTIMES lists exactly the installed tvmjs packages, with what each bundle provides", () => {
  const deps = JSON.parse(readFileSync(new URL("package.json", ROOT), "utf8")).dependencies;
  const installed = Object.keys(deps)
    .filter((n) => n === "@mlc-ai/web-runtime" || n.startsWith("@mlc-ai/web-runtime-"))
    .map((n) => new URL(`node_modules/${n}/`, ROOT));
  const versions = installed.map((u) => JSON.parse(readFileSync(new URL("package.json", u), "utf8")).version);
  assert.deepEqual([...versions].sort(), RUNTIMES.map((r) => r.version).sort());
  installed.forEach((u, i) => {
    const rt = RUNTIMES.find((r) => r.version === versions[i]);
    const got = bundleProvides(readFileSync(new URL("lib/index.js", u), "utf8"));
    assert.deepEqual([...rt.provides.env].sort(), [...got.env].sort(), `${versions[i]} env`);
    assert.deepEqual([...rt.provides.wasi_snapshot_preview1].sort(), [...got.wasi_snapshot_preview1].sort(), `${versions[i]} wasi`);
  });
});

test("pickRuntime: the newest runtime whose exports satisfy the library's imports", () => {
  const pick = (funcs, record = {}) => pickRuntime({ model_lib: "lib.wasm", ...record }, wasmWith(funcs, { extra: false })).version;
  assert.equal(pick(LIB_018), "0.18.0-dev2");
  assert.equal(pick(LIB_024), "0.24.0-dev1");
  assert.equal(pick(LIB_027), "0.27.0-dev0");
  assert.equal(pick(LIB_027, { tvmjs_version: "0.24.0-dev1" }), "0.24.0-dev1"); // the record's explicit choice
});

test("a library that links with no shipped runtime fails with ModelLibRuntimeError saying what it needs", () => {
  const bytes = wasmWith(LIB_NEWER, { extra: false });
  assert.throws(() => pickRuntime({ model_lib: "libs/new.wasm" }, bytes), (e) => {
    assert.equal(e.name, "ModelLibRuntimeError");
    assert.equal(e.fields.model_lib, "libs/new.wasm");
    assert.match(e.fields.needs, /newer than 0\.27\.0-dev0/);
    assert.deepEqual(e.fields.missing, ["env.TVMFFIEnvSetStream"]);
    assert.deepEqual(e.fields.shipped, RUNTIMES.map((r) => r.version));
    assert.match(e.message, /TVMFFIEnvSetStream/);
    return true;
  });
  // An explicit version we do not ship, or one the library does not link with.
  assert.throws(() => pickRuntime({ model_lib: "a.wasm", tvmjs_version: "0.23.0-dev0" }, wasmWith(LIB_024)), (e) => {
    assert.equal(e.name, "ModelLibRuntimeError");
    assert.equal(e.fields.needs, "tvmjs 0.23.0-dev0");
    return true;
  });
  assert.throws(() => pickRuntime({ model_lib: "a.wasm", tvmjs_version: "0.27.0-dev0" }, wasmWith(LIB_018, { extra: false })), (e) => {
    assert.equal(e.name, "ModelLibRuntimeError");
    assert.ok(e.fields.missing.includes("env.TVMWasmPackedCFunc"));
    return true;
  });
});

test("the real libraries in ../shared/mlc-libs pick the runtime they were built for", { skip: !existsSync(LIBS) && "../shared/mlc-libs is absent" }, () => {
  const want = { v0_2_48__: "0.18.0-dev2", "v0_2_80-head__": "0.24.0-dev1" };
  const files = readdirSync(LIBS).filter((f) => f.endsWith(".wasm"));
  assert.ok(files.length >= 3);
  for (const f of files) {
    const bytes = readFileSync(new URL(f, LIBS));
    const rt = pickRuntime({ model_lib: f }, bytes);
    const prefix = Object.keys(want).find((p) => f.startsWith(p));
    assert.equal(rt.version, want[prefix], f);
    // None links with 0.27.0-dev0: the threading stubs are gone there.
    assert.ok(missingImports(RUNTIMES[0], wasmImports(bytes)).includes("env._ZN3tvm7runtime9threading15ResetThreadPoolEv"), f);
  }
});

test("createMlcKernels refuses a library needing an unshipped runtime before fetching weights or tokenizer", async () => {
  const files = { ...modelFiles(), "libs/tiny-webgpu.wasm": wasmWith(LIB_NEWER) };
  const served = memoryFetch(files);
  const kernels = createMlcKernels({ fetch: served.fetch, baseURL: ORIGIN, cache: "none", tokenizersURL: TOKENIZERS_URL, logger: () => {} });
  await assert.rejects(kernels.load(RECORD), { name: "ModelLibRuntimeError" });
  assert.deepEqual(served.asked.map((u) => u.slice(ORIGIN.length)), ["models/tiny/mlc-chat-config.json", "libs/tiny-webgpu.wasm"]);
});

/** A tvm whose internal loader calls the cache as tvmjs's fetch{Tensor,NDArray}CacheInternal does. */
function internalLoaderTvm(name) {
  const seen = [];
  const tvm = {
    cacheMetadata: {},
    async [name](url, records, _device, cache) {
      const urls = records.map((r) => new URL(r.dataPath, url).href);
      if (!(await cache.hasAllKeys(urls))) for (const u of urls) await cache.addToCache(u, "arraybuffer");
      for (const u of urls) seen.push(new Uint8Array(await cache.fetchWithCache(u, "arraybuffer")));
    },
    fetchTensorCache() {
      throw new Error("the public loader builds its own cache: never called");
    },
  };
  return { tvm, seen };
}

for (const name of ["fetchNDArrayCacheInternal", "fetchTensorCacheInternal"]) {
  test(`fetchWeights goes through our ArtifactStore on a runtime with ${name}: pins hold`, async () => {
    const files = modelFiles();
    const modelURL = new URL("models/tiny/", ORIGIN).href;
    const ok = internalLoaderTvm(name);
    await fetchWeights(ok.tvm, modelURL, null, new ArtifactStore({}, modelURL, { fetch: memoryFetch(files).fetch, cache: "none" }));
    assert.deepEqual(ok.seen, [files["models/tiny/params_shard_0.bin"], files["models/tiny/params_shard_1.bin"]]);
    assert.ok(ok.tvm.cacheMetadata.sha256, "the index's metadata reaches tvm.cacheMetadata");

    // A shard that differs from tensor-cache.json's metadata.sha256, then from a record pin.
    const tampered = { ...files, "models/tiny/params_shard_1.bin": new Uint8Array(8).fill(9) };
    const bad = internalLoaderTvm(name);
    const store = new ArtifactStore({}, modelURL, { fetch: memoryFetch(tampered).fetch, cache: "none" });
    await assert.rejects(fetchWeights(bad.tvm, modelURL, null, store), { name: "IntegrityError" });
    const noMeta = modelFiles({ metadataSha: false });
    const pinned = { sha256: { "params_shard_0.bin": createHash("sha256").update("not it").digest("hex") } };
    const store2 = new ArtifactStore(pinned, modelURL, { fetch: memoryFetch(noMeta).fetch, cache: "none" });
    await assert.rejects(fetchWeights(internalLoaderTvm(name).tvm, modelURL, null, store2), { name: "IntegrityError" });
  });
}
