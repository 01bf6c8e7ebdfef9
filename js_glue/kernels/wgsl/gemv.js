// Decode GEMV for real GPUs: y[n] (+)= sum_k x[k] * W[n, k] (+ bias[n]) for one token.
// A workgroup of 256 threads owns ROWS output rows (gemvLayout); each thread owns R of them
// (4 for q4 weights, so that one read of the input and of its hook serves 4 rows; else 1) and
// the lanes of a row split K (one 32-input group per lane per step, so a row's weights are read as
// contiguous runs) and add their partial sums in workgroup memory. Long-K, short-N GEMVs (down) get
// more lanes a row so that they still make enough workgroups to fill a GPU; wide ones (gate_up,
// lm_head) more rows, so a workgroup's setup serves more rows.
// Many workgroups in flight keep the memory bus busy, which the one-thread-per-row tiles of
// matmul.js cannot do on a GPU. The 4 words of a q4 group are unrolled with constant indices:
// a vector indexed by a loop counter is spilled to local memory by some GPU compilers. The CPU
// backends (lavapipe, SwiftShader) use matmul.js instead: barriers are slow there.
// Weights as in matmul.js: f32 (f16 with `f16w`), MLC q4, or ggml blocks (`ggml: <type id>`, wgsl/ggml.js);
// bindings [fwd, x, w | (qw, qs) | wq, y, (bias), (the hooks' own)]; x is [K], W [N, K], bias [N].
// Output y[yoff + n] (matmul's `ldy` is ignored here: one token has one output row).
//
// The arithmetic is f32, except with `f16Math` (q4 weights with f16 scales, q4f16_1, on GPUs with
// shader-f16, where the kernels' f16Math option asks for it: slower than f32 on an H200): inside one 32-input group the input (converted to f16 once a
// group, shared by the thread's R rows), the dequantised weights ((nibble - 7) * scale), their
// products and the group's sum are f16; each row adds its groups into an f32 accumulator, so a
// long K keeps f32 accumulation and the error stays that of f16 rounding within a group. NumPy
// twin: q4_f16math_linear in py_worker/reference/f16math.py.
//
// Hooks fuse the element-wise kernel before or after a GEMV into it (one dispatch less each):
// `input` says what binding 1 holds and how input vec4 i is made from it (gemv_norm.js: RMSNorm,
// gemv_merge.js: the split attention's merge, gemv_glu.js: SwiGLU / GeGLU); `output` maps
// workgroup slots to rows and stores each row (gemv_rope_kv.js: RoPE and the KV-cache append).
// Thread y owns slots y*R .. y*R + R - 1 of its workgroup and reads the weights of their rows
// (the plain output: slot j is row wid.x * ROWS + j); after the reduction every slot's sum is
// in workgroup memory, so a row's store may read any slot of its workgroup (a RoPE partner).
import { FWD } from "./common.js";
import { ggmlWeights } from "./ggml.js";

export const GEMV_ROWS = 8;
/** Threads of a GEMV workgroup; input hooks' setup code may use `tid` in [0, THREADS). */
export const GEMV_THREADS = 256;
/** Rows a workgroup of a short-K GEMV with at least GEMV_WIDE_N rows (gate_up, lm_head). */
export const GEMV_WIDE_ROWS = 32;
export const GEMV_WIDE_N = 8192;
/** Rows a thread of a q4 GEMV owns, sharing one read of the input. */
export const GEMV_PER_THREAD = 4;

/**
 * @typedef {{rows: number, perThread: number, unroll: number}} GemvLayout
 * rows: output rows a workgroup owns (the dispatch is ceil(N / rows) workgroups); perThread: rows
 * each thread owns, which share one read (and one hook evaluation) of the input; unroll: groups of
 * 32 inputs a lane reads before it uses them, so that several loads are in flight at once.
 * @typedef {{K: number, N?: number, q4?: boolean, output?: GemvOutput | null, layout?: GemvLayout}} GemvShape
 */

