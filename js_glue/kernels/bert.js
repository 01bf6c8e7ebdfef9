// A BERT encoder (all-MiniLM-L6-v2 and the tiny test BERT) on the WGSL kernels: embeddings +
// LayerNorm, post-LN layers of bidirectional attention and a GELU MLP, then mean pooling; the
// pooled vector is L2-normalised on the CPU. One sequence per forward, so no padding or mask:
// the masked NumPy reference computes the same numbers. Weights use HF BERT names; q, k and v
// are fused on load so the decoder's attention kernels serve here too.

import { namedError } from "./errors.js";
import { Program } from "./program.js";
import { bertEmbed } from "./wgsl/bert_embed.js";
import { layernorm } from "./wgsl/layernorm.js";
import { matmul, MATMUL_WG } from "./wgsl/matmul.js";
import { kvAppend } from "./wgsl/kv_append.js";
import { attention } from "./wgsl/attention.js";
import { gelu } from "./wgsl/gelu.js";
import { meanPool } from "./wgsl/mean_pool.js";
import { WG } from "./wgsl/common.js";

/**
 * [CLS] ids [SEP] truncated to `maxLen`, as the reference encoder does (ids already wrapped are
 * not wrapped twice); without a [CLS] or [SEP] id, the ids truncated. Every encoder backend's rule.
 * @param {number[]} ids
 * @param {number | null} cls
 * @param {number | null} sep
 * @param {number} maxLen
 */
export function withSpecials(ids, cls, sep, maxLen) {
  if (cls === null || cls === undefined || sep === null || sep === undefined) return ids.slice(0, maxLen);
  let body = ids;
  if (ids.length >= 2 && ids[0] === cls && ids[ids.length - 1] === sep) body = ids.slice(1, -1);
  return [cls, ...body.slice(0, maxLen - 2), sep];
}

const TM = 4;

/** @typedef {import("./loader.js").Tensor} Tensor */
/** @typedef {import("./loader.js").ChatConfig} ChatConfig */
/** @typedef {import("../proxy.d.ts").ChatOptions} ChatOptions */

/** @param {Tensor} t */
function f32(t) {
  if (t.dtype !== "float32") throw namedError("ModelLoadError", `BERT weights must be float32, got ${t.dtype}`);
  return new Float32Array(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength / 4);
}

export class BertModel extends Program {
  /** @type {Record<string, GPUBuffer>} the embedding tables and their LayerNorm (set by the constructor's upload) */
  emb;
  /** @type {Record<string, GPUBuffer>[]} per encoder layer, its weights */
  layers;
  // The activations and the cache, made by #allocate (sizes there).
  /** @type {GPUBuffer} */ fwd;
  /** @type {GPUBuffer} */ ids;
  /** @type {GPUBuffer} */ x;
  /** @type {GPUBuffer} */ qkv;
  /** @type {GPUBuffer} */ kc;
  /** @type {GPUBuffer} */ vc;
  /** @type {GPUBuffer} */ att;
  /** @type {GPUBuffer} */ up;
  /** @type {GPUBuffer} */ pooled;

  /**
   * @param {import("./gpu.js").Gpu} gpu @param {ChatConfig} config @param {Map<string, Tensor>} tensors
   * @param {ChatOptions} overrides the record's @param {import("./loader.js").Progress} progress
   */
  static async create(gpu, config, tensors, overrides, progress) {
    const m = new BertModel(gpu, config, tensors, overrides);
    await m.#compile(progress);
    return m;
  }

