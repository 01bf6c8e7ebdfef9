// Runs a scenario against the kernel ABI and returns plain JSON: used unchanged by the Deno
// runner (lavapipe) and by the Chromium worker (SwiftShader). A scenario is
// {options, record, calls: [[method, ...args]]}; the loaded handle is passed as each call's
// first argument, typed arrays come back as plain arrays, errors as {error: {name, message}}.
// {kind: "ggml", ...} runs single kernels on GGUF weight bytes instead (ggml_harness.js), and
// {kind: "fused", ...} the fused decode GEMVs (fused_harness.js).
// `gpuCalls` (the Deno runner's counter: running totals of WebGPU calls) adds to each result
// the calls it made: {dispatches, submits} and the seconds up to its last submit; `profile` (the
// runner's gpu_profile.js) adds each call's GPU time per dispatch. `unloaded` is what the final
// unload resolved to (the mlc backend's: what tvmjs still held before its instance went).
import { createKernels, prefetchModel } from "../../js_glue/kernels/index.js";
import { createKernels as createAnyBackend } from "../../js_glue/kernels/backends.js";
import { memoryBandwidth } from "../../tools/bandwidth.js";
import { runGgml } from "./ggml_harness.js";
import { runFused } from "./fused_harness.js";
import { callsSince } from "../../tools/gpu_calls.js";

/**
 * A call's WebGPU calls, and `recordSeconds`: from its start to its last submit (the CPU time
 * spent recording commands before the GPU was given them).
 * @param {Record<string, number>} before @param {Record<string, number>} after @param {number} start
 */
function counted(before, after, start) {
  const gpu = callsSince(before, after);
  return { gpu, ...(gpu.submits > 0 ? { recordSeconds: (after.lastSubmitAt - start) / 1000 } : {}) };
}
const plain = (v) => (ArrayBuffer.isView(v) ? Array.from(v) : v);

/**
 * @param {any} scenario @param {(() => Record<string, number>) | null} [gpuCalls]
 * @param {(() => Promise<any>) | null} [profile]
 */
export async function runScenario(scenario, gpuCalls = null, profile = null) {
  if (scenario.kind === "ggml") return runGgml(scenario); // raw-kernel runs, tests/kernels/ggml_harness.js
  if (scenario.kind === "fused") return runFused(scenario); // tests/kernels/fused_harness.js
  const bandwidth = scenario.bandwidthMiB ? await memoryBandwidth(scenario.bandwidthMiB) : null;
  // A record with a model_lib runs where backends.js sends it (the mlc backend); others on wgsl.
  const create = scenario.record && scenario.record.model_lib ? createAnyBackend : createKernels;
  const kernels = await create(scenario.options || {});
  const progress = [];
  const t0 = performance.now();
  const loaded = await kernels.load(scenario.record, (fraction, text) => progress.push([fraction, text]));
  const loadSeconds = (performance.now() - t0) / 1000;
  await profile?.(); // drop the load's
  const results = [];
  for (const [method, ...args] of scenario.calls || []) {
    const c0 = performance.now();
    const g0 = gpuCalls?.();
    try {
      const value = plain(await kernels[method](loaded.handle, ...args));
      const seconds = (performance.now() - c0) / 1000;
      const calls = g0 && gpuCalls ? counted(g0, gpuCalls(), c0) : {};
      const profiled = profile ? { profile: await profile() } : {};
      results.push({ value: value ?? null, seconds, ...calls, ...profiled });
    } catch (e) {
      results.push({ error: { name: e.name, message: e.message } });
    }
  }
  const stats = await kernels.stats(loaded.handle);
  const device = await kernels.deviceInfo();
  const unloaded = scenario.keepLoaded ? null : await kernels.unload(loaded.handle);
  return { config: loaded.config, progress, loadSeconds, results, stats, device, bandwidth, unloaded };
}

/**
 * Load-only runs for the loader tests: returns the progress or the error of each load;
 * `prefetch` first starts prefetchModel for every record (as js_glue/worker.js does).
 */
export async function runLoads(options, records, prefetch = false) {
  if (prefetch) for (const record of records) prefetchModel(record, options).catch(() => {});
  const kernels = await createKernels(options);
  const out = [];
  for (const record of records) {
    const progress = [];
    try {
      const { handle } = await kernels.load(record, (f, text) => progress.push([f, text]));
      await kernels.unload(handle);
      out.push({ progress });
    } catch (e) {
      out.push({ progress, error: { name: e.name, message: e.message } });
    }
  }
  return out;
}
