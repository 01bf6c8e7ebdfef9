/* @ts-self-types="./proxy.d.ts" */
// The main-thread proxy: web-llm's WebWorkerMLCEngine API over py_worker's worker protocol
// (docs/CONTRACTS.md). It only relays: every request becomes one {kind, uuid, content} message
// and waits for its one terminal reply; errors come back as {name, message, fields} and are
// re-thrown as the class of that name. Where web-llm's worker protocol is weak this does better:
// streams carry an id and leaving `for await` early closes them in the worker; setAppConfig is
// replayed to a restarted worker; a worker that stops answering is replaced (when the proxy was
// given a factory) and the pending requests are sent again — they carry the model ids the proxy
// expects, so the new worker reloads once and remembers it.
// What a page can get wrong is answered per request, never by harming the others
// (docs/CONTRACTS.md, "Reliability of the JS side"): a value that cannot be posted or a message
// over the size limit is refused before it is posted; a request is sent again at most once after
// its worker stopped answering while it was in flight; a request that a host lost (the host
// answers a heartbeat without holding it: a service worker the browser stopped) is sent again once;
// inference requests made while a reload or unload is pending wait for it.

import {
  InvalidRequestFieldError,
  MalformedMessageError,
  ModelNotLoadedError,
  SpecifiedModelNotFoundError,
  UnclearModelToUseError,
  WorkerUnresponsiveError,
  errorFromDict,
} from "./errors.js";

import { loadAppConfig } from "./app-config.js";
import { LogitProcessorNotSupportedError } from "./errors.js";
import { refusal } from "./limits.js";
import { connect } from "./transport.js";

export * from "./errors.js";
export { ModelType, functionCallingModelIds, modelLibURLPrefix, modelVersion } from "./app-config.js";
export {
  CACHE_STORE_NAME,
  deleteChatConfigInCache,
  deleteModelAllInfoInCache,
  deleteModelInCache,
  deleteModelWasmInCache,
  deleteModelWeightsInCache,
  hasModelInCache,
  listCachedModels,
  storageEstimate,
} from "./cache.js";
export { connect, transportFactory } from "./transport.js";

/** @typedef {import("./proxy.d.ts").AppConfig} AppConfig */
/** @typedef {import("./proxy.d.ts").ModelRecord} ModelRecord */
/** @typedef {import("./proxy.d.ts").ChatOptions} ChatOptions */
/** @typedef {import("./proxy.d.ts").ChatWorker} ChatWorker */
/** @typedef {import("./proxy.d.ts").MLCEngineConfig} MLCEngineConfig */
/** @typedef {import("./proxy.d.ts").ChatCompletionRequest} ChatCompletionRequest */
/** @typedef {import("./proxy.d.ts").CompletionCreateParams} CompletionCreateParams */
/** @typedef {import("./proxy.d.ts").EmbeddingCreateParams} EmbeddingCreateParams */
/**
 * A request posted and not yet answered (`content`: the snapshot it was posted with).
 * @typedef {{kind: string, content: unknown, resolve: (value: unknown) => void, reject: (reason: unknown) => void, seq: number, resent: boolean}} PendingRequest
 */

/**
 * web-llm's prebuiltAppConfig: here, this site's own app-config.json (next to this file), with
 * absolute URLs. A page that passes no appConfig gets these models: the worker reads the same file.
 */
export const prebuiltAppConfig = await loadAppConfig(new URL("./", import.meta.url));

const HEARTBEAT_AFTER_MS = 2000;
const DEFAULT_DEAD_AFTER_MS = 10000;
// Pyodide's boot has synchronous stretches of seconds on a slow CPU in which the worker cannot
// answer; until the worker says it is ready, only a much longer silence counts as dead.
const DEFAULT_BOOT_TIMEOUT_MS = 120000;

/**
 * The model ids of a non-empty web-llm logitProcessorRegistry (a Map), else null.
 * @param {Map<string, unknown> | Record<string, unknown> | null | undefined} registry
 * @returns {string[] | null}
 */
function registryModels(registry) {
  if (registry === undefined || registry === null) return null;
  const models = registry instanceof Map ? [...registry.keys()].map(String) : Object.keys(registry);
  return models.length ? models : null;
}

