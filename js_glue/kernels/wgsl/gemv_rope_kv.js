// GEMV output hook: RoPE and the KV-cache append in the qkv GEMV's epilogue (decode: one token at
// position fwd.pos), for heads rotated whole (rotaryDim = headDim) with no per-head norm between
// the projection and RoPE. Slots are assigned so that the two rows of a rotation pair are in one
// workgroup of gemv.js's ROWS slots, S = ROWS / 2: slots j and j + S of workgroup w are sides a
// and b of pair S w + j (a pair as in rope.js: dims (i, i + headDim/2) of a head, or (2i, 2i + 1)
// when interleaved), so the thread that owns R slots (4 rows a thread with q4 weights) reads the
// weights of R pairs' same side: a run of R rows of a head, or every other row when interleaved.
// A part covers rows [yoff, yoff + N) of the fused q|k|v row; its q and k rows (the pair rows)
// come first, in pairs, its v rows after them, in order. yoff and N must be whole heads, and the
// pair rows whole workgroups, so that no workgroup holds part of a pair or both pairs and v rows
// (`fits` tells gemvLayout which layouts keep that; ropeKvFits that the fallback, GEMV_ROWS one
// row a thread, does). Rotated q goes to y (the qkv buffer, where attention reads q), rotated k
// and v into the layer's caches kc, vc [ctx, kvHeads * headDim] at row fwd.pos (f32, or f16 when
// d.kvF16: rounded as stored). Bindings from `first`: the RoPE table [ctx, headDim/2] of
// (cos, sin), kc, vc. NumPy twin: rope_kv_linear in py_worker/reference/fused.py.
import { GEMV_ROWS } from "./gemv.js";

/**
 * Rows of the part [yoff, yoff + N) that RoPE turns: its q and k rows.
 * @param {{heads: number, kvHeads: number, headDim: number}} d @param {number} yoff @param {number} N
 */
const pairRows = ({ heads, kvHeads, headDim }, yoff, N) => Math.min(Math.max((heads + kvHeads) * headDim - yoff, 0), N);

/**
 * Whether workgroups of `rows` slots keep each pair in one workgroup: the pair rows are whole workgroups.
 * @param {number} pairs the part's pair rows @param {number} rows
 */
const pairsFit = (pairs, rows) => rows % 2 === 0 && pairs % rows === 0;

/**
 * Whether RoPE + KV append can ride in the qkv GEMV of these parts ({yoff, N} row ranges): whole
 * heads rotated, each part whole heads, and its pair rows whole workgroups of GEMV_ROWS (the
 * layout gemvLayout falls back to for a hook; a q4 part may take a wider one where `fits` says so).
 * @param {{heads: number, kvHeads: number, headDim: number, rotaryDim: number}} d @param {{yoff: number, N: number}[]} parts
 */
export function ropeKvFits(d, parts) {
  const whole = (/** @type {number} */ r) => r % d.headDim === 0;
  return d.rotaryDim === d.headDim && parts.every((p) => whole(p.yoff) && whole(p.N) && pairsFit(pairRows(d, p.yoff, p.N), GEMV_ROWS));
}

/**
 * @param {{heads: number, kvHeads: number, headDim: number, ropeInterleaved?: boolean, kvF16?: boolean}} d
 * @param {number} yoff first row of this part in the q|k|v row
 * @param {number} N rows of this part
 * @returns {import("./gemv.js").GemvOutput}
 */
export function ropeKvOutput(d, yoff, N) {
  const { heads, kvHeads, headDim, ropeInterleaved = false, kvF16 = false } = d;
  const half = headDim / 2;
  const Q = heads * headDim;
  const KV = kvHeads * headDim;
  const RP = pairRows(d, yoff, N);
  const T = kvF16 ? "f16" : "f32";
  const pairRow = ropeInterleaved ? "2u * p + side" : `(p / ${half}u) * ${headDim}u + p % ${half}u + side * ${half}u`;
  return {
    f16: kvF16,
    fits: (rows) => pairsFit(RP, rows),
    decl: (first) => `@group(0) @binding(${first}) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(${first + 1}) var<storage, read_write> kc: array<${T}>;
@group(0) @binding(${first + 2}) var<storage, read_write> vc: array<${T}>;
const SIDES = ROWS / 2u;
// The pair of slot j of workgroup w (one below the part's pair rows).
fn ropePair(w: u32, j: u32) -> u32 { return w * SIDES + j % SIDES; }
// Local row of slot j of workgroup w: pairs first (sides a, then b), then the v rows in order.
fn ropeRow(w: u32, j: u32) -> u32 {
  if (w * ROWS >= ${RP}u) { return w * ROWS + j; }
  let p = ropePair(w, j);
  let side = j / SIDES;
  return ${pairRow};
}`,
    row: (j) => `ropeRow(wid.x, ${j})`,
    store: `let gr = ${yoff}u + row;
    var v = rowValue(j, row);
    if (row < ${RP}u) {
      let jp = (j + SIDES) % ROWS; // the partner's slot
      let other = rowValue(jp, ropeRow(wid.x, jp));
      let cs = table[fwd.pos * ${half}u + ropePair(wid.x, j) % ${half}u];
      v = select(v * cs.x + other * cs.y, v * cs.x - other * cs.y, j < SIDES);
    }
    if (gr < ${Q}u) {
      y[gr] = v;
    } else if (gr < ${Q + KV}u) {
      kc[fwd.pos * ${KV}u + gr - ${Q}u] = ${T}(v);
    } else {
      vc[fwd.pos * ${KV}u + gr - ${Q + KV}u] = ${T}(v);
    }`,
  };
}
