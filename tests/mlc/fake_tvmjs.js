// A recording stand-in for tvmjs (npm @mlc-ai/web-runtime) plus one MLC model library, for the
// contract tests of js_glue/kernels/mlc.js only. Method names and parameter names mirror the
// installed package's .d.ts (dts.test.js checks that). It behaves like the real runtime where the
// backend depends on it: objects that return from calls must be created inside a scope and are
// freed by endScope unless detached; a CPU tensor read before `sync()` throws; freeing an object
// after its Instance was disposed throws. The "model" is a KV cache of token ids whose logits are
// a fixed pseudo-random function of the ids in the cache, so sequences can be checked.

const WASM_MAGIC = [0x00, 0x61, 0x73, 0x6d];

/** Deterministic logits for the ids in the cache (so rewinding and replaying can be compared). */
export function fakeLogits(ids, vocab) {
  let h = 2166136261;
  for (const t of ids) h = Math.imul(h ^ (t + 1), 16777619) >>> 0;
  const out = new Float32Array(vocab);
  for (let i = 0; i < vocab; i++) {
    h = Math.imul(h ^ (i + 0x9e37), 2246822519) >>> 0;
    out[i] = ((h % 20000) / 20000 - 0.5) * 8;
  }
  return out;
}

export class Scalar {
  constructor(value, dtype) {
    this.value = value;
    this.dtype = dtype;
  }
}

/**
 * options: {metadata, vocab, hidden, functions: VM function names, features, adapterInfo,
 * instantiateError}. Returns {tvmjs, log, live, lose(info), state}.
 */
