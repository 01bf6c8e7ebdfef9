// One Deno process, one GPU: the Python engine (Pyodide + py_worker over the JS kernel shim)
// against a JS-only loop over the very same shim and model handle, so the difference is what the
// Python layer costs, and against web-llm 0.2.79's own engine on MLC's library for the model
// (bench/webllm_gpu.js), all in alternating rounds of the same token counts. Every round counts its
// dispatchWorkgroups and queue submits (tools/gpu_calls.js): those of the prefill (up to
// the first token) and those per decoded token. Driven by bench/engine_gpu.py, which passes a JSON
// config path and reads the one JSON line printed last.
//
//   deno run --allow-read --allow-env --location http://127.0.0.1/ bench/engine_gpu.js CONFIG.json
//
// config: {pyodide: dir of pyodide.mjs, wheel: py_worker wheel path, record: model record,
//          prompt: text, maxTokens, rounds, warmupTokens,
//          webllm: {modelDir, modelLib} (see bench/webllm_gpu.js)}

import { createKernels } from "../js_glue/kernels/backends.js";
import { callsSince, countGpuCalls } from "../tools/gpu_calls.js";
import { loadWebLLM, webllmRound } from "./webllm_gpu.js";

const root = new URL("../", import.meta.url);
const cfg = JSON.parse(await Deno.readTextFile(Deno.args[0]));
const log = (...a) => console.error("[engine_gpu]", ...a);
const counter = countGpuCalls();

// Python side: the engine over JsKernels, with a stopwatch on sample/decode_steps only to learn
// when the first token exists and which batch sizes the engine chose (two clock reads per call).
const DRIVER = `
import json, time
from py_worker.engine import MLCEngine
from py_worker.jsbridge import JsKernels


class Clocked(JsKernels):
    """JsKernels recording the first token's time and the decode batch sizes."""

    def __init__(self, shim):
        super().__init__(shim)
        self.first = 0.0
        self.batches = []

    async def sample(self, handle, params):
        out = await super().sample(handle, params)
        self.first = time.perf_counter()
        return out

    async def decode_steps(self, handle, n, params):
        self.batches.append(n)
        return await super().decode_steps(handle, n, params)


async def setup(shim, record_json):
    global ENGINE, KERNELS, MODEL_ID
    record = json.loads(record_json)
    MODEL_ID = record["model_id"]
    KERNELS = Clocked(shim)
    ENGINE = MLCEngine(KERNELS, {"model_list": [record]})
    await ENGINE.reload(MODEL_ID)
    return ENGINE.models[MODEL_ID].handle


async def chat(prompt, max_tokens):
    KERNELS.batches = []
    start = time.perf_counter()
    stream = await ENGINE.chat.completions.create(
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
        temperature=0,
        ignore_eos=True,
        max_tokens=max_tokens,
    )
    usage, chunks, text = None, 0, ""
    async for chunk in stream:
        chunks += 1
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            text += (choice.get("delta") or {}).get("content") or ""
    end = time.perf_counter()
    await ENGINE.reset_chat()
    return json.dumps({"start": start, "first": KERNELS.first, "end": end, "usage": usage,
                       "chunks": chunks, "chars": len(text), "batches": KERNELS.batches})
`;