  /**
   * @param {import("./gpu.js").Gpu} gpu @param {ChatConfig} config @param {Map<string, Tensor>} tensors
   * @param {ChatOptions} overrides
   */
  constructor(gpu, config, tensors, overrides) {
    super(gpu);
    const mc = { ...(config.model_config || config), ...overrides };
    const hidden = mc.hidden_size;
    const heads = mc.num_attention_heads;
    const maxLen = overrides.context_window_size ?? config.context_window_size ?? mc.max_length ?? 256;
    this.d = {
      hidden,
      heads,
      kvHeads: heads,
      headDim: hidden / heads,
      inter: mc.intermediate_size,
      layers: mc.num_hidden_layers,
      eps: mc.layer_norm_eps ?? 1e-12,
      maxLen,
      cls: config.cls_token_id ?? null,
      sep: config.sep_token_id ?? null,
      normalize: config.normalize ?? true,
    };
    this.stats = { embed_tokens: 0, embed_seconds: 0 };
    this.#upload(tensors);
    this.#allocate();
  }

  /** @param {Map<string, Tensor>} tensors */
  #upload(tensors) {
    /** @param {string} name */
    const get = (name) => {
      const t = tensors.get(name);
      if (!t) throw namedError("ModelLoadError", `missing BERT tensor ${name}`);
      return f32(t);
    };
    /** @param {Float32Array} data @param {string} [label] */
    const buf = (data, label = "") => this.own("storage", data, label);
    /** @param {Float32Array[]} parts */
    const cat = (parts) => {
      const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
      let o = 0;
      for (const p of parts) {
        out.set(p, o);
        o += p.length;
      }
      return out;
    };
    const e = "embeddings";
    this.emb = {
      word: buf(get(`${e}.word_embeddings.weight`), "word"),
      position: buf(get(`${e}.position_embeddings.weight`), "position"),
      tokenType: buf(get(`${e}.token_type_embeddings.weight`).subarray(0, this.d.hidden), "token-type"),
      lnW: buf(get(`${e}.LayerNorm.weight`)),
      lnB: buf(get(`${e}.LayerNorm.bias`)),
    };
    this.layers = [];
    for (let i = 0; i < this.d.layers; i++) {
      const p = `encoder.layer.${i}`;
      const a = `${p}.attention.self`;
      this.layers.push({
        qkvW: buf(cat([get(`${a}.query.weight`), get(`${a}.key.weight`), get(`${a}.value.weight`)])),
        qkvB: buf(cat([get(`${a}.query.bias`), get(`${a}.key.bias`), get(`${a}.value.bias`)])),
        oW: buf(get(`${p}.attention.output.dense.weight`)),
        oB: buf(get(`${p}.attention.output.dense.bias`)),
        ln1W: buf(get(`${p}.attention.output.LayerNorm.weight`)),
        ln1B: buf(get(`${p}.attention.output.LayerNorm.bias`)),
        upW: buf(get(`${p}.intermediate.dense.weight`)),
        upB: buf(get(`${p}.intermediate.dense.bias`)),
        downW: buf(get(`${p}.output.dense.weight`)),
        downB: buf(get(`${p}.output.dense.bias`)),
        ln2W: buf(get(`${p}.output.LayerNorm.weight`)),
        ln2B: buf(get(`${p}.output.LayerNorm.bias`)),
      });
    }
  }

  #allocate() {
    const { hidden, inter, maxLen } = this.d;
    /** @param {number} bytes @param {string} label */
    const s = (bytes, label) => this.own("storage", bytes, label);
    this.fwd = this.own("uniform", 16, "fwd");
    this.ids = s(maxLen * 4, "ids");
    this.x = s(maxLen * hidden * 4, "x");
    this.qkv = s(maxLen * 3 * hidden * 4, "qkv");
    this.kc = s(maxLen * hidden * 4, "k");
    this.vc = s(maxLen * hidden * 4, "v");
    this.att = s(maxLen * hidden * 4, "att");
    this.up = s(maxLen * inter * 4, "up");
    this.pooled = s(hidden * 4, "pooled");
  }

  /** @param {import("./loader.js").Progress} progress */
  async #compile(progress) {
    const d = this.d;
    /** @param {number} K @param {number} N @param {{accumulate?: boolean}} [extra] */
    const lin = (K, N, extra = {}) => matmul({ K, N, TM, TN: N % 4 === 0 ? 4 : 1, q4: false, bias: true, ...extra });
    await this.compile(
      {
        embed: bertEmbed(d),
        layernorm: layernorm(d),
        qkv: lin(d.hidden, 3 * d.hidden),
        kv: kvAppend(d),
        attn: attention(d, false),
        o: lin(d.hidden, d.hidden, { accumulate: true }),
        up: lin(d.hidden, d.inter),
        gelu: gelu(d),
        down: lin(d.inter, d.hidden, { accumulate: true }),
        pool: meanPool(d),
      },
      progress,
    );
  }

  /**
   * `output` (n rows of N) = `input` x W + B, or += for an `accumulate` pipeline.
   * @param {import("./gpu.js").Recorder} rec @param {string} name @param {GPUBuffer} W @param {GPUBuffer} B
   * @param {GPUBuffer} input @param {GPUBuffer} output @param {number} N @param {number} n
   */
  #linear(rec, name, W, B, input, output, N, n) {
    this.run(rec, name, [this.fwd, input, W, output, B], Math.ceil(N / (N % 4 === 0 ? 4 : 1) / MATMUL_WG), Math.ceil(n / TM));
  }

  /** Mean-pooled, L2-normalised vector of one id list. @param {number[]} ids */
  async #embedOne(ids) {
    const d = this.d;
    const seq = Uint32Array.from(withSpecials(ids, this.d.cls, this.d.sep, this.d.maxLen));
    const n = seq.length;
    this.gpu.write(this.ids, seq);
    this.gpu.write(this.fwd, new Uint32Array([0, n, 0, 0]));
    const rec = this.gpu.recorder();
    const F = this.fwd;
    const rows = Math.ceil(n / 8);
    this.run(rec, "embed", [F, this.ids, this.emb.word, this.emb.position, this.emb.tokenType, this.x], Math.ceil((n * d.hidden) / 4 / WG));
    this.run(rec, "layernorm", [F, this.x, this.emb.lnW, this.emb.lnB], rows);
    for (const L of this.layers) {
      this.#linear(rec, "qkv", L.qkvW, L.qkvB, this.x, this.qkv, 3 * d.hidden, n);
      this.run(rec, "kv", [F, this.qkv, this.kc, this.vc], Math.ceil((n * d.hidden) / WG));
      this.run(rec, "attn", [F, this.qkv, this.kc, this.vc, this.att], Math.ceil((n * d.heads) / 16));
      this.#linear(rec, "o", L.oW, L.oB, this.att, this.x, d.hidden, n);
      this.run(rec, "layernorm", [F, this.x, L.ln1W, L.ln1B], rows);
      this.#linear(rec, "up", L.upW, L.upB, this.x, this.up, d.inter, n);
      this.run(rec, "gelu", [F, this.up], Math.ceil((n * d.inter) / 4 / WG));
      this.#linear(rec, "down", L.downW, L.downB, this.up, this.x, d.hidden, n);
      this.run(rec, "layernorm", [F, this.x, L.ln2W, L.ln2B], rows);
    }
    this.run(rec, "pool", [F, this.x, this.pooled], Math.ceil(d.hidden / WG));
    const v = Array.from(new Float32Array(await this.gpu.readback(rec, this.pooled, d.hidden * 4)));
    this.stats.embed_tokens += n;
    if (!d.normalize) return v;
    const norm = Math.max(Math.sqrt(v.reduce((a, x) => a + x * x, 0)), 1e-12);
    return v.map((x) => x / norm);
  }

  /** The kernel ABI's embed: one vector per id list. @param {ArrayLike<number>[]} batch */
  async embed(batch) {
    if (!batch.length) throw namedError("EmbeddingInputEmptyError", "embed needs a non-empty batch");
    const t0 = performance.now();
    const out = [];
    for (const ids of batch) out.push(await this.#embedOne(Array.from(ids, Number)));
    this.stats.embed_seconds += (performance.now() - t0) / 1000;
    return out;
  }
}
