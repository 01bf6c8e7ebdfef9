// Counts WebGPU buffers and devices by wrapping the WebGPU prototypes (Deno's): what a run left
// alive after its unloads. Used by deno_runner.js and deno_engine_worker.js.

/**
 * Wrap buffer and device creation and destruction; returns a function reading the counts:
 * buffers made and their `bytes` (sizes summed), devices made, devices destroyed, and `live`,
 * the buffers neither destroyed nor on a destroyed device (a device's destroy frees every buffer
 * on it).
 */
export function countGpuBuffers() {
  const live = new Map(); // buffer → its device
  const destroyed = new Set();
  const counts = { buffers: 0, bytes: 0, devices: 0, devicesDestroyed: 0 };
  const createBuffer = GPUDevice.prototype.createBuffer;
  GPUDevice.prototype.createBuffer = function (...args) {
    const buffer = createBuffer.apply(this, args);
    counts.buffers++;
    counts.bytes += args[0].size;
    live.set(buffer, this);
    return buffer;
  };
  const destroyBuffer = GPUBuffer.prototype.destroy;
  GPUBuffer.prototype.destroy = function () {
    live.delete(this);
    return destroyBuffer.call(this);
  };
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = function (...args) {
    counts.devices++;
    return requestDevice.apply(this, args);
  };
  const destroyDevice = GPUDevice.prototype.destroy;
  GPUDevice.prototype.destroy = function () {
    if (!destroyed.has(this)) counts.devicesDestroyed++;
    destroyed.add(this);
    return destroyDevice.call(this);
  };
  return () => ({ ...counts, live: [...live.values()].filter((device) => !destroyed.has(device)).length });
}