/**
 * web-llm's app-config-wide cache choice (`cacheBackend: "cache" | "indexeddb"`, or the older
 * `useIndexedDBCache: true`) as py_worker's per-record `cache`; a record's own `cache` wins.
 * Anything else is passed on unchanged (and an unpostable value is refused later, as before).
 * @param {AppConfig | undefined} appConfig
 * @returns {AppConfig | undefined}
 */
function withCacheBackend(appConfig) {
  if (!appConfig || typeof appConfig !== "object" || !Array.isArray(appConfig.model_list)) return appConfig;
  const backend = appConfig.cacheBackend ?? (appConfig.useIndexedDBCache === true ? "indexeddb" : undefined);
  if (backend !== "cache" && backend !== "indexeddb") return appConfig;
  const model_list = appConfig.model_list.map((/** @type {ModelRecord} */ r) => (r && typeof r === "object" && r.cache === undefined ? { ...r, cache: backend } : r));
  return { ...appConfig, model_list };
}

/**
 * `x` as a fresh list: itself copied when a list, [] when absent.
 * @template T
 * @param {T | T[] | null | undefined} x
 * @returns {T[]}
 */
const asList = (x) => (x === undefined || x === null ? [] : Array.isArray(x) ? [...x] : [x]);
const noop = () => {};
const MAX_PROBES = 8; // heartbeats awaiting an answer that are remembered

/**
 * A worker's `throw` content as an error; only a class of errors.js's own table is used.
 * @param {Record<string, unknown> | null | undefined} content as the worker posted it
 */
function toError(content) {
  const name = content && typeof content.name === "string" ? content.name : "Error";
  return errorFromDict({ ...content, name });
}

/**
 * The error for a message that could not be posted (DataCloneError, RangeError, ...).
 * @param {string} kind @param {Error} cause what postMessage or structuredClone threw
 */
function unpostable(kind, cause) {
  const why = `${(cause && cause.name) || "Error"}: ${(cause && cause.message) || cause}`;
  const error = new MalformedMessageError(`A ${JSON.stringify(String(kind))} message could not be posted to the worker (${why}); nothing was sent.`,
    { kind: String(kind), reason: "unpostable", cause: why });
  error.cause = cause;
  return error;
}

/**
 * An OpenAI request must be a plain object (create(null) is refused with a named error).
 * @param {unknown} request
 */
function requestObject(request) {
  if (request === null || typeof request !== "object" || Array.isArray(request)) {
    const got = request === null ? "null" : Array.isArray(request) ? "an array" : typeof request;
    throw new InvalidRequestFieldError(`request must be an object, not ${got}.`, { field: "request" });
  }
  return request;
}

/**
 * A stream of chunks from the worker. Pull-based like web-llm (one request per chunk), but one
 * pull ahead: while the consumer handles chunk i the worker already makes chunk i+1, so the
 * postMessage round trip is hidden instead of added to every chunk.
 */
