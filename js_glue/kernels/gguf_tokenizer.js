// The HF tokenizer.json of a GGUF's tokenizer metadata, tokenizing as llama.cpp does: the twin of
// py_worker/reference/gguf_tokenizer/ (same tables, same checks, the same JSON text to the
// byte). Its docstrings explain how each llama.cpp tokenizer is written in HF's terms; the tests
// (tests/host/test_gguf_tokenizer.py) hold the two builders to one output.
//
// Input: GGUF metadata as a plain object, key -> value (gguf.js's parser): strings, numbers
// (64-bit integers may come as BigInt), booleans, arrays. Output: the tokenizer.json text that
// @mlc-ai/web-tokenizers reads. A tokenizer this cannot reproduce exactly throws
// UnsupportedTokenizerError with fields {model, pre}.

import { namedError } from "./errors.js";

// llama.cpp's LLAMA_TOKEN_TYPE_* (tokenizer.ggml.token_type values).
const NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, BYTE = 6;

/** llama-vocab.cpp's regex for LLAMA_VOCAB_PRE_TYPE_LLAMA3 (also DBRX, SMAUG). */
export const LLAMA3_REGEX =
  String.raw`(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}` +
  String.raw`| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;

/** llama-vocab.cpp's regex for LLAMA_VOCAB_PRE_TYPE_QWEN2 (also STABLELM2): Llama 3's, one digit at a time. */
export const QWEN2_REGEX =
  String.raw`(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}` +
  String.raw`| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;

/**
 * tokenizer.ggml.pre -> [pre-tokenizer family, ignore_merges, llama.cpp's default add_bos].
 * @typedef {[family: "digits" | "gpt2" | "llama3" | "qwen2", ignoreMerges: boolean, addBos: boolean]} PreTokenizer
 */
/** @type {PreTokenizer} */
const DIGITS = ["digits", false, false];
/** @type {PreTokenizer} */
const GPT2 = ["gpt2", false, false];
/** @type {PreTokenizer} */
const LLAMA3 = ["llama3", true, true];
/** @type {PreTokenizer} */
const LLAMA3_MERGES = ["llama3", false, false];
/** @type {PreTokenizer} */
const QWEN2 = ["qwen2", false, false];

/**
 * Every tokenizer.ggml.pre of a "gpt2" model this builder reproduces exactly.
 * @type {Readonly<Record<string, PreTokenizer>>}
 */
export const BPE_PRE = Object.freeze({
  // LLAMA_VOCAB_PRE_TYPE_{STARCODER,REFACT,COMMAND_R,SMOLLM,CODESHELL,EXAONE,MINERVA,MELLUM2}
  smollm: DIGITS, starcoder: DIGITS, refact: DIGITS, "command-r": DIGITS, codeshell: DIGITS,
  exaone: DIGITS, "minerva-7b": DIGITS, mellum2: DIGITS,
  // LLAMA_VOCAB_PRE_TYPE_{GPT2,MPT,OLMO,JAIS,TRILLION,GRANITE_DOCLING}
  "gpt-2": GPT2, "phi-2": GPT2, gigachat: GPT2, "a.x-4.0": GPT2, mellum: GPT2, exaone4: GPT2,
  mpt: GPT2, olmo: GPT2, jais: GPT2, trillion: GPT2, "granite-docling": GPT2,
  // LLAMA_VOCAB_PRE_TYPE_LLAMA3 (ignore_merges, add_bos)
  llama3: LLAMA3, "llama-v3": LLAMA3, "llama-bpe": LLAMA3, falcon3: LLAMA3, "falcon-h1": LLAMA3,
  pixtral: LLAMA3, "midm-2.0": LLAMA3, lfm2: LLAMA3,
  // LLAMA_VOCAB_PRE_TYPE_{DBRX,SMAUG}: Llama 3's regex, merges always applied
  dbrx: LLAMA3_MERGES, "smaug-bpe": LLAMA3_MERGES,
  // LLAMA_VOCAB_PRE_TYPE_{QWEN2,STABLELM2}
  qwen2: QWEN2, "deepseek-r1-qwen": QWEN2, megrez: QWEN2, stablelm2: QWEN2,
});

