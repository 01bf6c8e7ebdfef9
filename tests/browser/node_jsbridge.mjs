// Runs py_worker/jsbridge.py inside real Pyodide (Node) against a recording JS shim and prints
// one JSON line: what the shim saw and what Python got back. Driven by test_jsbridge.py.
import { readFileSync, readdirSync } from "node:fs";
import { loadPyodide } from "../../node_modules/pyodide/pyodide.mjs";

const root = new URL("../../", import.meta.url);
const pyodide = await loadPyodide({ indexURL: new URL("node_modules/pyodide/", root).pathname });
// The package as source files (the whole tree: __init__ imports its subpackages).
for (const name of readdirSync(new URL("py_worker/", root), { recursive: true })) {
  if (!name.endsWith(".py")) continue;
  const target = `/home/pyodide/py_worker/${name}`;
  pyodide.FS.mkdirTree(target.slice(0, target.lastIndexOf("/")));
  pyodide.FS.writeFile(target, readFileSync(new URL(`py_worker/${name}`, root)));
}

const calls = [];
let keptProgress = null;
const isPlain = (v) =>
  !(v instanceof pyodide.ffi.PyProxy) &&
  (typeof v !== "object" || v === null || Object.values(v).every(isPlain));
const record = (method, args) => calls.push({ method, plain: args.every(isPlain), args: JSON.parse(JSON.stringify(args)) });
const shim = {
  async load(rec, progress) {
    record("load", [rec]);
    keptProgress = progress;
    progress(0.5, "Fetching param cache[1/2]: x");
    progress(1, "Finish loading on WebGPU - test");
    return { handle: 7, config: { model_type: "llama", vocab_size: 3, conv_template: { roles: { user: "u" } } } };
  },
  async unload(h) { record("unload", [h]); },
  async tokenize(h, text) { record("tokenize", [h, text]); return new Int32Array([5, 6, text.length]); },
  async detokenize(h, ids) { record("detokenize", [h, ids]); return ids.join(","); },
  async prefill(h, ids) { record("prefill", [h, ids]); },
  async decode(h, t) { record("decode", [h, t]); },
  async sample(h, params) {
    record("sample", [h, params]);
    return { token: 2, logprob: -0.5, top_logprobs: [[2, -0.5], [1, -1.5]] };
  },
  async decodeSteps(h, n, params) {
    record("decodeSteps", [h, n, params]);
    return Array.from({ length: n }, (_, i) => ({ token: i }));
  },
  async rewind(h, len) { record("rewind", [h, len]); },
  async embed(h, batch) { record("embed", [h, batch]); return batch.map((row) => new Float32Array([row.length, 0.5])); },
  async deviceInfo() {
    record("deviceInfo", []);
    return { vendor: "google", architecture: "swiftshader", maxStorageBufferBindingSize: 1073741824, features: ["subgroups"] };
  },
  async stats(h) { record("stats", [h]); return { prefill_tokens: 3, decode_seconds: 0.25 }; },
  async reset(h) {
    record("reset", [h]);
    if (h === 99) {
      const err = new Error("device went away");
      err.name = "DeviceLostError";
      err.fields = { reason: "destroyed" };
      throw err;
    }
    if (h === 98) throw new TypeError("plain JS failure");
  },
};

const checks = readFileSync(new URL("jsbridge_checks.py", import.meta.url), "utf8");
const scope = pyodide.globals.get("dict")();
pyodide.runPython(checks, { globals: scope });
let python;
try {
  python = JSON.parse(await scope.get("main")(shim));
} catch (err) {
  python = { error: String(err) };
}
let progressAfterLoad = "callable";
try {
  keptProgress(0.9, "late");
} catch (err) {
  progressAfterLoad = String(err.message || err);
}
console.log(JSON.stringify({ calls, python, progressAfterLoad }));
