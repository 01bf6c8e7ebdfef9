// Types of proxy.js: web-llm's main-thread API over py_worker (docs/CONTRACTS.md; README
// "Coming from web-llm"). The error classes come from errors.js (generated from py_worker/errors/).

export * from "./errors.js";

// ---- config ------------------------------------------------------------------------------------

/** web-llm's ModelType names; here the values are the names ("LLM", "embedding", "VLM"). */
export declare const ModelType: { readonly LLM: "LLM"; readonly embedding: "embedding"; readonly VLM: "VLM" };
export type ModelType = "LLM" | "embedding" | "VLM";

/** Per-model overrides of mlc-chat-config.json (web-llm's ChatOptions). */
export interface ChatOptions {
  context_window_size?: number;
  sliding_window_size?: number;
  attention_sink_size?: number;
  prefill_chunk_size?: number;
  temperature?: number;
  top_p?: number;
  repetition_penalty?: number;
  frequency_penalty?: number;
  presence_penalty?: number;
  [key: string]: unknown;
}

/** One entry of an app config's model_list (docs/CONTRACTS.md "Model record"). */
export interface ModelRecord {
  model_id: string;
  /** Base URL of an MLC model directory, or the URL of a .gguf file. */
  model: string;
  model_type?: ModelType;
  /** URL of an MLC model library .wasm: the record runs on the mlc backend. */
  model_lib?: string;
  /** Which kernels run the record (default: chosen from the record and the device; "wasm" is llama.cpp on the CPU). */
  backend?: "wgsl" | "mlc" | "wasm";
  /** A shipped @mlc-ai/web-runtime version to run model_lib on (default: read from its imports). */
  tvmjs_version?: string;
  sha256?: Record<string, string>;
  overrides?: ChatOptions;
  required_features?: string[];
  cache?: "cache" | "indexeddb" | "none";
  vram_required_MB?: number;
  low_resource_required?: boolean;
  buffer_size_required_bytes?: number;
  [key: string]: unknown;
}

export interface AppConfig {
  model_list: ModelRecord[];
  /** web-llm's cache choice: becomes each record's `cache` unless it has one. */
  cacheBackend?: "cache" | "indexeddb";
  /** web-llm's older switch for IndexedDB (same as cacheBackend: "indexeddb"). */
  useIndexedDBCache?: boolean;
  [key: string]: unknown;
}

/** This site's app-config.json (next to proxy.js), with absolute URLs. */
export declare const prebuiltAppConfig: AppConfig;
export declare const modelVersion: string;
export declare const modelLibURLPrefix: string;
export declare const functionCallingModelIds: string[];

export interface InitProgressReport {
  progress: number;
  timeElapsed: number;
  text: string;
}
export type InitProgressCallback = (report: InitProgressReport) => void;
export type LogLevel = "TRACE" | "DEBUG" | "INFO" | "WARN" | "ERROR" | "SILENT";

/** web-llm's LogitProcessor: accepted by the types, refused by py_worker at run time. */
export interface LogitProcessor {
  processLogits(logits: Float32Array): Float32Array;
  processSampledToken(token: number): void;
  resetState(): void;
}

export interface MLCEngineConfig {
  appConfig?: AppConfig;
  initProgressCallback?: InitProgressCallback;
  logLevel?: LogLevel;
  /** Refused with LogitProcessorNotSupportedError when not empty (ignored by WebWorkerMLCEngine, as in web-llm). */
  logitProcessorRegistry?: Map<string, LogitProcessor>;
  /** py_worker: silence (ms) after which a ready worker counts as dead (default 10000). */
  heartbeatTimeoutMs?: number;
  /** py_worker: the same while the worker boots (default 120000). */
  bootTimeoutMs?: number;
}

// ---- OpenAI shapes (the fields py_worker reads; others are refused by name) ---------------------

export type Role = "system" | "user" | "assistant" | "tool";

export interface ChatCompletionMessageParam {
  role: Role;
  content: string | null | Array<{ type: "text"; text: string }>;
  name?: string;
  tool_call_id?: string;
  tool_calls?: unknown[];
}

interface SamplingFields {
  model?: string | null;
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  frequency_penalty?: number | null;
  presence_penalty?: number | null;
  repetition_penalty?: number | null;
  stop?: string | string[] | null;
  seed?: number | null;
  logit_bias?: Record<string, number> | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
  n?: number | null;
  ignore_eos?: boolean;
  stream_options?: { include_usage?: boolean } | null;
  response_format?: { type: "text" | "json_object" | "grammar" | "structural_tag"; schema?: string; grammar?: string };
  extra_body?: Record<string, unknown>;
}