class ChunkStream {
  /** @param {WebWorkerMLCEngine} engine @param {string | number} streamId the worker's */
  constructor(engine, streamId) {
    this.engine = engine;
    this.streamId = streamId;
    this.finished = false;
    /** @type {Promise<any> | null} the pull made ahead, not yet consumed */
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

  /** Called by `for await` on break/return/throw: stops the generation and frees the model. @param {unknown} [value] */
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
  /** @type {Map<string, number>} heartbeat uuid -> seq of that heartbeat (set by _attach) */
  probes;
  /** @type {number} when the watchdog last ran (set by _startWatchdog) */
  lastCheck;
  /** @type {ChatWorker} (set by _attach) */
  worker;

  /**
   * @param {import("./proxy.d.ts").WorkerSource} worker a Worker, or a function returning a new one (lets the proxy replace a dead worker)
   * @param {MLCEngineConfig} [engineConfig] options, each optional: appConfig, initProgressCallback, logLevel, heartbeatTimeoutMs, bootTimeoutMs
   */
  constructor(worker, engineConfig = {}) {
    // `{host: "worker" | "shared" | "service", url?, ...}` picks a host: one engine per tab, per
    // origin (SharedWorker) or in the service worker; the API is the same for all three.
    if (worker && typeof worker !== "function" && typeof /** @type {ChatWorker} */ (worker).postMessage !== "function") {
      const { host = "worker", ...options } = /** @type {{host?: import("./transport.js").HostKind} & import("./transport.js").ConnectOptions} */ (worker);
      worker = () => connect(host, options);
    }
    this.workerFactory = typeof worker === "function" ? worker : null;
    if (registryModels(engineConfig.logitProcessorRegistry) !== null) {
      console.warn("py_worker proxy: engineConfig.logitProcessorRegistry is ignored by WebWorkerMLCEngine, as in web-llm " +
        "(and py_worker's worker handler refuses custom logit processors).");
    }
    this.engineConfig = engineConfig;
    this.appConfig = withCacheBackend(engineConfig.appConfig);
    this.logLevel = engineConfig.logLevel;
    this.initProgressCallback = engineConfig.initProgressCallback;
    this.deadAfterMs = engineConfig.heartbeatTimeoutMs ?? DEFAULT_DEAD_AFTER_MS;
    this.bootTimeoutMs = engineConfig.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS;
    /** @type {string[]} */
    this.modelId = [];
    /** @type {ChatOptions[] | undefined} */
    this.chatOpts = undefined;
    /** @type {Promise<void> | null} settles when the reload or unload in flight has (see _inference) */
    this.modelChange = null;
    /** @type {Map<string, PendingRequest>} uuid -> request */
    this.pending = new Map();
    this.seq = 0; // counts posted messages: tells which requests a heartbeat reply covers
    this.workerRestarts = 0;
    this.hostRestarts = 0; // a host instance that changed under the same transport
    this.chat = { completions: { create: (/** @type {ChatCompletionRequest} */ request) => this.chatCompletion(request) } };
    this.completions = { create: (/** @type {CompletionCreateParams} */ request) => this.completion(request) };
    this.embeddings = { create: (/** @type {EmbeddingCreateParams} */ request) => this.embedding(request) };
    this._attach(this.workerFactory ? this.workerFactory() : /** @type {ChatWorker} not a factory, nor a host choice */ (worker));
  }

  /** @param {ChatWorker} worker */
  _attach(worker) {
    this.worker = worker;
    this.workerReady = false;
    this.lastHeard = performance.now();
    /** @type {string | null} uuid of the heartbeat awaiting its answer */
    this.heartbeatSent = null;
    this.probes = new Map(); // heartbeat uuid -> seq of that heartbeat
    /** @type {string | null} the host instance its heartbeats name */
    this.hostInstance = null;
    worker.onmessage = (/** @type {MessageEvent} */ event) => this._onMessage(worker, event.data);
    worker.onerror = (/** @type {ErrorEvent} */ event) => this._onWorkerError(worker, event);
    // Replays: each was refused to its caller already if it could not be posted.
    try {
      if (this.appConfig !== undefined) this._post("setAppConfig", { appConfig: this.appConfig });
      if (this.logLevel !== undefined) this._post("setLogLevel", { level: this.logLevel });
    } catch (err) {
      console.warn(`py_worker proxy: replaying the config to a new worker failed: ${err}`);
    }
    this._probe(); // learns the host's instance before any request can be lost
  }

  /** Post a heartbeat whose answer is checked by _onHeartbeat. */
  _probe() {
    const uuid = crypto.randomUUID();
    try {
      this.probes.set(uuid, this._post("heartbeat", {}, uuid));
    } catch (err) {
      console.warn(`py_worker proxy: heartbeat not posted: ${err}`);
    }
    while (this.probes.size > MAX_PROBES) this.probes.delete(/** @type {string} */ (this.probes.keys().next().value));
    return uuid;
  }

  /** @param {ChatWorker} worker @param {any} msg whatever the worker posted (checked here) */
  _onMessage(worker, msg) {
    if (worker !== this.worker || !msg) return;
    this.lastHeard = performance.now();
    this.heartbeatSent = null;
    if (msg.kind === "return" && this.probes.has(msg.uuid)) {
      const seq = /** @type {number} */ (this.probes.get(msg.uuid));
      this.probes.delete(msg.uuid);
      this._onHeartbeat(msg.content, seq);
      return;
    }
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
      waiter.reject(toError(msg.content));
    }
  }

