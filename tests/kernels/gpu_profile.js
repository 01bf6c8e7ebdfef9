// GPU time per dispatch, from timestamp queries, for the Deno runner's `profileGpu` scenarios.
// Each dispatch the kernels record gets a compute pass of its own whose begin and end are
// timestamped (WebGPU timestamps only mark passes), so the profile also shows the gaps
// between passes. Dispatches are named by their pipeline's name in the model's Program, else
// by the code that recorded them (function and line of the first frame outside gpu.js), and
// by their grid. One pass per dispatch adds a little to each gap: read the gaps as an upper
// bound.
import { Recorder } from "../../js_glue/kernels/gpu.js";
import { Program } from "../../js_glue/kernels/program.js";

const QUERIES = 4096; // WebGPU's largest query set

/** The caller of Recorder.dispatch outside gpu.js and this file, as "function file:line". */
function site() {
  const frames = (new Error().stack || "").split("\n").slice(1);
  const f = frames.find((l) => !/gpu(_profile)?\.js:/.test(l)) || "";
  const m = /at (?:async )?(\S+) \(.*\/([^/]+\.js):(\d+):\d+\)/.exec(f) || /at .*\/([^/]+\.js):(\d+)/.exec(f);
  return m ? (m.length === 4 ? `${m[1]} ${m[2]}:${m[3]}` : `${m[1]}:${m[2]}`) : "?";
}

/**
 * Install the timestamps; returns an async function giving the totals since its last call:
 * {kernels: {name: {n, ms}}, gapMs, passes, untimed}.
 */
export function profileGpu() {
  const wantDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = function (desc = {}) {
    const has = this.features.has("timestamp-query");
    const requiredFeatures = [...(desc.requiredFeatures || []), ...(has ? ["timestamp-query"] : [])];
    return wantDevice.call(this, { ...desc, requiredFeatures });
  };
  const empty = () => ({ kernels: {}, gapMs: 0, passes: 0, untimed: 0 });
  let totals = empty();
  let running = null; // the pipeline name of the Program.run in progress
  const run = Program.prototype.run;
  Program.prototype.run = function (rec, name, ...rest) {
    running = name;
    try {
      return run.call(this, rec, name, ...rest);
    } finally {
      running = null;
    }
  };
  const pending = [];
  Recorder.prototype.dispatch = function (pipeline, bindGroup, x, y = 1, z = 1) {
    const device = this.device;
    if (!device.features.has("timestamp-query")) throw new Error("profileGpu: the adapter has no timestamp-query");
    if (this.pass) this.pass.end();
    this.timed ??= { set: device.createQuerySet({ type: "timestamp", count: QUERIES }), names: [] };
    const t = this.timed;
    const i = t.names.length;
    const timestampWrites = 2 * i + 2 <= QUERIES ? { querySet: t.set, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } : undefined;
    if (timestampWrites) t.names.push(`${running ?? site()} [${x},${y},${z}]`);
    else totals.untimed++;
    const pass = this.encoder.beginComputePass(timestampWrites ? { timestampWrites } : {});
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(x, y, z);
    pass.end();
    this.pass = null;
    this.dispatches++;
  };
  const submit = Recorder.prototype.submit;
  Recorder.prototype.submit = function () {
    const t = this.timed;
    this.timed = null;
    if (!t || !t.names.length) return submit.call(this);
    const bytes = t.names.length * 16;
    const resolved = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    const staging = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.encoder.resolveQuerySet(t.set, 0, 2 * t.names.length, resolved, 0);
    this.encoder.copyBufferToBuffer(resolved, 0, staging, 0, bytes);
    submit.call(this); // before the map: a buffer pending a map cannot be used by a submit
    pending.push(
      staging.mapAsync(GPUMapMode.READ).then(() => {
        const ts = new BigInt64Array(staging.getMappedRange().slice(0));
        staging.unmap();
        staging.destroy();
        resolved.destroy();
        t.set.destroy();
        t.names.forEach((name, j) => {
          const k = (totals.kernels[name] ??= { n: 0, ms: 0 });
          k.n++;
          k.ms += Number(ts[2 * j + 1] - ts[2 * j]) / 1e6;
          if (j > 0) totals.gapMs += Number(ts[2 * j] - ts[2 * j - 1]) / 1e6;
        });
        totals.passes += t.names.length;
      }),
    );
  };
  return async () => {
    await Promise.all(pending.splice(0));
    const out = totals;
    totals = empty();
    return out;
  };
}
