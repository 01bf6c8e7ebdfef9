// Remote models: requests to an OpenAI-compatible server (vLLM, SGLang, llama.cpp's server), the
// request-level half of the shim next to the kernel ABI (py_worker/remote.py is the other half).
// It lives in kernels/ because everything that reaches the shim imports kernels/backends.js: the
// workers' hosts and py_worker.CreateMLCEngine in a notebook alike.
//
// `remoteOpen(record, path, body)` starts the fetch at once and returns an id, so a request can be
// aborted while it connects; `remoteNext(id)` reads a streamed reply's server-sent events as they
// arrive, one `data:` JSON object per call (null at `[DONE]` or the end); `remoteResult(id)` the
// JSON of a non-streamed reply; `remoteAbort(id)` aborts the fetch (the server sees the client
// leave). Both hand over the JSON text, checked here: Python parses it into plain dicts, where a
// converted JS object would hold `jsnull` for every null. `record` is `{model_id, base_url, model, headers, timeout_ms}` from the app config; the
// body never says where it goes. Errors are named (kernels/errors.js): RemoteServerError,
// RemoteConnectionError, RemoteTimeoutError, RemoteProtocolError; no header value is ever put in
// one (a server that echoes a credential has it replaced by "<redacted>").

import { namedError } from "./errors.js";

/**
 * What py_worker/remote.py tells JS of a remote record (its `wire`).
 * @typedef {{model_id: string, base_url: string, model: string, headers: Record<string, string>, timeout_ms: number}} RemoteRecord
 */

/**
 * One open request. `started` is the fetch, set as it opens; `response` its checked reply;
 * `reader`/`decoder` read a streamed body, whose complete events wait in `events`.
 * @typedef {{
 *   record: RemoteRecord,
 *   controller: AbortController,
 *   aborted: boolean,
 *   buffer: string,
 *   events: string[],
 *   done: boolean,
 *   started: Promise<Response>,
 *   response?: Promise<Response>,
 *   reader?: ReadableStreamDefaultReader<Uint8Array>,
 *   decoder?: TextDecoder,
 * }} RemoteRequest
 */

/** @typedef {"RemoteServerError" | "RemoteConnectionError" | "RemoteTimeoutError" | "RemoteProtocolError"} RemoteErrorName */

/**
 * Every header value of `record` replaced in `text` (a server may echo an API key).
 * @param {unknown} text
 * @param {RemoteRecord} record
 * @returns {string}
 */
function redact(text, record) {
  let out = String(text);
  for (const value of Object.values(record.headers || {})) {
    if (value) out = out.split(String(value)).join("<redacted>");
  }
  return out;
}

const originOf = (/** @type {RemoteRecord} */ record) => new URL(record.base_url).origin;

/**
 * The server's own words in an error body: OpenAI's {error: {message}}, FastAPI's {detail}, or the text.
 * @param {string} text
 * @returns {string}
 */
function serverMessage(text) {
  try {
    const body = JSON.parse(text);
    const detail = body && (body.error?.message ?? body.error ?? body.detail ?? body.message);
    if (detail !== undefined) return typeof detail === "string" ? detail : JSON.stringify(detail);
  } catch {
    // not JSON: the text itself
  }
  return text;
}

/**
 * The parsed SSE events of `buffer`'s complete events, and the unfinished rest.
 * @param {string} buffer
 * @returns {{events: string[], rest: string}}
 */
function parseEvents(buffer) {
  /** @type {string[]} */
  const events = [];
  const blocks = buffer.replace(/\r\n?/g, "\n").split("\n\n");
  const rest = /** @type {string} */ (blocks.pop()); // split gives at least one block
  for (const block of blocks) {
    const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, ""));
    if (data.length) events.push(data.join("\n"));
  }
  return { events, rest };
}

/**
 * The remote half of the shim. `options.fetch` replaces the global fetch (tests of this layer).
 * @param {{fetch?: typeof fetch}} options
 */
