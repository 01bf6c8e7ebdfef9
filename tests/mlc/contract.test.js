// The recorded contract of js_glue/kernels/mlc.js against tvmjs: the exact call sequence of
// load / prefill / decode / sample / rewind / reset / unload, that every tvmjs object it creates
// is disposed, its named errors, and that its sampling follows py_worker's rule (checked against
// py_worker.reference.sampling on the same logits). Run: node --test tests/mlc/

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createMlcKernels } from "../../js_glue/kernels/mlc.js";
import { fakeLogits } from "./fake_tvmjs.js";
import { setup, RECORD, VOCAB, METADATA } from "./fixture.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const PYTHON = process.env.PYTHON || `${ROOT}.venv/bin/python`;

const LOAD_SEQUENCE = [
  "instantiate()",
  "registerInitProgressCallback()",
  "detectGPUDevice(high-performance)",
  "initWebGPU()",
  "fetchTensorCache(http://127.0.0.1:8765/app/models/tiny/)",
  "createVirtualMachine()",
  "vm.getFunction(_metadata)",
  "vm._metadata()",
  "vm.getFunction(prefill)",
  "vm.getFunction(decode)",
  "vm.getFunction(embed)",
  "vm.getFunction(apply_logit_bias_inplace)",
  "vm.getFunction(apply_penalty_inplace)",
  "vm.getFunction(create_tir_paged_kv_cache)",
  "getParamsFromCacheByName(2)",
  "getGlobalFunc(vm.builtin.kv_state_clear)",
  "getGlobalFunc(vm.builtin.kv_state_add_sequence)",
  "getGlobalFunc(vm.builtin.kv_state_begin_forward)",
  "getGlobalFunc(vm.builtin.kv_state_end_forward)",
  "getGlobalFunc(vm.builtin.kv_state_popn)",
  "vm.create_tir_paged_kv_cache((1), (64), (4), (16), (0))",
  "vm.builtin.kv_state_clear(kv)",
  "vm.builtin.kv_state_add_sequence(kv, 0:int64)",
  "asyncLoadWebGPUPipelines()",
  // The probe of apply_penalty_inplace's sense (model.js #probePenalty): logits [1, -1], penalty 2.
  "vm.apply_penalty_inplace(float32[1,40], int32[1], int32[2], int32[2], int32[2], float32[1,3])",
  "sync(webgpu)",
];

const forward = (n, fn) => [
  `vm.embed(int32[${n}], Params)`,
  `vm.builtin.kv_state_begin_forward(kv, (0), (${n}))`,
  fn,
  "vm.builtin.kv_state_end_forward(kv)",
];
const prefill = (n) => forward(n, `vm.prefill(float32[1,${n},8], kv, Params)`);
const decode = () => forward(1, "vm.decode(float32[1,1,8], kv, Params)");
const GREEDY = { temperature: 0, top_p: 1, history: [], uniforms: [0] };

async function loaded(opts = {}) {
  const s = setup(opts);
  const kernels = createMlcKernels(s.options);
  const progress = [];
  const { handle, config } = await kernels.load(opts.record || RECORD, (f, text) => progress.push([f, text]));
  return { ...s, kernels, handle, config, progress, log: s.runtime.log };
}

const argmax = (xs) => xs.reduce((best, x, i) => (x > xs[best] ? i : best), 0);

test("load calls tvmjs in web-llm's order and reports progress up to 1", async () => {
  const { log, config, progress, served } = await loaded();
  assert.deepEqual(log, LOAD_SEQUENCE);
  assert.equal(config.prefill_chunk_size, METADATA.prefill_chunk_size);
  assert.equal(config.context_window_size, 64);
  assert.equal(config.model_type, "llama");
  const fractions = progress.map(([f]) => f);
  assert.deepEqual(fractions, [...fractions].sort((a, b) => a - b), "progress never goes back");
  assert.equal(fractions.at(-1), 1);
  assert.match(progress.at(-1)[1], /^Finish loading on WebGPU - Fake GPU/);
  assert.ok(progress.some(([, t]) => t.startsWith("Fetching param cache[1/2]")));
  assert.ok(progress.some(([, t]) => t.startsWith("Loading GPU shader modules[")));
  // Each file once, though tvmjs asks for each shard twice (download pass, then load pass).
  assert.equal(new Set(served.asked).size, served.asked.length);
  assert.ok(served.asked.every((u) => u.startsWith("http://127.0.0.1:8765/app/")));
});