/** One row a thread, `rows` a workgroup. @param {number} rows @returns {GemvLayout} */
const oneRow = (rows) => ({ rows, perThread: 1, unroll: 1 });

/**
 * The layout of a GEMV (`shape.layout` overrides it: bench/gemv.py compares layouts). An output
 * hook takes a q4 shared layout below (or an override) only where its `fits` accepts the rows,
 * else one row a thread in GEMV_ROWS, which every hook serves. The q4 path gives each
 * thread 4 rows that share one read of the input (and one evaluation of its hook: the RMSNorm or
 * SwiGLU of every input), which bench/gemv.py measured 1.4-3.2x faster on an H200 for gate_up,
 * down and lm_head: 8 rows a workgroup (128 lanes a row) when K has 128 or more 32-input groups
 * (down), 64 (16 lanes a row) when N is wide (gate_up, lm_head), 16 when K has 64 groups or more
 * (a 2048-wide o_proj), else one row a thread as below. Other formats: 2 rows when K is long (the
 * long-K layout: enough workgroups for a short N); GEMV_WIDE_ROWS when N is wide, so that each
 * workgroup's fixed cost (an input hook's setup: the RMSNorm's sum of squares over x, redone by
 * every workgroup) is paid over more rows and the dispatch fits in fewer waves; else GEMV_ROWS.
 * @param {GemvShape} shape
 * @returns {GemvLayout}
 */
export function gemvLayout({ K, N = 0, q4 = false, output = null, layout }) {
  const free = freeLayout({ K, N, q4, layout });
  if (!output || ((layout || free.perThread > 1) && output.fits?.(free.rows))) return free;
  return oneRow(GEMV_ROWS);
}

/** gemvLayout for the plain output's slot map (slot j is row wid.x * ROWS + j). @param {GemvShape} shape @returns {GemvLayout} */
function freeLayout({ K, N = 0, q4 = false, layout }) {
  const shared = q4 && N % GEMV_PER_THREAD === 0;
  if (layout) return shared ? layout : { ...layout, perThread: 1 };
  const G = K / 32;
  if (shared && G >= 128) return { rows: 8, perThread: GEMV_PER_THREAD, unroll: 1 };
  if (shared && N >= GEMV_WIDE_N) return { rows: 64, perThread: GEMV_PER_THREAD, unroll: 1 };
  if (shared && G >= 64) return { rows: 16, perThread: GEMV_PER_THREAD, unroll: 1 };
  if (G >= 128) return oneRow(2);
  return oneRow(N >= GEMV_WIDE_N ? GEMV_WIDE_ROWS : GEMV_ROWS);
}

/** Rows per workgroup: the dispatch of a GEMV of this shape is ceil(N / rows) workgroups. @param {GemvShape} shape */
export const gemvRows = (shape) => gemvLayout(shape).rows;

/**
 * @typedef {{decl: (first: number) => string, bindings: number, setup: string, x: (i: string) => string}} GemvInput
 * decl: WGSL declaring binding 1 and `bindings` more from `first` on; setup: statements at the
 * top of main, run by every thread in uniform control flow (barriers allowed); x(i): input
 * vec4 i (inputs 4i..4i+3) as a vec4<f32> expression.
 * @typedef {{decl: (first: number) => string, row: (j: string) => string, store: string, fits?: (rows: number) => boolean,
 *   f16?: boolean}} GemvOutput
 * decl: WGSL from binding `first` on (and helpers; the shader's `const ROWS: u32` is the
 * workgroup's slot count); row(j): a WGSL expression of the local row (in [0, N) unless past the
 * end) of slot j (a u32 expression) of workgroup `wid.x`; a thread's R slots must be all in range
 * or all past it (its weights are read when its first slot's are); store: statements run by lane
 * 0 of slot j's thread once every slot is reduced, given `j`, `row` (< N) and
 * `fn rowValue(j, row) -> f32` (the sum of slot j, whose row is `row`, plus that row's bias);
 * fits(rows): whether the slot map serves workgroups of `rows` slots (without it only
 * GEMV_ROWS); f16: the hook's WGSL uses f16 (the shader then enables it).
 */

