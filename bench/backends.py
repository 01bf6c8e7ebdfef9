"""A GGUF without a GPU: py_worker on llama.cpp (`wasm`, 1 and 2 threads) vs wllama used directly
(the same llama.cpp build, its own completion loop) vs py_worker on our WGSL kernels on Chromium's
software adapter (`wgsl` on SwiftShader), side by side in one run.

    .venv/bin/python bench/backends.py [--rounds 3] [--tokens 32] [--out bench/results]

SmolLM2-135M-Instruct's Q4_1 GGUF (the site's default model), the same chat prompt (the model's
own template: the same prompt tokens everywhere), greedy, the same number of answer tokens, the
same context (KV cache) size. Each
run gets a fresh browser and profile on a cross-origin isolated page (the server sends COOP/COEP,
so llama.cpp may use threads); the variants' order rotates each round. Per run: load (from the
call to a ready engine: fetch from the local server, parse, hand to llama.cpp or upload, compile),
one warm-up answer, then the measured one, timed on the page for every variant alike:

- time to first token: the request (or wllama's createCompletion) to the first token's arrival;
- prefill tokens/s: prompt tokens / time to first token (so it includes the first sample);
- decode tokens/s: (tokens - 1) / (last token's arrival - first token's arrival);
- memory: the summed PSS of every browser process, peak over the run and after the answer.

py_worker's rows also carry the engine's own usage.extra figures. Output: <out>/backends.json and
.png: medians, min/max, and the ratios the comparison is about (py_worker wasm / wllama at the
same thread count; wasm / wgsl). Timings are data, never pass/fail thresholds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
from tools import serve  # noqa: E402
from tools.procmem import PssSampler  # noqa: E402

MODEL = "SmolLM2-135M-Instruct-Q4_1"
GGUF = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
VARIANTS = ("wllama-1t", "wasm-1t", "wllama-2t", "wasm-2t", "wgsl")
METRICS = ("load_s", "time_to_first_token_s", "prefill_tokens_per_s", "decode_tokens_per_s")
MEMORY = ("peak_pss_mib", "after_pss_mib")
PAGES = {
    "engine.html": '<!doctype html><html><head><script src="/py-worker.js"></script></head></html>',
    "wllama.html": "<!doctype html><html><head></head><body></body></html>",
}
CONTEXT = 2048
"""The KV cache every variant allocates (the GGUF says 8,192; the same for all is what matters)."""
PROMPT = (
    "Plan a relaxed three-day trip to Lisbon for three friends who like old neighbourhoods and cheap food."
)

# Page-side timing, the same for both: arrivals of the answer's tokens.
TIMING = """
  window.rates = (t0, arrivals, promptTokens, tokens) => {
    const first = arrivals[0], last = arrivals[arrivals.length - 1];
    const ttft = (first - t0) / 1000;
    return {time_to_first_token_s: ttft, prefill_tokens_per_s: promptTokens / ttft,
            decode_tokens_per_s: (tokens - 1) / ((last - first) / 1000), prompt_tokens: promptTokens,
            completion_tokens: tokens};
  };
