// The main-thread proxy: web-llm's WebWorkerMLCEngine API over py_worker's worker protocol
// (docs/CONTRACTS.md). It only relays: every request becomes one {kind, uuid, content} message
// and waits for its one terminal reply; errors come back as {name, message, fields} and are
// re-thrown as the class of that name. Where web-llm is weak (FACTS §1) this does better:
// streams carry an id and leaving `for await` early closes them in the worker; setAppConfig is
// replayed to a restarted worker; a worker that stops answering is replaced (when the proxy was
// given a factory) and the pending requests are sent again — they carry the model ids the proxy
// expects, so the new worker reloads once and remembers it.

import {
  ModelNotLoadedError,
  SpecifiedModelNotFoundError,
  UnclearModelToUseError,
  WorkerUnresponsiveError,
  errorFromDict,
} from "./errors.js";

import { connect } from "./transport.js";

export * from "./errors.js";

const HEARTBEAT_AFTER_MS = 2000;
const DEFAULT_DEAD_AFTER_MS = 10000;
// Pyodide's boot has synchronous stretches of seconds on a slow CPU in which the worker cannot
// answer; until the worker says it is ready, only a much longer silence counts as dead.
const DEFAULT_BOOT_TIMEOUT_MS = 120000;

const asList = (x) => (x === undefined || x === null ? [] : Array.isArray(x) ? [...x] : [x]);

/**
 * A stream of chunks from the worker. Pull-based like web-llm (one request per chunk), but one
 * pull ahead: while the consumer handles chunk i the worker already makes chunk i+1, so the
 * postMessage round trip is hidden instead of added to every chunk.
 */
class ChunkStream {
  constructor(engine, streamId) {
    this.engine = engine;
    this.streamId = streamId;
    this.finished = false;
    this.ahead = null;
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  _pull() {
    const pending = this.engine._send("completionStreamNextChunk", { streamId: this.streamId });
    pending.catch(() => {}); // a pull ahead that nobody awaits must not be an unhandled rejection
    return pending;
  }

  async next() {
    if (this.finished) return { done: true, value: undefined };
    const pending = this.ahead || this._pull();
    this.ahead = null;
    let reply;
    try {
      reply = await pending;
    } catch (err) {
      this.finished = true; // the worker closes a stream that failed
      throw err;
    }
    if (reply.done) {
      this.finished = true;
      return { done: true, value: undefined };
    }
    this.ahead = this._pull();
    return { done: false, value: reply.chunk };
  }

  /** Called by `for await` on break/return/throw: stops the generation and frees the model. */
  async return(value) {
    if (!this.finished) {
      this.finished = true;
      this.ahead = null; // the worker answers it {done: true} when the stream closes
      await this.engine._send("completionStreamReturn", { streamId: this.streamId });
    }
    return { done: true, value };
  }
}

export class WebWorkerMLCEngine {
  /**
   * @param worker a Worker, or a function returning a new one (lets the proxy replace a dead worker)
   * @param engineConfig {appConfig?, initProgressCallback?, logLevel?, heartbeatTimeoutMs?, bootTimeoutMs?}
   */
  constructor(worker, engineConfig = {}) {
    // `{host: "worker" | "shared" | "service", url?, ...}` picks a host: one engine per tab, per
    // origin (SharedWorker) or in the service worker; the API is the same for all three.
    if (worker && typeof worker !== "function" && typeof worker.postMessage !== "function") {
      const { host = "worker", ...options } = worker;
      worker = () => connect(host, options);
    }
    this.workerFactory = typeof worker === "function" ? worker : null;
    this.engineConfig = engineConfig;
    this.appConfig = engineConfig.appConfig;
    this.logLevel = engineConfig.logLevel;
    this.initProgressCallback = engineConfig.initProgressCallback;
    this.deadAfterMs = engineConfig.heartbeatTimeoutMs ?? DEFAULT_DEAD_AFTER_MS;
    this.bootTimeoutMs = engineConfig.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS;
    this.modelId = [];
    this.chatOpts = undefined;
    this.pending = new Map();
    this.workerRestarts = 0;
    this.chat = { completions: { create: (request) => this.chatCompletion(request) } };
    this.completions = { create: (request) => this.completion(request) };
    this.embeddings = { create: (request) => this.embedding(request) };
    this._attach(this.workerFactory ? this.workerFactory() : worker);
  }

