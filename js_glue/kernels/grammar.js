// Constrained decoding (rule step 0 of py_worker/kernels.py) over @mlc-ai/web-xgrammar: one
// `Grammars` per loaded model compiles a spec (kernels.grammar_spec: json_schema | ebnf |
// structural_tag) for the model's vocabulary and keeps its matchers. A backend asks a matcher
// for the next step's bitmask (1 bit per id, 32 ids per Int32 word), samples with it, then
// accepts the picked id. The library is loaded on the first constrained request only; its URL
// is configurable (the site copies it to web-xgrammar/index.js, beside kernels/).
// Twin on the host: py_worker/reference/grammar.py (PyPI xgrammar), same vocabulary rule.

import { namedError } from "./errors.js";
import { tokenBytes, advance, Utf8Masks, UTF8_START } from "./token_bytes.js";

/**
 * What a sampler applies for one constrained step: the allowed ids' bitmask, then the picked id
 * (true once the grammar has ended).
 * @typedef {{mask: () => Promise<Uint32Array>, accept: (token: number) => boolean}} Constraint
 */

export const DEFAULT_XGRAMMAR_URL = new URL("../web-xgrammar/index.js", import.meta.url).href;

let libPromise = null;

/**
 * What the library prints to stderr goes through `errorSink`. Its emscripten module binds
 * console.error once, when it starts (on the first call): it is started with a forwarder in
 * that place, so a compile can catch the "[FATAL] …" line that says why a grammar is bad (the
 * exception itself only says "Aborted()"; the module stays usable after it).
 */
let errorSink = (...args) => console.error(...args);

/** The xgrammar module (a UMD bundle: importing it sets globalThis.xgrammar), started. */
function library(url) {
  // A service worker may not call import(): its host imports the bundle statically beforehand.
  libPromise ??= (async () => {
    if (!globalThis.xgrammar) await import(url);
    const lib = globalThis.xgrammar;
    if (!lib?.TokenizerInfo) throw new Error(`no xgrammar exports from ${url}`);
    // Start the module now, with the forwarder as console.error; under Deno its Node path is
    // hidden (it tests `process`), as for web-tokenizers.
    const saved = { error: console.error, process: globalThis.process };
    const hide = globalThis.Deno && "process" in globalThis;
    console.error = (...args) => errorSink(...args);
    if (hide) delete globalThis.process;
    try {
      (await lib.TokenizerInfo.createTokenizerInfo(["a"], "raw", false, 1)).dispose();
    } finally {
      console.error = saved.error;
      if (hide) globalThis.process = saved.process;
    }
    return lib;
  })().catch((e) => {
    libPromise = null;
    throw namedError("GrammarError", `cannot load the grammar engine from ${url}: ${e.message}`, { kind: "", reason: "library" });
  });
  return libPromise;
}

/** Run `compile`, keeping what the library prints meanwhile; its reason if it throws. */
async function compiling(compile) {
  const printed = [];
  const previous = errorSink;
  errorSink = (...args) => printed.push(args.join(" "));
  try {
    return { compiled: await compile() };
  } catch (e) {
    const fatal = printed.find((line) => line.includes("[FATAL]")) || printed[0] || String(e?.message ?? e);
    return { reason: fatal.replace(/^\[FATAL\]\s*\S+:\d+:\s*/, "") };
  } finally {
    errorSink = previous;
  }
}

/**
 * How a tokenizer.json spells its tokens, for xgrammar's TokenizerInfo: "byte_level" (GPT-2's
 * byte-to-unicode map: a ByteLevel decoder), "byte_fallback" (SentencePiece's <0xNN> pieces: a
 * ByteFallback decoder), else "raw"; `prependSpace` when the tokenizer adds "▁" before the
 * text (a Prepend normalizer, or a Metaspace pre-tokenizer that prepends).
 */
export function vocabKind(tokenizerJson) {
  const flat = (node, key) => (!node ? [] : node.type === "Sequence" ? (node[key] || []).flatMap((n) => flat(n, key)) : [node]);
  const decoders = flat(tokenizerJson.decoder, "decoders").map((d) => d.type);
  const type = decoders.includes("ByteLevel") ? "byte_level" : decoders.includes("ByteFallback") ? "byte_fallback" : "raw";
  const normalizers = flat(tokenizerJson.normalizer, "normalizers");
  const pres = flat(tokenizerJson.pre_tokenizer, "pretokenizers");
  const prependSpace =
    normalizers.some((n) => n.type === "Prepend" && n.prepend === "▁") ||
    pres.some((p) => p.type === "Metaspace" && (p.add_prefix_space === true || ["always", "first"].includes(p.prepend_scheme)));
  return { type, prependSpace };
}

/** The vocabulary kind of a model's tokenizer file ({name, bytes}). */
export function fileVocabKind(file) {
  if (file.name.endsWith(".model")) return { type: "byte_fallback", prependSpace: true }; // SentencePiece
  return vocabKind(JSON.parse(new TextDecoder().decode(file.bytes)));
}

/** A grammar that does not compile is the request's fault: a named error, with xgrammar's reason. */
function compileError(spec, reason) {
  const what = { json_schema: "JSON schema", ebnf: "EBNF grammar", structural_tag: "structural tag" }[spec.kind] || spec.kind;
  return namedError("GrammarError", `The ${what} of the request does not compile: ${reason}`, { kind: spec.kind, reason });
}

