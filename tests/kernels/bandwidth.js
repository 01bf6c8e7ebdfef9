// The device's memory bandwidth, the roofline the decode benchmark is compared with:
// `copyGBps`: bytes copied per second by copyBufferToBuffer (each byte read once, written once);
// `readGBps`: bytes read per second by a compute kernel that sums a buffer (what a GEMV does).
import { Gpu } from "../../js_glue/kernels/gpu.js";

const READ = `@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(256) fn main(@builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nw: vec3<u32>) {
  var s = vec4<f32>(0.0);
  for (var i = gid.x; i < arrayLength(&a); i += nw.x * 256u) { s += a[i]; }
  if (dot(s, s) == -1.0) { out[0] = s.x; }
}`;

async function timed(gpu, record, reps) {
  const run = async (n) => {
    const rec = gpu.recorder();
    for (let i = 0; i < n; i++) record(rec, i);
    rec.submit();
    await gpu.device.queue.onSubmittedWorkDone();
  };
  await run(2);
  const t0 = performance.now();
  await run(reps);
  return (performance.now() - t0) / 1000;
}

export async function memoryBandwidth(mib = 256, reps = 20) {
  const gpu = await Gpu.create();
  const bytes = Math.min(mib * 1024 * 1024, gpu.device.limits.maxBufferSize, gpu.device.limits.maxStorageBufferBindingSize);
  const a = gpu.storage(bytes, "bw-a");
  const b = gpu.storage(bytes, "bw-b");
  const copySecs = await timed(gpu, (rec, i) => rec.copy(i % 2 ? b : a, 0, i % 2 ? a : b, 0, bytes), reps);
  const pipe = await gpu.pipeline(READ);
  const bind = gpu.bind(pipe, [a, b]);
  const readSecs = await timed(gpu, (rec) => rec.dispatch(pipe, bind, 1024), reps);
  gpu.device.destroy();
  return { bytes, reps, copyGBps: (bytes * reps) / copySecs / 1e9, readGBps: (bytes * reps) / readSecs / 1e9 };
}