  /**
   * A heartbeat's answer: `instance` names the host instance (a new one under the same
   * transport is a restart, e.g. a service worker the browser stopped and started again) and
   * `held` lists the uuids of this page's requests that host has and has not answered yet.
   * Messages arrive in order, so a request posted before the heartbeat, still pending here and
   * not held there, was lost with the instance that had it: it is sent once more (or refused).
   * @param {{instance?: unknown, held?: unknown} | null | undefined} content as the host posted it
   * @param {number} seq the heartbeat's
   */
  _onHeartbeat(content, seq) {
    if (!content || typeof content !== "object") return;
    const instance = typeof content.instance === "string" ? content.instance : null;
    const restarted = instance !== null && this.hostInstance !== null && instance !== this.hostInstance;
    if (restarted) this.hostRestarts += 1;
    if (instance !== null) this.hostInstance = instance;
    if (!Array.isArray(content.held)) return;
    const held = new Set(content.held);
    const why = restarted ? "the host restarted" : "the host no longer holds it";
    for (const [uuid, entry] of [...this.pending]) {
      if (entry.seq < seq && !held.has(uuid)) this._resend(uuid, entry, why);
    }
  }

  /**
   * An error event before the worker said it was ready means it cannot start: fail what waits.
   * Later, an error event (an uncaught error inside the worker) does not mean the worker is gone:
   * its heartbeats decide that, and no other request is failed for it.
   * @param {ChatWorker} worker @param {ErrorEvent} event
   */
  _onWorkerError(worker, event) {
    if (worker !== this.worker) return;
    event.preventDefault?.();
    const message = `worker failed: ${event.message || "error event"}`;
    if (this.workerReady) {
      console.warn(`py_worker proxy: ${message} (the worker is still answering; nothing is failed for it)`);
      return;
    }
    this._rejectAll(new WorkerUnresponsiveError(message, { filename: event.filename || "" }));
  }

  /** @param {Error} error */
  _rejectAll(error) {
    const waiters = [...this.pending.values()];
    this.pending.clear();
    for (const w of waiters) w.reject(error);
    this._stopWatchdog();
  }

  /**
   * Post one message; returns its sequence number. Throws what postMessage throws.
   * @param {string} kind @param {unknown} content @param {string} [uuid]
   * @returns {number}
   */
  _post(kind, content, uuid = crypto.randomUUID()) {
    this.worker.postMessage({ kind, uuid, content });
    this.seq += 1;
    return this.seq;
  }

  /**
   * Send one request; resolves with its `return` content, rejects with its re-thrown error.
   * What cannot be sent is refused here, and nothing of it is kept: a message over the size
   * limit (MessageTooLargeError), one nested deeper than the worker reads (MalformedMessageError,
   * reason "depth") or one postMessage cannot clone (MalformedMessageError, the DataCloneError or
   * RangeError as `cause`). The content is kept as a snapshot taken now, so a
   * request sent again after a worker replacement is the one that was asked for.
   * @param {string} kind @param {unknown} content
   * @returns {Promise<any>} the `return` content, as the worker posted it
   */
  _send(kind, content) {
    let snapshot;
    try {
      const refused = refusal(kind, content);
      if (refused !== null) return Promise.reject(errorFromDict(refused));
      snapshot = structuredClone(content);
    } catch (err) {
      return Promise.reject(unpostable(kind, err));
    }
    const uuid = crypto.randomUUID();
    /** @type {PendingRequest} */
    let entry = /** @type {any} */ (undefined); // set by the Promise executor, which runs at once
    const promise = new Promise((resolve, reject) => {
      entry = { kind, content: snapshot, resolve, reject, seq: 0, resent: false };
    });
    try {
      entry.seq = this._post(kind, snapshot, uuid);
    } catch (err) {
      return Promise.reject(unpostable(kind, err));
    }
    this.pending.set(uuid, entry);
    this._startWatchdog();
    return promise;
  }