/** The plain input: binding 1 is x [K] itself. */
export const PLAIN_INPUT = /** @type {GemvInput} */ ({
  decl: () => "@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;",
  bindings: 0,
  setup: "",
  x: (i) => `x[${i}]`,
});

/**
 * The plain output: slot j is row j of the workgroup's ROWS; y[yoff + row] (+)= the row's value.
 * @param {number} yoff @param {boolean} accumulate
 */
function plainOutput(yoff, accumulate) {
  const o = yoff ? `${yoff}u + row` : "row";
  return /** @type {GemvOutput} */ ({
    decl: () => "",
    row: (j) => `wid.x * ROWS + ${j}`,
    store: `y[${o}] = rowValue(j, row)${accumulate ? ` + y[${o}]` : ""};`,
  });
}

/**
 * f16Math (q4 with f16 scales only): each group's arithmetic in f16, as the comment at the top says.
 * @param {{K: number, N: number, q4?: boolean, ggml?: number, f16?: boolean, f16w?: boolean, f16Math?: boolean, bias?: boolean,
 *   accumulate?: boolean, yoff?: number, input?: GemvInput, output?: GemvOutput | null, layout?: GemvLayout}} shape
 */
export function gemv({ K, N, q4, ggml, f16 = false, f16w = false, f16Math = false, bias = false, accumulate = false, yoff = 0, input = PLAIN_INPUT, output = null, layout }) {
  if (f16Math && !(q4 && f16)) throw new Error("gemv: f16Math needs q4 weights with f16 scales");
  const K4 = K / 4;
  const G = K / 32;
  const isGgml = ggml !== undefined && ggml !== null;
  const { rows: ROWS, perThread: R, unroll: U } = gemvLayout({ K, N, q4: !!q4, output, layout });
  const LANES = (GEMV_THREADS * R) / ROWS; // threads (lanes) of one row; ROWS / R threads down
  const out = output ?? plainOutput(yoff, accumulate);
  const X = input.x;
  const rs = Array.from({ length: R }, (_, r) => r);
  const weights = q4
    ? `@group(0) @binding(2) var<storage, read> qw: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> qs: array<${f16 ? "f16" : "f32"}>;`
    : isGgml
      ? ggmlWeights(ggml, K, 2)
      : `@group(0) @binding(2) var<storage, read> w: array<vec4<${f16w ? "f16" : "f32"}>>;`;
  const yBinding = q4 ? 4 : 3;
  const free = yBinding + (bias ? 2 : 1); // the hooks' bindings start here
  const biasDecl = bias ? `@group(0) @binding(${yBinding + 1}) var<storage, read> b: array<f32>;` : "";
  // One q4 group g of this thread's rows: its 8 input vec4s read once (as f16 with f16Math),
  // then each row's 4 words; the group's sum is added to acc in f32. In f32 the scale multiplies
  // the group's sum; in f16 it multiplies each weight first, so the f16 sums stay the size of
  // x·w (an unscaled sum of 32 nibble products would overflow f16 once |x| passes ~256).
  const q4Group = (/** @type {string} */ g) => `{
        let g = ${g};
        ${Array.from({ length: 8 }, (_, c) => `let x${c} = ${f16Math ? `vec4<f16>(${X(`g * 8u + ${c}u`)})` : X(`g * 8u + ${c}u`)};`).join(" ")}
        ${rs.map((r) => `{
          let at = row${r} * ${G}u + g;
          let wq = qw[at];
          ${f16Math ? `let s = f16(qs[at]);
          acc${r} += f32(${[0, 1, 2, 3].map((c) => `dot(x${2 * c}, (vec4<f16>((vec4<u32>(wq[${c}]) >> SHL) & M4) - 7.0) * s)
            + dot(x${2 * c + 1}, (vec4<f16>((vec4<u32>(wq[${c}]) >> SHH) & M4) - 7.0) * s)`).join("\n            + ")});`
            : `acc${r} += (${[0, 1, 2, 3].map((c) => `dot(x${2 * c}, vec4<f32>((vec4<u32>(wq[${c}]) >> SHL) & M4) - 7.0)
            + dot(x${2 * c + 1}, vec4<f32>((vec4<u32>(wq[${c}]) >> SHH) & M4) - 7.0)`).join("\n            + ")}) * f32(qs[at]);`}
        }`).join("\n        ")}
      }`;
  // U groups a step (LANES apart); a guard only where the steps do not divide G evenly.
  const even = G % (LANES * U) === 0;
  const partial = q4
    ? `for (var g0 = lane; g0 < ${G}u; g0 += ${LANES * U}u) {
      ${Array.from({ length: U }, (_, u) => (u === 0 || even ? q4Group(`g0 + ${u * LANES}u`) : `if (g0 + ${u * LANES}u < ${G}u) ${q4Group(`g0 + ${u * LANES}u`)}`)).join("\n      ")}
    }`
    : isGgml
      ? `for (var g = lane; g < ${G}u; g += ${LANES}u) {
      let w = dq32(row0, g);
      acc0 += ${Array.from({ length: 8 }, (_, c) => `dot(${X(`g * 8u + ${c}u`)}, w[${c}])`).join(" + ")};
    }`
      : `for (var k = lane; k < ${K4}u; k += ${LANES}u) { acc0 += dot(${X("k")}, vec4<f32>(w[row0 * ${K4}u + k])); }`;
  // Thread (lane, y) owns slots y * R .. y * R + R - 1 of its workgroup; `out.row` maps them to rows.
  const store = `if (lane == 0u) {
    for (var r = 0u; r < ${R}u; r++) {
      let j = lid.y * ${R}u + r;
      let row = ${out.row("j")};
      if (row < ${N}u) { ${out.store} }
    }
  }`;
  return `${f16 || f16w || out.f16 ? "enable f16;\n" : ""}${FWD}
@group(0) @binding(0) var<uniform> fwd: Fwd;
${input.decl(free)}
${weights}
@group(0) @binding(${yBinding}) var<storage, read_write> y: array<f32>;
${biasDecl}
${out.decl(free + input.bindings)}
const SHL = vec4<u32>(0u, 4u, 8u, 12u);
const SHH = vec4<u32>(16u, 20u, 24u, 28u);
const M4 = vec4<u32>(15u);
const THREADS = ${GEMV_THREADS}u;
const ROWS = ${ROWS}u;
var<workgroup> part: array<f32, ${ROWS * LANES}>;
// The reduced sum of slot j (valid after the reduction), plus the bias of its row.
fn rowValue(j: u32, row: u32) -> f32 { return part[j * ${LANES}u]${bias ? " + b[row]" : ""}; }
@compute @workgroup_size(${LANES}, ${ROWS / R}) fn main(@builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>) {
  if (fwd.n == 0u) { return; } // uniform: also keeps the shared Fwd binding in the layout
  let lane = lid.x;
  let tid = lid.y * ${LANES}u + lane;
  ${input.setup}
  ${rs.map((r) => `let row${r} = ${out.row(`lid.y * ${R}u + ${r}u`)};`).join(" ")}
  ${rs.map((r) => `var acc${r} = 0.0;`).join(" ")}
  if (row0 < ${N}u) {
    ${partial}
  }
  let slot = lid.y * ${R * LANES}u;
  ${rs.map((r) => `part[slot + ${r * LANES}u + lane] = acc${r};`).join(" ")}
  workgroupBarrier();
  for (var s = ${LANES / 2}u; s > 0u; s >>= 1u) {
    if (lane < s) { ${rs.map((r) => `part[slot + ${r * LANES}u + lane] += part[slot + ${r * LANES}u + lane + s];`).join(" ")} }
    workgroupBarrier();
  }
  ${store}
}`;
}