export const SUPPORTED_MODELS = Object.freeze(["gpt2", "llama"]);

/** Texts llama.cpp makes end-of-generation tokens, and so CONTROL, whatever their GGUF type. */
const EOG_TEXTS = [
  "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
  "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
  "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
  "<｜end▁of▁sentence｜>", "[e~[",
];

/**
 * Per FIM kind: its metadata keys and the texts llama.cpp makes CONTROL when none gives a valid id.
 * @type {[keys: string[], texts: string[]][]}
 */
const FIM_TEXTS = [
  [["fim_pre_token_id", "prefix_token_id"],
    ["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"]],
  [["fim_suf_token_id", "suffix_token_id"],
    ["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"]],
  [["fim_mid_token_id", "middle_token_id"],
    ["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"]],
  [["fim_pad_token_id"], ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"]],
  [["fim_rep_token_id"], ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]],
  [["fim_sep_token_id"], ["<|file_sep|>"]],
];

/** gpt-oss's tokens llama.cpp always makes USER_DEFINED. */
const USER_DEFINED_TEXTS = ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

/** general.name substrings for which llama.cpp strips spaces around special tokens: refused. */
const STRIP_MODEL_NAMES = ["phi-3", "phi3", "modern-bert"];

const SPACE = "▁";

/** A metadata value as Python's repr-like JSON would show it in a message. */
const show = (/** @type {unknown} */ v) => (v === undefined || v === null ? "None" : JSON.stringify(typeof v === "bigint" ? String(v) : v));

/** @param {string} model @param {string} pre @param {string} why */
function unsupported(model, pre, why) {
  return namedError("UnsupportedTokenizerError", `GGUF tokenizer model=${show(model)} pre=${show(pre)} is not supported: ${why}`, {
    model: model ?? null,
    pre: pre ?? null,
  });
}

/**
 * An integer metadata value (number or BigInt) as a number; anything else null.
 * @param {unknown} v
 * @returns {number | null}
 */
function toInt(v) {
  if (typeof v === "bigint") return Number(v);
  return typeof v === "number" && Number.isInteger(v) ? v : null;
}

/**
 * The id under tokenizer.ggml.<key> when it is one of the `n` tokens, else null.
 * @param {Record<string, unknown>} meta @param {string} key @param {number} n
 * @returns {number | null}
 */
function tokenId(meta, key, n) {
  const v = toInt(meta[`tokenizer.ggml.${key}`]);
  return v !== null && v >= 0 && v < n ? v : null;
}

/**
 * A special token id as llama.cpp resolves it: the key's id when valid, else the model's default.
 * @param {Record<string, unknown>} meta @param {string} key @param {number} n @param {number | null} fallback
 * @returns {number | null}
 */
function specialId(meta, key, n, fallback) {
  const found = tokenId(meta, key, n);
  if (found !== null) return found;
  return fallback !== null && fallback < n ? fallback : null;
}

/**
 * The boolean tokenizer.ggml.<key>, or `fallback` when it is absent.
 * @param {Record<string, unknown>} meta @param {string} key @param {boolean} fallback
 * @returns {boolean}
 */
function flag(meta, key, fallback) {
  const v = meta[`tokenizer.ggml.${key}`];
  return v === undefined || v === null ? fallback : Boolean(v);
}

const codePoints = (/** @type {string} */ s) => Array.from(s);

/** @param {string} s @returns {number} */
function utf8Length(s) {
  let n = 0;
  for (const c of s) {
    const cp = /** @type {number} */ (c.codePointAt(0));
    n += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  }
  return n;
}

/**
 * The token strings (an empty one named by its id) and their llama.cpp token types.
 * @param {Record<string, unknown>} meta @param {string} model @param {string} pre
 * @returns {{tokens: string[], kinds: number[]}}
 */
