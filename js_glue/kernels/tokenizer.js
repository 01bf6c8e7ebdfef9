// Tokenisation through @mlc-ai/web-tokenizers (HF tokenizer.json or SentencePiece .model).
// The library is a UMD bundle: imported as an ES module it registers `globalThis.tokenizers`.
// Its URL is configurable (the site copies it next to this file as vendor/web-tokenizers.js).

let libPromise = null;

async function tokenizerClass(url) {
  // A service worker may not call import(): its host imports the bundle statically beforehand.
  const preloaded = globalThis.tokenizers && globalThis.tokenizers.Tokenizer;
  libPromise ??= (preloaded ? Promise.resolve(null) : import(url)).then((mod) => {
    const T = (mod && mod.Tokenizer) || (globalThis.tokenizers && globalThis.tokenizers.Tokenizer);
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
 */
export async function loadTokenizer(file, url = DEFAULT_TOKENIZERS_URL) {
  const buf = file.bytes.buffer.slice(file.bytes.byteOffset, file.bytes.byteOffset + file.bytes.byteLength);
  const hide = globalThis.Deno && "process" in globalThis;
  const saved = globalThis.process;
  if (hide) delete globalThis.process;
  try {
    const T = await tokenizerClass(url);
    return await (file.name.endsWith(".model") ? T.fromSentencePiece(buf) : T.fromJSON(buf));
  } finally {
    if (hide) globalThis.process = saved;
  }
}
