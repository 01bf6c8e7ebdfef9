// One loaded MLC model library on a tvmjs Instance: the VM, its functions, the weights, the
// paged KV cache, and the kernel ABI's per-model calls in web-llm's call order. Every tvmjs
// object that outlives one call is detached from its scope and kept in `owned`; everything
// else is created inside a beginScope/endScope pair, so the scope frees it.

import { namedError } from "../errors.js";
import { penaltyPlan, sampleProcessed } from "../sampling.js";

/**
 * The part of tvmjs (npm @mlc-ai/web-runtime, its lib/runtime.d.ts) this backend calls, as every
 * shipped runtime (0.18, 0.24, 0.27) has it; a member only some runtimes have is optional. A
 * PackedFunc's arguments and result depend on the function (tvmjs types them `any` too).
 * @typedef {((...args: any[]) => any) & {dispose(): void}} PackedFunc
 * @typedef {{dispose(): void}} TvmObject
 * @typedef {{sync(): Promise<void>}} Device a DLDevice
 * @typedef {Float32Array | Float64Array | Int32Array | Int8Array | Uint8Array} HostArray
 * @typedef {{
 *   shape: number[],
 *   dtype: string,
 *   view(shape: number[]): Tensor,
 *   copyFrom(data: Tensor | HostArray): Tensor,
 *   toArray(): HostArray,
 *   dispose(): void,
 * }} Tensor
 * @typedef {{getFunction(name: string): PackedFunc, getInternalModule(): TvmObject, dispose(): void}} VirtualMachine
 * @typedef {(modelURL: string, records: unknown, device: Device, cache: import("./artifacts.js").ArtifactStore) => Promise<void>} CacheLoader
 * @typedef {{
 *   webgpu(): Device,
 *   cpu(): Device,
 *   beginScope(): void,
 *   endScope(): void,
 *   detachFromCurrentScope<T extends TvmObject>(obj: T): T,
 *   createVirtualMachine(dev: Device): VirtualMachine,
 *   getParamsFromCacheByName(names: string[]): TvmObject,
 *   getGlobalFunc(name: string): PackedFunc,
 *   makeShapeTuple(shape: number[]): TvmObject,
 *   empty(shape: number[], dtype: string, dev: Device): Tensor,
 *   scalar(value: number, dtype: string): unknown,
 *   asyncLoadWebGPUPipelines(mod: TvmObject): Promise<void>,
 *   initWebGPU(device: GPUDevice): void,
 *   registerInitProgressCallback(cb: (report: {progress: number, text: string}) => void): void,
 *   dispose(): void,
 *   tensorCacheClear?: () => void,
 *   ndarrayCacheClear?: () => void,
 *   fetchTensorCacheInternal?: CacheLoader,
 *   fetchNDArrayCacheInternal?: CacheLoader,
 *   fetchTensorCache?: (url: string, device: Device, options: {artifactCache: import("./artifacts.js").ArtifactStore}) => Promise<unknown>,
 *   cacheMetadata?: Record<string, unknown>,
 *   lib?: {webGPUContext?: {bufferTable?: unknown}},
 * }} Instance
 */

/**
 * mlc-chat-config.json with the record's overrides: JSON whose fields vary by model.
 * @typedef {Record<string, any>} ChatConfig
 */

const SEQ = 0; // the one sequence this backend keeps in the KV cache
const PAGE_SIZE = 16;
const KV_BUILTINS = {
  clear: "vm.builtin.kv_state_clear",
  addSequence: "vm.builtin.kv_state_add_sequence",
  beginForward: "vm.builtin.kv_state_begin_forward",
  endForward: "vm.builtin.kv_state_end_forward",
  popn: "vm.builtin.kv_state_popn",
};