function vocabulary(meta, model, pre) {
  const raw = meta["tokenizer.ggml.tokens"];
  if (!Array.isArray(raw) || raw.length === 0) throw unsupported(model, pre, "tokenizer.ggml.tokens is missing");
  const tokens = raw.map((t, i) => (t === "" ? `[EMPTY_${i}]` : String(t)));
  if (new Set(tokens).size !== tokens.length) throw unsupported(model, pre, "the vocabulary has duplicate token strings");
  const types = meta["tokenizer.ggml.token_type"];
  const kinds = types === undefined || types === null ? tokens.map(() => NORMAL) : Array.from(/** @type {ArrayLike<unknown>} */ (types), Number).slice(0, tokens.length);
  if (kinds.length < tokens.length) throw unsupported(model, pre, "tokenizer.ggml.token_type is shorter than the vocabulary");
  return { tokens, kinds };
}

/**
 * id -> HF `special` flag of every token llama.cpp cuts out before tokenizing (sorted by id).
 * @param {Record<string, unknown>} meta @param {string[]} tokens @param {number[]} kinds @param {string} model @param {string} pre
 * @returns {Map<number, boolean>}
 */
function specialAttrs(meta, tokens, kinds, model, pre) {
  const ids = new Map(tokens.map((t, i) => [t, i]));
  /** @type {(t: string) => number} the id of a token `ids` has */
  const idOf = (t) => /** @type {number} */ (ids.get(t));
  /** @type {Map<number, "control" | "user">} */
  const attrs = new Map();
  kinds.forEach((kind, i) => {
    if (kind === CONTROL || kind === UNKNOWN) attrs.set(i, "control");
    else if (kind === USER_DEFINED) attrs.set(i, "user");
  });
  for (const [keys, texts] of FIM_TEXTS) {
    if (keys.some((k) => tokenId(meta, k, tokens.length) !== null)) continue;
    const present = texts.filter((t) => ids.has(t)).map(idOf);
    if (present.length > 1 && present.some((i) => attrs.get(i) !== "control")) {
      throw unsupported(model, pre, `several FIM tokens of one kind and no id for it: ${texts.join(" ")}`);
    }
    for (const i of present) attrs.set(i, "control");
  }
  for (const t of EOG_TEXTS) if (ids.has(t)) attrs.set(idOf(t), "control");
  for (const t of USER_DEFINED_TEXTS) if (ids.has(t)) attrs.set(idOf(t), "user");
  if (ids.has("<|end|>") && ((ids.has("<|return|>") && ids.has("<|call|>")) || (ids.has("<|calls|>") && ids.has("<|flush|>")))) {
    attrs.set(idOf("<|end|>"), "user");
  }
  if (ids.has("<|tool_response>") && ids.has("</s>")) attrs.delete(idOf("</s>"));
  return new Map([...attrs.keys()].sort((a, b) => a - b).map((i) => [i, attrs.get(i) === "control"]));
}

/**
 * Refuse special tokens whose proper suffix is a proper prefix of a special token at least as long.
 * @param {string[]} specials @param {string} model @param {string} pre
 */
function checkSpecialOverlaps(specials, model, pre) {
  /** @type {Map<string, [bytes: number, index: number][]>} proper prefix -> two longest [bytes, index] */
  const longest = new Map();
  const lengths = specials.map(utf8Length);
  specials.forEach((s, j) => {
    const cps = codePoints(s);
    let prefix = "";
    for (let k = 1; k < cps.length; k++) {
      prefix += cps[k - 1];
      let best = longest.get(prefix);
      if (!best) longest.set(prefix, (best = []));
      best.push([lengths[j], j]);
      best.sort((a, b) => b[0] - a[0] || b[1] - a[1]);
      best.length = Math.min(best.length, 2);
    }
  });
  specials.forEach((s, i) => {
    const cps = codePoints(s);
    for (let k = 1; k < cps.length; k++) {
      for (const [length, j] of longest.get(cps.slice(k).join("")) || []) {
        if (j !== i && length >= lengths[i]) {
          throw unsupported(model, pre, `special tokens ${show(s)} and ${show(specials[j])} overlap (llama.cpp cuts the longer first)`);
        }
      }
    }
  });
}

/**
 * HF's added_tokens: each special of `specials` (id -> special flag).
 * @param {string[]} tokens @param {Map<number, boolean>} specials
 */
function addedTokens(tokens, specials) {
  return [...specials].map(([i, special]) => ({
    id: i,
    content: tokens[i],
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special,
  }));
}