test("prefill chunks by prefill_chunk_size; one token goes through decode; sample syncs once", async () => {
  const { kernels, handle, log, runtime } = await loaded();
  log.length = 0;
  const ids = await kernels.tokenize(handle, "hello world the cat sat on the mat a dog");
  assert.deepEqual(ids, [1, 2, 3, 4, 5, 6, 3, 7, 8, 9]);
  assert.equal(await kernels.detokenize(handle, [1, 2]), "hello world");
  await kernels.prefill(handle, ids);
  const s = await kernels.sample(handle, GREEDY);
  assert.equal(s.token, argmax(fakeLogits(ids, VOCAB)));
  await kernels.decode(handle, s.token);
  await kernels.sample(handle, GREEDY);
  assert.deepEqual(log, [...prefill(4), ...prefill(4), ...prefill(2), "sync(webgpu)", ...decode(), "sync(webgpu)"]);
  const stats = await kernels.stats(handle);
  assert.equal(stats.kv_length, 11);
  assert.equal(stats.prefill_tokens, 10);
  assert.equal(stats.decode_tokens, 1);
  // Only the model's own long-lived objects are alive between calls.
  const kinds = [...runtime.live].map((o) => o.kind).sort();
  assert.ok(!kinds.includes("ShapeTuple") && !kinds.includes("TVMArray"), kinds.join());
  assert.equal(kinds.filter((k) => k === "Tensor").length, 1, "only the last logits");
});

test("penalties and bias run on the GPU in the rule's order; plain sampling uploads nothing", async () => {
  const { kernels, handle, log } = await loaded();
  await kernels.prefill(handle, [1, 2, 3]);
  log.length = 0;
  await kernels.sample(handle, { ...GREEDY, temperature: 0.7, uniforms: [0.5] });
  assert.deepEqual(log, ["sync(webgpu)"]);
  log.length = 0;
  const params = {
    ...GREEDY, logit_bias: [[4, 1.5]], history: [2, 2, 5], repetition_penalty: 1.3, frequency_penalty: 0.4, presence_penalty: 0.2,
  };
  await kernels.sample(handle, params);
  assert.deepEqual(log, [
    "vm.apply_logit_bias_inplace(float32[1,40], int32[1], int32[1], float32[1])",
    "vm.apply_penalty_inplace(float32[1,40], int32[1], int32[2], int32[2], int32[2], float32[1,3])",
    "vm.apply_logit_bias_inplace(float32[1,40], int32[2], int32[2], float32[2])",
    "sync(webgpu)",
  ]);
});

/** A small seeded generator, so failures reproduce. */
function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

