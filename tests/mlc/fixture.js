// A tiny MLC model directory served from memory (config, tensor cache, shards, tokenizer, a
// library whose bytes start with the wasm magic) and the options that point mlc.js at it and
// at the recording fake tvmjs.

import { createHash } from "node:crypto";
import { makeFakeTvmjs } from "./fake_tvmjs.js";

// @mlc-ai/web-tokenizers' bundle looks for `location` (or CommonJS `require`) to find itself.
globalThis.location ??= new URL(import.meta.url);

export const ORIGIN = "http://127.0.0.1:8765/app/";
export const TOKENIZERS_URL = new URL("../../node_modules/@mlc-ai/web-tokenizers/lib/index.js", import.meta.url).href;
export const WORDS = ["[UNK]", "hello", "world", "the", "cat", "sat", "on", "mat", "a", "dog"];
export const VOCAB = 40;

const sha = (bytes) => createHash("sha256").update(bytes).digest("hex");
const utf8 = (s) => new TextEncoder().encode(s);

/** Files of one model dir plus its library; `metadataSha` adds tensor-cache metadata.sha256. */
export function modelFiles({ contextWindow = 64, slidingWindow = -1, metadataSha = true } = {}) {
  const shards = [new Uint8Array(16).fill(1), new Uint8Array(8).fill(2)];
  const records = [
    { dataPath: "params_shard_0.bin", format: "raw-shard", nbytes: 16, records: [
      { name: "p0", shape: [2, 2], dtype: "float32", format: "raw", byteOffset: 0, nbytes: 16 }] },
    { dataPath: "params_shard_1.bin", format: "raw-shard", nbytes: 8, records: [
      { name: "p1", shape: [2], dtype: "float32", format: "raw", byteOffset: 0, nbytes: 8 }] },
  ];
  const metadata = metadataSha ? { sha256: { "params_shard_0.bin": sha(shards[0]), "params_shard_1.bin": sha(shards[1]) } } : {};
  const tokenizer = {
    version: "1.0",
    model: { type: "WordLevel", vocab: Object.fromEntries(WORDS.map((w, i) => [w, i])), unk_token: "[UNK]" },
    pre_tokenizer: { type: "Whitespace" },
  };
  const config = {
    model_type: "llama", vocab_size: VOCAB, context_window_size: contextWindow, sliding_window_size: slidingWindow,
    attention_sink_size: slidingWindow > 0 ? 4 : -1, prefill_chunk_size: 4, tokenizer_files: ["tokenizer.json"],
    conv_template: { name: "test" }, temperature: 0.7, top_p: 0.9,
  };
  return {
    "models/tiny/mlc-chat-config.json": utf8(JSON.stringify(config)),
    "models/tiny/tensor-cache.json": utf8(JSON.stringify({ metadata, records })),
    "models/tiny/params_shard_0.bin": shards[0],
    "models/tiny/params_shard_1.bin": shards[1],
    "models/tiny/tokenizer.json": utf8(JSON.stringify(tokenizer)),
    "libs/tiny-webgpu.wasm": Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0),
  };
}

/** A fetch over `files` (paths relative to ORIGIN) that records every URL it is asked for. */
export function memoryFetch(files) {
  const asked = [];
  const fetch = async (url) => {
    asked.push(url);
    const path = url.startsWith(ORIGIN) ? url.slice(ORIGIN.length) : null;
    const body = path !== null ? files[path] : undefined;
    if (!body) return new Response("missing", { status: 404 });
    return new Response(body.slice());
  };
  return { fetch, asked };
}

export const RECORD = { model_id: "tiny-mlc", model: "models/tiny/", model_lib: "libs/tiny-webgpu.wasm" };

export const METADATA = { params: [{ name: "p0" }, { name: "p1" }], prefill_chunk_size: 4, kv_state_kind: "kv_cache", max_batch_size: 1 };

/** The fake runtime and the options for createMlcKernels. */
export function setup({ fake = {}, files = {} } = {}) {
  const runtime = makeFakeTvmjs({ metadata: METADATA, vocab: VOCAB, ...fake });
  const served = memoryFetch(modelFiles(files));
  const options = { tvmjs: runtime.tvmjs, fetch: served.fetch, baseURL: ORIGIN, cache: "none", tokenizersURL: TOKENIZERS_URL, logger: () => {} };
  return { runtime, served, options };
}
