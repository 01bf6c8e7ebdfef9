// GEMV input hook: the split attention's merge (attentionCombine of attention_split.js) folded
// into o_proj. Binding 1 is attentionPartial's scratch, [heads, S chunks, (max, sum, o[headDim])];
// each workgroup merges the chunks of every head into workgroup memory once (the same sums as
// attentionCombine, so the same values), then runs the GEMV over them. The merge is repeated by
// every workgroup: cheap next to the weights while the cache is short, and it needs
// heads * headDim floats of workgroup memory, so llama.js takes this path only up to
// MERGE_MAX_INPUTS. NumPy twin: merge_linear in py_worker/reference/fused.py.
import { SPLIT } from "./attention_split.js";

/** Most attention outputs (heads * headDim) the merge holds in workgroup memory (12 KiB). */
export const MERGE_MAX_INPUTS = 3072;

/** @param {{heads: number, headDim: number, ctx: number}} d @returns {import("./gemv.js").GemvInput} */
export function mergeInput({ heads, headDim, ctx }) {
  const D4 = headDim / 4;
  const K4 = heads * D4;
  const stride = headDim + 2;
  const S = Math.ceil(ctx / SPLIT);
  return {
    decl: () => `@group(0) @binding(1) var<storage, read> ap: array<f32>;
var<workgroup> merged: array<vec4<f32>, ${K4}>;`,
    bindings: 0,
    setup: `let chunks = (fwd.pos + ${SPLIT}u) / ${SPLIT}u;
  for (var e = tid; e < ${K4}u; e += THREADS) {
    let h = e / ${D4}u;
    let d = 2u + (e % ${D4}u) * 4u;
    var m = -3.0e38;
    for (var s = 0u; s < chunks; s++) { m = max(m, ap[(h * ${S}u + s) * ${stride}u]); }
    var l = 0.0;
    var o = vec4<f32>(0.0);
    for (var s = 0u; s < chunks; s++) {
      let at = (h * ${S}u + s) * ${stride}u;
      let c = exp(ap[at] - m);
      l += ap[at + 1u] * c;
      o += vec4<f32>(ap[at + d], ap[at + d + 1u], ap[at + d + 2u], ap[at + d + 3u]) * c;
    }
    merged[e] = o / l;
  }
  workgroupBarrier();`,
    x: (i) => `merged[${i}]`,
  };
}