export function makeFakeTvmjs(options = {}) {
  const vocab = options.vocab ?? 40;
  const hidden = options.hidden ?? 8;
  const functions = new Set(
    options.functions ?? [
      "_metadata", "embed", "prefill", "decode", "create_tir_paged_kv_cache", "softmax_with_temperature",
      "argsort_probs", "sample_with_top_p", "apply_penalty_inplace", "apply_logit_bias_inplace", "apply_bitmask_inplace",
    ],
  );
  const log = [];
  const live = new Set();
  const state = { instances: [], devices: [] };
  const rec = (entry) => log.push(entry);
  const desc = (x) => {
    if (x instanceof Tensor) return `${x.dtype}[${x.shape.join(",")}]`;
    if (x instanceof ShapeTuple) return `(${x.values.join(",")})`;
    if (x instanceof Scalar) return `${x.value}:${x.dtype}`;
    if (x instanceof KVCache) return "kv";
    if (x instanceof TVMObject) return x.kind;
    return JSON.stringify(x);
  };

  class TVMObject {
    constructor(inst, kind) {
      this.inst = inst;
      this.kind = kind;
      this.disposed = false;
      inst.ctx.attachToCurrentScope(this);
      live.add(this);
    }
    dispose() {
      if (this.disposed) return;
      if (this.inst.disposed) throw new Error(`${this.kind} disposed after its Instance`);
      this.disposed = true;
      live.delete(this);
    }
    check() {
      if (this.disposed) throw new Error(`${this.kind} used after dispose`);
      if (this.inst.disposed) throw new Error(`${this.kind} used after its Instance was disposed`);
    }
  }

  class ShapeTuple extends TVMObject {
    constructor(inst, values) {
      super(inst, "ShapeTuple");
      this.values = values;
    }
  }

  class Tensor extends TVMObject {
    constructor(inst, shape, dtype, device, data) {
      super(inst, "Tensor");
      this.shape = shape;
      this.ndim = shape.length;
      this.dtype = dtype;
      this.device = device;
      this.isView = false;
      const n = shape.reduce((a, b) => a * b, 1);
      this.data = data ?? (dtype === "float32" ? new Float32Array(n) : new Int32Array(n));
      this.unsynced = false;
    }
    view(shape, dtype) {
      this.check();
      const n = shape.reduce((a, b) => a * b, 1);
      if (n !== this.data.length) throw new Error(`view of ${this.data.length} elements as [${shape}]`);
      const v = new Tensor(this.inst, shape, dtype ?? this.dtype, this.device, this.data);
      v.isView = true;
      return v;
    }
    copyFrom(data) {
      this.check();
      const src = data instanceof Tensor ? data.data : data;
      if (src.length !== this.data.length) throw new Error(`copyFrom ${src.length} elements into ${this.data.length}`);
      this.data.set(src);
      if (data instanceof Tensor && data.device.deviceType === 15 && this.device.deviceType === 1) {
        this.unsynced = true;
        this.inst.pendingReads.add(this);
      }
      return this;
    }
    toArray() {
      this.check();
      if (this.device.deviceType !== 1) throw new Error("toArray of a GPU tensor");
      if (this.unsynced) throw new Error("toArray before the device sync that completes the copy");
      return this.data.slice();
    }
  }

  class TVMArray extends TVMObject {
    constructor(inst, items) {
      super(inst, "TVMArray");
      this.items = items;
    }
    size() {
      return this.items.length;
    }
    get(index) {
      this.check();
      const item = this.items[index];
      this.inst.ctx.attachToCurrentScope(item);
      return item;
    }
  }

  class KVCache extends TVMObject {
    constructor(inst) {
      super(inst, "KVCache");
      this.seqs = new Map();
      this.forward = null;
    }
  }

  class DLDevice {
    constructor(inst, deviceType, deviceId) {
      this.inst = inst;
      this.deviceType = deviceType;
      this.deviceId = deviceId;
    }
    async sync() {
      rec(`sync(${this.deviceType === 15 ? "webgpu" : "cpu"})`);
      for (const t of this.inst.pendingReads) t.unsynced = false;
      this.inst.pendingReads.clear();
    }
  }

  /** A PackedFunc: a callable TVMObject; `impl` gets the arguments, `name` goes in the log. */
  function packed(inst, name, impl) {
    const obj = new TVMObject(inst, `PackedFunc ${name}`);
    const fn = (...args) => {
      obj.check();
      for (const a of args) if (a instanceof TVMObject) a.check();
      rec(`${name}(${args.map(desc).join(", ")})`);
      return impl(...args);
    };
    fn.dispose = () => obj.dispose();
    fn._tvmPackedCell = obj;
    return fn;
  }

  class VirtualMachine {
    constructor(mod, device) {
      this.mod = mod;
      this.device = device;
    }
    dispose() {
      this.mod.dispose();
    }
    getFunction(name) {
      this.mod.check();
      rec(`vm.getFunction(${name})`);
      if (!functions.has(name)) throw new Error(`Cannot find function ${name}`);
      return packed(this.mod.inst, `vm.${name}`, vmImpl(this.mod.inst, name));
    }
    getInternalModule() {
      return this.mod;
    }
  }

  function forward(inst, emb, kv) {
    const f = kv.forward;
    if (!f) throw new Error("prefill/decode outside begin_forward/end_forward");
    const ids = kv.seqs.get(f.seq);
    ids.push(...emb.ids);
    if (emb.ids.length !== f.len) throw new Error(`forward of ${emb.ids.length} tokens, begin_forward said ${f.len}`);
    const logits = new Tensor(inst, [1, 1, vocab], "float32", inst.webgpu(), fakeLogits(ids, vocab));
    inst.ctx.detachFromCurrentScope(logits);
    return new TVMArray(inst, [logits]);
  }

  function vmImpl(inst, name) {
    const f32 = Math.fround;
    switch (name) {
      case "_metadata":
        return () => JSON.stringify(options.metadata);
      case "embed":
        return (input) => {
          const t = new Tensor(inst, [input.shape[0], hidden], "float32", inst.webgpu());
          t.ids = Array.from(input.data);
          return t;
        };
      case "prefill":
        if (options.embedding) {
          // An encoder: hidden[b, l, j] = (id + 1) * (j + 1), zero where the mask is 0.
          return (ids, mask) => {
            const [batch, len] = ids.shape;
            const out = new Tensor(inst, [batch, len, hidden], "float32", inst.webgpu());
            for (let i = 0; i < batch * len; i++) {
              for (let j = 0; j < hidden; j++) out.data[i * hidden + j] = mask.data[i] ? (ids.data[i] + 1) * (j + 1) : 0;
            }
            return out;
          };
        }
      // falls through
      case "decode":
        return (emb, kv) => forward(inst, { ids: inst.viewIds(emb) }, kv);
      case "batch_prefill":
        return (emb, logitPos, kv) => forward(inst, { ids: inst.viewIds(emb) }, kv);
      case "batch_decode":
        return (emb, kv) => forward(inst, { ids: inst.viewIds(emb) }, kv);
      case "create_tir_paged_kv_cache":
        return () => new KVCache(inst);
      case "apply_logit_bias_inplace":
        return (logits, pos2seq, ids, bias) => {
          for (let i = 0; i < ids.data.length; i++) logits.data[ids.data[i]] = f32(logits.data[ids.data[i]] + bias.data[i]);
        };
      case "apply_penalty_inplace":
        // MLC's kernel: subtract presence + count * frequency, then scale by repetition.
        return (logits, seqIds, pos2seq, ids, cnt, penalties) => {
          const [pres, freq, rep] = penalties.data;
          for (let i = 0; i < ids.data.length; i++) {
            const t = ids.data[i];
            const v = f32(logits.data[t] - f32(pres + f32(cnt.data[i] * freq)));
            logits.data[t] = v < 0 ? f32(v * rep) : f32(v / rep);
          }
        };
      default:
        return () => {
          throw new Error(`the fake does not implement ${name}`);
        };
    }
  }

  class Instance {
    constructor() {
      this.disposed = false;
      this.scopes = [];
      this.cache = new Map();
      this.callbacks = [];
      this.pendingReads = new Set();
      this.gpuDevice = null;
      const inst = this;
      this.ctx = {
        attachToCurrentScope(obj) {
          if (!inst.scopes.length) throw new Error("Must call beginScope to use functions that returns TVM objects");
          inst.scopes[inst.scopes.length - 1].push(obj);
          return obj;
        },
        detachFromCurrentScope(obj) {
          const scope = inst.scopes[inst.scopes.length - 1];
          const i = scope ? scope.indexOf(obj._tvmPackedCell ?? obj) : -1;
          if (i < 0) throw new Error("detach of an object that is not in the current scope");
          scope.splice(i, 1);
          return obj;
        },
      };
    }
    /** The token ids behind an embedding tensor or a view of it. */
    viewIds(emb) {
      const ids = emb.ids ?? emb.source?.ids;
      if (!ids) throw new Error("prefill/decode input is not an embed output");
      return ids;
    }
    dispose() {
      rec("Instance.dispose()");
      this.disposed = true;
      this.gpuDevice?.destroy();
    }
    beginScope() {
      this.scopes.push([]);
    }
    endScope() {
      const scope = this.scopes.pop();
      if (!scope) throw new Error("endScope without beginScope");
      for (const obj of scope.reverse()) obj.dispose();
    }
    attachToCurrentScope(obj) {
      return this.ctx.attachToCurrentScope(obj._tvmPackedCell ?? obj) && obj;
    }
    detachFromCurrentScope(obj) {
      this.ctx.detachFromCurrentScope(obj);
      return obj;
    }
    registerInitProgressCallback(cb) {
      rec("registerInitProgressCallback()");
      this.callbacks.push(cb);
    }
    #report(progress, text) {
      for (const cb of this.callbacks) cb({ progress, timeElapsed: 0, text });
    }
    initWebGPU(device) {
      rec("initWebGPU()");
      this.gpuDevice = device;
      device.lost.then(() => {
        if (!this.disposed) this.dispose();
      });
    }
    webgpu(deviceId = 0) {
      return new DLDevice(this, 15, deviceId);
    }
    cpu(deviceId = 0) {
      return new DLDevice(this, 1, deviceId);
    }
    scalar(value, dtype) {
      return new Scalar(value, dtype);
    }
    empty(shape, dtype, dev) {
      return new Tensor(this, typeof shape === "number" ? [shape] : shape, dtype, dev);
    }
    makeShapeTuple(shape) {
      return new ShapeTuple(this, shape);
    }
    async fetchTensorCache(tensorCacheUrl, device, options) {
      rec(`fetchTensorCache(${tensorCacheUrl})`);
      const cache = options.artifactCache;
      const index = await cache.fetchWithCache(new URL("tensor-cache.json", tensorCacheUrl).href, "json");
      const urls = index.records.map((s) => new URL(s.dataPath, tensorCacheUrl).href);
      this.#report(0, "Start to fetch params");
      if (!(await cache.hasAllKeys(urls))) {
        for (let i = 0; i < urls.length; i++) {
          await cache.addToCache(urls[i], "arraybuffer");
          this.#report((i + 1) / urls.length, `Fetching param cache[${i + 1}/${urls.length}]: fake`);
        }
      }
      for (let i = 0; i < urls.length; i++) {
        const buf = await cache.fetchWithCache(urls[i], "arraybuffer");
        const shard = index.records[i];
        if (buf.byteLength !== shard.nbytes) throw new Error(`shard ${shard.dataPath} has ${buf.byteLength} bytes`);
        for (const r of shard.records) this.cache.set(r.name, r);
        this.#report((i + 1) / urls.length, `Loading model from cache[${i + 1}/${urls.length}]: fake`);
      }
    }
    tensorCacheClear() {
      rec("tensorCacheClear()");
      this.cache.clear();
    }
    createVirtualMachine(dev) {
      rec("createVirtualMachine()");
      const mod = this.ctx.detachFromCurrentScope(new TVMObject(this, "Module"));
      return this.ctx.attachToCurrentScope(new VirtualMachine(mod, dev));
    }
    getParamsFromCacheByName(paramNames) {
      rec(`getParamsFromCacheByName(${paramNames.length})`);
      for (const n of paramNames) if (!this.cache.has(n)) throw new Error(`param ${n} is not in the tensor cache`);
      return new TVMObject(this, "Params");
    }
    getGlobalFunc(name) {
      rec(`getGlobalFunc(${name})`);
      const kv = (impl) => packed(this, name, impl);
      switch (name) {
        case "vm.builtin.kv_state_clear":
          return kv((c) => c.seqs.clear());
        case "vm.builtin.kv_state_add_sequence":
          return kv((c, seq) => c.seqs.set(seq.value, []));
        case "vm.builtin.kv_state_begin_forward":
          return kv((c, seqs, lens) => {
            if (c.forward) throw new Error("begin_forward twice");
            c.forward = { seq: seqs.values[0], len: lens.values[0] };
          });
        case "vm.builtin.kv_state_end_forward":
          return kv((c) => {
            if (!c.forward) throw new Error("end_forward without begin_forward");
            c.forward = null;
          });
        case "vm.builtin.kv_state_popn":
          return kv((c, seq, n) => c.seqs.get(seq.value).splice(-n.value, n.value));
        case "vm.builtin.attention_kv_cache_enable_sliding_window_for_seq":
          return kv(() => {});
        case "vm.builtin.memory_manager.clear":
          return kv(() => {});
        default:
          throw new Error(`Cannot find global function ${name}`);
      }
    }
    async asyncLoadWebGPUPipelines(mod) {
      rec("asyncLoadWebGPUPipelines()");
      mod.check();
      this.#report(1, "Loading GPU shader modules[1/1]: 100% completed, 0 secs elapsed.");
    }
  }

  // A view keeps a link to the tensor it views, so the model can follow embed → view → prefill.
  const viewOf = Tensor.prototype.view;
  Tensor.prototype.view = function view(shape, dtype) {
    const v = viewOf.call(this, shape, dtype);
    v.source = this.source ?? this;
    return v;
  };

  const tvmjs = {
    Scalar,
    async instantiate(bufferSource, importObject = {}, logger = console.log) {
      rec("instantiate()");
      const head = Array.from(new Uint8Array(bufferSource, 0, 4));
      if (head.join() !== WASM_MAGIC.join()) throw new Error("not a wasm module");
      if (options.instantiateError) throw new WebAssembly.LinkError(options.instantiateError);
      const inst = new Instance();
      state.instances.push(inst);
      return inst;
    },
    createPolyfillWASI() {
      return { imports: {}, start() {} };
    },
    async detectGPUDevice(powerPreference = "high-performance") {
      rec(`detectGPUDevice(${powerPreference})`);
      if (options.noGPU) return undefined;
      let lose;
      const device = {
        features: new Set(options.features ?? ["subgroups"]),
        limits: { maxStorageBufferBindingSize: 1 << 30 },
        lost: new Promise((resolve) => {
          lose = resolve;
        }),
        destroyed: false,
        destroy() {
          rec("device.destroy()");
          this.destroyed = true;
          lose({ reason: "destroyed", message: "" });
        },
      };
      device.lose = (info) => lose(info);
      state.devices.push(device);
      const adapterInfo = options.adapterInfo ?? { vendor: "fake", architecture: "test", description: "Fake GPU" };
      return { adapter: {}, adapterInfo, device };
    },
  };
  return { tvmjs, log, live, state };
}
