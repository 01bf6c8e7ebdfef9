// Rotary embedding, in place on the q and k heads of the fused qkv rows. Pair i of a head is
// (i, i + rot/2) in HF's rotate-half layout, or (2i, 2i + 1) when `interleaved` (ggml's layout
// for llama-architecture GGUFs, whose q/k rows llama.cpp's converter permuted); both turn pair i
// by the table's angle for (position, i). rot = rotaryDim (Phi's partial rotary: the head's dims
// past it pass through), headDim otherwise. cos/sin come from a table [ctx, rot/2] of vec2
// computed once in float64 on the CPU (llama.js: ropeTable, which also folds in Llama 3 and
// LongRoPE frequency scaling and LongRoPE's cos/sin gain), so large positions keep full f32
// accuracy. NumPy twin: rope_cos_sin / apply_rope in py_worker/reference/llama.py.
import { FWD, WG } from "./common.js";

/** @param {{heads: number, kvHeads: number, headDim: number, rotaryDim?: number, ropeInterleaved?: boolean}} d */
export function rope({ heads, kvHeads, headDim, rotaryDim = headDim, ropeInterleaved = false }) {
  const half = rotaryDim / 2;
  const rowLen = (heads + 2 * kvHeads) * headDim;
  const perTok = (heads + kvHeads) * half;
  return `${FWD}
@group(0) @binding(0) var<uniform> fwd: Fwd;
@group(0) @binding(1) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> qkv: array<f32>;
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x / ${perTok}u;
  let r = gid.x % ${perTok}u;
  if (t >= fwd.n) { return; }
  let head = r / ${half}u;
  let i = r % ${half}u;
  let cs = table[(fwd.pos + t) * ${half}u + i];
  let ia = t * ${rowLen}u + head * ${headDim}u + ${ropeInterleaved ? "2u * i" : "i"};
  let ib = ia + ${ropeInterleaved ? 1 : half}u;
  let a = qkv[ia];
  let b = qkv[ib];
  qkv[ia] = a * cs.x - b * cs.y;
  qkv[ib] = b * cs.x + a * cs.y;
}`;
}