/**
 * BOS/EOS added when the caller asks for special tokens (llama.cpp's add_special).
 * @param {string[]} tokens @param {boolean} addBos @param {boolean} addEos
 * @param {number | null} bos @param {number | null} eos @param {string} model @param {string} pre
 */
function postProcessor(tokens, addBos, addEos, bos, eos, model, pre) {
  if (addBos && bos === null) throw unsupported(model, pre, "add_bos_token is true but there is no BOS token");
  if (addEos && eos === null) throw unsupported(model, pre, "add_eos_token is true but there is no EOS token");
  if (!addBos && !addEos) return null;
  // Not null where asked for: checked above.
  const before = /** @type {number[]} */ (addBos ? [bos] : []);
  const after = /** @type {number[]} */ (addEos ? [eos] : []);
  const template = (/** @type {number} */ typeId, /** @type {string} */ seq) => [
    ...before.map((i) => ({ SpecialToken: { id: tokens[i], type_id: typeId } })),
    { Sequence: { id: seq, type_id: typeId } },
    ...after.map((i) => ({ SpecialToken: { id: tokens[i], type_id: typeId } })),
  ];
  /** @type {Map<string, {id: string, ids: number[], tokens: string[]}>} */
  const specialTokens = new Map();
  for (const i of [...new Set([...before, ...after])].sort((a, b) => a - b)) {
    specialTokens.set(tokens[i], { id: tokens[i], ids: [i], tokens: [tokens[i]] });
  }
  return { type: "TemplateProcessing", single: template(0, "A"), pair: [...template(0, "A"), ...template(1, "B")], special_tokens: specialTokens };
}

/**
 * HF's BPE model of the vocabulary and its merges.
 * @param {string[]} tokens @param {[string, string][]} merges
 * @param {{unk: string | null, byteFallback: boolean, ignoreMerges: boolean}} options
 */
function bpeModel(tokens, merges, { unk, byteFallback, ignoreMerges }) {
  return {
    type: "BPE",
    dropout: null,
    unk_token: unk,
    continuing_subword_prefix: null,
    end_of_word_suffix: null,
    fuse_unk: byteFallback,
    byte_fallback: byteFallback,
    ignore_merges: ignoreMerges,
    vocab: new Map(tokens.map((t, i) => [t, i])),
    merges,
  };
}

/**
 * The GGUF's merges as pairs, split as llama.cpp splits them; a repeated pair keeps its first rank.
 * @param {Record<string, unknown>} meta @param {Map<string, number>} ids token -> id @param {string} model @param {string} pre
 * @returns {[string, string][]}
 */
function gpt2Merges(meta, ids, model, pre) {
  const raw = meta["tokenizer.ggml.merges"];
  if (!Array.isArray(raw)) throw unsupported(model, pre, "tokenizer.ggml.merges is missing");
  const seen = new Set();
  /** @type {[string, string][]} */
  const out = [];
  for (const merge of raw) {
    const text = String(merge);
    const pos = text.indexOf(" ", 1);
    if (pos < 0) continue; // llama.cpp ranks it as ("", ""), which never matches
    const a = text.slice(0, pos), b = text.slice(pos + 1);
    const key = `${a} ${b}`;
    if (seen.has(key)) continue;
    if (!ids.has(a) || !ids.has(b) || !ids.has(a + b)) {
      throw unsupported(model, pre, `merge ${show(text)} names a token that is not in the vocabulary`);
    }
    seen.add(key);
    out.push([a, b]);
  }
  return out;
}

const byteLevel = (/** @type {boolean} */ useRegex) => ({ type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: useRegex });
const split = (/** @type {string} */ regex) => ({ type: "Split", pattern: { Regex: regex }, behavior: "Isolated", invert: false });

/**
 * HF's pipeline for a "gpt2" (BPE) vocabulary.
 * @param {Record<string, unknown>} meta @param {string[]} tokens @param {string} model @param {string} pre
 */
