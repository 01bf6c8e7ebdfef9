// Many clients over one Python handler (host.js): what the SharedWorker and Service Worker
// hosts share. Each client gets an id; host.js routes each reply only to the client whose
// request it answers; stream ids are translated per client so a client can name only its own
// streams. Clients share the loaded models: a `reload` of exactly what the engine holds (or is
// loading) is answered here, without loading again. A client that leaves ("bye", a closed
// port, a client the browser no longer knows, or silence past the ping deadline) has its
// streams returned, which stops their generation and frees their model locks for the others.
// Each client's requests are held (by uuid) from their arrival to their terminal reply; the
// answer to a client's `heartbeat` lists them (`held`) with the host's `instance`, so the proxy
// can tell a request this instance has from one an earlier instance lost. A message whose
// handling throws is answered with that error: one reply per request, whatever happens here.

import { TERMINAL, duplicateContent, errorContent } from "./pyodide-host.js";

/** @typedef {import("./limits.js").Message} Message */
/**
 * What sessions need of host.js's createHost: `reply` gets every reply to `msg`, its terminal one last.
 * @typedef {{deliver(msg: Message, reply: (reply: Message) => void): void}} Host
 */

const STREAM_INIT = new Set(["chatCompletionStreamInit", "completionStreamInit"]);
const STREAM_OPS = new Set(["completionStreamNextChunk", "completionStreamReturn"]);
const INFERENCE = new Set([
  "chatCompletionNonStreaming", "chatCompletionStreamInit", "completionNonStreaming",
  "completionStreamInit", "embedding",
]);
const noop = () => {};
// A client leaves for silence only when it is past the deadline AND has left this many pings
// unanswered: a host that was itself busy (Python's synchronous stretches, a loaded machine)
// sent no pings meanwhile and so drops nobody for its own stall.
const MIN_UNANSWERED = 3;
const reloadKey = (/** @type {{modelId: unknown, chatOpts?: unknown}} */ content) => JSON.stringify([content.modelId, content.chatOpts ?? null]);

/**
 * createSessions(host) → {join(id, send, onLeave?), receive(client, msg), clients, sweep(deadMs)}.
 * `send(message)` posts to that client; `receive` returns a Promise that settles when every
 * reply to `msg` has been sent (the service worker keeps itself alive on it).
 * @param {Host} host
 */
