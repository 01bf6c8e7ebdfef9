// Imported by deno_engine_worker.js before the site's worker.js, so its listener comes before
// the site's handler: counts the worker's WebGPU buffers and devices (gpu_buffers.js) and
// answers a `{kind: "countGpuBuffers"}` message with `{kind: "gpuBuffers", content: counts}`,
// which never reaches the site's handler.
import { countGpuBuffers } from "./gpu_buffers.js";

const counts = countGpuBuffers();
self.addEventListener("message", (event) => {
  if (event.data?.kind !== "countGpuBuffers") return;
  event.stopImmediatePropagation();
  self.postMessage({ kind: "gpuBuffers", uuid: null, content: counts() });
});