function gpt2(meta, tokens, model, pre) {
  const [family, ignoreMerges, addBosDefault] = BPE_PRE[pre];
  let preTokenizer;
  if (family === "digits") {
    preTokenizer = { type: "Sequence", pretokenizers: [{ type: "Digits", individual_digits: true }, byteLevel(true)] };
  } else if (family === "gpt2") {
    preTokenizer = byteLevel(true);
  } else {
    preTokenizer = { type: "Sequence", pretokenizers: [split(family === "llama3" ? LLAMA3_REGEX : QWEN2_REGEX), byteLevel(false)] };
  }
  const ids = new Map(tokens.map((t, i) => [t, i]));
  const merges = gpt2Merges(meta, ids, model, pre);
  const n = tokens.length;
  // llama.cpp's defaults for LLAMA_VOCAB_TYPE_BPE: BOS = EOS = 11.
  const bos = specialId(meta, "bos_token_id", n, 11), eos = specialId(meta, "eos_token_id", n, 11);
  return {
    normalizer: null,
    pre_tokenizer: preTokenizer,
    post_processor: postProcessor(tokens, flag(meta, "add_bos_token", addBosDefault), flag(meta, "add_eos_token", false), bos, eos, model, pre),
    decoder: byteLevel(true),
    model: bpeModel(tokens, merges, { unk: null, byteFallback: false, ignoreMerges }),
  };
}

/**
 * The character a token repeats ("▁▁▁" -> "▁"), if it is such a run.
 * @param {string} tok
 * @returns {string | null}
 */
function runChar(tok) {
  const cps = codePoints(tok);
  return cps.length > 1 && cps.every((c) => c === cps[0]) ? cps[0] : null;
}

/**
 * A merge candidate: [-score of the result, result id, left id, right id].
 * @typedef {[negScore: number, result: number, left: number, right: number]} Ranked
 */

/**
 * Every (left, right) pair of tokens whose concatenation is a token, best result first (see the Python twin).
 * @param {string[]} tokens @param {number[]} kinds @param {number[]} scores
 * @param {Map<number, boolean>} specials @param {string} model @param {string} pre
 * @returns {[string, string][]}
 */
function spmMerges(tokens, kinds, scores, specials, model, pre) {
  const ids = new Map(tokens.map((t, i) => [t, i]));
  /** @type {Ranked[]} */
  const ranked = [];
  /** @type {Set<number>} */
  const formable = new Set();
  tokens.forEach((tok, i) => {
    if (!specials.has(i) || tok.includes(SPACE)) formable.add(i);
    const cps = codePoints(tok);
    let prefix = "";
    for (let k = 1; k < cps.length; k++) {
      prefix += cps[k - 1];
      const left = ids.get(prefix), right = ids.get(cps.slice(k).join(""));
      if (left === undefined || right === undefined) {
        if (formable.has(i) && (left !== undefined || k === 1) && (right !== undefined || k === cps.length - 1)) {
          throw unsupported(model, pre, `llama.cpp can form ${show(tok)} from a character that is not a token`);
        }
        continue;
      }
      if (formable.has(i) && (kinds[left] === BYTE || kinds[right] === BYTE)) {
        throw unsupported(model, pre, `HF can form ${show(tok)} from a byte token`);
      }
      ranked.push([-scores[i], i, left, right]);
    }
  });
  ranked.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2] || a[3] - b[3]);
  checkTies(ranked, formable, tokens, model, pre);
  return ranked.map(([, , left, right]) => [tokens[left], tokens[right]]);
}

/**
 * Refuse distinct tokens of one score, except runs of one character (checked by checkRun).
 * @param {Ranked[]} ranked @param {Set<number>} formable @param {string[]} tokens @param {string} model @param {string} pre
 */
function checkTies(ranked, formable, tokens, model, pre) {
  /** @type {Map<number, Set<number>>} -score -> the formable results of that score */
  const groups = new Map();
  for (const [neg, result] of ranked) {
    if (!formable.has(result)) continue;
    if (!groups.has(neg)) groups.set(neg, new Set());
    /** @type {Set<number>} */ (groups.get(neg)).add(result);
  }
  /** @type {Set<string>} */
  const runs = new Set();
  for (const results of groups.values()) {
    if (results.size < 2) continue;
    const chars = new Set([...results].map((i) => runChar(tokens[i])));
    const char = /** @type {string | null} */ (chars.values().next().value); // results is not empty
    if (chars.size > 1 || char === null) {
      const [a, b] = [...results].sort((x, y) => x - y);
      throw unsupported(model, pre, `tokens ${show(tokens[a])} and ${show(tokens[b])} score the same (HF breaks the tie otherwise)`);
    }
    runs.add(char);
  }
  for (const char of [...runs].sort()) checkRun(char, ranked, formable, tokens, model, pre);
}