  /**
   * A request in flight when its worker stopped answering (or lost by its host) is sent once
   * more; the second time it is refused with WorkerUnresponsiveError ({in_flight: true}), so a
   * request that itself blocks every worker it reaches cannot make the proxy replace workers
   * for ever. Each request is sent on its own: one that fails to post fails alone.
   * @param {string} uuid @param {PendingRequest} entry @param {string} why
   */
  _resend(uuid, entry, why) {
    if (this.pending.get(uuid) !== entry) return;
    if (entry.resent) {
      this.pending.delete(uuid);
      entry.reject(new WorkerUnresponsiveError(
        `The ${JSON.stringify(entry.kind)} request was in flight when the worker stopped answering (${why}), ` +
          "for the second time; it is not sent again.",
        { kind: entry.kind, in_flight: true, restarts: this.workerRestarts },
      ));
      return;
    }
    entry.resent = true;
    try {
      entry.seq = this._post(entry.kind, entry.content, uuid);
    } catch (err) {
      this.pending.delete(uuid);
      entry.reject(unpostable(entry.kind, err));
    }
  }

  // Liveness: while requests wait and the worker is silent, ask it for a heartbeat (worker.js
  // answers those itself, even while Python is busy); silence past the limit, with a heartbeat
  // unanswered, means it is gone. A check that runs late means this page itself was stalled (a
  // loaded machine): that stall is not counted as the worker's silence.
  _startWatchdog() {
    if (this.watchdog) return;
    this.lastHeard = Math.max(this.lastHeard, performance.now() - HEARTBEAT_AFTER_MS / 2);
    this.lastCheck = performance.now();
    this.watchdog = setInterval(() => this._checkAlive(), HEARTBEAT_AFTER_MS / 2);
  }

  _stopWatchdog() {
    clearInterval(/** @type {number | undefined} */ (this.watchdog));
    this.watchdog = null;
  }

