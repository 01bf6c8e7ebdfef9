// The bytes each token id stands for, and the masks built from them that a constrained answer
// also obeys (grammar.js), so that it is always text a parser reads:
// - valid UTF-8 (RFC 3629): the xgrammar release on npm lets a string hold bytes no UTF-8 text
//   has (C0, C1, F5-FF, overlong and surrogate forms), which decode to U+FFFD and break a
//   schema's lengths and patterns; so each step allows only the ids whose bytes continue the
//   answer's bytes as valid UTF-8 (one mask per decoder state, 8 states, built when first met);
// - for a JSON schema, no control byte (00-1F): JSON has none unescaped, and with no free
//   whitespace none outside strings either, but xgrammar's JSON strings allow them.
// Twin: py_worker/reference/grammar.py (token_bytes, Utf8Masks), same rules.

// GPT-2's byte-level alphabet: the printable bytes stand for themselves, the others for 256 + n.
const BYTE_OF_CHAR = (() => {
  /** @type {Map<number, number>} */
  const map = new Map();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    map.set(printable ? b : 256 + n++, b);
  }
  return map;
})();

const utf8 = new TextEncoder();

/**
 * The bytes of one token as the vocabulary type spells it ("byte_level" | "byte_fallback" | "raw").
 * @param {string} token
 * @param {string} type
 * @returns {Uint8Array}
 */
export function tokenBytes(token, type) {
  if (type === "byte_fallback") {
    const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(token);
    return m ? Uint8Array.of(parseInt(m[1], 16)) : utf8.encode(token.replaceAll("▁", " "));
  }
  if (type === "byte_level") {
    /** @type {number[]} */
    const out = [];
    for (const ch of token) {
      const b = BYTE_OF_CHAR.get(/** @type {number} */ (ch.codePointAt(0)));
      if (b === undefined) out.push(...utf8.encode(ch)); // an added token's own text
      else out.push(b);
    }
    return Uint8Array.from(out);
  }
  return utf8.encode(token);
}

// Decoder states: [continuation bytes still needed, allowed range of the next byte]. 0 = between
// characters. RFC 3629's table of well-formed sequences.
const START = "0";

/** @param {string} state @param {number} b @returns {string | null} */
function next(state, b) {
  if (state === START) {
    if (b < 0x80) return START;
    if (b >= 0xc2 && b <= 0xdf) return "1,80,bf";
    if (b === 0xe0) return "2,a0,bf";
    if ((b >= 0xe1 && b <= 0xec) || b === 0xee || b === 0xef) return "2,80,bf";
    if (b === 0xed) return "2,80,9f";
    if (b === 0xf0) return "3,90,bf";
    if (b >= 0xf1 && b <= 0xf3) return "3,80,bf";
    if (b === 0xf4) return "3,80,8f";
    return null;
  }
  const [n, lo, hi] = state.split(",").map((x, i) => (i ? parseInt(x, 16) : Number(x)));
  if (b < lo || b > hi) return null;
  return n === 1 ? START : `${n - 1},80,bf`;
}

/**
 * The decoder state after `bytes` from `state`, or null where they are not valid UTF-8.
 * @param {string} state
 * @param {Iterable<number>} bytes
 * @returns {string | null}
 */
export function advance(state, bytes) {
  /** @type {string | null} */
  let s = state;
  for (const b of bytes) {
    s = next(s, b);
    if (s === null) return null;
  }
  return s;
}

export class Utf8Masks {
  /**
   * bytes: each id's Uint8Array; vocabSize: the logits' length (ids past `bytes` stay allowed).
   * @param {Uint8Array[]} bytes
   * @param {number} vocabSize
   */
  constructor(bytes, vocabSize) {
    this.bytes = bytes;
    this.vocabSize = vocabSize;
    /** @type {Map<string, Uint32Array>} decoder state -> its mask */
    this.masks = new Map();
    this.control = new Uint32Array(Math.ceil(vocabSize / 32)).fill(0xffffffff);
    bytes.forEach((bs, id) => {
      if (bs.some((b) => b < 0x20)) this.control[id >>> 5] &= ~(1 << (id & 31));
    });
  }

  /**
   * Bitmask of the ids whose bytes are valid UTF-8 from `state`.
   * @param {string} state
   * @returns {Uint32Array}
   */
  mask(state) {
    let m = this.masks.get(state);
    if (!m) {
      const made = new Uint32Array(Math.ceil(this.vocabSize / 32)).fill(0xffffffff);
      this.bytes.forEach((bs, id) => {
        if (advance(state, bs) === null) made[id >>> 5] &= ~(1 << (id & 31));
      });
      this.masks.set(state, made);
      m = made;
    }
    return m;
  }
}

export { START as UTF8_START };