export class MlcModel {
  // Read from the model's config and metadata by the constructor:
  /** @type {number} */
  ctx;
  /** @type {number} */
  sliding;
  /** @type {number} */
  chunk;
  /** @type {number} */
  maxBatch;
  // Bound by the constructor (#bind) and loadPipelines:
  /** @type {VirtualMachine} */
  vm;
  /** @type {{prefill_chunk_size: unknown, max_batch_size?: unknown, kv_state_kind?: string, params: {name: string}[]}} the library's _metadata */
  meta;
  /** @type {TvmObject} the weights */
  params;
  /** @type {boolean} the library has batch_prefill/batch_decode, not prefill/decode */
  batch;
  /** @type {TvmObject} the paged KV cache */
  kv;
  /** @type {Tensor} batch_prefill's logit position */
  logitPos;
  /** @type {boolean} see #probePenalty */
  penaltyInverted;

  /**
   * Build the VM and bind what the model needs. `tvm` has WebGPU initialised and the weights in
   * its tensor cache. `config` is mlc-chat-config.json with the record's overrides applied.
   * @param {Instance} tvm
   * @param {ChatConfig} config
   * @param {boolean} embedding an encoder (it only embeds)
   */
  constructor(tvm, config, embedding) {
    this.tvm = tvm;
    this.config = config;
    this.embedding = embedding;
    this.dev = tvm.webgpu();
    /** @type {TvmObject[]} what dispose() frees */
    this.owned = [];
    /** @type {Record<string, PackedFunc>} the VM's and the runtime's functions by role */
    this.f = {};
    /** @type {Tensor | null} the last forward's logits */
    this.logits = null;
    this.length = 0;
    this.stats = { prefill_tokens: 0, prefill_seconds: 0, decode_tokens: 0, decode_seconds: 0 };
    try {
      this.#scoped(() => this.#bind());
    } catch (e) {
      this.#release();
      throw e;
    }
  }

