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

/**
 * The calls made here of @mlc-ai/web-xgrammar (its lib/xgrammar.d.ts).
 * @typedef {{dispose(): void}} TokenizerInfo
 * @typedef {{dispose(): void}} CompiledGrammar
 * @typedef {{
 *   compileJSONSchema(schema: string, anyWhitespace?: boolean, indent?: number, separators?: [string, string], strictMode?: boolean): Promise<CompiledGrammar>,
 *   compileGrammar(grammar: string, rootRule?: string): Promise<CompiledGrammar>,
 *   compileStructuralTag(structuralTag: string): Promise<CompiledGrammar>,
 *   dispose(): void,
 * }} GrammarCompiler
 * @typedef {{
 *   getNextTokenBitmask(): Promise<Int32Array>,
 *   acceptToken(tokenID: number): boolean,
 *   isTerminated(): boolean,
 *   dispose(): void,
 * }} GrammarMatcher
 * @typedef {{
 *   TokenizerInfo: {createTokenizerInfo(encodedVocab: string[], vocabType?: string, prependSpace?: boolean, vocabSize?: number, stopTokenIds?: number[]): Promise<TokenizerInfo>},
 *   GrammarCompiler: {createGrammarCompiler(info: TokenizerInfo): Promise<GrammarCompiler>},
 *   GrammarMatcher: {createGrammarMatcher(compiled: CompiledGrammar, overrideStopTokens?: number[]): Promise<GrammarMatcher>},
 * }} XGrammar
 */

/**
 * What open() compiles: py_worker/kernels.py grammar_spec's wire form.
 * @typedef {{kind: string, source: string, stop_token_ids?: number[]}} GrammarSpec
 */

/**
 * The vocabulary a grammar is compiled for: web-tokenizers' Tokenizer, or wasm.js's view of a
 * tokenizer.json.
 * @typedef {{getVocabSize(): number, idToToken(id: number): string}} Vocabulary
 */

/**
 * One open matcher, with what its masks need.
 * @typedef {{matcher: GrammarMatcher, compiled: CompiledGrammar, bytes: Uint8Array[], utf8: Utf8Masks, json: boolean, state: string}} OpenMatcher
 */

/**
 * The library and what is built per set of stop ids.
 * @typedef {{lib: XGrammar, info: TokenizerInfo, compiler: GrammarCompiler, bytes: Uint8Array[], utf8: Utf8Masks}} Compiler
 */

/**
 * What the UMD bundle sets, and what is hidden from its emscripten code under Deno.
 * @typedef {{xgrammar?: XGrammar, process?: unknown, Deno?: unknown}} XGrammarGlobals
 */

export const DEFAULT_XGRAMMAR_URL = new URL("../web-xgrammar/index.js", import.meta.url).href;

/** @type {Promise<XGrammar> | null} */
let libPromise = null;

const globals = /** @type {typeof globalThis & XGrammarGlobals} */ (globalThis);

/**
 * What the library prints to stderr goes through `errorSink`. Its emscripten module binds
 * console.error once, when it starts (on the first call): it is started with a forwarder in
 * that place, so a compile can catch the "[FATAL] …" line that says why a grammar is bad (the
 * exception itself only says "Aborted()"; the module stays usable after it).
 */
let errorSink = (/** @type {unknown[]} */ ...args) => console.error(...args);

/**
 * The xgrammar module (a UMD bundle: importing it sets globalThis.xgrammar), started.
 * @param {string} url
 * @returns {Promise<XGrammar>}
 */
function library(url) {
  // A service worker may not call import(): its host imports the bundle statically beforehand.
  libPromise ??= (async () => {
    if (!globals.xgrammar) await import(url);
    const lib = globals.xgrammar;
    if (!lib?.TokenizerInfo) throw new Error(`no xgrammar exports from ${url}`);
    // Start the module now, with the forwarder as console.error; under Deno its Node path is
    // hidden (it tests `process`), as for web-tokenizers.
    const saved = { error: console.error, process: globals.process };
    const hide = globals.Deno && "process" in globalThis;
    console.error = (...args) => errorSink(...args);
    if (hide) delete globals.process;
    try {
      (await lib.TokenizerInfo.createTokenizerInfo(["a"], "raw", false, 1)).dispose();
    } finally {
      console.error = saved.error;
      if (hide) globals.process = saved.process;
    }
    return lib;
  })().catch((e) => {
    libPromise = null;
    throw namedError("GrammarError", `cannot load the grammar engine from ${url}: ${e.message}`, { kind: "", reason: "library" });
  });
  return libPromise;
}

/**
 * Run `compile`, keeping what the library prints meanwhile; its reason if it throws.
 * @param {() => Promise<CompiledGrammar>} compile
 * @returns {Promise<{compiled: CompiledGrammar, reason?: undefined} | {compiled?: undefined, reason: string}>}
 */
