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

/** What an extra kind of createWorkerHost gets besides its content (host.js's HostContext). */
export interface WorkerContext {
  /** A protocol request to the Python handler from inside the host: its `return` content (a `throw` rejects). */
  // deno-lint-ignore no-explicit-any
  request(kind: string, content: unknown): Promise<any>;
  /** The kernel shim (kernels/backends.js). */
  // deno-lint-ignore no-explicit-any
  shim: any;
}

/** host.js's host as the dedicated worker speaks it. `kinds`: more kinds answered once Python is ready (bench-worker.js's); none in production. */
export declare function createWorkerHost(send: (message: unknown) => void, options?: {
  kinds?: Map<string, (content: unknown, worker: WorkerContext) => Promise<unknown>>;
}): {
  receive(message: unknown): void;
  refuse(error: { name: string; message: string; fields?: Record<string, unknown> }): void;
};

export declare function unsupportedHandlerOption(
  option: string,
  models?: string[],
): LogitProcessorNotSupportedError | UnsupportedEngineOptionError;