export function createRemote(options = {}) {
  const doFetch = options.fetch ?? ((url, init) => globalThis.fetch(url, init));
  /** @type {Map<number, RemoteRequest>} */
  const open = new Map();
  let nextId = 1;

  /** @type {(r: RemoteRequest, extra?: Record<string, unknown>) => {model_id: string, origin: string}} */
  const fields = (r, extra = {}) => ({ model_id: r.record.model_id, origin: originOf(r.record), ...extra });
  /** @type {(r: RemoteRequest, name: RemoteErrorName, message: string, extra?: Record<string, unknown>) => Error} */
  const fail = (r, name, message, extra) =>
    namedError(name, `Remote model ${r.record.model_id} at ${originOf(r.record)}: ${redact(message, r.record)}`, fields(r, extra));

  /**
   * `promise`, or RemoteTimeoutError (and the fetch aborted) after the record's timeout_ms of silence.
   * @template T
   * @param {RemoteRequest} r
   * @param {Promise<T>} promise
   * @returns {Promise<T>}
   */
  async function within(r, promise) {
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let timer;
    /** @type {Promise<never>} */
    const expired = new Promise((_, reject) => {
      timer = setTimeout(() => {
        r.controller.abort();
        reject(fail(r, "RemoteTimeoutError", `no reply within ${r.record.timeout_ms} ms; the request was aborted`, { timeout_ms: r.record.timeout_ms }));
      }, r.record.timeout_ms);
    });
    try {
      return await Promise.race([promise, expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The error a failed read or fetch of `r` stands for, or null when `r` was aborted.
   * @param {RemoteRequest} r
   * @param {any} err what the read or fetch threw: any value may be thrown
   * @returns {Error | null}
   */
  function failure(r, err) {
    if (r.aborted) return null;
    if (err && err.name && String(err.name).startsWith("Remote")) return err;
    return fail(r, "RemoteConnectionError", `the server could not be reached or the connection was lost (${err && err.message})`);
  }

  /**
   * The response of `r` once its status is known; an HTTP error becomes RemoteServerError.
   * @param {RemoteRequest} r
   * @returns {Promise<Response>}
   */
  async function response(r) {
    if (!r.response) {
      r.response = (async () => {
        const resp = await r.started;
        if (resp.ok) return resp;
        const text = await resp.text().catch(() => "");
        throw fail(r, "RemoteServerError", `HTTP ${resp.status}: ${serverMessage(text)}`, {
          status: resp.status,
          server_message: redact(serverMessage(text), r.record),
        });
      })();
    }
    return await within(r, r.response);
  }

  const entry = (/** @type {number} */ id) => open.get(id);

  return {
    /**
     * @param {RemoteRecord} record
     * @param {string} path the endpoint under base_url ("/chat/completions", ...)
     * @param {{stream?: boolean | null, [key: string]: unknown}} body the request's JSON body
     * @returns {number}
     */
    remoteOpen(record, path, body) {
      const id = nextId++;
      const controller = new AbortController();
      const headers = { "content-type": "application/json", accept: body.stream ? "text/event-stream" : "application/json", ...(record.headers || {}) };
      const started = doFetch(`${record.base_url}${path}`, { method: "POST", headers, body: JSON.stringify(body), signal: controller.signal });
      /** @type {RemoteRequest} */
      const r = { record, controller, aborted: false, buffer: "", events: [], done: false, started };
      r.started.catch(() => {}); // read (and named) by the first remoteNext / remoteResult
      open.set(id, r);
      return id;
    },

    /** @param {number} id @returns {Promise<string | null>} */
    async remoteNext(id) {
      const r = entry(id);
      if (!r || r.aborted) return null;
      try {
        while (!r.events.length && !r.done) {
          // A reply with no body throws here, as a lost connection.
          r.reader ??= /** @type {ReadableStream<Uint8Array>} */ ((await response(r)).body).getReader();
          r.decoder ??= new TextDecoder();
          const { value, done } = await within(r, r.reader.read());
          r.buffer += r.decoder.decode(value ?? new Uint8Array(), { stream: !done });
          const { events, rest } = parseEvents(done ? `${r.buffer}\n\n` : r.buffer);
          r.buffer = rest;
          r.events.push(...events);
          r.done = done;
        }
        const data = r.events.shift();
        if (data === undefined || data === "[DONE]") {
          open.delete(id);
          return null;
        }
        /** @type {any} JSON from the server */
        let event;
        try {
          event = JSON.parse(data);
        } catch {
          throw fail(r, "RemoteProtocolError", "a stream event is not JSON", { reason: "event is not JSON" });
        }
        if (event && event.error !== undefined && !Array.isArray(event.choices)) {
          const message = serverMessage(data);
          throw fail(r, "RemoteServerError", `error in the stream: ${message}`, { status: Number(event.error?.code) || 0, server_message: redact(message, r.record) });
        }
        return data;
      } catch (err) {
        const named = failure(r, err);
        open.delete(id);
        r.controller.abort();
        if (named === null) return null;
        throw named;
      }
    },

    /** @param {number} id @returns {Promise<string | null>} */
    async remoteResult(id) {
      const r = entry(id);
      if (!r || r.aborted) return null;
      try {
        const text = await within(r, (await response(r)).text());
        try {
          JSON.parse(text);
          return text;
        } catch {
          throw fail(r, "RemoteProtocolError", "the reply is not JSON", { reason: "reply is not JSON" });
        }
      } catch (err) {
        const named = failure(r, err);
        if (named === null) return null;
        throw named;
      } finally {
        open.delete(id);
      }
    },

    /** @param {number} id */
    remoteAbort(id) {
      const r = entry(id);
      if (!r) return;
      open.delete(id);
      r.aborted = true;
      r.controller.abort();
    },
  };
}