  _checkAlive() {
    if (this.pending.size === 0) {
      this._stopWatchdog();
      return;
    }
    const now = performance.now();
    const late = now - this.lastCheck - HEARTBEAT_AFTER_MS / 2;
    if (late > HEARTBEAT_AFTER_MS / 2) this.lastHeard = Math.min(now, this.lastHeard + late);
    this.lastCheck = now;
    const silent = now - this.lastHeard;
    if (silent > (this.workerReady ? this.deadAfterMs : this.bootTimeoutMs) && this.heartbeatSent !== null) {
      this._replaceWorker();
    } else if (silent > HEARTBEAT_AFTER_MS && this.heartbeatSent === null) {
      this.heartbeatSent = this._probe();
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
    const why = `no answer for ${this.deadAfterMs} ms; replaced by a new worker`;
    for (const [uuid, entry] of [...this.pending]) this._resend(uuid, entry, why);
  }

  /**
   * web-llm's getModelIdToUse, on the main thread: the loaded model a request goes to, by
   * Python's rule (py_worker/router.py select_model),
   * refused here with the same classes, messages and fields so nothing is posted in vain.
   * `requestName` names the request as Python does ("ChatCompletionRequest", …).
   * @param {string | null | undefined} requested
   * @param {string} requestName
   * @returns {string}
   */
  _selectModel(requested, requestName) {
    const loaded = [...this.modelId];
    if (loaded.length === 0) {
      throw new ModelNotLoadedError(
        `Model not loaded before trying to complete ${requestName}. Call reload(model) first, or create the engine with a model.`,
        { request_name: requestName },
      );
    }
    if (requested !== undefined && requested !== null && requested !== "") {
      if (!loaded.includes(requested)) {
        throw new SpecifiedModelNotFoundError(
          `Specified model ${requested} for ${requestName} is not found in loaded models. Currently loaded models are: ${loaded.join(", ")}`,
          { requested, loaded, request_name: requestName },
        );
      }
      return requested;
    }
    if (loaded.length > 1) {
      throw new UnclearModelToUseError(
        `Multiple models are loaded in engine. Please specify the model in ${requestName}. Currently loaded models are: ${loaded.join(", ")}`,
        { loaded, request_name: requestName },
      );
    }
    return loaded[0];
  }

  /**
   * The content of an inference request. While a reload or unload is in flight the request
   * waits for it, then carries the model ids it left loaded: sent at once it would carry the
   * old ids, and the worker's reload-if-unmatched would load those again and interrupt the reload.
   * @template {ChatCompletionRequest | CompletionCreateParams | EmbeddingCreateParams} R
   * @param {R} request @param {string} requestName
   */
  async _inference(request, requestName) {
    requestObject(request);
    while (this.modelChange !== null) await this.modelChange;
    this._selectModel(request.model, requestName); // refuses here; the worker routes by request.model itself
    const chatOpts = this.chatOpts === undefined ? undefined : [...this.chatOpts];
    return { request, modelId: [...this.modelId], chatOpts };
  }

  /**
   * Runs `op` (a reload or unload) as the model change inference requests wait for.
   * @param {Promise<void>} op
   */
  _changeModels(op) {
    const settled = op.then(noop, noop);
    this.modelChange = settled;
    settled.then(() => {
      if (this.modelChange === settled) this.modelChange = null;
    });
    return op;
  }

  /** @param {string | string[]} modelId @param {ChatOptions | ChatOptions[] | null} [chatOpts] */
  reload(modelId, chatOpts) {
    const ids = asList(modelId);
    const opts = chatOpts === undefined || chatOpts === null ? undefined : asList(chatOpts);
    return this._changeModels(this._send("reload", { modelId: ids, chatOpts: opts }).then(() => {
      this.modelId = ids;
      this.chatOpts = opts;
    }));
  }

  unload() {
    return this._changeModels(this._send("unload", {}).then(() => {
      this.modelId = [];
      this.chatOpts = undefined;
    }));
  }

  /** @param {ChatCompletionRequest} request */
  async chatCompletion(request) {
    const content = await this._inference(request, "ChatCompletionRequest");
    if (!request.stream) return this._send("chatCompletionNonStreaming", content);
    const { streamId } = await this._send("chatCompletionStreamInit", content);
    return new ChunkStream(this, streamId);
  }

  /** @param {CompletionCreateParams} request */
  async completion(request) {
    const content = await this._inference(request, "CompletionCreateParams");
    if (!request.stream) return this._send("completionNonStreaming", content);
    const { streamId } = await this._send("completionStreamInit", content);
    return new ChunkStream(this, streamId);
  }

  /** @param {EmbeddingCreateParams} request */
  async embedding(request) {
    return this._send("embedding", await this._inference(request, "EmbeddingCreateParams"));
  }

  interruptGenerate() {
    return this._send("interruptGenerate", {});
  }

  /** @param {boolean} [keepStats] @param {string} [modelId] */
  resetChat(keepStats = false, modelId) {
    return this._send("resetChat", { keepStats, modelId });
  }

  /** @param {string} [modelId] */
  getMessage(modelId) {
    return this._send("getMessage", { modelId });
  }

  /** @param {string} [modelId] */
  runtimeStatsText(modelId) {
    return this._send("runtimeStatsText", { modelId });
  }

  /** @param {number[]} inputIds @param {boolean} isPrefill @param {string} [modelId] */
  forwardTokensAndSample(inputIds, isPrefill, modelId) {
    return this._send("forwardTokensAndSample", { inputIds, isPrefill, modelId });
  }

  getMaxStorageBufferBindingSize() {
    return this._send("getMaxStorageBufferBindingSize", {});
  }

  getGPUVendor() {
    return this._send("getGPUVendor", {});
  }

  /** @param {import("./proxy.d.ts").LogLevel} logLevel */
  setLogLevel(logLevel) {
    this.logLevel = logLevel;
    return this._send("setLogLevel", { level: logLevel });
  }

  /** Kept here too, so a replacement worker gets it again before any other request. @param {AppConfig} appConfig */
  setAppConfig(appConfig) {
    let snapshot;
    try {
      snapshot = structuredClone(withCacheBackend(appConfig)); // one that cannot be posted is not kept for replay
    } catch (err) {
      return Promise.reject(unpostable("setAppConfig", err));
    }
    this.appConfig = snapshot;
    return this._send("setAppConfig", { appConfig: snapshot });
  }

  /** @param {import("./proxy.d.ts").InitProgressCallback} [callback] */
  setInitProgressCallback(callback) {
    this.initProgressCallback = callback;
  }

  getInitProgressCallback() {
    return this.initProgressCallback;
  }

  /** A raw request of any kind (diagnostics, and kinds this proxy has no method for). @param {string} kind @param {unknown} [content] */
  sendRequest(kind, content = {}) {
    return this._send(kind, content);
  }
}

/**
 * web-llm's CreateWebWorkerMLCEngine: a proxy with `modelId` (one id or several) loaded.
 * @param {import("./proxy.d.ts").WorkerSource} worker @param {string | string[]} modelId
 * @param {MLCEngineConfig} [engineConfig] @param {ChatOptions | ChatOptions[]} [chatOpts]
 */
export async function CreateWebWorkerMLCEngine(worker, modelId, engineConfig = {}, chatOpts) {
  const engine = new WebWorkerMLCEngine(worker, engineConfig);
  await engine.reload(modelId, chatOpts);
  return engine;
}

/**
 * web-llm's MLCEngine. web-llm runs it on the calling thread; here the main thread never runs the
 * engine: MLCEngine starts this site's own module worker (worker.js) and is a WebWorkerMLCEngine
 * over it, restartable. A non-empty engineConfig.logitProcessorRegistry is refused with
 * LogitProcessorNotSupportedError (py_worker samples in its own GPU decode loop).
 */
export class MLCEngine extends WebWorkerMLCEngine {
  /** @param {MLCEngineConfig} [engineConfig] */
  constructor(engineConfig = {}) {
    const models = registryModels(engineConfig.logitProcessorRegistry);
    if (models !== null) {
      throw new LogitProcessorNotSupportedError(
        "Custom logit processors (logitProcessorRegistry) are not supported by py_worker: sampling runs in the " +
          "engine's own GPU decode loop. Use logit_bias in the request instead.",
        { option: "logitProcessorRegistry", models },
      );
    }
    super(() => connect("worker"), engineConfig);
  }

