// js_glue/kernels/backends.js: which backend a record runs on, and that the combined shim routes
// every ABI call by its own handle to the backend that loaded the model. The two backends are
// recording stand-ins here (this tests the layer above them).

import { test } from "node:test";
import assert from "node:assert/strict";
import "./fixture.js"; // web-tokenizers needs `location` in node
import { backendChoice, chooseBackend, createKernels } from "../../js_glue/kernels/backends.js";

test("model_lib picks mlc, no model_lib picks wgsl; record.backend and the user option force", () => {
  const lib = { model_id: "a", model: "m/", model_lib: "a.wasm" };
  const plain = { model_id: "b", model: "m/" };
  assert.equal(chooseBackend(lib), "mlc");
  assert.equal(chooseBackend(plain), "wgsl");
  assert.equal(chooseBackend({ ...lib, backend: "wgsl" }), "wgsl");
  assert.equal(chooseBackend({ ...plain, backend: "mlc" }), "mlc");
  assert.equal(chooseBackend({ ...lib, backend: "mlc" }, { backend: "wgsl" }), "wgsl");
  assert.equal(chooseBackend(plain, { backend: "mlc" }), "mlc");
  assert.throws(() => chooseBackend({ ...plain, backend: "cuda" }), { name: "ModelLoadError" });
});

test("a GGUF goes to wasm where the GPU is missing or a software one; only a GGUF; a forced backend wins", () => {
  const gguf = { model_id: "g", model: "models/x.Q4_1.gguf" };
  const dir = { model_id: "d", model: "models/x-q4f32_1/" };
  const soft = { hardware: false, reason: "the WebGPU adapter is a software one (lavapipe)" };
  const hard = { hardware: true, reason: "a hardware WebGPU adapter (H200)" };
  assert.deepEqual(backendChoice(gguf, {}, soft), { name: "wasm", reason: soft.reason });
  assert.deepEqual(backendChoice(gguf, {}, hard), { name: "wgsl", reason: hard.reason });
  assert.equal(backendChoice(dir, {}, soft).name, "wgsl"); // llama.cpp reads GGUF files only
  assert.deepEqual(backendChoice({ ...gguf, backend: "wgsl" }, {}, soft), { name: "wgsl", reason: "the record's backend" });
  assert.deepEqual(backendChoice(gguf, { backend: "wgsl" }, soft), { name: "wgsl", reason: "the engine's backend option" });
  assert.equal(backendChoice(dir, { backend: "wasm" }, hard).name, "wasm");
  const workerless = backendChoice(gguf, {}, { ...soft, workers: false, workerless: "a shared worker" });
  assert.deepEqual(workerless, { name: "wgsl", reason: `${soft.reason}, but llama.cpp needs a worker of its own, which a shared worker cannot start` });
});

function recorder(name, calls) {
  let next = 1;
  const k = { backend: name };
  for (const m of ["tokenize", "detokenize", "prefill", "decode", "sample", "decodeSteps", "rewind", "reset", "embed", "stats"]) {
    k[m] = async (handle, ...args) => {
      calls.push([name, m, handle, ...args]);
      return `${name}:${m}`;
    };
  }
  k.load = async (record) => {
    calls.push([name, "load", record.model_id]);
    return { handle: next++, config: { from: name } };
  };
  k.unload = async (handle) => calls.push([name, "unload", handle]);
  k.deviceInfo = async () => ({ vendor: name });
  return k;
}

