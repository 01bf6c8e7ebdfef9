// Rotary embedding (Llama's rotate-half layout), in place on the q and k heads of the fused qkv
// rows. cos/sin come from a table computed once in float64 on the CPU, so large positions keep
// full f32 accuracy.
import { FWD, WG } from "./common.js";

export function rope({ heads, kvHeads, headDim }) {
  const half = headDim / 2;
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
  let base = t * ${rowLen}u + head * ${headDim}u + i;
  let a = qkv[base];
  let b = qkv[base + ${half}u];
  qkv[base] = a * cs.x - b * cs.y;
  qkv[base + ${half}u] = b * cs.x + a * cs.y;
}`;
}