async function compiling(compile) {
  /** @type {string[]} */
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
 * @param {any} tokenizerJson a parsed tokenizer.json (JSON of any shape: read defensively)
 * @returns {{type: string, prependSpace: boolean}}
 */
export function vocabKind(tokenizerJson) {
  /** @type {(node: any, key: string) => any[]} */
  const flat = (node, key) => (!node ? [] : node.type === "Sequence" ? (node[key] || []).flatMap((/** @type {any} */ n) => flat(n, key)) : [node]);
  const decoders = flat(tokenizerJson.decoder, "decoders").map((d) => d.type);
  const type = decoders.includes("ByteLevel") ? "byte_level" : decoders.includes("ByteFallback") ? "byte_fallback" : "raw";
  const normalizers = flat(tokenizerJson.normalizer, "normalizers");
  const pres = flat(tokenizerJson.pre_tokenizer, "pretokenizers");
  const prependSpace =
    normalizers.some((n) => n.type === "Prepend" && n.prepend === "▁") ||
    pres.some((p) => p.type === "Metaspace" && (p.add_prefix_space === true || ["always", "first"].includes(p.prepend_scheme)));
  return { type, prependSpace };
}

/**
 * The vocabulary kind of a model's tokenizer file ({name, bytes}).
 * @param {import("./tokenizer.js").TokenizerFile} file
 */
export function fileVocabKind(file) {
  if (file.name.endsWith(".model")) return { type: "byte_fallback", prependSpace: true }; // SentencePiece
  return vocabKind(JSON.parse(new TextDecoder().decode(file.bytes)));
}

/**
 * A grammar that does not compile is the request's fault: a named error, with xgrammar's reason.
 * @param {GrammarSpec} spec
 * @param {string} reason
 */
function compileError(spec, reason) {
  /** @type {Record<string, string | undefined>} */
  const names = { json_schema: "JSON schema", ebnf: "EBNF grammar", structural_tag: "structural tag" };
  const what = names[spec.kind] || spec.kind;
  return namedError("GrammarError", `The ${what} of the request does not compile: ${reason}`, { kind: spec.kind, reason });
}

/** @type {Record<string, ((c: GrammarCompiler, src: string) => Promise<CompiledGrammar>) | undefined>} */
const COMPILE = {
  json_schema: (c, src) => c.compileJSONSchema(src, false, -1, [", ", ": "], true),
  ebnf: (c, src) => c.compileGrammar(src, "root"),
  structural_tag: (c, src) => c.compileStructuralTag(src),
};

export class Grammars {
  /**
   * tokenizer: web-tokenizers' Tokenizer (idToToken, getVocabSize); file: its {name, bytes};
   * vocabSize: the model's logits length (it may exceed the tokenizer's).
   * @param {Vocabulary} tokenizer
   * @param {import("./tokenizer.js").TokenizerFile} file
   * @param {number} vocabSize
   * @param {string} [url]
   */
  constructor(tokenizer, file, vocabSize, url = DEFAULT_XGRAMMAR_URL) {
    this.tokenizer = tokenizer;
    this.file = file;
    this.vocabSize = vocabSize;
    this.url = url;
    /** @type {Map<string, Promise<Compiler>>} stop ids (as text) -> the compiler for them */
    this.compilers = new Map();
    /** @type {Map<number, OpenMatcher>} */
    this.matchers = new Map();
    this.nextId = 1;
  }

  /**
   * The tokenizer info and compiler for these stop ids (built once: it walks the vocabulary).
   * @param {number[]} stopIds
   * @returns {Promise<Compiler>}
   */
  #compiler(stopIds) {
    const key = stopIds.join(",");
    if (!this.compilers.has(key)) {
      const made = (async () => {
        const lib = await library(this.url);
        /** @type {string[]} */
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
    return /** @type {Promise<Compiler>} */ (this.compilers.get(key));
  }

  /**
   * Compile `spec` and open a matcher on it; returns the matcher's id.
   * @param {GrammarSpec} spec
   * @returns {Promise<number>}
   */
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

  /** @param {number} id */
  #get(id) {
    const m = this.matchers.get(id);
    if (!m) throw namedError("GrammarError", `no grammar matcher ${id} is open on this model`, { kind: "", reason: "closed" });
    return m;
  }

  /**
   * The next step's bitmask as u32 words, ceil(vocab / 32) of them: the grammar's, and only ids
   * that keep the answer valid UTF-8 (and, for a JSON schema, free of control bytes).
   * @param {number} id
   * @returns {Promise<Uint32Array>}
   */
  async mask(id) {
    const m = this.#get(id);
    const words = await m.matcher.getNextTokenBitmask();
    const mask = new Uint32Array(words.buffer, words.byteOffset, words.length);
    const text = m.utf8.mask(m.state);
    for (let i = 0; i < mask.length; i++) mask[i] &= text[i] & (m.json ? m.utf8.control[i] : 0xffffffff);
    return mask;
  }

  /**
   * Advance by the picked id; true once the grammar has ended (a stop token was accepted).
   * @param {number} id
   * @param {number} token
   * @returns {boolean}
   */
  accept(id, token) {
    const m = this.#get(id);
    if (!m.matcher.acceptToken(token)) {
      throw namedError("GrammarError", `the grammar rejected token ${token}, which its own mask allowed`, { kind: "", reason: "rejected" });
    }
    if (token < m.bytes.length) m.state = advance(m.state, m.bytes[token]) ?? UTF8_START;
    return m.matcher.isTerminated();
  }

  /** @param {number} id */
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
 * @param {(handle: number) => Grammars} grammarsOf
 */
export function grammarCalls(grammarsOf) {
  return {
    /**
     * @param {number} handle
     * @param {{grammar?: number | null}} params the step's sampling params: `grammar` is an open matcher's id
     * @returns {Constraint | null}
     */
    constraint(handle, params) {
      const id = params.grammar;
      if (id === null || id === undefined) return null;
      const grammars = grammarsOf(handle);
      return { mask: () => grammars.mask(id), accept: (token) => grammars.accept(id, token) };
    },
    /** @param {number} handle @param {GrammarSpec} spec */
    async openGrammar(handle, spec) {
      return grammarsOf(handle).open(spec);
    },
    /** @param {number} handle @param {number} id */
    async closeGrammar(handle, id) {
      grammarsOf(handle).close(id);
    },
  };
}