test("createKernels routes each handle to the backend that loaded it", async () => {
  const calls = [];
  const kernels = await createKernels({ backends: { wgsl: recorder("wgsl", calls), mlc: recorder("mlc", calls) } });
  const a = await kernels.load({ model_id: "a", model: "m/" });
  const b = await kernels.load({ model_id: "b", model: "m/", model_lib: "b.wasm" });
  assert.deepEqual([a.backend, b.backend], ["wgsl", "mlc"]);
  assert.notEqual(a.handle, b.handle, "both backends start at handle 1; the outer handles differ");
  assert.deepEqual(b.config, { from: "mlc", backend: "mlc", backend_reason: "the record names a model library" });
  calls.length = 0;
  assert.equal(await kernels.prefill(b.handle, [1, 2]), "mlc:prefill");
  assert.equal(await kernels.sample(a.handle, { temperature: 0 }), "wgsl:sample");
  await kernels.decodeSteps(b.handle, 3, { uniforms: [0, 0, 0] });
  assert.deepEqual(calls, [
    ["mlc", "prefill", 1, [1, 2]],
    ["wgsl", "sample", 1, { temperature: 0 }],
    ["mlc", "decodeSteps", 1, 3, { uniforms: [0, 0, 0] }],
  ]);
  await kernels.unload(b.handle);
  await assert.rejects(kernels.prefill(b.handle, [1]), { name: "ModelNotLoadedError" });
  assert.equal(await kernels.tokenize(a.handle, "x"), "wgsl:tokenize");
  assert.deepEqual(await kernels.deviceInfo(), { vendor: "wgsl" });
});

test("a GGUF our kernels refuse goes to llama.cpp where the machine chose; a user's choice stands", async () => {
  const calls = [];
  const refusal = () => Object.assign(new Error("GGUF architecture bert is not supported by the wgsl backend"), { name: "UnsupportedArchitectureError" });
  const refusing = { ...recorder("wgsl", calls), load: async () => Promise.reject(refusal()) };
  const kernels = await createKernels({ backends: { wgsl: refusing, wasm: recorder("wasm", calls) } });
  const g = await kernels.load({ model_id: "e", model: "models/e.F32.gguf" });
  assert.equal(g.backend, "wasm");
  assert.match(g.config.backend_reason, /, but our kernels do not run it \(GGUF architecture bert is not supported/);
  assert.equal(await kernels.embed(g.handle, [[1]]), "wasm:embed");
  await assert.rejects(kernels.load({ model_id: "f", model: "models/e.F32.gguf", backend: "wgsl" }), { name: "UnsupportedArchitectureError" });
  await assert.rejects(kernels.load({ model_id: "d", model: "models/d/" }), { name: "UnsupportedArchitectureError" }); // not a GGUF
});

test("the user option forces every model onto one backend, deviceInfo included", async () => {
  const calls = [];
  const kernels = await createKernels({ backend: "mlc", backends: { wgsl: recorder("wgsl", calls), mlc: recorder("mlc", calls) } });
  const a = await kernels.load({ model_id: "a", model: "m/", model_lib: "a.wasm" });
  assert.equal(a.backend, "mlc");
  assert.deepEqual(await kernels.deviceInfo(), { vendor: "mlc" });
  assert.ok(calls.every(([name]) => name === "mlc"));
});

test("without injected backends, a model_lib record reaches the real mlc backend's checks", async () => {
  const kernels = await createKernels({ fetch: async () => new Response("", { status: 404 }) });
  await assert.rejects(kernels.load({ model_id: "x", model: "m/", backend: "mlc" }), { name: "ModelLibraryMissingError" });
});

test("py_worker.prebuilt's app config: local defaults run on wgsl, MLC prebuilts on mlc", async () => {
  const { spawnSync } = await import("node:child_process");
  const root = new URL("../../", import.meta.url).pathname;
  const py = spawnSync(process.env.PYTHON || `${root}.venv/bin/python`, ["-c",
    "import json; from py_worker.prebuilt import prebuilt_app_config; print(json.dumps(prebuilt_app_config()))"],
  { cwd: root, encoding: "utf8", env: { ...process.env, PYTHONPATH: root } });
  assert.equal(py.status, 0, py.stderr);
  const byBackend = { wgsl: [], mlc: [] };
  for (const r of JSON.parse(py.stdout).model_list) byBackend[chooseBackend(r)].push(r.model_id);
  assert.deepEqual(byBackend.wgsl, [
    "SmolLM2-135M-Instruct-Q4_1",
    "SmolLM2-135M-Instruct-q4f32_1",
    "tiny-llama-q0f32",
    "all-MiniLM-L6-v2-q0f32",
    "all-MiniLM-L6-v2-F32-gguf", // chosen for a hardware GPU; its bert architecture then falls to wasm
  ]);
  assert.ok(byBackend.mlc.length >= 5 && byBackend.mlc.every((id) => id.includes("MLC")), byBackend.mlc.join());
});
