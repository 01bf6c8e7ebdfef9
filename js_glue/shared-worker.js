// The SharedWorker host: one engine per origin for every tab (transport.js's connect("shared"),
// or new SharedWorker(url, {type: "module"})). Every connecting port is a client of
// sessions.js: its own id, only its own replies and streams, the loaded models shared. A port
// leaves when its tab says "bye" (pagehide), when the port closes, or when it stops answering
// the host's pings; its streams are then returned and its model locks freed.
// Query parameters of this script's URL: pingMs (default 2000), deadMs (default 10000).

import { createHost } from "./host.js";
import { createSessions } from "./sessions.js";

const params = new URL(import.meta.url).searchParams;
const PING_MS = Number(params.get("pingMs")) || 2000;
const DEAD_MS = Number(params.get("deadMs")) || 10000;

const host = createHost();
const sessions = createSessions(host);
let nextClient = 0;
let booted = null; // the boot timeline once Python is ready

self.onconnect = (event) => {
  const port = event.ports[0];
  const id = `c${++nextClient}`;
  const client = sessions.join(id, (message) => port.postMessage(message), (why) => {
    port.close();
    console.info(`py_worker shared host: client ${id} left (${why})`);
  });
  port.onmessage = (e) => sessions.receive(client, e.data);
  port.addEventListener("close", () => client.leave("port closed"));
  port.start();
  client.send({ kind: "hostHello", uuid: null, content: { clientId: id, pingMs: PING_MS } });
  if (booted !== null) client.send({ kind: "workerReady", uuid: null, content: booted });
};

host.ready.then(
  (timeline) => {
    booted = timeline;
    for (const client of sessions.clients.values()) client.send({ kind: "workerReady", uuid: null, content: timeline });
  },
  () => {}, // each request is answered with the boot error by host.js
);

setInterval(() => sessions.sweep(DEAD_MS), PING_MS);
