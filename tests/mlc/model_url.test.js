// js_glue/kernels/loader.js modelDirURL: where a record's model directory is, for every backend,
// the worker's prefetch and the cache helpers. web-llm's prebuilt records name a Hugging Face
// repository (no `resolve/main/`): they must load unchanged.

import { test } from "node:test";
import assert from "node:assert/strict";
import { modelBase, modelDirURL } from "../../js_glue/kernels/loader.js";

const page = "http://127.0.0.1:8000/app/index.html";

test("a Hugging Face repository URL means its main branch's files, as in web-llm", () => {
  const repo = "https://huggingface.co/mlc-ai/Qwen2.5-0.5B-Instruct-q4f16_1-MLC";
  const main = `${repo}/resolve/main/`;
  assert.equal(modelDirURL(repo, page), main);
  assert.equal(modelDirURL(`${repo}/`, page), main);
  assert.equal(modelDirURL(main, page), main);
  assert.equal(modelDirURL(`${repo}/resolve/v1.0`, page), `${repo}/resolve/v1.0/`);
  assert.equal(modelBase({ model: repo }, { baseURL: page }), main);
});

test("other directories only gain a trailing slash, resolved against the page", () => {
  assert.equal(modelDirURL("models/tiny-llama-q0f32", page), "http://127.0.0.1:8000/app/models/tiny-llama-q0f32/");
  assert.equal(modelDirURL("/models/x/", page), "http://127.0.0.1:8000/models/x/");
  assert.equal(modelDirURL("https://example.org/org/repo", page), "https://example.org/org/repo/");
  assert.equal(modelDirURL("https://huggingface.co/org/repo/tree/main", page), "https://huggingface.co/org/repo/tree/main/");
});
