// A GGUF file (llama.cpp's format) as our decoders need it: header, metadata and tensor index
// parsed from the downloaded bytes, tensors as views into those bytes (never copied, never
// re-quantised), and the mlc-chat-config-shaped config of a Llama-family decoder.
//
// Layout (GGUF v2/v3, little-endian): "GGUF", u32 version, u64 tensor count, u64 metadata count;
// metadata = (string key, u32 type, value)*; tensor infos = (string name, u32 n_dims,
// u64 dims[n_dims] (innermost first), u32 ggml type, u64 offset)*; then, at the next multiple of
// `general.alignment` (default 32), the tensor data, each tensor at its offset.

import { namedError } from "./errors.js";
import { fetchFile, openStore } from "./loader.js";
import { tokenizerJsonFromGguf } from "./gguf_tokenizer.js";
import { GGML_BLOCKS, ggmlBlock } from "./wgsl/ggml.js";

/**
 * GGUF metadata, key -> value: whatever GGUF type the file gives each key (dynamic, as JSON is).
 * @typedef {Record<string, any>} GgufMeta
 */
/**
 * One tensor of a GGUF: its ggml type, shape outer first, and bytes (a view into the file), or
 * null for a type the kernels do not read.
 * @typedef {{type: number, shape: number[], bytes: Uint8Array | null}} GgufTensor
 */
/** @typedef {import("./loader.js").ModelRecord} ModelRecord */

/**
 * Architectures the wgsl decoder runs, and how each one's rotary embedding pairs dimensions.
 * @type {Record<string, {ropeInterleaved: boolean}>}
 */
const ARCHITECTURES = {
  llama: { ropeInterleaved: true }, // llama.cpp's converter permuted q/k rows for ggml's adjacent-pair RoPE
  qwen2: { ropeInterleaved: false }, // NEOX RoPE (HF rotate_half), rows as in the HF checkpoint
};

/** Reads GGUF scalars and strings from a DataView, advancing `pos`. */
class Reader {
  /** @param {Uint8Array} bytes */
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
    this.text = new TextDecoder("utf-8");
  }
  u32() {
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  u64() {
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw malformed(`a 64-bit count ${v} is too large`);
    return Number(v);
  }
  string() {
    const n = this.u64();
    if (this.pos + n > this.bytes.byteLength) throw malformed("a string runs past the end of the file");
    const s = this.text.decode(this.bytes.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }
  /** One metadata value of GGUF type `t` (arrays recursively). @param {number} t @returns {unknown} */
  value(t) {
    const v = this.view;
    const at = this.pos;
    /** @param {number} n @param {number | boolean} x */
    const step = (n, x) => ((this.pos += n), x);
    switch (t) {
      case 0: return step(1, v.getUint8(at));
      case 1: return step(1, v.getInt8(at));
      case 2: return step(2, v.getUint16(at, true));
      case 3: return step(2, v.getInt16(at, true));
      case 4: return step(4, v.getUint32(at, true));
      case 5: return step(4, v.getInt32(at, true));
      case 6: return step(4, v.getFloat32(at, true));
      case 7: return step(1, v.getUint8(at) !== 0);
      case 8: return this.string();
      case 9: {
        const inner = this.u32();
        const n = this.u64();
        const out = new Array(n);
        for (let i = 0; i < n; i++) out[i] = this.value(inner);
        return out;
      }
      case 10: return step(8, Number(v.getBigUint64(at, true)));
      case 11: return step(8, Number(v.getBigInt64(at, true)));
      case 12: return step(8, v.getFloat64(at, true));
      default: throw malformed(`unknown metadata value type ${t}`);
    }
  }
}

/** @param {string} why */
const malformed = (why) => namedError("ModelLoadError", `not a readable GGUF file: ${why}`, { format: "gguf" });

/**
 * Parse a whole GGUF file. Returns {version, meta: {key: value}, tensors: Map(name ->
 * {type, shape: [rows, cols] outer first, bytes: a view into `bytes`, or null for a type
 * the kernels do not read})}.
 * @param {Uint8Array} bytes
 */
export function parseGguf(bytes) {
  const r = new Reader(bytes);
  try {
    if (r.u32() !== 0x46554747) throw malformed("the magic is not GGUF");
    const version = r.u32();
    if (version < 2 || version > 3) throw malformed(`version ${version} (2 and 3 are read)`);
    const nTensors = r.u64();
    const nMeta = r.u64();
    /** @type {Record<string, unknown>} */
    const meta = {};
    for (let i = 0; i < nMeta; i++) {
      const key = r.string();
      meta[key] = r.value(r.u32());
    }
    const infos = [];
    for (let i = 0; i < nTensors; i++) {
      const name = r.string();
      const dims = Array.from({ length: r.u32() }, () => r.u64());
      infos.push({ name, dims, type: r.u32(), offset: r.u64() });
    }
    const align = Number(meta["general.alignment"] ?? 32);
    const dataStart = Math.ceil(r.pos / align) * align;
    /** @type {Map<string, GgufTensor>} */
    const tensors = new Map();
    for (const t of infos) {
      const known = /** @type {Record<number, {inputs: number, bytes: number} | undefined>} */ (GGML_BLOCKS)[t.type];
      const elems = t.dims.reduce((a, b) => a * b, 1);
      const nbytes = known ? (elems / known.inputs) * known.bytes : 0;
      const start = dataStart + t.offset;
      if (known && start + nbytes > bytes.byteLength) throw malformed(`tensor ${t.name} runs past the end of the file`);
      tensors.set(t.name, {
        type: t.type,
        shape: [...t.dims].reverse(),
        bytes: known ? bytes.subarray(start, start + nbytes) : null,
      });
    }
    return { version, meta, tensors };
  } catch (e) {
    if (e instanceof RangeError) throw malformed("it ends inside its header");
    throw e;
  }
}

/** Token-ids that end a turn: EOS/EOT/EOM, and control tokens llama.cpp also treats as end-of-generation. */
const EOG_TEXTS = ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "<|end_of_text|>"];