/**
 * Runs of `char` merge alike in llama.cpp (leftmost first) and HF (lowest rank first).
 * @param {string} char @param {Ranked[]} ranked @param {Set<number>} formable @param {string[]} tokens
 * @param {string} model @param {string} pre
 */
function checkRun(char, ranked, formable, tokens, model, pre) {
  /** @type {Map<number, number>} run length -> its token id */
  const lengths = new Map();
  tokens.forEach((t, i) => {
    if (runChar(t) === char) lengths.set(codePoints(t).length, i);
  });
  const runIds = new Set(lengths.values());
  let why = "";
  if ([...runIds].some((i) => !formable.has(i))) why = "a special token is one";
  else if (new Set(ranked.filter(([, result]) => runIds.has(result)).map(([neg]) => neg)).size > 1) why = "they do not all score the same";
  else if (tokens.some((t, i) => formable.has(i) && t.includes(char + char) && runChar(t) !== char)) why = "another token holds two in a row";
  /** @type {Map<string, number>} "left length,right length" -> rank */
  const rank = new Map();
  ranked.forEach(([, result, left, right], n) => {
    if (runIds.has(result)) rank.set(`${codePoints(tokens[left]).length},${codePoints(tokens[right]).length}`, n);
  });
  const top = 4 * Math.max(...lengths.keys()) + 9;
  for (let n = 2; n < top && !why; n++) {
    const leftmost = new Array(n).fill(1), lowest = new Array(n).fill(1);
    for (;;) {
      let at = -1;
      for (let i = 0; i + 1 < leftmost.length; i++) {
        if (lengths.has(leftmost[i] + leftmost[i + 1])) { at = i; break; }
      }
      if (at < 0) break;
      leftmost.splice(at, 2, leftmost[at] + leftmost[at + 1]);
    }
    for (;;) {
      /** @type {[rank: number, at: number] | null} */
      let best = null;
      for (let i = 0; i + 1 < lowest.length; i++) {
        const r = rank.get(`${lowest[i]},${lowest[i + 1]}`);
        if (r !== undefined && (best === null || r < best[0])) best = [r, i];
      }
      if (best === null) break;
      const i = best[1];
      lowest.splice(i, 2, lowest[i] + lowest[i + 1]);
    }
    if (leftmost.join() !== lowest.join()) why = `a run of ${n} splits as [${leftmost.join(", ")}] in llama.cpp, [${lowest.join(", ")}] in HF`;
  }
  if (why) throw unsupported(model, pre, `runs of ${show(char)} may tokenize differently: ${why}`);
}

/**
 * HF's pipeline for a "llama" (SentencePiece) vocabulary.
 * @param {Record<string, unknown>} meta @param {string[]} tokens @param {number[]} kinds
 * @param {Map<number, boolean>} specials @param {string} model @param {string} pre
 */
