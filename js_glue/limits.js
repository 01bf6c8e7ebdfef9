// What the worker accepts, checked in JS before a message reaches Python: Python handles a
// message synchronously (conversion, validation, tokenization) and a worker busy for longer than
// the proxy's heartbeat is declared dead, so a message that is too large is refused at once with
// MessageTooLargeError, and one nested deeper than Python reads with MalformedMessageError
// (reason "depth"; the structured clone itself gives up somewhere past a thousand levels, so
// the proxy must refuse before posting). Both by the proxy before posting, and again by every
// host for raw messages.
// Imported by proxy.js, worker.js and host.js; no side effects.

/**
 * One protocol message. `content` is a page's request or Python's reply: posted data of any shape.
 * @typedef {{kind: string, uuid: string | null, content?: any}} Message
 */
/**
 * A `throw` reply's content, re-thrown by the proxy as the class `name` (errors.js).
 * @typedef {{name: string, message: string, fields: Record<string, unknown>}} ErrorContent
 */

/** The largest message accepted: about 1 MiB of JSON (strings counted in UTF-8 bytes). */
export const MAX_MESSAGE_BYTES = 1 << 20;

/** The deepest container level accepted, the envelope being level 0 (Python's MAX_DEPTH). */
export const MAX_MESSAGE_DEPTH = 64;

/**
 * UTF-8 length of `s`, counting at most until `budget` is passed (then any larger number).
 * @param {string} s
 * @param {number} budget
 * @returns {number}
 */
function utf8Length(s, budget) {
  if (s.length > budget) return s.length; // at least one byte per UTF-16 unit
  let n = 0;
  for (let i = 0; i < s.length && n <= budget; i++) {
    const c = s.charCodeAt(i);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c >= 0xd800 && c <= 0xdfff ? 2 : 3; // a surrogate pair: 4
  }
  return n;
}

/** A walk's marker: the container `node` is left (it no longer encloses what is walked next). */
class Exit {
  /** @param {object} node */
  constructor(node) {
    this.node = node;
  }
}

/**
 * About the size of `value` as JSON, walked without recursion (any depth is fine) and stopped
 * as soon as it passes `limit`. A value reached twice is counted twice (Python converts it
 * twice); a reference back to an enclosing object (a cycle) is not followed: whether a cyclic
 * message is acceptable is the handler's decision, not a size question.
 * @param {unknown} value
 * @param {number} [limit]
 * @returns {number}
 */
export function messageSize(value, limit = MAX_MESSAGE_BYTES) {
  let size = 0;
  /** @type {unknown[]} */
  const stack = [value];
  /** @type {Set<object>} the objects enclosing the one being walked */
  const open = new Set();
  while (stack.length > 0 && size <= limit) {
    const v = stack.pop();
    if (v instanceof Exit) {
      open.delete(v.node);
    } else if (typeof v === "string") {
      size += utf8Length(v, limit - size) + 2;
    } else if (v === null || typeof v !== "object") {
      size += 8;
    } else if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) {
      size += v.byteLength + 2;
    } else if (!open.has(v)) {
      open.add(v);
      stack.push(new Exit(v));
      const entries = v instanceof Map ? [...v.entries()].flat() : v instanceof Set ? [...v] : null;
      const keys = entries === null && !Array.isArray(v) ? Object.keys(v) : null;
      const children = entries ?? (keys === null ? /** @type {unknown[]} an array: no keys taken */ (v) : null);
      const count = children !== null ? children.length : /** @type {string[]} */ (keys).length;
      size += 2 + count; // brackets and separators
      if (size > limit) break;
      if (children !== null) {
        for (let i = 0; i < children.length; i++) stack.push(children[i]);
      } else {
        for (const key of /** @type {string[]} */ (keys)) {
          size += utf8Length(key, limit - size) + 3;
          if (size > limit) break;
          stack.push(/** @type {Record<string, unknown>} */ (v)[key]);
        }
      }
    }
  }
  return size;
}

/**
 * How deep `value` nests (a scalar 0, `[]` 1), walked without recursion and stopped once past
 * `limit`; a reference back to an enclosing object is not followed (a cycle is Python's "cycle").
 * @param {unknown} value
 * @param {number} [limit]
 * @returns {number}
 */
export function nestingDepth(value, limit = MAX_MESSAGE_DEPTH) {
  let deepest = 0;
  /** @type {[unknown, number][]} */
  const stack = [[value, 1]];
  /** @type {Set<object>} */
  const open = new Set();
  while (stack.length > 0 && deepest <= limit) {
    const [v, depth] = /** @type {[unknown, number]} */ (stack.pop());
    if (v instanceof Exit) {
      open.delete(v.node);
      continue;
    }
    if (v === null || typeof v !== "object" || ArrayBuffer.isView(v) || v instanceof ArrayBuffer || open.has(v)) continue;
    deepest = Math.max(deepest, depth);
    open.add(v);
    stack.push([new Exit(v), depth]);
    const children = v instanceof Map ? [...v.entries()].flat() : v instanceof Set ? [...v] : Array.isArray(v) ? v : Object.values(v);
    for (const child of children) stack.push([child, depth + 1]);
  }
  return deepest;
}

/**
 * The `throw` content refusing a message's `content`, or null when it may go on: over the size
 * limit (MessageTooLargeError; fields.size: the bytes counted when the walk stopped, just past
 * the limit), or nested deeper than MAX_MESSAGE_DEPTH counting the envelope (MalformedMessageError,
 * reason "depth", as Python would answer).
 * @param {unknown} kind
 * @param {unknown} content
 * @param {number} [limit]
 * @returns {ErrorContent | null}
 */
export function refusal(kind, content, limit = MAX_MESSAGE_BYTES) {
  const depth = nestingDepth(content, MAX_MESSAGE_DEPTH - 1);
  if (depth > MAX_MESSAGE_DEPTH - 1) {
    return {
      name: "MalformedMessageError",
      message: `A ${JSON.stringify(String(kind))} message nests deeper than ${MAX_MESSAGE_DEPTH} levels.`,
      fields: { reason: "depth", limit: MAX_MESSAGE_DEPTH },
    };
  }
  const size = messageSize(content, limit);
  if (size <= limit) return null;
  return {
    name: "MessageTooLargeError",
    message: `A ${JSON.stringify(String(kind))} message larger than ${limit} bytes is refused before it reaches Python.`,
    fields: { kind: String(kind), size, limit },
  };
}