  /**
   * web-llm's setter for custom logit processors: an empty registry is accepted, any other refused.
   * @param {Map<string, import("./proxy.d.ts").LogitProcessor>} [registry]
   */
  setLogitProcessorRegistry(registry) {
    const models = registryModels(registry);
    if (models === null) return;
    throw new LogitProcessorNotSupportedError("Custom logit processors are not supported by py_worker.", {
      option: "logitProcessorRegistry",
      models,
    });
  }
}

/**
 * web-llm's CreateMLCEngine: an MLCEngine (in its own worker, see above) with `modelId` loaded.
 * @param {string | string[]} modelId @param {MLCEngineConfig} [engineConfig] @param {ChatOptions | ChatOptions[]} [chatOpts]
 */
export async function CreateMLCEngine(modelId, engineConfig = {}, chatOpts) {
  const engine = new MLCEngine(engineConfig);
  await engine.reload(modelId, chatOpts);
  return engine;
}

/**
 * web-llm's ServiceWorkerMLCEngine: the engine of the service worker the page registered (its
 * script uses ServiceWorkerMLCEngineHandler from host-handler.js, or is this site's
 * service-worker.js), reached through `navigator.serviceWorker.ready`. `keepAliveMs` is accepted
 * for web-llm's signature; the host pings its clients itself while they have work in flight.
 */
export class ServiceWorkerMLCEngine extends WebWorkerMLCEngine {
  /** @param {MLCEngineConfig} [engineConfig] @param {number} [keepAliveMs] */
  constructor(engineConfig = {}, keepAliveMs = 10000) {
    super(() => connect("service", { registered: true }), engineConfig);
    this.keepAliveMs = keepAliveMs;
  }
}

/**
 * web-llm's CreateServiceWorkerMLCEngine(modelId, engineConfig?, chatOpts?, keepAliveMs?).
 * @param {string | string[]} modelId @param {MLCEngineConfig} [engineConfig]
 * @param {ChatOptions | ChatOptions[]} [chatOpts] @param {number} [keepAliveMs]
 */
export async function CreateServiceWorkerMLCEngine(modelId, engineConfig = {}, chatOpts, keepAliveMs = 10000) {
  const engine = new ServiceWorkerMLCEngine(engineConfig, keepAliveMs);
  await engine.reload(modelId, chatOpts);
  return engine;
}