export function createSessions(host) {
  /** @type {Map<string, Client>} client id -> Client */
  const clients = new Map();
  /** @type {string | null} the reload key of what the engine holds; null: unknown or nothing */
  let loadedKey = null;
  /** @type {{key: string, done: Promise<unknown>} | null} while a reload is in flight */
  let loading = null;

  const returnStream = (/** @type {unknown} */ streamId) => host.deliver({ kind: "completionStreamReturn", uuid: null, content: { streamId } }, noop);

  class Client {
    /**
     * @param {string} id
     * @param {(message: Message) => void} send posts to the client
     * @param {(why: string) => void} [onLeave]
     */
    constructor(id, send, onLeave) {
      this.id = id;
      this.sendRaw = send;
      this.onLeave = onLeave;
      this.alive = true;
      this.lastHeard = performance.now();
      this.unanswered = 0; // pings sent since this client was last heard
      /** @type {Map<string, unknown>} client stream id -> engine stream id */
      this.streams = new Map();
      this.nextStream = 0;
      this.pending = 0;
      /** @type {Map<string | null, number>} uuid -> count: requests received and not yet answered */
      this.held = new Map();
    }

    /** @param {string | null} uuid */
    hold(uuid) {
      if (typeof uuid === "string") this.held.set(uuid, (this.held.get(uuid) || 0) + 1);
    }

    /** True when `uuid` still waits for its terminal reply. @param {string | null} uuid */
    holds(uuid) {
      return this.held.has(uuid);
    }

    /**
     * A reply that answers a refused duplicate: the request in flight keeps its hold.
     * @param {string | null} uuid @param {import("./limits.js").ErrorContent} content
     */
    refuse(uuid, content) {
      if (this.alive) this.sendRaw({ kind: "throw", uuid, content });
    }

    /** Silent past `deadMs` and through MIN_UNANSWERED pings (see above). @param {number} now @param {number} deadMs */
    silent(now, deadMs) {
      return now - this.lastHeard > deadMs && this.unanswered >= MIN_UNANSWERED;
    }

    ping() {
      this.unanswered += 1;
      this.send({ kind: "hostPing", uuid: null, content: null });
    }

    /** @param {Message} message */
    send(message) {
      if (message && TERMINAL.has(message.kind) && this.held.has(message.uuid)) {
        const n = /** @type {number} held, just checked */ (this.held.get(message.uuid)) - 1;
        if (n > 0) this.held.set(message.uuid, n);
        else this.held.delete(message.uuid);
      }
      if (this.alive) this.sendRaw(message);
    }

    /**
     * A stream the engine opened for this client; one for a client already gone is closed.
     * @param {unknown} engineStreamId
     * @returns {string | null} the client's id for it
     */
    adopt(engineStreamId) {
      if (!this.alive) {
        returnStream(engineStreamId);
        return null;
      }
      const local = `stream-${++this.nextStream}`;
      this.streams.set(local, engineStreamId);
      return local;
    }

    /** @param {string} why */
    leave(why) {
      if (!this.alive) return;
      this.alive = false;
      clients.delete(this.id);
      for (const streamId of this.streams.values()) returnStream(streamId);
      this.streams.clear();
      if (this.onLeave) this.onLeave(why);
    }
  }

  /**
   * An inference request reloads when the engine holds other models (reload-if-unmatched).
   * @param {{modelId: unknown, chatOpts?: unknown}} content
   */
  function noteRecovered(content) {
    const ids = JSON.stringify(content.modelId);
    if (loadedKey === null || JSON.stringify(JSON.parse(loadedKey)[0]) !== ids) loadedKey = reloadKey(content);
  }

  /**
   * Forward one request to Python; replies go to this client only, stream ids translated.
   * @param {Client} client
   * @param {Message} msg
   * @param {any} content what Python gets as the content (msg's, or with the stream id translated)
   * @param {(reply: Message | null) => void} [onTerminal] null: a stream the client left before it opened
   * @returns {Promise<unknown>}
   */
  function forward(client, msg, content, onTerminal = noop) {
    return new Promise((resolve) => {
      host.deliver({ ...msg, content }, (answer) => {
        /** @type {Message | null} null once it is dropped (a stream opened for a client that left) */
        let reply = answer;
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
          resolve(undefined);
        }
        if (reply !== null) client.send(reply);
      });
    });
  }

  /** @param {Client} client @param {Message} msg */
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

  /** @param {Client} client @param {Message} msg */
  async function reload(client, msg) {
    const key = reloadKey(msg.content);
    if (loading !== null && loading.key === key) await loading.done;
    if (key === loadedKey) {
      const text = `Finish loading: ${JSON.stringify(msg.content.modelId)} already loaded in the shared engine`;
      client.send({ kind: "initProgressCallback", uuid: msg.uuid, content: { progress: 1, timeElapsed: 0, text } });
      client.send({ kind: "return", uuid: msg.uuid, content: null });
      return;
    }
    /** @type {(value?: unknown) => void} */
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

  /** @param {Client} client @param {Message} msg @returns {Promise<unknown>} */
  function dispatch(client, msg) {
    if (msg.kind === "bye") {
      client.leave("bye");
      return Promise.resolve();
    }
    if (msg.kind === "heartbeat") {
      host.deliver(msg, (reply) => {
        const content = reply.kind === "return" ? { ...reply.content, held: [...client.held.keys()] } : reply.content;
        client.send({ ...reply, content });
      });
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
    /** @param {string} id @param {(message: Message) => void} send @param {(why: string) => void} [onLeave] */
    join(id, send, onLeave) {
      const client = new Client(id, send, onLeave);
      clients.set(id, client);
      return client;
    },
    /**
     * Handle one message of `client`; settles once its last reply has been sent.
     * @param {Client} client
     * @param {any} msg as the client posted it (checked here: any value)
     */
    receive(client, msg) {
      client.lastHeard = performance.now();
      client.unanswered = 0;
      if (!msg || typeof msg !== "object" || msg.kind === "hostPong") return Promise.resolve();
      if (msg.kind !== "heartbeat" && msg.kind !== "bye" && client.holds(msg.uuid)) {
        // As the handler does for one caller (host.js gives Python uuids of its own, so it
        // cannot see a client's duplicates): refused, and the request in flight runs on.
        client.refuse(msg.uuid, duplicateContent(msg.uuid));
        return Promise.resolve();
      }
      if (msg.kind !== "heartbeat" && msg.kind !== "bye") client.hold(msg.uuid);
      client.pending += 1;
      let done;
      try {
        done = dispatch(client, msg);
      } catch (error) {
        done = Promise.reject(error);
      }
      return done
        .catch((error) => {
          if (typeof msg.uuid !== "string" || client.holds(msg.uuid)) client.send({ kind: "throw", uuid: msg.uuid, content: errorContent(error) });
          else console.warn(`py_worker host: after the reply to ${String(msg.kind)}: ${error}`);
        })
        .finally(() => {
          client.pending -= 1;
        });
    },
    /** Ping every client; one silent for longer than `deadMs` (and several pings) leaves. @param {number} deadMs */
    sweep(deadMs) {
      const now = performance.now();
      for (const client of [...clients.values()]) {
        if (client.silent(now, deadMs)) client.leave("no answer to pings");
        else client.ping();
      }
    },
  };
}