  /**
   * @template {TvmObject} T
   * @param {T} obj
   * @returns {T}
   */
  #own(obj) {
    this.owned.push(this.tvm.detachFromCurrentScope(obj));
    return obj;
  }

  /**
   * @template T
   * @param {() => T} fn
   * @returns {T}
   */
  #scoped(fn) {
    this.tvm.beginScope();
    try {
      return fn();
    } finally {
      this.tvm.endScope();
    }
  }

  /**
   * A VM function, or null when the library does not export it.
   * @overload
   * @param {string} name
   * @returns {PackedFunc}
   */
  /**
   * @overload
   * @param {string} name
   * @param {boolean} required
   * @returns {PackedFunc | null}
   */
  /**
   * @param {string} name
   * @param {boolean} [required]
   * @returns {PackedFunc | null}
   */
  #vmFunc(name, required = true) {
    /** @type {PackedFunc | null} */
    let fn = null;
    try {
      fn = this.vm.getFunction(name);
    } catch {
      fn = null;
    }
    if (!fn && required) throw namedError("ModelLoadError", `the model library has no function ${name}`, { function: name });
    return fn ? this.#own(fn) : null;
  }

  #bind() {
    const tvm = this.tvm;
    this.vm = this.#own(tvm.createVirtualMachine(this.dev));
    const raw = this.vm.getFunction("_metadata")();
    this.meta = JSON.parse(typeof raw === "string" ? raw : raw.toString());
    this.chunk = Number(this.meta.prefill_chunk_size);
    if (!(this.chunk > 0)) throw namedError("ModelLoadError", `prefill_chunk_size in _metadata is ${this.meta.prefill_chunk_size}`);
    this.ctx = Number(this.config.context_window_size ?? -1);
    this.sliding = Number(this.config.sliding_window_size ?? -1);
    if (this.embedding) {
      this.f.prefill = this.#vmFunc("prefill");
      this.maxBatch = Math.max(1, Number(this.meta.max_batch_size) || 1);
      this.params = this.#own(tvm.getParamsFromCacheByName(this.meta.params.map((p) => p.name)));
      return;
    }
    const kind = this.meta.kv_state_kind ?? "kv_cache";
    if (kind !== "kv_cache") throw namedError("ModelLoadError", `kv_state_kind ${kind} is not supported by the mlc backend`, { kv_state_kind: kind });
    this.#checkWindows();
    const single = this.#vmFunc("prefill", false);
    this.batch = !single;
    this.f.prefill = single || this.#vmFunc("batch_prefill");
    this.f.decode = this.#vmFunc(this.batch ? "batch_decode" : "decode");
    this.f.embed = this.#vmFunc("embed");
    this.f.applyBias = this.#vmFunc("apply_logit_bias_inplace");
    this.f.applyPenalty = this.#vmFunc("apply_penalty_inplace");
    const createKV = this.#vmFunc("create_tir_paged_kv_cache");
    this.params = this.#own(tvm.getParamsFromCacheByName(this.meta.params.map((p) => p.name)));
    for (const [key, name] of Object.entries(KV_BUILTINS)) this.f[key] = this.#own(tvm.getGlobalFunc(name));
    if (this.sliding > 0) {
      this.f.slidingWindow = this.#own(tvm.getGlobalFunc("vm.builtin.attention_kv_cache_enable_sliding_window_for_seq"));
    }
    const shape = (/** @type {number} */ v) => tvm.makeShapeTuple([v]);
    const maxTotal = this.sliding > 0 ? this.sliding : this.ctx;
    this.kv = this.#own(createKV(shape(1), shape(maxTotal), shape(this.chunk), shape(PAGE_SIZE), shape(this.sliding > 0 ? 1 : 0)));
    if (this.batch) this.logitPos = this.#own(tvm.empty([1], "int32", this.dev));
    this.#resetKV();
  }

  #checkWindows() {
    if (this.ctx > 0 && this.sliding > 0) {
      throw namedError("WindowSizeConfigurationError", `context_window_size ${this.ctx} and sliding_window_size ${this.sliding} are both set`);
    }
    if (!(this.ctx > 0) && !(this.sliding > 0)) {
      throw namedError("WindowSizeSpecificationError", "neither context_window_size nor sliding_window_size is positive");
    }
    if (this.sliding > 0 && !(Number(this.config.attention_sink_size) >= 0)) {
      throw namedError("AttentionSinkSizeError", "a sliding window needs attention_sink_size >= 0");
    }
  }

  /** Compile every WGSL pipeline ahead of the first call (reports "Loading GPU shader modules"). */
  async loadPipelines() {
    await this.tvm.asyncLoadWebGPUPipelines(this.vm.getInternalModule());
    if (!this.embedding) await this.#probePenalty();
  }

  /**
   * Some libraries (web-llm's v0_2_48) apply the repetition penalty in the opposite sense to
   * py_worker's rule (they multiply positive logits by it, divide negative ones). One call on
   * logits [1, -1] with penalty 2 tells: [0.5, -2] is our rule, [2, -0.5] the inverted one, which
   * `sample` then corrects by passing 1/penalty.
   */
  async #probePenalty() {
    const tvm = this.tvm;
    const vocab = Number(this.config.vocab_size);
    this.penaltyInverted = false;
    if (!(vocab >= 2)) return;
    const host = this.#scoped(() => {
      const init = new Float32Array(vocab);
      init[0] = 1;
      init[1] = -1;
      const logits = tvm.empty([1, vocab], "float32", this.dev).copyFrom(init);
      const up = (/** @type {Int32Array} */ arr, /** @type {string} */ dtype) => tvm.empty([arr.length], dtype, this.dev).copyFrom(arr);
      const penalties = tvm.empty([1, 3], "float32", this.dev).copyFrom(Float32Array.of(0, 0, 2));
      this.f.applyPenalty(logits, up(Int32Array.of(SEQ), "int32"), up(new Int32Array(2), "int32"), up(Int32Array.of(0, 1), "int32"), up(Int32Array.of(1, 1), "int32"), penalties);
      return tvm.detachFromCurrentScope(tvm.empty([1, vocab], "float32", tvm.cpu()).copyFrom(logits));
    });
    try {
      await this.dev.sync();
      const out = host.toArray();
      this.penaltyInverted = out[0] > 1.5 && out[1] > -0.75;
    } finally {
      host.dispose();
    }
  }

  #dropLogits() {
    this.logits?.dispose();
    this.logits = null;
  }

  #resetKV() {
    const tvm = this.tvm;
    this.f.clear(this.kv);
    this.f.addSequence(this.kv, tvm.scalar(SEQ, "int64"));
    if (this.f.slidingWindow) {
      this.f.slidingWindow(
        this.kv,
        tvm.scalar(SEQ, "int64"),
        tvm.scalar(this.sliding, "int32"),
        tvm.scalar(Number(this.config.attention_sink_size), "int32"),
      );
    }
    this.length = 0;
  }

  /**
   * embed → begin_forward → prefill/decode → end_forward for one chunk; keeps its logits.
   * @param {number[]} ids
   */
  #forward(ids) {
    const tvm = this.tvm;
    const n = ids.length;
    this.#scoped(() => {
      const input = tvm.empty([n], "int32", this.dev).copyFrom(Int32Array.from(ids));
      const emb = this.f.embed(input, this.params);
      const x = emb.view([1, n, emb.shape[emb.shape.length - 1]]);
      this.f.beginForward(this.kv, tvm.makeShapeTuple([SEQ]), tvm.makeShapeTuple([n]));
      let out;
      if (n === 1) {
        out = this.f.decode(x, this.kv, this.params);
      } else if (this.batch) {
        this.logitPos.copyFrom(Int32Array.of(n - 1));
        out = this.f.prefill(x, this.logitPos, this.kv, this.params);
      } else {
        out = this.f.prefill(x, this.kv, this.params);
      }
      this.f.endForward(this.kv);
      this.length += n;
      this.#dropLogits();
      this.logits = tvm.detachFromCurrentScope(out.get(0));
    });
  }

  /** @param {number} n tokens about to be added */
  #checkRoom(n) {
    if (this.sliding > 0 || this.length + n <= this.ctx) return;
    throw namedError("ContextWindowSizeExceededError", `${this.length} + ${n} tokens exceed the context window of ${this.ctx}`, {
      length: this.length,
      added: n,
      context_window_size: this.ctx,
    });
  }

  #decoderOnly() {
    if (this.embedding) throw namedError("IncorrectPipelineLoadedError", "this model is an encoder: it only embeds");
  }

  /** @param {number[]} ids */
  prefill(ids) {
    this.#decoderOnly();
    if (!ids.length) return;
    this.#checkRoom(ids.length);
    const t0 = performance.now();
    for (let i = 0; i < ids.length; i += this.chunk) this.#forward(ids.slice(i, i + this.chunk));
    this.stats.prefill_tokens += ids.length;
    this.stats.prefill_seconds += (performance.now() - t0) / 1000;
  }

  /** @param {number} token */
  decode(token) {
    this.#decoderOnly();
    this.#checkRoom(1);
    const t0 = performance.now();
    this.#forward([token]);
    this.stats.decode_tokens += 1;
    this.stats.decode_seconds += (performance.now() - t0) / 1000;
  }

  /** Steps 1-2 of the sampling rule on the GPU, then one read-back and steps 3-5 in JS. */
  /**
   * @param {any} params
   * @param {number} uniform
   * @param {import("../grammar.js").Constraint | null} [grammar] masks the step; advanced by the pick
   */
  async sample(params, uniform, grammar = null) {
    this.#decoderOnly();
    if (!this.logits) throw namedError("PyWorkerError", "sample needs logits: prefill or decode first");
    const tvm = this.tvm;
    const plan = penaltyPlan(params);
    const vocab = this.logits.shape[this.logits.shape.length - 1];
    const host = this.#scoped(() => {
      let logits = /** @type {Tensor} */ (this.logits).view([1, vocab]);
      if (plan.bias || plan.repetition || plan.penalty) {
        // A copy, so sampling the same logits twice never applies a penalty twice.
        logits = tvm.empty([1, vocab], "float32", this.dev).copyFrom(logits);
        const up = (/** @type {Int32Array | Float32Array} */ arr, /** @type {string} */ dtype) => tvm.empty([arr.length], dtype, this.dev).copyFrom(arr);
        const rows = (/** @type {number} */ k) => up(new Int32Array(k), "int32");
        if (plan.bias) this.f.applyBias(logits, rows(plan.bias.ids.length), up(plan.bias.ids, "int32"), up(plan.bias.values, "float32"));
        if (plan.repetition) {
          const r = plan.repetition;
          const penalty = this.penaltyInverted ? 1 / r.penalty : r.penalty; // see #probePenalty
          const penalties = tvm.empty([1, 3], "float32", this.dev).copyFrom(Float32Array.of(0, 0, penalty));
          this.f.applyPenalty(logits, up(Int32Array.of(SEQ), "int32"), rows(r.ids.length), up(r.ids, "int32"), up(r.counts, "int32"), penalties);
        }
        if (plan.penalty) this.f.applyBias(logits, rows(plan.penalty.ids.length), up(plan.penalty.ids, "int32"), up(plan.penalty.values, "float32"));
      }
      return tvm.detachFromCurrentScope(tvm.empty([1, vocab], "float32", tvm.cpu()).copyFrom(logits));
    });
    try {
      await this.dev.sync();
      const logits = /** @type {Float32Array} */ (host.toArray()); // a float32 tensor
      const out = sampleProcessed(logits, params, uniform, grammar ? await grammar.mask() : null);
      out.ended = grammar ? grammar.accept(out.token) : false;
      return out;
    } finally {
      host.dispose();
    }
  }

  /** Test hook (mirrors the wgsl shim's `logits`): the current logits, read back unchanged. */
  async readLogits() {
    this.#decoderOnly();
    if (!this.logits) throw namedError("PyWorkerError", "no logits: prefill or decode first");
    const tvm = this.tvm;
    const vocab = this.logits.shape[this.logits.shape.length - 1];
    const host = this.#scoped(() => tvm.detachFromCurrentScope(tvm.empty([1, vocab], "float32", tvm.cpu()).copyFrom(/** @type {Tensor} */ (this.logits).view([1, vocab]))));
    try {
      await this.dev.sync();
      return host.toArray();
    } finally {
      host.dispose();
    }
  }

  /**
   * Drop the last `length - keep` tokens from the KV cache (kv_state_popn).
   * @param {number} keep
   */
  rewind(keep) {
    this.#decoderOnly();
    if (keep < 0 || keep > this.length) {
      throw namedError("InvalidRequestFieldError", `cannot rewind a KV cache of ${this.length} tokens to ${keep}`);
    }
    if (keep === this.length) return;
    this.#scoped(() => this.f.popn(this.kv, this.tvm.scalar(SEQ, "int64"), this.tvm.scalar(this.length - keep, "int32")));
    this.length = keep;
    this.#dropLogits();
  }

  /** Clear the KV cache (an encoder keeps no state: nothing to clear). */
  reset() {
    if (this.embedding) return;
    this.#scoped(() => this.#resetKV());
    this.#dropLogits();
  }

  /**
   * `[CLS] ids [SEP]` when the config names both ids, as the wgsl BERT path and the reference
   * encoder do (tokenizers here encode without special tokens); ids that already start with
   * [CLS] and end with [SEP] are kept as they are. Without those ids, the ids unchanged.
   * @param {number[]} ids
   * @returns {number[]}
   */
  #withSpecials(ids) {
    const cls = this.config.cls_token_id;
    const sep = this.config.sep_token_id;
    if (cls == null || sep == null) return ids;
    const body = ids.length >= 2 && ids[0] === cls && ids[ids.length - 1] === sep ? ids.slice(1, -1) : ids;
    return [Number(cls), ...body, Number(sep)];
  }

  /**
   * Encoder models: `prefill(ids, mask, params)` per batch, then pooling + L2 norm in JS.
   * @param {number[][]} batch
   * @returns {Promise<number[][]>}
   */
  async embed(batch) {
    if (!this.embedding) {
      throw namedError("EmbeddingUnsupportedModelError", "this model is a decoder; embeddings need an encoder model");
    }
    const tvm = this.tvm;
    /** @type {number[][]} */
    const out = [];
    for (let b = 0; b < batch.length; b += this.maxBatch) {
      const rows = batch.slice(b, b + this.maxBatch).map((r) => this.#withSpecials(r));
      const len = Math.max(...rows.map((r) => r.length));
      if (len > this.ctx) {
        throw namedError("EmbeddingExceedContextWindowSizeError", `an input has ${len} tokens, the context window is ${this.ctx}`, {
          input_tokens: len,
          context_window_size: this.ctx,
        });
      }
      const ids = new Int32Array(rows.length * len);
      const mask = new Int32Array(rows.length * len);
      rows.forEach((r, i) => {
        ids.set(r, i * len);
        mask.fill(1, i * len, i * len + r.length);
      });
      const host = this.#scoped(() => {
        const on = (/** @type {Int32Array} */ arr) => tvm.empty([arr.length], "int32", this.dev).copyFrom(arr).view([rows.length, len]);
        const hidden = this.f.prefill(on(ids), on(mask), this.params);
        return tvm.detachFromCurrentScope(tvm.empty(hidden.shape, hidden.dtype, tvm.cpu()).copyFrom(hidden));
      });
      try {
        await this.dev.sync();
        const data = host.toArray();
        const width = host.shape[2];
        rows.forEach((r, i) => out.push(pool(data, (i * len) * width, r.length, width, this.config.pooling)));
      } finally {
        host.dispose();
      }
    }
    return out;
  }

  #release() {
    this.#dropLogits();
    for (const obj of this.owned.reverse()) obj.dispose();
    this.owned = [];
  }

  /**
   * Free every tvmjs object this model holds, the weights in tvmjs's tensor cache and the VM's
   * memory pool, then the instance (and with it the device). Returns what tvmjs's WebGPU context
   * still held just before the instance went ({buffers, bytes}; zero when nothing leaked), or
   * null where it cannot tell. After a device loss tvmjs has disposed the instance itself;
   * freeing into it would fault.
   */
  dispose(instanceGone = false) {
    let left = null;
    if (!instanceGone) {
      const tvm = this.tvm;
      try {
        this.#release();
        /** @type {() => void} */ (tvm.tensorCacheClear || tvm.ndarrayCacheClear).call(tvm); // 0.24 renamed ndarray → tensor
        this.#scoped(() => tvm.getGlobalFunc("vm.builtin.memory_manager.clear")());
        left = liveAllocations(tvm);
      } finally {
        tvm.dispose(); // frees whatever is left, the device too
      }
    }
    this.owned = [];
    this.logits = null;
    return left;
  }
}

