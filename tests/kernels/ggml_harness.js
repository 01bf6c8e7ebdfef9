// The ggml-weight kernels (wgsl/ggml.js through matmul, gemv and embedGgml) on raw GGUF bytes,
// for tests/kernels/test_ggml.py; reached as the scenario {kind: "ggml", ...} of harness.js.
//
// payload = {
//   weights: [{type, N, K, bytes}           W [N, K] as GGUF bytes (ggml type id), base64
//             | {q4: true, N, K, qw, qs}]   or MLC q4: qw u32 [N, K/8], qs f32 [N, K/32]
//   cases: [{
//     m,                                    tokens
//     x,                                    f32 [m, K] base64 (linears), or ids: u32 [m] (embed)
//     yLen, yInit,                          output f32 [yLen], its initial contents (base64)
//     steps: [{op: "matmul" | "gemv" | "embed", w, TM, TN, ldy, yoff, bias, accumulate, plain}]
//   }]                                      bias: f32 [N] base64 or absent; plain: an F32
// }                                         weight through the f32 path instead of ggml's
// Every case's steps are recorded into one submit, dispatched exactly as a model would
// (the grid sizes below), and y is read back: {device, cases: [[...y]]}.
import { Gpu } from "../../js_glue/kernels/gpu.js";
import { matmul, MATMUL_WG } from "../../js_glue/kernels/wgsl/matmul.js";
import { gemv, gemvRows } from "../../js_glue/kernels/wgsl/gemv.js";
import { embedGgml } from "../../js_glue/kernels/wgsl/embed.js";
import { WG } from "../../js_glue/kernels/wgsl/common.js";

const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const f32 = (b64) => new Float32Array(bytes(b64).buffer);

/** WGSL of one step; its weight W [N, K] is ggml blocks of type `type`, or MLC q4. */
function code(step, W) {
  const { type, N, K } = W;
  const kind = W.q4 ? { q4: true } : step.plain ? {} : { ggml: type };
  const part = { K, N, ...kind, bias: !!step.bias, accumulate: !!step.accumulate, ldy: step.ldy ?? N, yoff: step.yoff ?? 0 };
  if (step.op === "matmul") return matmul({ ...part, TM: step.TM, TN: step.TN });
  if (step.op === "gemv") return gemv(part);
  return embedGgml({ hidden: K }, type);
}

/** Workgroups of one step's dispatch for m tokens: [x, y]. */
function grid(step, W, m) {
  if (step.op === "matmul") return [Math.ceil(W.N / step.TN / MATMUL_WG), Math.ceil(m / step.TM)];
  if (step.op === "gemv") return [Math.ceil(W.N / gemvRows({ K: W.K, N: W.N })), 1];
  return [Math.ceil((m * W.K) / 32 / WG), 1];
}

export async function runGgml(payload) {
  const gpu = await Gpu.create({});
  const upload = (w) => (w.q4 ? [gpu.storage(bytes(w.qw), "qw"), gpu.storage(bytes(w.qs), "qs")] : [gpu.storage(bytes(w.bytes), "wq")]);
  const weights = payload.weights.map((w) => ({ ...w, bufs: upload(w) }));
  const all = payload.cases.flatMap((c) => c.steps.map((s) => code(s, weights[s.w])));
  await Promise.all(all.map((src) => gpu.pipeline(src)));
  const out = [];
  for (const c of payload.cases) {
    const fwd = gpu.uniform(new Uint32Array([0, c.m, 0, 0]), "fwd"); // pos, n, step, pad
    const input = c.ids ? gpu.storage(Uint32Array.from(c.ids), "ids") : gpu.storage(f32(c.x), "x");
    const y = gpu.storage(f32(c.yInit), "y"); // [yLen]
    const temps = [fwd, input, y];
    const rec = gpu.recorder();
    for (const s of c.steps) {
      const W = weights[s.w];
      const pipe = await gpu.pipeline(code(s, W));
      const bufs = [fwd, input, ...W.bufs, y];
      if (s.bias) {
        const b = gpu.storage(f32(s.bias), "bias"); // [N]
        bufs.push(b);
        temps.push(b);
      }
      const [gx, gy] = grid(s, W, c.m);
      rec.dispatch(pipe, gpu.bind(pipe, bufs), gx, gy);
    }
    out.push(Array.from(new Float32Array(await gpu.readback(rec, y, c.yLen * 4))));
    for (const b of temps) b.destroy();
  }
  for (const w of weights) for (const b of w.bufs) b.destroy();
  gpu.check();
  const features = [...gpu.device.features];
  gpu.device.destroy();
  return { device: { description: gpu.info, isCpu: gpu.isCpu, features }, cases: out };
}
