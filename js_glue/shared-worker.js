// This site's SharedWorker host: one engine per origin for every tab (transport.js's
// connect("shared"), or new SharedWorker(url, {type: "module"})); see host-handler.js.
// Query parameters of this script's URL: pingMs (default 2000), deadMs (default 10000).
import { SharedWorkerMLCEngineHandler } from "./host-handler.js";

const handler = new SharedWorkerMLCEngineHandler();
/** @type {SharedWorkerGlobalScope} */ (/** @type {unknown} */ (self)).onconnect = (event) => handler.onconnect(event);
