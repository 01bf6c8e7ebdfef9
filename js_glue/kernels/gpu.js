// The WebGPU device, buffers, a pipeline cache and a command recorder.
// Everything above this file speaks in "dispatch this WGSL over that grid"; nothing above it
// touches adapters, usages or staging buffers.

import { namedError } from "./errors.js";

const STORAGE = 0x80 | 0x8 | 0x4; // STORAGE | COPY_DST | COPY_SRC
const UNIFORM = 0x40 | 0x8; // UNIFORM | COPY_DST
const MAP_READ = 0x1 | 0x8; // MAP_READ | COPY_DST

/** One device shared by every model a shim loads. */
export class Gpu {
  /** @param {GPUAdapter} adapter @param {GPUDevice} device @param {string} info its name, for progress texts */
  constructor(adapter, device, info) {
    this.adapter = adapter;
    this.device = device;
    this.info = info;
    this.hasF16 = device.features.has("shader-f16");
    // CPU implementations (SwiftShader, lavapipe) want register tiles, not workgroup reductions.
    /** @type {Partial<GPUAdapterInfo>} */
    const ai = adapter.info || {};
    this.isCpu = !!ai.isFallbackAdapter || /swiftshader|llvmpipe|lavapipe/i.test(info);
    /** @type {Map<string, Promise<GPUComputePipeline>>} */
    this.pipelines = new Map();
    /** @type {GPUDeviceLostInfo | null} */
    this.lost = null;
    /** @type {GPUError | null} */
    this.error = null;
    // Settles with the loss: calls in flight race it, so a lost device fails them instead of
    // leaving them waiting on work that will never finish.
    this.whenLost = device.lost.then((e) => {
      this.lost = e;
      throw this.#lostError();
    });
    this.whenLost.catch(() => {});
    // A validation error is a bug in this shim: keep the first one and fail the next call.
    device.addEventListener("uncapturederror", (ev) => {
      this.error ??= ev.error;
      console.error(`py_worker wgsl: ${ev.error.message}`);
    });
  }

