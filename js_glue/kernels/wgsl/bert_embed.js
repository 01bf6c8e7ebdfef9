// BERT input embedding: x[t] = word[ids[t]] + position[pos + t] + token_type[0] (LayerNorm follows).
import { FWD, WG } from "./common.js";

/** @param {{hidden: number}} d */
export function bertEmbed({ hidden }) {
  const H4 = hidden / 4;
  return `${FWD}
@group(0) @binding(0) var<uniform> fwd: Fwd;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> word: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> position: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> tokenType: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> x: array<vec4<f32>>;
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x / ${H4}u;
  let k = gid.x % ${H4}u;
  if (t >= fwd.n) { return; }
  x[gid.x] = word[ids[t] * ${H4}u + k] + position[(fwd.pos + t) * ${H4}u + k] + tokenType[k];
}`;
}
