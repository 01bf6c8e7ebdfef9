// Tokenisation through @mlc-ai/web-tokenizers (HF tokenizer.json or SentencePiece .model).
// The library is a UMD bundle: imported as an ES module it registers `globalThis.tokenizers`.
// Its URL is configurable (the site copies it next to this file as vendor/web-tokenizers.js).

/**
 * The calls made here of web-tokenizers' Tokenizer (its lib/tokenizers.d.ts).
 * @typedef {{
 *   encode(text: string): Int32Array,
 *   decode(ids: Int32Array): string,
 *   getVocabSize(): number,
 *   idToToken(id: number): string,
 *   dispose(): void,
 * }} Tokenizer
 */

/**
 * The Tokenizer class: its two constructors used here.
 * @typedef {{fromJSON(json: ArrayBuffer): Promise<Tokenizer>, fromSentencePiece(model: ArrayBuffer): Promise<Tokenizer>}} TokenizerClass
 */

/**
 * A model's tokenizer file: tokenizer.json or a SentencePiece .model, and its bytes.
 * @typedef {{name: string, bytes: Uint8Array}} TokenizerFile
 */

/**
 * What the UMD bundle sets, and what is hidden from its emscripten code under Deno.
 * @typedef {{tokenizers?: {Tokenizer?: TokenizerClass}, process?: unknown, Deno?: unknown}} TokenizerGlobals
 */

/** @type {Promise<TokenizerClass> | null} */
let libPromise = null;

const globals = /** @type {typeof globalThis & TokenizerGlobals} */ (globalThis);

/** @param {string} url @returns {Promise<TokenizerClass>} */
async function tokenizerClass(url) {
  // A service worker may not call import(): its host imports the bundle statically beforehand.
  const preloaded = globals.tokenizers && globals.tokenizers.Tokenizer;
  libPromise ??= (preloaded ? Promise.resolve(null) : import(url)).then((/** @type {{Tokenizer?: TokenizerClass} | null} */ mod) => {
    const T = (mod && mod.Tokenizer) || (globals.tokenizers && globals.tokenizers.Tokenizer);
    if (!T) throw new Error(`no Tokenizer class exported by ${url}`);
    return T;
  });
  return libPromise;
}

export const DEFAULT_TOKENIZERS_URL = new URL("./vendor/web-tokenizers.js", import.meta.url).href;

/**
 * A tokenizer from the model dir's tokenizer file bytes ({name, bytes}). Under Deno the
 * bundle's emscripten code would take its Node path (it tests `process`), so `process` is
 * hidden while the library initialises.
 * @param {TokenizerFile} file
 * @param {string} [url]
 * @returns {Promise<Tokenizer>}
 */
export async function loadTokenizer(file, url = DEFAULT_TOKENIZERS_URL) {
  // A fetched file's bytes: never on a SharedArrayBuffer.
  const buf = /** @type {ArrayBuffer} */ (file.bytes.buffer.slice(file.bytes.byteOffset, file.bytes.byteOffset + file.bytes.byteLength));
  const hide = globals.Deno && "process" in globalThis;
  const saved = globals.process;
  if (hide) delete globals.process;
  try {
    const T = await tokenizerClass(url);
    return await (file.name.endsWith(".model") ? T.fromSentencePiece(buf) : T.fromJSON(buf));
  } finally {
    if (hide) globals.process = saved;
  }
}