test("sampling picks what py_worker.reference.sampling picks for the same logits", async () => {
  const { kernels, handle } = await loaded();
  const prompt = [1, 4, 2, 9];
  await kernels.prefill(handle, prompt);
  const logits = Array.from(fakeLogits(prompt, VOCAB));
  const r = rng(7);
  const pick = (xs) => xs[Math.floor(r() * xs.length)];
  const cases = [];
  for (let i = 0; i < 80; i++) {
    const params = {
      temperature: pick([0, 0.3, 0.7, 1, 1.8]),
      top_p: pick([1, 0.95, 0.6, 0.2, 0.01]),
      frequency_penalty: pick([0, 0.5, -0.7, 1.9]),
      presence_penalty: pick([0, 0.3, -1.2]),
      repetition_penalty: pick([1, 1.1, 1.5, 0.8]),
      logit_bias: r() < 0.5 ? [] : [[Math.floor(r() * VOCAB), pick([-100, 3.5, 20, -2])]],
      history: Array.from({ length: Math.floor(r() * 8) }, () => Math.floor(r() * 12)),
      uniforms: [r()],
      logprobs: r() < 0.6,
      top_logprobs: Math.floor(r() * 6),
    };
    cases.push({ params, uniform: params.uniforms[0], got: await kernels.sample(handle, params) });
  }
  const py = spawnSync(PYTHON, [`${ROOT}tests/mlc/reference_sample.py`], {
    cwd: ROOT,
    input: JSON.stringify(cases.map(({ params, uniform }) => ({ logits, params, uniform }))),
    encoding: "utf8",
    env: { ...process.env, PYTHONPATH: ROOT },
  });
  assert.equal(py.status, 0, py.stderr);
  const want = JSON.parse(py.stdout);
  const tokens = new Set();
  cases.forEach(({ params, got }, i) => {
    const label = JSON.stringify(params);
    assert.equal(got.token, want[i].token, label);
    tokens.add(got.token);
    if (!params.logprobs) return assert.equal(got.logprob, undefined);
    assert.ok(Math.abs(got.logprob - want[i].logprob) < 1e-9, label);
    assert.deepEqual(got.top_logprobs.map(([t]) => t), want[i].top_logprobs.map(([t]) => t), label);
  });
  assert.ok(tokens.size > 5, "the cases exercise more than one token");
});

test("decodeSteps is n x (decode the pending token, sample with it in the history)", async () => {
  const a = await loaded();
  const b = await loaded();
  const params = { temperature: 0.9, top_p: 0.8, repetition_penalty: 1.4, history: [3], uniforms: [0.2, 0.7, 0.4] };
  for (const k of [a, b]) await k.kernels.prefill(k.handle, [1, 2, 3]);
  const first = await a.kernels.sample(a.handle, { ...params, uniforms: [0.5] });
  await b.kernels.sample(b.handle, { ...params, uniforms: [0.5] });
  const steps = await a.kernels.decodeSteps(a.handle, 3, params);
  let pending = first.token;
  const history = [...params.history];
  for (let i = 0; i < 3; i++) {
    await b.kernels.decode(b.handle, pending);
    const s = await b.kernels.sample(b.handle, { ...params, history: [...history], uniforms: [params.uniforms[i]] });
    assert.equal(steps[i].token, s.token, `step ${i}`);
    history.push(s.token);
    pending = s.token;
  }
  assert.equal((await a.kernels.stats(a.handle)).kv_length, 6);
  await assert.rejects(a.kernels.decodeSteps(a.handle, 4, params), { name: "InvalidRequestFieldError" });
});

test("rewind pops the dropped tokens off the KV cache (kv_state_popn); reset clears it", async () => {
  const { kernels, handle, log } = await loaded();
  await kernels.prefill(handle, [1, 2, 3, 4, 5]);
  log.length = 0;
  await kernels.rewind(handle, 2);
  assert.deepEqual(log, ["vm.builtin.kv_state_popn(kv, 0:int64, 3:int32)"]);
  await kernels.decode(handle, 7);
  assert.equal((await kernels.sample(handle, GREEDY)).token, argmax(fakeLogits([1, 2, 7], VOCAB)));
  await assert.rejects(kernels.rewind(handle, 9), { name: "InvalidRequestFieldError" });
  await kernels.rewind(handle, 2);
  await assert.rejects(kernels.sample(handle, GREEDY), { name: "PyWorkerError" }, "a rewind drops the logits it invalidated");
  log.length = 0;
  await kernels.reset(handle);
  assert.deepEqual(log, ["vm.builtin.kv_state_clear(kv)", "vm.builtin.kv_state_add_sequence(kv, 0:int64)"]);
  assert.equal((await kernels.stats(handle)).kv_length, 0);
  await kernels.prefill(handle, [4]);
  assert.equal((await kernels.sample(handle, GREEDY)).token, argmax(fakeLogits([4], VOCAB)));
});