  _attach(worker) {
    this.worker = worker;
    this.workerReady = false;
    this.lastHeard = performance.now();
    this.heartbeatSent = null;
    worker.onmessage = (event) => this._onMessage(worker, event.data);
    worker.onerror = (event) => this._onWorkerError(worker, event);
    if (this.appConfig !== undefined) this._post("setAppConfig", { appConfig: this.appConfig });
    if (this.logLevel !== undefined) this._post("setLogLevel", { level: this.logLevel });
  }

  _onMessage(worker, msg) {
    if (worker !== this.worker || !msg) return;
    this.lastHeard = performance.now();
    this.heartbeatSent = null;
    if (msg.kind === "workerReady") {
      this.workerReady = true;
      this.workerTimeline = msg.content;
      return;
    }
    if (msg.kind === "initProgressCallback") {
      if (this.initProgressCallback) this.initProgressCallback(msg.content);
      return;
    }
    const waiter = this.pending.get(msg.uuid);
    if (waiter === undefined) return;
    if (msg.kind === "return") {
      this.pending.delete(msg.uuid);
      waiter.resolve(msg.content);
    } else if (msg.kind === "throw") {
      this.pending.delete(msg.uuid);
      waiter.reject(errorFromDict(msg.content));
    }
  }

  /** An error event before the worker ever spoke means it cannot start: fail what waits. */
  _onWorkerError(worker, event) {
    if (worker !== this.worker) return;
    event.preventDefault?.();
    const message = `worker failed: ${event.message || "error event"}`;
    this._rejectAll(new WorkerUnresponsiveError(message, { filename: event.filename || "" }));
  }

  _rejectAll(error) {
    const waiters = [...this.pending.values()];
    this.pending.clear();
    for (const w of waiters) w.reject(error);
    this._stopWatchdog();
  }

  _post(kind, content, uuid = crypto.randomUUID()) {
    this.worker.postMessage({ kind, uuid, content });
    return uuid;
  }

  /** Send one request; resolves with its `return` content, rejects with its re-thrown error. */
  _send(kind, content) {
    return new Promise((resolve, reject) => {
      const uuid = crypto.randomUUID();
      this.pending.set(uuid, { kind, content, resolve, reject });
      this._post(kind, content, uuid);
      this._startWatchdog();
    });
  }

  // Liveness: while requests wait and the worker is silent, ask it for a heartbeat (worker.js
  // answers those itself, even while Python is busy); silence past the limit means it is gone.
  _startWatchdog() {
    if (this.watchdog) return;
    this.lastHeard = Math.max(this.lastHeard, performance.now() - HEARTBEAT_AFTER_MS / 2);
    this.watchdog = setInterval(() => this._checkAlive(), HEARTBEAT_AFTER_MS / 2);
  }

  _stopWatchdog() {
    clearInterval(this.watchdog);
    this.watchdog = null;
  }

  _checkAlive() {
    if (this.pending.size === 0) {
      this._stopWatchdog();
      return;
    }
    const silent = performance.now() - this.lastHeard;
    if (silent > (this.workerReady ? this.deadAfterMs : this.bootTimeoutMs)) {
      this._replaceWorker();
    } else if (silent > HEARTBEAT_AFTER_MS && this.heartbeatSent === null) {
      this.heartbeatSent = this._post("heartbeat", {});
    }
  }

  _replaceWorker() {
    if (!this.workerFactory) {
      this._rejectAll(new WorkerUnresponsiveError(`worker silent for ${this.deadAfterMs} ms`));
      return;
    }
    this.worker.terminate();
    this.workerRestarts += 1;
    this._attach(this.workerFactory());
    for (const [uuid, w] of this.pending) this._post(w.kind, w.content, uuid);
  }

