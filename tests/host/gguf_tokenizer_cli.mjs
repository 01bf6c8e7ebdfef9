// Runs js_glue/kernels/gguf_tokenizer.js for tests/host/test_gguf_tokenizer.py (Deno or node):
//   deno run --allow-read tests/host/gguf_tokenizer_cli.mjs CASES.json
// CASES.json: [{meta, bigint}]; with `bigint`, every *_token_id value and the token_type array
// become BigInt (as a parser reading 64-bit integers may give them). Prints one JSON list:
// {text} or {error: {name, message, fields}} per case.
import { readFileSync } from "node:fs";
import process from "node:process";
import { tokenizerJsonFromGguf } from "../../js_glue/kernels/gguf_tokenizer.js";

const cases = JSON.parse(readFileSync(process.argv[2], "utf8"));
const out = cases.map(({ meta, bigint }) => {
  if (bigint) {
    for (const [k, v] of Object.entries(meta)) {
      if (k.endsWith("_token_id") && Number.isInteger(v)) meta[k] = BigInt(v);
      if (k === "tokenizer.ggml.token_type") meta[k] = v.map((x) => BigInt(x));
    }
  }
  try {
    return { text: tokenizerJsonFromGguf(meta) };
  } catch (e) {
    return { error: { name: e.name, message: e.message, fields: e.fields ?? null } };
  }
});
process.stdout.write(JSON.stringify(out));
