// Counts WebGPU work: every GPUComputePassEncoder.dispatchWorkgroups and GPUQueue.submit call made
// in this process, by whoever makes it (our kernels, tvmjs inside web-llm), by wrapping the WebGPU
// prototypes once. Used by the Deno runner (tests/kernels/deno_runner.js) and the GPU benches.

/**
 * Wrap the WebGPU calls we count; returns a function reading the running totals and the
 * performance.now() of the latest submit (what came before it in a call was the CPU recording).
 */
export function countGpuCalls() {
  const totals = { dispatches: 0, submits: 0, lastSubmitAt: 0 };
  const wrap = (proto, method, key) => {
    const inner = proto[method];
    proto[method] = function (...args) {
      totals[key]++;
      if (key === "submits") totals.lastSubmitAt = performance.now();
      return inner.apply(this, args);
    };
  };
  wrap(GPUComputePassEncoder.prototype, "dispatchWorkgroups", "dispatches");
  wrap(GPUQueue.prototype, "submit", "submits");
  return () => ({ ...totals });
}

/** Counts since ``before`` (two readings of countGpuCalls' totals). */
export function callsSince(before, now) {
  return { dispatches: now.dispatches - before.dispatches, submits: now.submits - before.submits };
}