async function bootPython() {
  const t0 = performance.now();
  const { loadPyodide } = await import(new URL(`file://${cfg.pyodide}/pyodide.mjs`).href);
  const pyodide = await loadPyodide({ indexURL: `${cfg.pyodide}/` });
  pyodide.unpackArchive(await Deno.readFile(cfg.wheel), "wheel");
  await pyodide.runPythonAsync(DRIVER);
  log(`pyodide + wheel ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return pyodide;
}

/** generate.py's schedule over the shim in JS: sample, then decodeSteps batches sized by time. */
async function jsLoop(shim, handle, ids, maxTokens, rule) {
  const params = (n) => ({ temperature: 0, top_p: 1, frequency_penalty: 0, presence_penalty: 0,
    repetition_penalty: 1, logit_bias: [], history: [], uniforms: new Array(n).fill(0), logprobs: false, top_logprobs: 0 });
  await shim.reset(handle);
  const start = performance.now();
  for (let i = 0; i < ids.length; i += rule.prefillChunk) await shim.prefill(handle, ids.slice(i, i + rule.prefillChunk));
  const tokens = [(await shim.sample(handle, params(1))).token];
  const first = performance.now();
  let text = await shim.detokenize(handle, tokens);
  let next = rule.first;
  let decodeS = 0;
  const batches = [];
  while (tokens.length < maxTokens) {
    const n = Math.min(next, maxTokens - tokens.length);
    const t = performance.now();
    const batch = await shim.decodeSteps(handle, n, params(n));
    const took = (performance.now() - t) / 1000;
    decodeS += took;
    batches.push(n);
    const fresh = batch.map((b) => b.token);
    tokens.push(...fresh);
    text += await shim.detokenize(handle, fresh);
    const byTime = took > 0 ? Math.floor((rule.seconds * n) / took) : rule.max;
    next = Math.max(1, Math.min(rule.max, next * 2, byTime));
  }
  const end = performance.now();
  await shim.reset(handle);
  return { startMs: start, firstMs: first, endMs: end, tokens: tokens.length, decodeKernelS: decodeS, batches, chars: text.length };
}

/** A round's figures; ``gpu`` holds the call counts at its start, first token and end. */
function summarise(kind, promptTokens, completion, startS, firstS, endS, kernelDecodeTps, batches, gpu) {
  const decoded = callsSince(gpu.first, gpu.end);
  return {
    kind,
    prompt_tokens: promptTokens,
    completion_tokens: completion,
    ttft_s: firstS - startS,
    prefill_tok_s: promptTokens / (firstS - startS),
    decode_wall_s: endS - firstS,
    decode_tok_s: (completion - 1) / (endS - firstS),
    decode_kernel_tok_s: kernelDecodeTps,
    gpu_prefill: callsSince(gpu.start, gpu.first),
    dispatches_per_token: decoded.dispatches / (completion - 1),
    submits_per_token: decoded.submits / (completion - 1),
    batches,
  };
}

const shim = await createKernels({
  baseURL: root.href,
  tokenizersURL: new URL("node_modules/@mlc-ai/web-tokenizers/lib/index.js", root).href,
  tvmjsURL: new URL("node_modules/@mlc-ai/web-runtime/lib/index.js", root).href,
  cache: "none",
});
// The first sample of a round ends its prefill (the engine and the JS loop alike sample the first
// token alone, then decode in decodeSteps batches): the call counts then split prefill from decode.
const marks = { first: null };
const sample = shim.sample;
shim.sample = async (...args) => {
  const out = await sample.apply(shim, args);
  marks.first ??= counter();
  return out;
};
const device = await shim.deviceInfo();
log("device", JSON.stringify(device));
const pyodide = await bootPython();
const setup = pyodide.globals.get("setup");
const chat = pyodide.globals.get("chat");
const tLoad = performance.now();
const handle = await setup(shim, JSON.stringify(cfg.record));
const loadS = (performance.now() - tLoad) / 1000;
log(`model loaded in ${loadS.toFixed(1)} s, handle ${handle}`);
const gen = pyodide.pyimport("py_worker.generate");
const config = pyodide.globals.get("ENGINE").models.get(cfg.record.model_id).config.toJs({ dict_converter: Object.fromEntries });
const rule = { first: gen.FIRST_BATCH, max: gen.MAX_BATCH, seconds: gen.BATCH_SECONDS, prefillChunk: config.prefill_chunk_size || 2048 };

const pyRound = async (maxTokens) => {
  marks.first = null;
  const start = counter();
  const r = JSON.parse(await chat(cfg.prompt, maxTokens));
  const gpu = { start, first: marks.first, end: counter() };
  const row = summarise("python", r.usage.prompt_tokens, r.usage.completion_tokens, r.start, r.first, r.end,
    r.usage.extra.decode_tokens_per_s, r.batches, gpu);
  return { ...row, usage_extra: r.usage.extra, chunks: r.chunks, chars: r.chars };
};
// The JS loop prefills exactly as many tokens as the engine did (the chat template included).
const userIds = Array.from(await shim.tokenize(handle, cfg.prompt));
const jsRound = async (maxTokens, promptTokens) => {
  const ids = Array.from({ length: promptTokens }, (_, i) => userIds[i % userIds.length]);
  marks.first = null;
  const start = counter();
  const r = await jsLoop(shim, handle, ids, maxTokens, rule);
  const gpu = { start, first: marks.first, end: counter() };
  return summarise("js", promptTokens, r.tokens, r.startMs / 1000, r.firstMs / 1000, r.endMs / 1000,
    (r.tokens - 1) / r.decodeKernelS, r.batches, gpu);
};
const webllm = await loadWebLLM(cfg.webllm, counter, log);

log("warm-up");
const warm = await pyRound(cfg.warmupTokens);
await jsRound(cfg.warmupTokens, warm.prompt_tokens);
await webllmRound(webllm, counter, cfg.prompt, cfg.warmupTokens);
const rounds = [];
// Each side's timed round comes right after a short untimed one of its own: the first work after
// another side's long run is slower (in one H200 run, the engine's time to first token went from
// 0.12 s to 0.28 s when its round followed web-llm's), which would charge that side for the order.
for (let i = 0; i < cfg.rounds; i++) {
  await pyRound(cfg.warmupTokens);
  const py = await pyRound(cfg.maxTokens);
  await jsRound(cfg.warmupTokens, py.prompt_tokens);
  const js = await jsRound(cfg.maxTokens, py.prompt_tokens);
  await webllmRound(webllm, counter, cfg.prompt, cfg.warmupTokens);
  const wl = await webllmRound(webllm, counter, cfg.prompt, cfg.maxTokens);
  log(`round ${i}: python decode ${py.decode_tok_s.toFixed(1)} tok/s prefill ${py.prefill_tok_s.toFixed(0)}; ` +
      `js decode ${js.decode_tok_s.toFixed(1)} prefill ${js.prefill_tok_s.toFixed(0)}; ` +
      `web-llm decode ${wl.decode_tok_s.toFixed(1)} prefill ${wl.prefill_tok_s.toFixed(0)}`);
  rounds.push(py, js, wl);
}
const out = { device, load_s: loadS, webllm_load_s: webllm.loadS, schedule: rule, pyodide: pyodide.version, rounds };
await Deno.stdout.write(new TextEncoder().encode(JSON.stringify(out) + "\n"));
Deno.exit(0);
