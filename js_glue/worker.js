// This site's module worker, written exactly as a web-llm worker script is (worker-handler.js
// runs host.js's one host in it: Pyodide boot, kernel shim, protocol, heartbeats, prefetch).
import { WebWorkerMLCEngineHandler } from "./worker-handler.js";

const handler = new WebWorkerMLCEngineHandler();
self.onmessage = (msg) => handler.onmessage(msg);
