// A fake kernel backend (the layer below the engine) with the JS shim's ABI (docs/CONTRACTS.md).
// Evaluated inside Pyodide by tests/pyodide/test_jsbridge.py through pyodide.code.run_js; the
// expression's value is the shim. Every call settles on a later macrotask (like a GPU readback),
// counts itself, and records whether two calls on one handle were ever in flight together.
//
// Its "model": token ids are byte values; after token t the next token is NEXT(t), a letter.
(() => {
  const NEXT = (t) => 97 + ((t * 7 + 3) % 26);
  const tick = () => new Promise((resolve) => setTimeout(resolve, 0));
  const models = new Map();
  const counters = { calls: 0, maxInFlight: 0, progressCalls: 0 };
  let nextHandle = 1;

  async function step(handle, body) {
    const m = models.get(handle);
    if (!m) throw new Error(`unknown handle ${handle}`);
    counters.calls += 1;
    m.inFlight += 1;
    counters.maxInFlight = Math.max(counters.maxInFlight, m.inFlight);
    try {
      await tick();
      return body(m);
    } finally {
      m.inFlight -= 1;
    }
  }

  const sampleFrom = (m, params) => {
    if (!params || !Array.isArray(params.uniforms)) throw new Error("params must be plain data");
    m.last = NEXT(m.kv[m.kv.length - 1]);
    return params.logprobs ? { token: m.last, logprob: -0.25, top_logprobs: [[m.last, -0.25]] } : { token: m.last };
  };

  return {
    counters,
    async load(record, progress) {
      counters.calls += 1;
      await tick();
      progress(0.5, "Fetching param cache[1/2]: fake");
      await tick();
      progress(1.0, `Finish loading on WebGPU - fake ${record.model_id}`);
      counters.progressCalls += 2;
      const handle = nextHandle++;
      models.set(handle, { kv: [], last: null, inFlight: 0 });
      return { handle, config: { model_type: "llama", context_window_size: 4096, prefill_chunk_size: 8 } };
    },
    unload: (h) => step(h, () => models.delete(h)),
    tokenize: (h, text) => step(h, () => Int32Array.from(new TextEncoder().encode(text))),
    detokenize: (h, ids) => step(h, () => String.fromCharCode(...ids)),
    prefill: (h, ids) => step(h, (m) => { m.kv.push(...ids); }),
    decode: (h, t) => step(h, (m) => { m.kv.push(t); }),
    sample: (h, params) => step(h, (m) => sampleFrom(m, params)),
    decodeSteps: (h, n, params) =>
      step(h, (m) => Array.from({ length: n }, () => { m.kv.push(m.last); return sampleFrom(m, params); })),
    rewind: (h, length) => step(h, (m) => { m.kv.length = length; }),
    reset: (h) => step(h, (m) => { m.kv.length = 0; }),
    embed: (h, batch) => step(h, () => batch.map((ids) => [ids.length, ids.reduce((a, b) => a + b, 0)])),
    deviceInfo: async () => ({ vendor: "fake", architecture: "js", maxStorageBufferBindingSize: 1 << 20 }),
    stats: (h) => step(h, (m) => ({ kv_length: m.kv.length, calls: counters.calls })),
  };
})()
