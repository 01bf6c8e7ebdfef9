// Types of host-handler.js: the service worker and SharedWorker hosts of web-llm's API.
import type { LogitProcessor } from "./proxy.d.ts";

/** Constructed in a module service worker (e.g. in its "activate" listener); the host is already running. */
export declare class ServiceWorkerMLCEngineHandler {
  constructor();
  engine: null;
  onmessage(): void;
  setLogitProcessorRegistry(registry?: Map<string, LogitProcessor>): void;
}

/** `self.onconnect = (event) => handler.onconnect(event)` in a module SharedWorker. */
export declare class SharedWorkerMLCEngineHandler {
  constructor();
  engine: null;
  onconnect(event: MessageEvent): void;
  setLogitProcessorRegistry(registry?: Map<string, LogitProcessor>): void;
}