export interface ChatCompletionRequestBase extends SamplingFields {
  messages: ChatCompletionMessageParam[];
  tools?: unknown[];
  tool_choice?: unknown;
}
export interface ChatCompletionRequestNonStreaming extends ChatCompletionRequestBase {
  stream?: false | null;
}
export interface ChatCompletionRequestStreaming extends ChatCompletionRequestBase {
  stream: true;
}
export type ChatCompletionRequest = ChatCompletionRequestNonStreaming | ChatCompletionRequestStreaming;

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  extra?: Record<string, number>;
}

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: Array<{
    index: number;
    finish_reason: "stop" | "length" | "tool_calls" | "abort" | null;
    message: { role: "assistant"; content: string | null; tool_calls?: unknown[] };
    logprobs?: unknown;
  }>;
  usage?: CompletionUsage;
}

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: Array<{
    index: number;
    finish_reason: "stop" | "length" | "tool_calls" | "abort" | null;
    delta: { role?: "assistant"; content?: string | null; tool_calls?: unknown[] };
    logprobs?: unknown;
  }>;
  usage?: CompletionUsage;
}

export interface CompletionCreateParamsBase extends SamplingFields {
  prompt: string;
  echo?: boolean;
}
export interface CompletionCreateParamsNonStreaming extends CompletionCreateParamsBase {
  stream?: false | null;
}
export interface CompletionCreateParamsStreaming extends CompletionCreateParamsBase {
  stream: true;
}
export type CompletionCreateParams = CompletionCreateParamsNonStreaming | CompletionCreateParamsStreaming;

export interface Completion {
  id: string;
  object: "text_completion";
  created: number;
  model: string;
  choices: Array<{ index: number; text: string; finish_reason: "stop" | "length" | "abort" | null; logprobs?: unknown }>;
  usage?: CompletionUsage;
}

export interface EmbeddingCreateParams {
  input: string | string[] | number[] | number[][];
  model?: string | null;
  encoding_format?: "float";
  dimensions?: number;
  user?: string;
}
export interface CreateEmbeddingResponse {
  object: "list";
  model: string;
  data: Array<{ object: "embedding"; index: number; embedding: number[] }>;
  usage: { prompt_tokens: number; total_tokens: number; extra?: Record<string, number> };
}

/** A stream: `for await` over it; leaving the loop early stops the generation in the worker. */
export interface ChunkStream<T> extends AsyncIterableIterator<T> {
  readonly streamId: number | string;
  return(value?: unknown): Promise<IteratorResult<T>>;
}

// ---- engines -----------------------------------------------------------------------------------

/** Anything shaped like a Worker (a Worker, or a transport from connect()). */
export interface ChatWorker {
  postMessage(message: unknown): void;
  onmessage: ((event: MessageEvent) => void) | null;
  onerror: ((event: ErrorEvent) => void) | null;
  terminate(): void;
}
export type WorkerSource = ChatWorker | (() => ChatWorker) | { host: "worker" | "shared" | "service"; url?: string; name?: string; scope?: string };

export declare class WebWorkerMLCEngine {
  constructor(worker: WorkerSource, engineConfig?: MLCEngineConfig);
  /** The model ids the engine has loaded (after reload resolves). */
  modelId: string[];
  workerRestarts: number;
  hostRestarts: number;
  chat: {
    completions: {
      create(request: ChatCompletionRequestNonStreaming): Promise<ChatCompletion>;
      create(request: ChatCompletionRequestStreaming): Promise<ChunkStream<ChatCompletionChunk>>;
      create(request: ChatCompletionRequest): Promise<ChatCompletion | ChunkStream<ChatCompletionChunk>>;
    };
  };
  completions: {
    create(request: CompletionCreateParamsNonStreaming): Promise<Completion>;
    create(request: CompletionCreateParamsStreaming): Promise<ChunkStream<Completion>>;
    create(request: CompletionCreateParams): Promise<Completion | ChunkStream<Completion>>;
  };
  embeddings: { create(request: EmbeddingCreateParams): Promise<CreateEmbeddingResponse> };
  reload(modelId: string | string[], chatOpts?: ChatOptions | ChatOptions[]): Promise<void>;
  unload(): Promise<void>;
  interruptGenerate(): Promise<void>;
  resetChat(keepStats?: boolean, modelId?: string): Promise<void>;
  getMessage(modelId?: string): Promise<string>;
  runtimeStatsText(modelId?: string): Promise<string>;
  forwardTokensAndSample(inputIds: number[], isPrefill: boolean, modelId?: string): Promise<number>;
  getMaxStorageBufferBindingSize(): Promise<number>;
  getGPUVendor(): Promise<string>;
  setLogLevel(logLevel: LogLevel): Promise<void>;
  setAppConfig(appConfig: AppConfig): Promise<void>;
  setInitProgressCallback(callback?: InitProgressCallback): void;
  getInitProgressCallback(): InitProgressCallback | undefined;
  /** A raw protocol request of any kind. */
  sendRequest(kind: string, content?: unknown): Promise<unknown>;
}