function spm(meta, tokens, kinds, specials, model, pre) {
  const name = String(meta["general.name"] || "").toLowerCase();
  if (STRIP_MODEL_NAMES.some((s) => name.includes(s))) {
    throw unsupported(model, pre, `llama.cpp strips spaces around special tokens for ${show(name)}`);
  }
  const ids = new Set(tokens);
  let missing = 0;
  for (let b = 0; b < 256; b++) if (!ids.has(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`)) missing++;
  if (missing) throw unsupported(model, pre, `${missing} byte tokens <0xXX> are missing`);
  const rawScores = meta["tokenizer.ggml.scores"];
  const scores = rawScores === undefined || rawScores === null ? tokens.map(() => 0) : Array.from(/** @type {ArrayLike<unknown>} */ (rawScores), Number).slice(0, tokens.length);
  if (scores.length < tokens.length) throw unsupported(model, pre, "tokenizer.ggml.scores is shorter than the vocabulary");
  if (scores.some(Number.isNaN)) throw unsupported(model, pre, "tokenizer.ggml.scores holds NaN");
  const merges = spmMerges(tokens, kinds, scores, specials, model, pre);
  const n = tokens.length;
  // llama.cpp's defaults for LLAMA_VOCAB_TYPE_SPM: BOS 1, EOS 2, UNK 0, add_bos, a space prefix.
  const bos = specialId(meta, "bos_token_id", n, 1), eos = specialId(meta, "eos_token_id", n, 2);
  const unk = specialId(meta, "unknown_token_id", n, 0);
  const prefix = flag(meta, "add_space_prefix", true);
  const replace = { type: "Replace", pattern: { String: " " }, content: SPACE };
  /** @type {object[]} */
  const decoders = [{ type: "Replace", pattern: { String: SPACE }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }];
  if (prefix) decoders.push({ type: "Strip", content: " ", start: 1, stop: 0 });
  return {
    normalizer: prefix ? { type: "Sequence", normalizers: [{ type: "Prepend", prepend: SPACE }, replace] } : replace,
    pre_tokenizer: null,
    post_processor: postProcessor(tokens, flag(meta, "add_bos_token", true), flag(meta, "add_eos_token", false), bos, eos, model, pre),
    decoder: { type: "Sequence", decoders },
    model: bpeModel(tokens, merges, { unk: unk === null ? null : tokens[unk], byteFallback: true, ignoreMerges: false }),
  };
}

/**
 * The HF tokenizers JSON object equivalent to the GGUF's llama.cpp tokenizer (objects whose key
 * order matters are Maps; `dumps` writes them in order).
 * @param {Record<string, unknown>} meta GGUF metadata, key -> value.
 * @returns {object}
 */
export function tokenizerJsonObject(meta) {
  const model = /** @type {string} */ (meta["tokenizer.ggml.model"]);
  const pre = /** @type {string} */ (meta["tokenizer.ggml.pre"]);
  if (!SUPPORTED_MODELS.includes(model)) {
    throw unsupported(model, pre, `tokenizer.ggml.model must be one of ${SUPPORTED_MODELS.join(", ")}`);
  }
  if (model === "gpt2" && !Object.hasOwn(BPE_PRE, pre)) {
    throw unsupported(model, pre, "this tokenizer.ggml.pre (llama.cpp's pre-tokenizer) is not reproduced here");
  }
  const { tokens, kinds } = vocabulary(meta, model, pre);
  const specials = specialAttrs(meta, tokens, kinds, model, pre);
  checkSpecialOverlaps([...specials.keys()].map((i) => tokens[i]), model, pre);
  const body = model === "gpt2" ? gpt2(meta, tokens, model, pre) : spm(meta, tokens, kinds, specials, model, pre);
  return { version: "1.0", truncation: null, padding: null, added_tokens: addedTokens(tokens, specials), ...body };
}

const quote = (/** @type {string} */ s) => JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));

/**
 * JSON text as Python's `json.dumps(obj, ensure_ascii=True)` writes it (", " and ": " separators,
 * non-ASCII as \uXXXX), Maps as objects in insertion order.
 * @param {unknown} value
 * @returns {string}
 */
export function dumps(value) {
  if (value === null || value === undefined) return "null";
  if (value === true) return "true";
  if (value === false) return "false";
  if (typeof value === "number") {
    if (!Number.isInteger(value)) throw new TypeError(`dumps writes integers only, got ${value}`);
    return String(value);
  }
  if (typeof value === "string") return quote(value);
  if (Array.isArray(value)) return `[${value.map(dumps).join(", ")}]`;
  const entries = value instanceof Map ? [...value.entries()] : Object.entries(value);
  return `{${entries.map(([k, v]) => `${quote(k)}: ${dumps(v)}`).join(", ")}}`;
}

/**
 * The tokenizer.json text for a GGUF's metadata: the same text as the Python builder's
 * `tokenizer_json_from_gguf` (newline-ended). Throws UnsupportedTokenizerError ({model, pre})
 * for a tokenizer it cannot reproduce exactly.
 * @param {Record<string, unknown>} meta GGUF metadata, key -> value; integers as numbers or BigInt.
 * @returns {string}
 */
export function tokenizerJsonFromGguf(meta) {
  return dumps(tokenizerJsonObject(meta)) + "\n";
}
