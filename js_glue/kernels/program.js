// What every model on the GPU shares: the buffers it owns (destroyed on unload), its compiled
// pipelines (by name, compiled with web-llm's progress texts) and a bind-group cache, so a
// forward pass can say `run(rec, "rmsnorm", [buffers], workgroups)` and nothing more.

export class Program {
  constructor(gpu) {
    this.gpu = gpu;
    this.owned = [];
    this.pipes = {};
    this.binds = new Map();
    this.bufIds = new WeakMap();
    this.nextBufId = 0;
  }

  /** A storage ("storage") or uniform ("uniform") buffer owned by this model. */
  own(kind, sizeOrData, label) {
    const b = this.gpu[kind](sizeOrData, label);
    this.owned.push(b);
    return b;
  }

  /** Destroy owned buffers (and forget bind groups that may reference them). */
  release(buffers) {
    this.owned = this.owned.filter((b) => !buffers.includes(b));
    for (const b of buffers) if (b) b.destroy();
    this.binds.clear();
  }

  /** Compile every WGSL source of `src` ({name: code}) concurrently, reporting each one. */
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

  #id(buf) {
    let id = this.bufIds.get(buf);
    if (id === undefined) this.bufIds.set(buf, (id = ++this.nextBufId));
    return id;
  }

  /** Record one dispatch of pipeline `name`; binding i is buffers[i]; bind groups are cached. */
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
