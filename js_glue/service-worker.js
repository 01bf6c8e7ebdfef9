// The Service Worker host (module service worker: transport.js's connect("service")). One
// engine for every same-origin page, surviving navigation; the browser may stop it at any time:
// - the message handler is registered while the script is first evaluated (handlers added
//   later are never called for the event that woke the worker);
// - a reply goes only to the client that asked (event.source), through sessions.js, which also
//   keeps each client's stream ids and its view of the shared models;
// - messages whose origin is not this worker's own are ignored, never answered;
// - keep-alive: every message event waits (event.waitUntil) until that request's last reply is
//   sent, and while a client has requests or streams open the worker pings it; the client's
//   answer is a new message event, which extends the worker's life again;
// - recovery: the app config is kept in Cache Storage and given to a fresh instance before any
//   request, so after the browser stopped the worker the next inference request (which carries
//   the model ids the client expects) reloads those models once, through the handler's
//   reload-if-unmatched.
// Query parameters of this script's URL: pingMs (default 5000), deadMs (default 20000).

import { createHost } from "./host.js";
import { createSessions } from "./sessions.js";
import "./web-tokenizers/index.js";

const params = new URL(import.meta.url).searchParams;
const PING_MS = Number(params.get("pingMs")) || 5000;
const DEAD_MS = Number(params.get("deadMs")) || 20000;
const STATE_CACHE = "py-worker-host";
const APP_CONFIG_KEY = new URL("./__py_worker_host/app-config.json", self.registration.scope).href;

const host = createHost();
const sessions = createSessions(host);

async function restoreAppConfig() {
  try {
    const stored = await (await caches.open(STATE_CACHE)).match(APP_CONFIG_KEY);
    if (stored) host.deliver({ kind: "setAppConfig", uuid: null, content: await stored.json() }, () => {});
  } catch (err) {
    console.warn(`py_worker service host: app config not restored: ${err}`);
  }
}

async function keepAppConfig(content) {
  const body = JSON.stringify(content);
  await (await caches.open(STATE_CACHE)).put(APP_CONFIG_KEY, new Response(body, { headers: { "Content-Type": "application/json" } }));
}

// Requests wait for this, so the restored app config reaches Python before any of them.
const restored = restoreAppConfig();

function clientOf(source) {
  const known = sessions.clients.get(source.id);
  if (known) return known;
  return sessions.join(source.id, (message) => source.postMessage(message));
}

async function handle(source, msg) {
  await restored;
  const client = clientOf(source);
  const done = sessions.receive(client, msg);
  if (msg && msg.kind === "setAppConfig" && msg.content) {
    await keepAppConfig(msg.content).catch((err) => console.warn(`py_worker service host: app config not kept: ${err}`));
  }
  await done;
}

self.addEventListener("message", (event) => {
  if (event.origin !== self.location.origin) return;
  const source = event.source;
  if (!source || typeof source.id !== "string" || typeof source.postMessage !== "function") return;
  event.waitUntil(handle(source, event.data));
});

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

// Clients that are gone leave (their streams are returned); clients with work in flight are
// pinged, and their answers keep this worker alive while they wait.
setInterval(async () => {
  const now = performance.now();
  for (const client of [...sessions.clients.values()]) {
    if (!(await self.clients.get(client.id))) {
      client.leave("client gone");
    } else if (client.pending > 0 || client.streams.size > 0) {
      if (client.silent(now, DEAD_MS)) client.leave("no answer to pings");
      else client.ping();
    }
  }
}, PING_MS);