test("unload disposes every tvmjs object, clears the tensor cache and the memory pool, then the instance, which destroys the device", async () => {
  const { kernels, handle, runtime, log } = await loaded();
  await kernels.prefill(handle, [1, 2, 3]);
  await kernels.sample(handle, { ...GREEDY, history: [1], repetition_penalty: 1.2 });
  assert.ok(runtime.live.size > 0);
  log.length = 0;
  await kernels.unload(handle);
  assert.deepEqual(log, [
    "tensorCacheClear()",
    "getGlobalFunc(vm.builtin.memory_manager.clear)",
    "vm.builtin.memory_manager.clear()",
    "Instance.dispose()",
    "device.destroy()",
  ]);
  assert.equal(runtime.live.size, 0, [...runtime.live].map((o) => o.kind).join());
  await assert.rejects(kernels.prefill(handle, [1]), { name: "ModelNotLoadedError" });
  await kernels.unload(handle); // a second unload is a no-op
});

test("context window: a prefill past it is refused before any tvmjs call", async () => {
  const { kernels, handle, log } = await loaded({ files: { contextWindow: 6 } });
  await kernels.prefill(handle, [1, 2, 3, 4, 5]);
  log.length = 0;
  await assert.rejects(kernels.prefill(handle, [1, 2]), { name: "ContextWindowSizeExceededError" });
  assert.deepEqual(log, []);
});

test("batch_prefill / batch_decode libraries get the logit position tensor", async () => {
  const functions = ["_metadata", "embed", "batch_prefill", "batch_decode", "create_tir_paged_kv_cache",
    "apply_penalty_inplace", "apply_logit_bias_inplace"];
  const { kernels, handle, log, runtime } = await loaded({ fake: { functions } });
  assert.ok(log.includes("vm.getFunction(batch_prefill)") && log.includes("vm.getFunction(batch_decode)"));
  log.length = 0;
  await kernels.prefill(handle, [1, 2, 3]);
  await kernels.decode(handle, 4);
  assert.deepEqual(log, [
    ...forward(3, "vm.batch_prefill(float32[1,3,8], int32[1], kv, Params)"),
    ...forward(1, "vm.batch_decode(float32[1,1,8], kv, Params)"),
  ]);
  await kernels.unload(handle);
  assert.equal(runtime.live.size, 0);
});

test("a record without model_lib fails with ModelLibraryMissingError before fetching anything", async () => {
  const { options, served, runtime } = setup();
  const kernels = createMlcKernels(options);
  await assert.rejects(kernels.load({ model_id: "x", model: "models/tiny/" }), { name: "ModelLibraryMissingError" });
  assert.deepEqual(served.asked, []);
  assert.deepEqual(runtime.log, []);
});

test("shader-f16 required on an adapter without it: ShaderF16SupportError, nothing left alive", async () => {
  const { options, runtime } = setup({ fake: { features: ["subgroups"] } });
  const kernels = createMlcKernels(options);
  const record = { ...RECORD, required_features: ["shader-f16"] };
  await assert.rejects(kernels.load(record), (e) => e.name === "ShaderF16SupportError" && e.fields.feature === "shader-f16");
  assert.ok(!runtime.log.includes("initWebGPU()"));
  assert.ok(runtime.state.devices[0].destroyed, "the device it opened is destroyed");
  assert.ok(runtime.state.instances[0].disposed, "the instance is disposed");
  assert.equal(runtime.live.size, 0);
  const ok = setup({ fake: { features: ["shader-f16"] } });
  const k2 = createMlcKernels(ok.options);
  assert.ok((await k2.load(record)).handle > 0);
});

test("device lost: later calls throw DeviceLostError and unload does not free into the dead instance", async () => {
  const { kernels, handle, runtime } = await loaded();
  runtime.state.devices[0].lose({ reason: "unknown", message: "out of memory" });
  await new Promise((r) => setTimeout(r, 0));
  await assert.rejects(kernels.prefill(handle, [1]), (e) => e.name === "DeviceLostError" && /out of memory/.test(e.message));
  await assert.rejects(kernels.sample(handle, GREEDY), { name: "DeviceLostError" });
  await kernels.unload(handle); // the fake throws on any dispose after its instance was disposed
  await assert.rejects(kernels.stats(handle), { name: "ModelNotLoadedError" });
});

