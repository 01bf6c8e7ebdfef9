// Step-1 smoke test: a trivial compute shader through gpu.js (run by Deno and in a Chromium worker).
import { Gpu } from "../../js_glue/kernels/gpu.js";

export async function smoke() {
  const gpu = await Gpu.create();
  const code = `@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x < arrayLength(&a)) { a[g.x] = a[g.x] * 2.0 + 1.0; }
}`;
  const data = Float32Array.from({ length: 100 }, (_, i) => i);
  const buf = gpu.storage(data);
  const p = await gpu.pipeline(code);
  const rec = gpu.recorder();
  rec.dispatch(p, gpu.bind(p, [buf]), 2);
  const out = new Float32Array(await gpu.readback(rec, buf, 400));
  return { adapter: gpu.info, f16: gpu.hasF16, out: Array.from(out) };
}
