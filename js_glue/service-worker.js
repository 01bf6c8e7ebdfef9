// This site's Service Worker host (transport.js's connect("service")), written as a web-llm
// service worker script is: host-handler.js installs the whole host while this module is first
// evaluated (see there: clients, keep-alive, recovery). Query parameters: pingMs, deadMs.
import { ServiceWorkerMLCEngineHandler } from "./host-handler.js";

let handler;
self.addEventListener("activate", () => {
  handler ??= new ServiceWorkerMLCEngineHandler();
});
