// The fused decode GEMVs (wgsl/gemv.js with the hooks of gemv_norm.js, gemv_rope_kv.js,
// gemv_merge.js, gemv_glu.js) on random weights of every format gemv.js reads, for
// tests/kernels/test_fused.py; reached as the scenario {kind: "fused", ...} of harness.js.
//
// payload = {
//   weights: [{type, N, K, bytes, plain}     W [N, K] as ggml blocks (type id), base64; `plain`
//                                            F32 / F16 go through gemv's f32 / f16w paths
//             | {q4: true, N, K, qw, qs, f16}]  or MLC q4: qw u32 [N, K/8], qs [N, K/32] (f16 if `f16`)
//   cases: [{
//     hook: "norm" | "ropeKv" | "merge" | "glu", d (the model dims the hook reads), pos,
//     input,                                 binding 1, f32 base64: x [K], the attention partials
//                                            [heads, S, 2 + headDim] or gate_up [2 * inter]
//     norm, table,                           norm weights [K]; RoPE table [ctx, headDim / 2, 2]
//     yLen, yInit, kvInit,                   y [yLen] and both caches [ctx, kvHeads * headDim] start from these
//                                            (kvInit: f16 when d.kvF16, else f32)
//     steps: [{w, yoff, bias, accumulate}]   the parts of one linear, side by side in y
//     layout?                                gemv.js's GemvLayout instead of its default one
//     f16Math?                               gemv.js's f16 arithmetic in q4 groups (q4f16 weights)
//   }]
// }
// Each case is one submit of its steps, dispatched as llama.js does (ceil(N / gemvRows)
// workgroups); returns {device, cases: [{y, kc, vc}]} (the caches for "ropeKv" only; f16 caches
// as their raw uint16 words).
import { Gpu } from "../../js_glue/kernels/gpu.js";
import { gemv, gemvRows } from "../../js_glue/kernels/wgsl/gemv.js";
import { normInput } from "../../js_glue/kernels/wgsl/gemv_norm.js";
import { ropeKvOutput } from "../../js_glue/kernels/wgsl/gemv_rope_kv.js";
import { mergeInput } from "../../js_glue/kernels/wgsl/gemv_merge.js";
import { gluInput } from "../../js_glue/kernels/wgsl/gemv_glu.js";

const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));

/** gemv's format options for a weight. */
function format(W) {
  if (W.q4) return { q4: true, f16: !!W.f16 };
  if (W.plain) return W.type === 1 ? { f16w: true } : {};
  return { ggml: W.type };
}

/** The hooks of one step. */
function hooks(c, step, W) {
  if (c.hook === "norm") return { input: normInput(c.d) };
  if (c.hook === "ropeKv") return { input: normInput(c.d), output: ropeKvOutput(c.d, step.yoff, W.N) };
  if (c.hook === "merge") return { input: mergeInput(c.d) };
  return { input: gluInput(c.d) };
}

/** The step's shape as gemv() and gemvRows() take it. */
const shape = (c, step, W) => ({ K: W.K, N: W.N, ...format(W), ...hooks(c, step, W), ...(c.layout ? { layout: c.layout } : {}) });
const code = (c, step, W) =>
  gemv({ ...shape(c, step, W), yoff: step.yoff, bias: !!step.bias, accumulate: !!step.accumulate, f16Math: !!c.f16Math });

export async function runFused(payload) {
  const gpu = await Gpu.create({});
  const upload = (w) => (w.q4 ? [gpu.storage(bytes(w.qw), "qw"), gpu.storage(bytes(w.qs), "qs")] : [gpu.storage(bytes(w.bytes), "wq")]);
  const weights = payload.weights.map((w) => ({ ...w, bufs: upload(w) }));
  const out = [];
  for (const c of payload.cases) {
    const rope = c.hook === "ropeKv";
    const fwd = gpu.uniform(new Uint32Array([c.pos, 1, 0, 0]), "fwd"); // pos, n, step, pad
    const y = gpu.storage(bytes(c.yInit), "y"); // [yLen]
    const own = [fwd, y, gpu.storage(bytes(c.input), "input")];
    const extra = [];
    if (c.norm) extra.push(gpu.storage(bytes(c.norm), "norm")); // [K]
    if (rope) extra.push(gpu.storage(bytes(c.table), "rope"), gpu.storage(bytes(c.kvInit), "kc"), gpu.storage(bytes(c.kvInit), "vc"));
    own.push(...extra);
    const rec = gpu.recorder();
    for (const s of c.steps) {
      const W = weights[s.w];
      const pipe = await gpu.pipeline(code(c, s, W));
      const bufs = [fwd, own[2], ...W.bufs, y];
      if (s.bias) {
        const b = gpu.storage(bytes(s.bias), "bias"); // [N]
        bufs.push(b);
        own.push(b);
      }
      rec.dispatch(pipe, gpu.bind(pipe, [...bufs, ...extra]), Math.ceil(W.N / gemvRows(shape(c, s, W))));
    }
    const read = async (buf, n) => Array.from(new Float32Array(await gpu.readback(gpu.recorder(), buf, n * 4)));
    const readHalves = async (buf, n) => Array.from(new Uint16Array(await gpu.readback(gpu.recorder(), buf, n * 2)));
    rec.submit();
    const res = { y: await read(y, c.yLen) };
    if (rope) {
      const kvLen = bytes(c.kvInit).byteLength / (c.d.kvF16 ? 2 : 4);
      const readKv = c.d.kvF16 ? readHalves : read;
      res.kc = await readKv(extra[2], kvLen);
      res.vc = await readKv(extra[3], kvLen);
    }
    out.push(res);
    for (const b of own) b.destroy();
  }
  for (const w of weights) for (const b of w.bufs) b.destroy();
  gpu.check();
  const features = [...gpu.device.features];
  gpu.device.destroy();
  return { device: { description: gpu.info, isCpu: gpu.isCpu, features }, cases: out };
}
