// What every model on the GPU shares: the buffers it owns (destroyed on unload), its compiled
// pipelines (by name, compiled with web-llm's progress texts) and a bind-group cache, so a
// forward pass can say `run(rec, "rmsnorm", [buffers], workgroups)` and nothing more.

/** @typedef {import("./gpu.js").Gpu} Gpu */
/** @typedef {import("./gpu.js").Recorder} Recorder */

export class Program {
  /** @param {Gpu} gpu */
  constructor(gpu) {
    this.gpu = gpu;
    /** @type {GPUBuffer[]} */
    this.owned = [];
    /** @type {Record<string, GPUComputePipeline>} */
    this.pipes = {};
    /** @type {Map<string, GPUBindGroup>} */
    this.binds = new Map();
    /** @type {WeakMap<GPUBuffer, number>} */
    this.bufIds = new WeakMap();
    this.nextBufId = 0;
  }

  /**
   * A storage ("storage") or uniform ("uniform") buffer owned by this model.
   * @param {"storage" | "uniform"} kind
   * @param {number | ArrayBufferView} sizeOrData bytes, or the data to fill it with
   * @param {string} label
   */
  own(kind, sizeOrData, label) {
    const b = this.gpu[kind](sizeOrData, label);
    this.owned.push(b);
    return b;
  }

  /**
   * Destroy owned buffers (and forget bind groups that may reference them).
   * @param {(GPUBuffer | undefined)[]} buffers undefined: one not made yet
   */
  release(buffers) {
    this.owned = this.owned.filter((b) => !buffers.includes(b));
    for (const b of buffers) if (b) b.destroy();
    this.binds.clear();
  }

  /**
   * Compile every WGSL source of `src` ({name: code}) concurrently, reporting each one.
   * @param {Record<string, string>} src
   * @param {(fraction: number, text: string) => void} progress
   */
  async compile(src, progress) {
    const names = Object.keys(src);
    let done = 0;
    const t0 = performance.now();
    await Promise.all(
      names.map(async (name) => {
        this.pipes[name] = await this.gpu.pipeline(src[name]);
        done++;
        const secs = ((performance.now() - t0) / 1000).toFixed(0);
        progress(done / names.length, `Loading GPU shader modules[${done}/${names.length}]: ${secs} secs elapsed.`);
      }),
    );
  }

  /** @param {GPUBuffer} buf */
  #id(buf) {
    let id = this.bufIds.get(buf);
    if (id === undefined) this.bufIds.set(buf, (id = ++this.nextBufId));
    return id;
  }

  /**
   * Record one dispatch of pipeline `name`; binding i is buffers[i]; bind groups are cached.
   * @param {Recorder} rec
   * @param {string} name
   * @param {GPUBuffer[]} buffers
   * @param {number} x workgroups along x
   * @param {number} [y] workgroups along y
   */
  run(rec, name, buffers, x, y = 1) {
    const pipe = this.pipes[name];
    const key = name + buffers.map((b) => this.#id(b)).join(",");
    let bg = this.binds.get(key);
    if (!bg) this.binds.set(key, (bg = this.gpu.bind(pipe, buffers)));
    rec.dispatch(pipe, bg, x, y);
  }

  destroy() {
    for (const b of this.owned) b.destroy();
    this.owned = [];
    this.binds.clear();
  }
}
