// Types of worker-handler.js: web-llm's WebWorkerMLCEngineHandler for a dedicated module worker.
import type { LogitProcessor } from "./proxy.d.ts";
import { LogitProcessorNotSupportedError, UnsupportedEngineOptionError } from "./errors.js";

export declare class WebWorkerMLCEngineHandler {
  /** Takes no argument; an engine argument (web-llm's older API) makes every request fail. */
  constructor();
  /** The engine is Python's: there is no JS engine object. */
  engine: null;
  /** Where replies go (the worker's postMessage); a subclass may override it. */
  postMessage(message: unknown): void;
  /** A MessageEvent, or the message itself. */
  onmessage(event: MessageEvent | unknown): void;
  /** An empty registry is accepted; any other makes every request fail with LogitProcessorNotSupportedError. */
  setLogitProcessorRegistry(registry?: Map<string, LogitProcessor>): void;
}

/** What an extra kind of createWorkerHost gets besides its content. */
export interface WorkerContext {
  /** A protocol request to the Python handler from inside the worker: its `return` content (a `throw` rejects). */
  request(kind: string, content: unknown): Promise<unknown>;
  /** The kernel shim (kernels/backends.js). */
  shim: unknown;
}

/** `kinds`: more kinds answered by the worker once Python is ready (bench-worker.js's); none in production. */
export declare function createWorkerHost(send: (message: unknown) => void, options?: {
  kinds?: Map<string, (content: unknown, worker: WorkerContext) => Promise<object>>;
}): {
  receive(message: unknown): void;
  refuse(error: { name: string; message: string; fields?: Record<string, unknown> }): void;
};

export declare function unsupportedHandlerOption(
  option: string,
  models?: string[],
): LogitProcessorNotSupportedError | UnsupportedEngineOptionError;