test("load failures: no WebGPU, a library from another tvmjs release, a corrupt shard, an RNN model", async () => {
  const noGpu = setup({ fake: { noGPU: true } });
  await assert.rejects(createMlcKernels(noGpu.options).load(RECORD), { name: "WebGPUNotAvailableError" });
  assert.equal(noGpu.runtime.live.size, 0);

  const link = setup({ fake: { instantiateError: "import env.TVMFFIWasmSafeCall missing" } });
  await assert.rejects(createMlcKernels(link.options).load(RECORD), (e) => e.name === "ModelLoadError" && /matching releases/.test(e.message));

  const s = setup();
  const fetch = s.options.fetch;
  s.options.fetch = async (url) => {
    const resp = await fetch(url);
    if (!url.endsWith("params_shard_1.bin")) return resp;
    const bytes = new Uint8Array(await resp.arrayBuffer());
    bytes[0] ^= 0xff;
    return new Response(bytes);
  };
  await assert.rejects(
    createMlcKernels(s.options).load(RECORD),
    (e) => e.name === "IntegrityError" && /params_shard_1/.test(e.message) && e.fields.file === "params_shard_1.bin"
      && Object.keys(e.fields).sort().join() === "actual,expected,file,url", // the wgsl loader's fields
  );
  assert.ok(s.runtime.state.instances[0].disposed);
  assert.equal(s.runtime.live.size, 0);

  const rnn = setup({ fake: { metadata: { ...METADATA, kv_state_kind: "rnn_state" } } });
  await assert.rejects(createMlcKernels(rnn.options).load(RECORD), (e) => e.name === "ModelLoadError" && /rnn_state/.test(e.message));
  assert.equal(rnn.runtime.live.size, 0);
  assert.ok(rnn.runtime.state.instances[0].disposed);
});

test("a sliding-window model gets a sliding KV cache and re-enables the window on reset", async () => {
  const { log, kernels, handle } = await loaded({ files: { contextWindow: -1, slidingWindow: 32 } });
  assert.ok(log.includes("vm.create_tir_paged_kv_cache((1), (32), (4), (16), (1))"));
  log.length = 0;
  await kernels.reset(handle);
  assert.deepEqual(log, [
    "vm.builtin.kv_state_clear(kv)",
    "vm.builtin.kv_state_add_sequence(kv, 0:int64)",
    "vm.builtin.attention_kv_cache_enable_sliding_window_for_seq(kv, 0:int64, 32:int32, 4:int32)",
  ]);
});

test("an encoder library embeds batches: prefill(ids, mask, params), then mean pooling and L2 norm", async () => {
  const fake = { embedding: true, functions: ["_metadata", "prefill"], metadata: { ...METADATA, max_batch_size: 2 } };
  const record = { ...RECORD, model_type: "embedding" };
  const { kernels, handle, log, runtime } = await loaded({ fake, record });
  assert.ok(!log.some((l) => l.includes("kv_cache") || l.includes("kv_state")), "an encoder has no KV cache");
  log.length = 0;
  const batch = [[1, 2, 3], [4], [5, 6]];
  const vectors = await kernels.embed(handle, batch);
  assert.deepEqual(log, [
    "vm.prefill(int32[2,3], int32[2,3], Params)", "sync(webgpu)",
    "vm.prefill(int32[1,2], int32[1,2], Params)", "sync(webgpu)",
  ]);
  batch.forEach((ids, i) => {
    const mean = ids.reduce((a, t) => a + t + 1, 0) / ids.length;
    const raw = Array.from({ length: 8 }, (_, j) => mean * (j + 1));
    const norm = Math.hypot(...raw);
    vectors[i].forEach((v, j) => assert.ok(Math.abs(v - raw[j] / norm) < 1e-12, `row ${i} dim ${j}`));
  });
  await assert.rejects(kernels.prefill(handle, [1]), { name: "IncorrectPipelineLoadedError" });
  await kernels.reset(handle);
  await kernels.unload(handle);
  assert.equal(runtime.live.size, 0);
});
