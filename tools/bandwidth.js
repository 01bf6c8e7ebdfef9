// The device's memory bandwidth, the roofline the decode benchmark is compared with, measured as
// a slope so that the fixed cost of a submit and its sync wait cancels: the time of 5k
// repetitions in one submit minus the time of k, over 4k repetitions' bytes. k doubles until k
// repetitions take 50 ms, so that a coarse sync wait (Deno's are ~10 ms) cannot pass for work.
// `copyGBps`: bytes copied per second by copyBufferToBuffer (each byte read once, written once);
// `readGBps`: bytes read per second by a compute kernel that sums a buffer (what a GEMV does).
// `syncMs`: the time of k repetitions less k slopes: what one submit and its wait cost.
import { Gpu } from "../js_glue/kernels/gpu.js";

const READ = `@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(256) fn main(@builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nw: vec3<u32>) {
  var s = vec4<f32>(0.0);
  for (var i = gid.x; i < arrayLength(&a); i += nw.x * 256u) { s += a[i]; }
  // A test the compiler cannot prove false (dot(s, s) == -1.0 it can, and drops the loads).
  if (bitcast<u32>(s.x + s.y + s.z + s.w) == 0x7fc00001u) { out[0] = s.x; }
}`;

/**
 * Seconds per repetition (the slope) and the fixed seconds of one submit, best of 3 each.
 * `record(rec, i)` records repetition i (bench/gemv.js times one dispatch this way).
 */
export async function slope(gpu, record) {
  const run = async (n) => {
    const rec = gpu.recorder();
    for (let i = 0; i < n; i++) record(rec, i);
    const t0 = performance.now();
    rec.submit();
    await gpu.device.queue.onSubmittedWorkDone();
    return (performance.now() - t0) / 1000;
  };
  await run(2);
  let k = 4;
  while (k < 8192 && (await run(k)) < 0.05) k *= 2;
  const best = async (n) => Math.min(await run(n), await run(n), await run(n));
  const few = await best(k);
  const many = await best(5 * k);
  const per = Math.max((many - few) / (4 * k), 1e-12);
  return { per, k, fixed: few - k * per };
}

export async function memoryBandwidth(mib = 256) {
  const gpu = await Gpu.create();
  const bytes = Math.min(mib * 1024 * 1024, gpu.device.limits.maxBufferSize, gpu.device.limits.maxStorageBufferBindingSize);
  const a = gpu.storage(bytes, "bw-a");
  const b = gpu.storage(bytes, "bw-b");
  const copy = await slope(gpu, (rec, i) => rec.copy(i % 2 ? b : a, 0, i % 2 ? a : b, 0, bytes));
  const pipe = await gpu.pipeline(READ);
  const bind = gpu.bind(pipe, [a, b]);
  const read = await slope(gpu, (rec) => rec.dispatch(pipe, bind, 1024));
  gpu.device.destroy();
  return { bytes, k: [copy.k, read.k], copyGBps: bytes / copy.per / 1e9, readGBps: bytes / read.per / 1e9, syncMs: read.fixed * 1000 };
}
