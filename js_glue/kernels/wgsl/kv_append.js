// KV-cache append: copy the (rotated) k and v heads of this forward's tokens into the per-layer
// caches at positions pos..pos+n-1. Cache layout: [position, kv head, head dim], f32, or f16 when
// d.kvF16 (the element is rounded as it is stored; attention widens it back to f32).
import { FWD, WG } from "./common.js";

/** @param {{heads: number, kvHeads: number, headDim: number, kvF16?: boolean}} d */
export function kvAppend({ heads, kvHeads, headDim, kvF16 = false }) {
  const kv = kvHeads * headDim;
  const rowLen = (heads + 2 * kvHeads) * headDim;
  const T = kvF16 ? "f16" : "f32";
  return `${kvF16 ? "enable f16;\n" : ""}${FWD}
@group(0) @binding(0) var<uniform> fwd: Fwd;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> kc: array<${T}>;
@group(0) @binding(3) var<storage, read_write> vc: array<${T}>;
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x / ${kv}u;
  let e = gid.x % ${kv}u;
  if (t >= fwd.n) { return; }
  let dst = (fwd.pos + t) * ${kv}u + e;
  kc[dst] = ${T}(qkv[t * ${rowLen}u + ${heads * headDim}u + e]);
  vc[dst] = ${T}(qkv[t * ${rowLen}u + ${(heads + kvHeads) * headDim}u + e]);
}`;
}