/** @param {GgufMeta} meta */
function stopTokenIds(meta) {
  const tokens = meta["tokenizer.ggml.tokens"] || [];
  const types = meta["tokenizer.ggml.token_type"] || [];
  /** @type {Set<number>} */
  const ids = new Set();
  for (const k of ["eos", "eot", "eom"]) {
    const id = meta[`tokenizer.ggml.${k}_token_id`];
    if (id !== undefined) ids.add(Number(id));
  }
  tokens.forEach(/** @param {string} t @param {number} i */ (t, i) => {
    if (types[i] === 3 && EOG_TEXTS.includes(t)) ids.add(i);
  });
  return [...ids].sort((a, b) => a - b);
}

/**
 * What any backend's config of a GGUF says, whatever its architecture: vocabulary size, context
 * length, the Jinja `chat_template`, BOS/EOS strings and ids, the end-of-turn token ids, and for
 * a WordPiece (BERT) vocabulary its [CLS]/[SEP] ids (llama.cpp's BOS is the [CLS]).
 * @param {GgufMeta} meta
 */
export function ggufBasics(meta) {
  const arch = meta["general.architecture"];
  const tokens = meta["tokenizer.ggml.tokens"] || [];
  /** @param {string} k */
  const id = (k) => (meta[`tokenizer.ggml.${k}_token_id`] === undefined ? null : Number(meta[`tokenizer.ggml.${k}_token_id`]));
  const ctx = Number(meta[`${arch}.context_length`] ?? 2048);
  const [bos, eos] = [id("bos"), id("eos")];
  const wordPiece = meta["tokenizer.ggml.model"] === "bert";
  return {
    model_type: arch,
    source: "gguf",
    vocab_size: Number(meta[`${arch}.vocab_size`] ?? tokens.length),
    context_window_size: ctx,
    prefill_chunk_size: 128,
    chat_template: meta["tokenizer.chat_template"] ?? null,
    bos_token_id: bos,
    eos_token_id: eos,
    bos_token: bos === null ? null : tokens[bos],
    eos_token: eos === null ? null : tokens[eos],
    add_bos_token: !!meta["tokenizer.ggml.add_bos_token"],
    stop_token_ids: stopTokenIds(meta),
    ...(wordPiece ? { cls_token_id: id("cls") ?? bos, sep_token_id: id("seperator") ?? id("sep") } : {}),
  };
}

/**
 * The mlc-chat-config-shaped config of a GGUF decoder for our kernels: ggufBasics plus the
 * model_config the wgsl decoder reads. Throws a named error for an architecture or a tensor
 * type the wgsl kernels do not run.
 * @param {{meta: GgufMeta, tensors: Map<string, GgufTensor>}} gguf
 */
