// The device's buffer-copy bandwidth, the roofline the decode benchmark is compared with:
// bytes copied per second by copyBufferToBuffer (each byte read once and written once).
import { Gpu } from "../../js_glue/kernels/gpu.js";

export async function copyBandwidth(mib = 256, reps = 20) {
  const gpu = await Gpu.create();
  const bytes = Math.min(mib * 1024 * 1024, gpu.device.limits.maxBufferSize);
  const a = gpu.storage(bytes, "bw-a");
  const b = gpu.storage(bytes, "bw-b");
  const once = async (n) => {
    const rec = gpu.recorder();
    for (let i = 0; i < n; i++) rec.copy(i % 2 ? b : a, 0, i % 2 ? a : b, 0, bytes);
    rec.submit();
    await gpu.device.queue.onSubmittedWorkDone();
  };
  await once(2);
  const t0 = performance.now();
  await once(reps);
  const secs = (performance.now() - t0) / 1000;
  a.destroy();
  b.destroy();
  gpu.device.destroy();
  return { bytes, reps, seconds: secs, GBps: (bytes * reps) / secs / 1e9 };
}