const COMPILE = {
  json_schema: (c, src) => c.compileJSONSchema(src, false, -1, [", ", ": "], true),
  ebnf: (c, src) => c.compileGrammar(src, "root"),
  structural_tag: (c, src) => c.compileStructuralTag(src),
};

export class Grammars {
  /**
   * tokenizer: web-tokenizers' Tokenizer (idToToken, getVocabSize); file: its {name, bytes};
   * vocabSize: the model's logits length (it may exceed the tokenizer's).
   */
  constructor(tokenizer, file, vocabSize, url = DEFAULT_XGRAMMAR_URL) {
    this.tokenizer = tokenizer;
    this.file = file;
    this.vocabSize = vocabSize;
    this.url = url;
    this.compilers = new Map(); // stop ids (as text) -> Promise<{lib, info, compiler}>
    this.matchers = new Map(); // id -> {matcher, compiled}
    this.nextId = 1;
  }

  /** The tokenizer info and compiler for these stop ids (built once: it walks the vocabulary). */
  #compiler(stopIds) {
    const key = stopIds.join(",");
    if (!this.compilers.has(key)) {
      const made = (async () => {
        const lib = await library(this.url);
        const vocab = [];
        const n = Math.min(this.tokenizer.getVocabSize(), this.vocabSize);
        for (let i = 0; i < n; i++) vocab.push(this.tokenizer.idToToken(i) ?? "");
        const kind = fileVocabKind(this.file);
        const info = await lib.TokenizerInfo.createTokenizerInfo(vocab, kind.type, kind.prependSpace, this.vocabSize, stopIds);
        const compiler = await lib.GrammarCompiler.createGrammarCompiler(info);
        const bytes = vocab.map((token) => tokenBytes(token, kind.type));
        return { lib, info, compiler, bytes, utf8: new Utf8Masks(bytes, this.vocabSize) };
      })();
      made.catch(() => this.compilers.delete(key));
      this.compilers.set(key, made);
    }
    return this.compilers.get(key);
  }

  /** Compile `spec` and open a matcher on it; returns the matcher's id. */
  async open(spec) {
    const stopIds = Array.from(spec.stop_token_ids || [], Number);
    const { lib, compiler, bytes, utf8 } = await this.#compiler(stopIds);
    const compile = COMPILE[spec.kind];
    if (!compile) throw compileError(spec, `unknown grammar kind ${JSON.stringify(spec.kind)}`);
    const { compiled, reason } = await compiling(() => compile(compiler, String(spec.source)));
    if (!compiled) throw compileError(spec, reason);
    const matcher = await lib.GrammarMatcher.createGrammarMatcher(compiled, stopIds.length ? stopIds : undefined);
    const id = this.nextId++;
    this.matchers.set(id, { matcher, compiled, bytes, utf8, json: spec.kind === "json_schema", state: UTF8_START });
    return id;
  }

  #get(id) {
    const m = this.matchers.get(id);
    if (!m) throw namedError("GrammarError", `no grammar matcher ${id} is open on this model`, { kind: "", reason: "closed" });
    return m;
  }

  /**
   * The next step's bitmask as u32 words, ceil(vocab / 32) of them: the grammar's, and only ids
   * that keep the answer valid UTF-8 (and, for a JSON schema, free of control bytes).
   */
  async mask(id) {
    const m = this.#get(id);
    const words = await m.matcher.getNextTokenBitmask();
    const mask = new Uint32Array(words.buffer, words.byteOffset, words.length);
    const text = m.utf8.mask(m.state);
    for (let i = 0; i < mask.length; i++) mask[i] &= text[i] & (m.json ? m.utf8.control[i] : 0xffffffff);
    return mask;
  }

  /** Advance by the picked id; true once the grammar has ended (a stop token was accepted). */
  accept(id, token) {
    const m = this.#get(id);
    if (!m.matcher.acceptToken(token)) {
      throw namedError("GrammarError", `the grammar rejected token ${token}, which its own mask allowed`, { kind: "", reason: "rejected" });
    }
    if (token < m.bytes.length) m.state = advance(m.state, m.bytes[token]) ?? UTF8_START;
    return m.matcher.isTerminated();
  }

  close(id) {
    const m = this.matchers.get(id);
    if (!m) return;
    this.matchers.delete(id);
    m.matcher.dispose();
    m.compiled.dispose();
  }

  async dispose() {
    for (const id of [...this.matchers.keys()]) this.close(id);
    for (const made of this.compilers.values()) {
      const c = await made.catch(() => null);
      c?.compiler.dispose();
      c?.info.dispose();
    }
    this.compilers.clear();
  }
}

/**
 * The grammar calls of the kernel ABI for a backend that keeps one `Grammars` per model;
 * `grammarsOf(handle)` returns that model's (it throws for a handle that is not loaded).
 * `constraint(handle, params)` is the {mask, accept} a sampler applies, or null.
 */
export function grammarCalls(grammarsOf) {
  return {
    constraint(handle, params) {
      const id = params.grammar;
      if (id === null || id === undefined) return null;
      const grammars = grammarsOf(handle);
      return { mask: () => grammars.mask(id), accept: (token) => grammars.accept(id, token) };
    },
    async openGrammar(handle, spec) {
      return grammarsOf(handle).open(spec);
    },
    async closeGrammar(handle, id) {
      grammarsOf(handle).close(id);
    },
  };
}