  /**
   * Ask for an adapter and a device with the adapter's largest buffer limits.
   * @param {{powerPreference?: GPUPowerPreference, f16?: boolean}} [options] f16: false leaves shader-f16 off
   */
  static async create(options = {}) {
    const gpu = globalThis.navigator && navigator.gpu;
    if (!gpu) throw namedError("WebGPUNotAvailableError", "navigator.gpu is missing in this context");
    const adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference || "high-performance" });
    if (!adapter) throw namedError("WebGPUNotAvailableError", "no WebGPU adapter was found");
    /** @type {GPUFeatureName[]} */
    const features = [];
    if (adapter.features.has("shader-f16") && options.f16 !== false) features.push("shader-f16");
    const lim = adapter.limits;
    const device = await adapter.requestDevice({
      requiredFeatures: features,
      requiredLimits: {
        maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize,
        maxBufferSize: lim.maxBufferSize,
        maxStorageBuffersPerShaderStage: Math.min(lim.maxStorageBuffersPerShaderStage, 10),
        maxComputeWorkgroupsPerDimension: lim.maxComputeWorkgroupsPerDimension,
      },
    });
    /** @type {Partial<GPUAdapterInfo>} */
    const ai = adapter.info || {};
    const info = [ai.vendor, ai.architecture, ai.description].filter((s) => s).join(" ") || "unknown";
    return new Gpu(adapter, device, info);
  }

  /** DeviceLostError naming the loss's reason; `detail` is what failed when the loss is not known yet. */
  #lostError(detail = "") {
    const reason = this.lost ? String(this.lost.reason ?? "unknown") : "unknown";
    const why = ((this.lost && this.lost.message) || detail || "no message").replace(/\.+$/, "");
    return namedError("DeviceLostError", `WebGPU device lost (reason: ${reason}): ${why}. Reload the model to recover.`, {
      reason,
    });
  }

  check() {
    if (this.lost) throw this.#lostError();
    if (this.error) throw namedError("DeviceError", `WebGPU error: ${this.error.message}`);
  }

  /**
   * A storage buffer (size rounded up to 4 bytes), optionally filled from a typed array.
   * @param {number | ArrayBufferView} sizeOrData @param {string} [label]
   */
  storage(sizeOrData, label = "") {
    return this.#make(sizeOrData, STORAGE, label);
  }

  /** @param {number | ArrayBufferView} sizeOrData @param {string} [label] */
  uniform(sizeOrData, label = "") {
    return this.#make(sizeOrData, UNIFORM, label);
  }

  /** @param {number | ArrayBufferView} sizeOrData @param {GPUBufferUsageFlags} usage @param {string} label */
  #make(sizeOrData, usage, label) {
    const isData = typeof sizeOrData !== "number";
    const bytes = isData ? sizeOrData.byteLength : sizeOrData;
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    const buf = this.device.createBuffer({ size, usage, label, mappedAtCreation: isData });
    if (isData) {
      const src = new Uint8Array(sizeOrData.buffer, sizeOrData.byteOffset, sizeOrData.byteLength);
      new Uint8Array(buf.getMappedRange()).set(src);
      buf.unmap();
    }
    return buf;
  }

  /** @param {GPUBuffer} buffer @param {ArrayBufferView} data @param {number} [offset] */
  write(buffer, data, offset = 0) {
    this.device.queue.writeBuffer(buffer, offset, data.buffer, data.byteOffset, data.byteLength);
  }

  /** Compile (or reuse) a compute pipeline for a WGSL source; the source text is the key. @param {string} code */
  pipeline(code) {
    let p = this.pipelines.get(code);
    if (!p) {
      const module = this.device.createShaderModule({ code });
      p = this.device.createComputePipelineAsync({ layout: "auto", compute: { module, entryPoint: "main" } }).catch(async (e) => {
        this.pipelines.delete(code);
        const info = module.getCompilationInfo ? (await module.getCompilationInfo()).messages : [];
        const where = info.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join("; ");
        const first = code.split("\n").find((l) => l.includes("@compute")) || "";
        throw namedError("ModelLoadError", `WGSL pipeline failed (${first.trim()}): ${e.message} ${where}`);
      });
      this.pipelines.set(code, p);
    }
    return p;
  }

  /** A bind group whose binding i is buffers[i] (whole buffer). @param {GPUComputePipeline} pipeline @param {GPUBuffer[]} buffers */
  bind(pipeline, buffers) {
    return this.device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
  }

  recorder() {
    return new Recorder(this.device);
  }

  /**
   * Submit a recorder and read `bytes` of `src` back in one map.
   * @param {Recorder} rec @param {GPUBuffer} src @param {number} bytes @param {number} [srcOffset]
   */
  async readback(rec, src, bytes, srcOffset = 0) {
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({ size, usage: MAP_READ });
    rec.copy(src, srcOffset, staging, 0, size);
    rec.submit();
    try {
      await Promise.race([staging.mapAsync(1), this.whenLost]);
    } catch (e) {
      if (e.name === "DeviceLostError") throw e;
      this.check();
      throw this.#lostError(`readback failed: ${e.message}`);
    }
    const out = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    staging.destroy();
    this.check();
    return out;
  }
}

/** Records dispatches into one command encoder, keeping one compute pass open between copies. */
export class Recorder {
  /** @param {GPUDevice} device */
  constructor(device) {
    this.device = device;
    /** @type {GPUCommandEncoder} null once submitted: a recorder records nothing after that */
    this.encoder = device.createCommandEncoder();
    /** @type {GPUComputePassEncoder | null} */
    this.pass = null;
    this.dispatches = 0;
  }

  /** @param {GPUComputePipeline} pipeline @param {GPUBindGroup} bindGroup @param {number} x @param {number} [y] @param {number} [z] */
  dispatch(pipeline, bindGroup, x, y = 1, z = 1) {
    if (!this.pass) this.pass = this.encoder.beginComputePass();
    this.pass.setPipeline(pipeline);
    this.pass.setBindGroup(0, bindGroup);
    this.pass.dispatchWorkgroups(x, y, z);
    this.dispatches++;
  }

  /**
   * Submit what is recorded so far and record on into a new encoder: the GPU runs those
   * commands while the CPU records the rest (recording a decode step takes a fraction of the
   * time the GPU takes to run it, but is not free).
   */
  flush() {
    this.#endPass();
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = this.device.createCommandEncoder();
  }

  /** @param {GPUBuffer} src @param {number} srcOffset @param {GPUBuffer} dst @param {number} dstOffset @param {number} size */
  copy(src, srcOffset, dst, dstOffset, size) {
    this.#endPass();
    this.encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
  }

  #endPass() {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  submit() {
    this.#endPass();
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = /** @type {GPUCommandEncoder} */ (/** @type {unknown} */ (null));
  }
}
