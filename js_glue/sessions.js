// Many clients over one Python handler (host.js): what the SharedWorker and Service Worker
// hosts share. Each client gets an id; host.js routes each reply only to the client whose
// request it answers; stream ids are translated per client so a client can name only its own
// streams. Clients share the loaded models: a `reload` of exactly what the engine holds (or is
// loading) is answered here, without loading again. A client that leaves ("bye", a closed
// port, a client the browser no longer knows, or silence past the ping deadline) has its
// streams returned, which stops their generation and frees their model locks for the others.

import { errorContent } from "./host.js";

const STREAM_INIT = new Set(["chatCompletionStreamInit", "completionStreamInit"]);
const STREAM_OPS = new Set(["completionStreamNextChunk", "completionStreamReturn"]);
const INFERENCE = new Set([
  "chatCompletionNonStreaming", "chatCompletionStreamInit", "completionNonStreaming",
  "completionStreamInit", "embedding",
]);
const TERMINAL = new Set(["return", "throw"]);
const noop = () => {};
const reloadKey = (content) => JSON.stringify([content.modelId, content.chatOpts ?? null]);

/**
 * createSessions(host) → {join(id, send, onLeave?), receive(client, msg), clients, sweep(deadMs)}.
 * `send(message)` posts to that client; `receive` returns a Promise that settles when every
 * reply to `msg` has been sent (the service worker keeps itself alive on it).
 */
export function createSessions(host) {
  const clients = new Map(); // client id -> Client
  let loadedKey = null; // the reload key of what the engine holds; null: unknown or nothing
  let loading = null; // {key, done} while a reload is in flight

  const returnStream = (streamId) => host.deliver({ kind: "completionStreamReturn", uuid: null, content: { streamId } }, noop);

  class Client {
    constructor(id, send, onLeave) {
      this.id = id;
      this.sendRaw = send;
      this.onLeave = onLeave;
      this.alive = true;
      this.lastHeard = performance.now();
      this.streams = new Map(); // client stream id -> engine stream id
      this.nextStream = 0;
      this.pending = 0;
    }

    send(message) {
      if (this.alive) this.sendRaw(message);
    }

    /** A stream the engine opened for this client; one for a client already gone is closed. */
    adopt(engineStreamId) {
      if (!this.alive) {
        returnStream(engineStreamId);
        return null;
      }
      const local = `stream-${++this.nextStream}`;
      this.streams.set(local, engineStreamId);
      return local;
    }

    leave(why) {
      if (!this.alive) return;
      this.alive = false;
      clients.delete(this.id);
      for (const streamId of this.streams.values()) returnStream(streamId);
      this.streams.clear();
      if (this.onLeave) this.onLeave(why);
    }
  }

  /** An inference request reloads when the engine holds other models (reload-if-unmatched). */
  function noteRecovered(content) {
    const ids = JSON.stringify(content.modelId);
    if (loadedKey === null || JSON.stringify(JSON.parse(loadedKey)[0]) !== ids) loadedKey = reloadKey(content);
  }

  /** Forward one request to Python; replies go to this client only, stream ids translated. */
  function forward(client, msg, content, onTerminal = noop) {
    return new Promise((resolve) => {
      host.deliver({ ...msg, content }, (reply) => {
        if (reply.kind === "return") {
          if (STREAM_INIT.has(msg.kind) && reply.content && reply.content.streamId) {
            const local = client.adopt(reply.content.streamId);
            reply = local === null ? null : { ...reply, content: { ...reply.content, streamId: local } };
          }
          if (INFERENCE.has(msg.kind) && content && content.modelId) noteRecovered(content);
          if (msg.kind === "unload") loadedKey = null;
        }
        if (reply && STREAM_OPS.has(msg.kind) && TERMINAL.has(reply.kind)) {
          if (reply.kind === "throw" || msg.kind === "completionStreamReturn" || reply.content.done) {
            client.streams.delete(msg.content.streamId);
          }
        }
        if (reply === null || TERMINAL.has(reply.kind)) {
          onTerminal(reply);
          resolve();
        }
        if (reply !== null) client.send(reply);
      });
    });
  }

  function streamOp(client, msg) {
    const local = msg.content && msg.content.streamId;
    const engineId = client.streams.get(local);
    if (engineId !== undefined) return forward(client, msg, { ...msg.content, streamId: engineId });
    if (msg.kind === "completionStreamReturn") {
      client.send({ kind: "return", uuid: msg.uuid, content: { done: true } });
    } else {
      const error = { name: "StreamNotFoundError", message: `No open stream '${local}' (finished or closed).`, fields: { stream_id: local } };
      client.send({ kind: "throw", uuid: msg.uuid, content: error });
    }
    return Promise.resolve();
  }

  async function reload(client, msg) {
    const key = reloadKey(msg.content);
    if (loading !== null && loading.key === key) await loading.done;
    if (key === loadedKey) {
      const text = `Finish loading: ${JSON.stringify(msg.content.modelId)} already loaded in the shared engine`;
      client.send({ kind: "initProgressCallback", uuid: msg.uuid, content: { progress: 1, timeElapsed: 0, text } });
      client.send({ kind: "return", uuid: msg.uuid, content: null });
      return;
    }
    let settle = noop;
    const entry = { key, done: new Promise((resolve) => { settle = resolve; }) };
    loading = entry;
    loadedKey = null;
    await forward(client, msg, msg.content, (reply) => {
      if (loading !== entry) return;
      if (reply && reply.kind === "return") loadedKey = key;
      loading = null;
      settle();
    });
  }

  function dispatch(client, msg) {
    if (msg.kind === "bye") {
      client.leave("bye");
      return Promise.resolve();
    }
    if (STREAM_OPS.has(msg.kind)) return streamOp(client, msg);
    if (msg.kind === "reload" && msg.content && typeof msg.content === "object") {
      return reload(client, msg).catch((error) => client.send({ kind: "throw", uuid: msg.uuid, content: errorContent(error) }));
    }
    return forward(client, msg, msg.content);
  }

  return {
    clients,
    join(id, send, onLeave) {
      const client = new Client(id, send, onLeave);
      clients.set(id, client);
      return client;
    },
    /** Handle one message of `client`; settles once its last reply has been sent. */
    receive(client, msg) {
      client.lastHeard = performance.now();
      if (!msg || typeof msg !== "object" || msg.kind === "hostPong") return Promise.resolve();
      client.pending += 1;
      return dispatch(client, msg).finally(() => {
        client.pending -= 1;
      });
    },
    /** Ping every client; one silent for longer than `deadMs` leaves. */
    sweep(deadMs) {
      const now = performance.now();
      for (const client of [...clients.values()]) {
        if (now - client.lastHeard > deadMs) client.leave("no answer to pings");
        else client.send({ kind: "hostPing", uuid: null, content: null });
      }
    },
  };
}
