// GEMV output hook: RoPE and the KV-cache append in the qkv GEMV's epilogue (decode: one token at
// position fwd.pos), for heads rotated whole (rotaryDim = headDim) with no per-head norm between
// the projection and RoPE. Slots are assigned so that the two rows of a rotation pair are in one
// workgroup: local rows j and j + 4 of workgroup w are sides a and b of pair 4w + j (a pair as in
// rope.js: dims (i, i + headDim/2) of a head, or (2i, 2i + 1) when interleaved). A part covers
// rows [yoff, yoff + N) of the fused q|k|v row; its q and k rows come first, in pairs, its v rows
// after them, in order (so both yoff and N must be whole heads: ropeKvFits). Rotated q goes to y
// (the qkv buffer, where attention reads q), rotated k and v into the layer's caches kc, vc
// [ctx, kvHeads * headDim] at row fwd.pos (f32, or f16 when d.kvF16: rounded as stored). Bindings
// from `first`: the RoPE table [ctx, headDim/2] of (cos, sin), kc, vc. NumPy twin: rope_kv_linear
// in py_worker/reference/fused.py.
import { GEMV_ROWS } from "./gemv.js";

/**
 * Whether RoPE + KV append can ride in the qkv GEMV of these parts ({yoff, N} row ranges): whole
 * heads rotated, each part whole heads, and a head whole workgroups (pairs never cross one).
 * @param {{headDim: number, rotaryDim: number}} d @param {{yoff: number, N: number}[]} parts
 */
export function ropeKvFits({ headDim, rotaryDim }, parts) {
  const whole = (/** @type {number} */ r) => r % headDim === 0;
  return rotaryDim === headDim && headDim % GEMV_ROWS === 0 && parts.every((p) => whole(p.yoff) && whole(p.N));
}

/**
 * @param {{heads: number, kvHeads: number, headDim: number, ropeInterleaved?: boolean, kvF16?: boolean}} d
 * @param {number} yoff first row of this part in the q|k|v row
 * @param {number} N rows of this part
 * @returns {import("./gemv.js").GemvOutput}
 */
export function ropeKvOutput({ heads, kvHeads, headDim, ropeInterleaved = false, kvF16 = false }, yoff, N) {
  const half = headDim / 2;
  const Q = heads * headDim;
  const KV = kvHeads * headDim;
  const RP = Math.min(Math.max(Q + KV - yoff, 0), N); // this part's rows that RoPE turns
  const SIDES = GEMV_ROWS / 2;
  const T = kvF16 ? "f16" : "f32";
  const pairRow = ropeInterleaved ? "2u * p + side" : `(p / ${half}u) * ${headDim}u + p % ${half}u + side * ${half}u`;
  return {
    f16: kvF16,
    decl: (first) => `@group(0) @binding(${first}) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(${first + 1}) var<storage, read_write> kc: array<${T}>;
@group(0) @binding(${first + 2}) var<storage, read_write> vc: array<${T}>;
// Local row of slot j of workgroup w: pairs first (sides a, then b), then the v rows in order.
fn ropeRow(w: u32, j: u32) -> u32 {
  if (w * ${GEMV_ROWS}u >= ${RP}u) { return w * ${GEMV_ROWS}u + j; }
  let p = w * ${SIDES}u + j % ${SIDES}u;
  let side = j / ${SIDES}u;
  return ${pairRow};
}`,
    row: "ropeRow(wid.x, lid.y)",
    store: `let gr = ${yoff}u + row;
    var v = rowValue(lid.y, row);
    if (row < ${RP}u) {
      let j = lid.y ^ ${SIDES}u; // the partner's slot
      let other = rowValue(j, ropeRow(wid.x, j));
      let cs = table[fwd.pos * ${half}u + (wid.x * ${SIDES}u + lid.y % ${SIDES}u) % ${half}u];
      v = select(v * cs.x + other * cs.y, v * cs.x - other * cs.y, lid.y < ${SIDES}u);
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