/**
 * The GPU buffers tvmjs's WebGPU context holds (its buffer table: one entry per live device
 * allocation) and their bytes; null where this tvmjs keeps no such table.
 * @param {Instance} tvm
 * @returns {{buffers: number, bytes: number} | null}
 */
function liveAllocations(tvm) {
  const ctx = tvm.lib && tvm.lib.webGPUContext;
  if (!ctx || !Array.isArray(ctx.bufferTable)) return null;
  const live = ctx.bufferTable.filter((b) => b !== undefined);
  return { buffers: live.length, bytes: live.reduce((n, b) => n + b.size, 0) };
}

/**
 * Mean over the `n` real rows (or the first row when pooling is "cls"), L2-normalised.
 * @param {HostArray} data
 * @param {number} offset
 * @param {number} n
 * @param {number} width
 * @param {unknown} pooling the config's pooling ("cls", else mean)
 * @returns {number[]}
 */
function pool(data, offset, n, width, pooling) {
  const v = new Float64Array(width);
  const rows = pooling === "cls" ? 1 : n;
  for (let t = 0; t < rows; t++) for (let j = 0; j < width; j++) v[j] += data[offset + t * width + j];
  let norm = 0;
  for (let j = 0; j < width; j++) norm += (v[j] / rows) ** 2;
  norm = Math.sqrt(norm) || 1;
  return Array.from(v, (x) => x / rows / norm);
}
