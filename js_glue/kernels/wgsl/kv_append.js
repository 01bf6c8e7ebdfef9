// KV-cache append: copy the (rotated) k and v heads of this forward's tokens into the per-layer
// caches at positions pos..pos+n-1. Cache layout: [position, kv head, head dim].
import { FWD, WG } from "./common.js";

export function kvAppend({ heads, kvHeads, headDim }) {
  const kv = kvHeads * headDim;
  const rowLen = (heads + 2 * kvHeads) * headDim;
  return `${FWD}
@group(0) @binding(0) var<uniform> fwd: Fwd;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> kc: array<f32>;
@group(0) @binding(3) var<storage, read_write> vc: array<f32>;
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x / ${kv}u;
  let e = gid.x % ${kv}u;
  if (t >= fwd.n) { return; }
  let dst = (fwd.pos + t) * ${kv}u + e;
  kc[dst] = qkv[t * ${rowLen}u + ${heads * headDim}u + e];
  vc[dst] = qkv[t * ${rowLen}u + ${(heads + kvHeads) * headDim}u + e];
}`;
}
