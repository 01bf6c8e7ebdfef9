// Deno entry of bench/gemv.py: one decode GEMV (wgsl/gemv.js, q4 weights with f32 scales, random
// values) timed in several workgroup layouts, as the slope between k and 5k dispatches in one
// submit (tools/bandwidth.js `slope`: the submit and its sync wait cancel). Each layout's
// output is checked against the first layout's before it is timed. An empty one-workgroup
// dispatch, timed the same way, is the floor a dispatch costs in a pass. Also the read meter.
// The default layout is timed first and again last: a freshly written 100 MB buffer once timed
// 12x faster on its first slope than later, so a default that disagrees with itself is suspect.
// hook "rope": the RMSNorm input and the RoPE + KV-append output (wgsl/gemv_rope_kv.js, shape.d
// {heads, kvHeads, headDim}: y gets q, the caches k and v at position 0, all three checked); a
// layout that output hook refuses (gemvLayout falls back to its default) is skipped.
// With `f16Math` the scales are f16 (q4f16_1) and each layout is timed twice: f32 arithmetic,
// then gemv.js's f16Math (its errOfMax against the first f32 output is f16 rounding, ~1e-3).
// `deno run --allow-read bench/gemv.js spec.json`; spec = {shapes: [{name, K, N, hook, d?, layouts}], f16Math?}.
import { Gpu } from "../js_glue/kernels/gpu.js";
import { gemv, gemvLayout } from "../js_glue/kernels/wgsl/gemv.js";
import { normInput } from "../js_glue/kernels/wgsl/gemv_norm.js";
import { gluInput } from "../js_glue/kernels/wgsl/gemv_glu.js";
import { ropeKvOutput } from "../js_glue/kernels/wgsl/gemv_rope_kv.js";
import { PLAIN_INPUT } from "../js_glue/kernels/wgsl/gemv.js";
import { memoryBandwidth, slope } from "../tools/bandwidth.js";

const EMPTY = `@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  if (lid.x == 999u) { y[0] = 1.0; }
}`;

/** @param {number} n @param {number} seed @param {(r: number) => number} f */
function fill(n, seed, f) {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = f(s / 2 ** 32);
  }
  return out;
}

/** @param {Gpu} gpu @param {GPUBuffer} buf @param {number} n */
async function read(gpu, buf, n) {
  return new Float32Array(await gpu.readback(gpu.recorder(), buf, n * 4));
}

const CTX = 4; // cache rows of the "rope" hook (position 0 is written)

const spec = JSON.parse(await Deno.readTextFile(Deno.args[0]));
const gpu = await Gpu.create({});
const empty = await gpu.pipeline(EMPTY);
const scratch = gpu.storage(1024, "scratch");
const emptyBind = gpu.bind(empty, [scratch]);
const floor = await slope(gpu, (rec) => rec.dispatch(empty, emptyBind, 1));
const results = [];
for (const shape of spec.shapes) {
  const { K, N, hook } = shape;
  const G = K / 32;
  const qw = new Uint32Array(fill(N * K / 8, 7, (r) => r * 2 ** 32).map((v) => v >>> 0));
  const f16 = !!spec.f16Math;
  const scales = fill(N * G, 11, (r) => (r - 0.5) * 0.02);
  const qs = f16 ? new Float16Array(scales) : scales;
  const fwd = gpu.uniform(new Uint32Array([0, 1, 0, 0]), "fwd");
  const inLen = hook === "glu" ? 2 * K : K;
  const x = gpu.storage(fill(inLen, 13, (r) => r - 0.5), "x");
  const W = [gpu.storage(qw, "qw"), gpu.storage(qs, "qs")];
  const y = gpu.storage(N * 4, "y");
  const normed = hook === "norm" || hook === "rope";
  const input = normed ? normInput({ hidden: K, eps: 1e-5 }) : hook === "glu" ? gluInput({ inter: K, act: "silu" }) : PLAIN_INPUT;
  const extra = normed ? [gpu.storage(fill(K, 17, (r) => 0.5 + r), "nw")] : [];
  const output = hook === "rope" ? ropeKvOutput(shape.d, 0, N) : null;
  const KV = hook === "rope" ? shape.d.kvHeads * shape.d.headDim : 0;
  if (output) {
    const table = gpu.storage(fill(CTX * shape.d.headDim, 19, (r) => 2 * r - 1), "rope"); // (cos, sin) stand-ins
    extra.push(table, gpu.storage(CTX * KV * 4, "kc"), gpu.storage(CTX * KV * 4, "vc"));
  }
  const readOut = async () => {
    const got = await read(gpu, y, N);
    if (!output) return got;
    return Float32Array.from([...got, ...(await read(gpu, extra[2], KV)), ...(await read(gpu, extra[3], KV))]);
  };
  const bytes = N * K / 2 + N * G * qs.BYTES_PER_ELEMENT;
  const rows = [];
  let ref = null;
  const layouts = [null, ...shape.layouts, null]; // the default again at the end: drift shows
  const maths = f16 ? [false, true] : [false];
  for (const [layout, f16Math] of layouts.flatMap((l) => maths.map((m) => /** @type {const} */ ([l, m])))) {
    const lay = gemvLayout({ K, N, q4: true, output, ...(layout ? { layout } : {}) });
    if (layout && (lay.rows !== layout.rows || lay.perThread !== layout.perThread)) continue; // the output hook refused it
    const pipe = await gpu.pipeline(gemv({ K, N, q4: true, f16, f16Math, input, output, ...(layout ? { layout: lay } : {}) }));
    const bind = gpu.bind(pipe, [fwd, x, ...W, y, ...extra]);
    const groups = Math.ceil(N / lay.rows);
    const once = gpu.recorder();
    once.dispatch(pipe, bind, groups);
    once.submit();
    const got = await readOut();
    let err = 0;
    let diff = 0; // max |got - ref|, over max |ref| below: the kernel tests' measure
    if (ref === null) ref = got;
    else {
      for (let i = 0; i < got.length; i++) {
        err = Math.max(err, Math.abs(got[i] - ref[i]) / (1e-3 + Math.abs(ref[i])));
        diff = Math.max(diff, Math.abs(got[i] - ref[i]));
      }
    }
    const errOfMax = diff / ref.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const t = await slope(gpu, (rec) => rec.dispatch(pipe, bind, groups));
    /** @type {boolean | "again"} */
    const isDefault = layout === null ? (rows.length >= maths.length ? "again" : true) : false;
    rows.push({ layout: lay, math: f16Math ? "f16" : "f32", default: isDefault, workgroups: groups, us: t.per * 1e6, GBps: bytes / t.per / 1e9, maxRelErr: err, errOfMax });
  }
  results.push({ ...shape, layouts: undefined, weightBytes: bytes, rows });
  for (const b of [fwd, x, ...W, y, ...extra]) b.destroy();
}
gpu.check();
const info = gpu.info;
gpu.device.destroy();
const meter = spec.meter ? await memoryBandwidth(256) : null;
await Deno.stdout.write(new TextEncoder().encode(JSON.stringify({ device: info, floorUs: floor.per * 1e6, meter, results }) + "\n"));
