// Deno entry: `deno run --allow-read --allow-env runner.js scenario.json` prints the result JSON.
// Paths in the scenario are resolved against the repository root; no cache (Deno's Cache API
// is partial) unless the scenario asks. With `countGpuCalls`, every dispatchWorkgroups and
// queue submit is counted (gpu_calls.js wraps the WebGPU prototypes) and each call's result says
// how many it made (tests/kernels/test_dispatches.py) and how long it took up to its last submit.
// With `profileGpu`, each call's result has its GPU time per dispatch (gpu_profile.js; needs the
// adapter's timestamp-query). With `countGpuBuffers`, the result's `gpuBuffers` counts the WebGPU
// buffers and devices created and destroyed over the whole scenario (its final unload included).
import { runScenario } from "./harness.js";
import { profileGpu } from "./gpu_profile.js";
import { countGpuCalls } from "../../tools/gpu_calls.js";
import { countGpuBuffers } from "./gpu_buffers.js";

const root = new URL("../../", import.meta.url);
const scenario = JSON.parse(await Deno.readTextFile(Deno.args[0]));
scenario.options = {
  cache: "none",
  baseURL: root.href,
  tokenizersURL: new URL("node_modules/@mlc-ai/web-tokenizers/lib/index.js", root).href,
  xgrammarURL: new URL("node_modules/@mlc-ai/web-xgrammar/lib/index.js", root).href,
  ...(scenario.options || {}),
};
const buffers = scenario.countGpuBuffers ? countGpuBuffers() : null;
const out = await runScenario(scenario, scenario.countGpuCalls ? countGpuCalls() : null, scenario.profileGpu ? profileGpu() : null);
if (buffers) out.gpuBuffers = buffers();
await Deno.stdout.write(new TextEncoder().encode(JSON.stringify(out) + "\n"));