"""

ENGINE = """async ({model, backend, threads, tokens, prompt}) => {
  TIMING
  const appConfig = await PyWorker.defaultAppConfig();
  const chosen = appConfig.model_list.find((r) => r.model_id === model);
  Object.assign(chosen, {backend}, threads ? {threads} : {});
  chosen.overrides = {...chosen.overrides, context_window_size: CONTEXT};
  const progress = [];
  let t0 = performance.now();
  const initProgressCallback = (r) => progress.push(r.text);
  const engine = await PyWorker.CreateWebWorkerMLCEngine(model, {appConfig, initProgressCallback});
  const load_s = (performance.now() - t0) / 1000;
  const request = {messages: [{role: "user", content: prompt}], temperature: 0, ignore_eos: true,
    max_tokens: tokens, stream: true, stream_options: {include_usage: true}};
  let out = null;
  for (let i = 0; i < 2; i++) {
    let usage = null, text = "";
    const arrivals = [];
    t0 = performance.now();
    for await (const chunk of await engine.chat.completions.create(request)) {
      if (chunk.usage) usage = chunk.usage;
      const piece = chunk.choices[0]?.delta?.content;
      if (piece) { arrivals.push(performance.now()); text += piece; }
    }
    const timed = rates(t0, arrivals, usage.prompt_tokens, usage.completion_tokens);
    out = {...timed, text, engine_extra: usage.extra};
  }
  return {load_s, ...out, loaded_as: progress[progress.length - 1]};
}""".replace("TIMING", TIMING).replace("CONTEXT", str(CONTEXT))

WLLAMA = """async ({gguf, threads, tokens, promptText}) => {
  TIMING
  const {Wllama} = await import("/wllama/index.js");
  let t0 = performance.now();
  const bytes = await (await fetch(gguf)).blob();
  const paths = {"single-thread/wllama.wasm": "/wllama/single-thread/wllama.wasm",
                 "multi-thread/wllama.wasm": "/wllama/multi-thread/wllama.wasm"};
  const w = new Wllama(paths, {suppressNativeLog: true});
  await w.loadModel([bytes], {n_ctx: CONTEXT, n_batch: 128, n_threads: threads});
  const load_s = (performance.now() - t0) / 1000;
  const promptTokens = (await w.tokenize(promptText, true)).length;
  let out = null;
  for (let i = 0; i < 2; i++) {
    const arrivals = [];
    t0 = performance.now();
    const text = await w.createCompletion(promptText, {nPredict: tokens, sampling: {temp: 0},
      onNewToken: () => arrivals.push(performance.now())});
    out = {...rates(t0, arrivals, promptTokens, arrivals.length), text};
  }
  const loaded_as = `wllama, ${w.getNumThreads()} thread(s), isolated: ${crossOriginIsolated}`;
  return {load_s, ...out, loaded_as};
}""".replace("TIMING", TIMING).replace("CONTEXT", str(CONTEXT))


def prompt_text() -> str:
    """The chat prompt as SmolLM2's own template renders it (what py_worker's engine sends)."""
    from gguf import GGUFReader

    from py_worker.chat_template import ChatTemplate
    from py_worker.reference.gguf_model import gguf_config

    config = gguf_config(GGUFReader(ROOT / "site" / GGUF))
    messages = [{"role": "user", "content": PROMPT}]
    return ChatTemplate.from_config(config).render(messages, add_generation_prompt=True)


def one(variant: str, tokens: int, text: str) -> dict[str, Any]:
    kind, _, count = variant.partition("-")
    threads = int(count.rstrip("t")) if count else 0
    with serve.serving(ROOT / "site") as url, serve.chromium() as browser, PssSampler() as memory:
        page = browser.new_page()
        blocked = serve.guard_page(page, url, PAGES)
        if kind == "wllama":
            page.goto(url + "wllama.html")
            arg = {"gguf": GGUF, "threads": threads, "tokens": tokens, "promptText": text}
            raw: dict[str, Any] = page.evaluate(WLLAMA, arg)
        else:
            page.goto(url + "engine.html")
            backend = "wgsl" if kind == "wgsl" else "wasm"
            arg = {"model": MODEL, "backend": backend, "threads": threads, "tokens": tokens, "prompt": PROMPT}
            raw = page.evaluate(ENGINE, arg)
        memory.sample()
    if blocked:
        raise SystemExit(f"non-local requests: {blocked}")
    row = {"variant": variant, **{k: round(float(raw[k]), 4) for k in METRICS}}
    row |= {"peak_pss_mib": round(memory.peak_mib), "after_pss_mib": round(memory.last_mib)}
    row |= {k: raw[k] for k in ("prompt_tokens", "completion_tokens", "loaded_as", "text")}
    if "engine_extra" in raw:
        row["engine_extra"] = raw["engine_extra"]
    return row


def spread(xs: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(xs), 4), "min": round(min(xs), 4), "max": round(max(xs), 4)}


RATIOS = {
    "wasm-1t / wllama-1t": ("wasm-1t", "wllama-1t"),
    "wasm-2t / wllama-2t": ("wasm-2t", "wllama-2t"),
    "wasm-1t / wgsl": ("wasm-1t", "wgsl"),
    "wasm-2t / wgsl": ("wasm-2t", "wgsl"),
}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per metric: each variant's spread, and the ratios of medians; plus paired per-round ratios
    of py_worker to wllama (the same round, so a machine's slow minute hits both), and whether
    their greedy answers are the same text (the same work)."""
    summary: dict[str, Any] = {}
    for metric in (*METRICS, *MEMORY):
        per = {v: spread([r[metric] for r in runs if r["variant"] == v]) for v in VARIANTS}
        ratios = {name: round(per[a]["median"] / per[b]["median"], 3) for name, (a, b) in RATIOS.items()}
        summary[metric] = {**per, "ratios": ratios}
    for metric in ("prefill_tokens_per_s", "decode_tokens_per_s"):
        for name, (a, b) in list(RATIOS.items())[:2]:
            paired = [
                ra[metric] / rb[metric]
                for ra in runs
                for rb in runs
                if ra["variant"] == a and rb["variant"] == b and ra["round"] == rb["round"]
            ]
            summary[metric][f"paired {name}"] = spread(paired)
    texts = {v: {r["text"] for r in runs if r["variant"] == v} for v in VARIANTS}
    summary["same_text"] = {name: len(texts[a] | texts[b]) == 1 for name, (a, b) in list(RATIOS.items())[:2]}
    return summary


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = (*METRICS, "peak_pss_mib")
    fig, axes = plt.subplots(1, len(shown), figsize=(3.4 * len(shown), 3.8))
    colours = ["tab:gray", "tab:green", "silver", "tab:olive", "tab:blue"]
    for ax, metric in zip(axes, shown, strict=True):
        s = [result["summary"][metric][v] for v in VARIANTS]
        err = [[v["median"] - v["min"] for v in s], [v["max"] - v["median"] for v in s]]
        ax.bar(VARIANTS, [v["median"] for v in s], yerr=err, capsize=3, color=colours)
        ax.set_title(metric, fontsize=9)
        ax.tick_params(axis="x", labelsize=7, rotation=30)
    fig.suptitle(
        f"{MODEL}, {result['machine']['cpus']} cores: py_worker on llama.cpp (wasm) vs wllama directly "
        "vs py_worker's WGSL on SwiftShader",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results")
    args = ap.parse_args(argv)
    text = prompt_text()
    started, runs = time.time(), []
    for k in range(args.rounds):
        order = [VARIANTS[(i + k) % len(VARIANTS)] for i in range(len(VARIANTS))]
        for variant in (v for v in order if v in args.variants):
            row = {"round": k, **one(variant, args.tokens, text)}
            print(json.dumps({key: v for key, v in row.items() if key != "text"}), flush=True)
            runs.append(row)
    if set(args.variants) != set(VARIANTS):
        return  # a partial run (for a quick look) writes nothing
    result = {
        "bench": "backends",
        "model": MODEL,
        "tokens": args.tokens,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "seconds": round(time.time() - started, 1),
        "summary": summarise(runs),
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "backends.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, path.with_suffix(".png"))
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