export function ggufConfig(gguf) {
  const { meta, tensors } = gguf;
  const arch = meta["general.architecture"];
  const spec = ARCHITECTURES[arch];
  if (!spec) {
    throw namedError("UnsupportedArchitectureError", `GGUF architecture ${arch} is not supported by the wgsl backend (supported: ${Object.keys(ARCHITECTURES).join(", ")})`, {
      architecture: String(arch),
      supported: Object.keys(ARCHITECTURES),
    });
  }
  for (const [name, t] of tensors) ggmlBlock(t.type, name);
  const basics = ggufBasics(meta);
  /** @param {string} k @param {number} [d] */
  const m = (k, d) => meta[`${arch}.${k}`] ?? d;
  const hidden = Number(m("embedding_length"));
  const heads = Number(m("attention.head_count"));
  const modelConfig = {
    hidden_size: hidden,
    intermediate_size: Number(m("feed_forward_length")),
    num_attention_heads: heads,
    num_key_value_heads: Number(m("attention.head_count_kv", heads)),
    head_dim: Number(m("rope.dimension_count", hidden / heads)),
    num_hidden_layers: Number(m("block_count")),
    vocab_size: basics.vocab_size,
    rms_norm_eps: Number(m("attention.layer_norm_rms_epsilon", 1e-5)),
    rope_theta: Number(m("rope.freq_base", 10000)),
    rope_interleaved: spec.ropeInterleaved,
    tie_word_embeddings: !tensors.has("output.weight"),
    context_window_size: basics.context_window_size,
    prefill_chunk_size: 128,
  };
  return { ...basics, model_config: modelConfig, tokenizer_files: ["tokenizer.json"] };
}

const MB = 1024 * 1024;

/** A record whose `model` names a .gguf file (rather than an MLC model directory). @param {{model: unknown}} record */
export const isGgufRecord = (record) => /\.gguf([?#].*)?$/i.test(String(record.model));

/**
 * Fetch a record whose `model` is a .gguf URL: one file, with progress, cached and
 * sha256-checked like a shard (pin: `sha256[<file name>]`), and parsed. Returns
 * {bytes, meta, tensors: Map(GGUF name -> {type, shape, bytes})}.
 * @param {ModelRecord} record @param {import("./loader.js").Progress} progress
 * @param {import("./loader.js").LoadOptions} [options]
 */
export async function fetchGguf(record, progress, options = {}) {
  const url = new URL(String(record.model), options.baseURL || (globalThis.location ? location.href : undefined));
  const name = decodeURIComponent(/** @type {string} */ (url.pathname.split("/").pop()));
  const ctx = {
    base: new URL(".", url).href,
    fetch: options.fetch || globalThis.fetch.bind(globalThis),
    store: openStore(record.cache || options.cache || "cache"),
  };
  const t0 = performance.now();
  /** @param {boolean} fromCache @param {number} got @param {number} total */
  const report = (fromCache, got, total) => {
    const secs = Math.round((performance.now() - t0) / 1000);
    const of = total ? ` ${Math.floor((got / total) * 100)}% completed,` : "";
    const text = fromCache
      ? `Loading model from cache[1/1]: ${Math.round(got / MB)}MB loaded.${of} ${secs} secs elapsed.`
      : `Fetching param cache[1/1]: ${Math.round(got / MB)}MB fetched.${of} ${secs} secs elapsed. It can take a while when we first visit this page to populate the cache. Later refreshes will become faster.`;
    const off = ctx.store.off ? ` Caching is off (${ctx.store.off}): the next visit downloads again.` : "";
    progress(total ? got / total : 0, text + off);
  };
  progress(0, "Start to fetch params");
  const pins = record.sha256 || {};
  const { bytes, fromCache } = await fetchFile(ctx, name, [pins[name]], (got, total) => report(false, got, total));
  report(fromCache, bytes.byteLength, bytes.byteLength);
  return { bytes, ...parseGguf(bytes) };
}

/**
 * A GGUF's tokenizer.json, built from its `tokenizer.ggml.*` metadata: {name, bytes}.
 * @param {GgufMeta} meta @returns {import("./loader.js").TokenizerFile}
 */
export const ggufTokenizerFile = (meta) => ({ name: "tokenizer.json", bytes: new TextEncoder().encode(tokenizerJsonFromGguf(meta)) });

/**
 * A GGUF record for our kernels: fetchGguf, then the wgsl config (refusing what they do not
 * run) and the tokenizer. Returns what loadArtifacts returns: {config, tensors, tokenizer}.
 * @param {ModelRecord} record @param {import("./loader.js").Progress} progress
 * @param {import("./loader.js").LoadOptions} [options]
 */
export async function loadGguf(record, progress, options = {}) {
  const gguf = await fetchGguf(record, progress, options);
  const config = ggufConfig(gguf);
  return { config, tensors: gguf.tensors, tokenizer: ggufTokenizerFile(gguf.meta), gguf: true, bytes: gguf.bytes };
}