/** web-llm's MLCEngineInterface: what every engine here offers. */
export type MLCEngineInterface = WebWorkerMLCEngine;

/** web-llm's MLCEngine; here it runs in a module worker it starts itself (the main thread never runs the engine). */
export declare class MLCEngine extends WebWorkerMLCEngine {
  constructor(engineConfig?: MLCEngineConfig);
  setLogitProcessorRegistry(registry?: Map<string, LogitProcessor>): void;
}

/** The engine of the service worker the page registered (navigator.serviceWorker.ready). */
export declare class ServiceWorkerMLCEngine extends WebWorkerMLCEngine {
  constructor(engineConfig?: MLCEngineConfig, keepAliveMs?: number);
  keepAliveMs: number;
}

export declare function CreateWebWorkerMLCEngine(
  worker: WorkerSource,
  modelId: string | string[],
  engineConfig?: MLCEngineConfig,
  chatOpts?: ChatOptions | ChatOptions[],
): Promise<WebWorkerMLCEngine>;

export declare function CreateMLCEngine(
  modelId: string | string[],
  engineConfig?: MLCEngineConfig,
  chatOpts?: ChatOptions | ChatOptions[],
): Promise<MLCEngine>;

export declare function CreateServiceWorkerMLCEngine(
  modelId: string | string[],
  engineConfig?: MLCEngineConfig,
  chatOpts?: ChatOptions | ChatOptions[],
  keepAliveMs?: number,
): Promise<ServiceWorkerMLCEngine>;

export declare function connect(
  kind?: "worker" | "shared" | "service",
  options?: { url?: string; name?: string; scope?: string; registered?: boolean },
): ChatWorker;
export declare function transportFactory(
  kind?: "worker" | "shared" | "service",
  options?: { url?: string; name?: string; scope?: string; registered?: boolean },
): () => ChatWorker;

// ---- cache -------------------------------------------------------------------------------------

export interface CachedFile {
  url: string;
  bytes: number;
  store: "cache" | "indexeddb";
  part: "weights" | "tensorIndex" | "chatConfig" | "tokenizer" | "wasm";
}
export interface CachedModel {
  model_id: string;
  /** Sum of its cached files' sizes (a file kept in both stores counts twice). */
  bytes: number;
  /** As hasModelInCache: every weight file is cached. */
  complete: boolean;
  files: CachedFile[];
}
export interface StorageEstimateResult {
  usage: number | null;
  quota: number | null;
  usageDetails?: Record<string, number>;
}

/** The name of the Cache API cache and of the IndexedDB database every backend keeps its downloads in. */
export declare const CACHE_STORE_NAME: string;
export declare function hasModelInCache(modelId: string, appConfig?: AppConfig): Promise<boolean>;
export declare function deleteModelAllInfoInCache(modelId: string, appConfig?: AppConfig): Promise<void>;
export declare function deleteModelInCache(modelId: string, appConfig?: AppConfig): Promise<void>;
export declare function deleteModelWeightsInCache(modelId: string, appConfig?: AppConfig): Promise<void>;
export declare function deleteChatConfigInCache(modelId: string, appConfig?: AppConfig): Promise<void>;
export declare function deleteModelWasmInCache(modelId: string, appConfig?: AppConfig): Promise<void>;
export declare function listCachedModels(appConfig?: AppConfig): Promise<CachedModel[]>;
export declare function storageEstimate(): Promise<StorageEstimateResult>;