  /** web-llm's getModelIdToUse, on the main thread: fails before anything is posted. */
  _selectModel(requested) {
    if (this.modelId.length === 0) {
      throw new ModelNotLoadedError("Model not loaded before trying to complete a request. Call reload() first.");
    }
    if (requested !== undefined && requested !== null) {
      if (!this.modelId.includes(requested)) {
        throw new SpecifiedModelNotFoundError(
          `Specified model ${requested} is not found among the loaded models: ${this.modelId.join(", ")}`,
          { model: requested, loaded: [...this.modelId] },
        );
      }
      return requested;
    }
    if (this.modelId.length > 1) {
      throw new UnclearModelToUseError(
        `Multiple models are loaded (${this.modelId.join(", ")}); specify \`model\` in the request.`,
        { loaded: [...this.modelId] },
      );
    }
    return this.modelId[0];
  }

  _inference(request) {
    const selectedModelId = this._selectModel(request.model);
    const chatOpts = this.chatOpts === undefined ? undefined : [...this.chatOpts];
    return { request, selectedModelId, modelId: [...this.modelId], chatOpts };
  }

  async reload(modelId, chatOpts) {
    const ids = asList(modelId);
    const opts = chatOpts === undefined || chatOpts === null ? undefined : asList(chatOpts);
    await this._send("reload", { modelId: ids, chatOpts: opts });
    this.modelId = ids;
    this.chatOpts = opts;
  }

  async unload() {
    await this._send("unload", {});
    this.modelId = [];
    this.chatOpts = undefined;
  }

  async chatCompletion(request) {
    const content = this._inference(request);
    if (!request.stream) return this._send("chatCompletionNonStreaming", content);
    const { streamId } = await this._send("chatCompletionStreamInit", content);
    return new ChunkStream(this, streamId);
  }

  async completion(request) {
    const content = this._inference(request);
    if (!request.stream) return this._send("completionNonStreaming", content);
    const { streamId } = await this._send("completionStreamInit", content);
    return new ChunkStream(this, streamId);
  }

  async embedding(request) {
    return this._send("embedding", this._inference(request));
  }

  interruptGenerate() {
    return this._send("interruptGenerate", {});
  }

  resetChat(keepStats = false, modelId) {
    return this._send("resetChat", { keepStats, modelId });
  }

  getMessage(modelId) {
    return this._send("getMessage", { modelId });
  }

  runtimeStatsText(modelId) {
    return this._send("runtimeStatsText", { modelId });
  }

  forwardTokensAndSample(inputIds, isPrefill, modelId) {
    return this._send("forwardTokensAndSample", { inputIds, isPrefill, modelId });
  }

  getMaxStorageBufferBindingSize() {
    return this._send("getMaxStorageBufferBindingSize", {});
  }

  getGPUVendor() {
    return this._send("getGPUVendor", {});
  }

  setLogLevel(logLevel) {
    this.logLevel = logLevel;
    return this._send("setLogLevel", { level: logLevel });
  }

  /** Kept here too, so a replacement worker gets it again before any other request. */
  setAppConfig(appConfig) {
    this.appConfig = appConfig;
    return this._send("setAppConfig", { appConfig });
  }

  setInitProgressCallback(callback) {
    this.initProgressCallback = callback;
  }

  getInitProgressCallback() {
    return this.initProgressCallback;
  }

  /** A raw request of any kind (diagnostics, and kinds this proxy has no method for). */
  sendRequest(kind, content = {}) {
    return this._send(kind, content);
  }
}

/** web-llm's CreateWebWorkerMLCEngine: a proxy with `modelId` (one id or several) loaded. */
export async function CreateWebWorkerMLCEngine(worker, modelId, engineConfig = {}, chatOpts) {
  const engine = new WebWorkerMLCEngine(worker, engineConfig);
  await engine.reload(modelId, chatOpts);
  return engine;
}
