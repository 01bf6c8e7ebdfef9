"""Browser benchmark: the whole stack in headless Chromium, one run, one JSON file.

Measures, for one model (the tiny one by default):
- the worker boot timeline: Pyodide ready, wheel installed, Python ready, model loaded, first token
  (milliseconds from page navigation);
- a greedy stream through the proxy vs the same stream driven inside the worker (per-chunk relay
  cost, tokens/s both ways, and the proxy's share of throughput; goal < 2 %); the page runs
  js_glue/bench-worker.js, this site's worker plus these in-worker measurements;
- the Python engine vs a JS-only loop over the same kernels in the same worker (goal < 2 %);
- main-thread long tasks (> 50 ms) during boot+load and during generation (goal: none).

    python bench/browser.py [--model ID] [--tokens N] [--out bench/out/browser.json]

Needs a built site (./build.sh). Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
from tools import serve  # noqa: E402

BARE_PAGE = '<!doctype html><html><head><script src="/py-worker.js"></script></head><body></body></html>'

# Runs in the page: observes long tasks from the start, then boots, loads and generates.
LONG_TASKS = """
window.longTasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.longTasks.push({start: e.startTime, duration: e.duration});
}).observe({type: "longtask", buffered: true});
"""

RUN = """async ({model, tokens, prompt, rounds}) => {
  const now = () => performance.timeOrigin + performance.now();
  const marks = {navigation: performance.timeOrigin};
  // bench-worker.js: this site's worker plus the two in-worker measurements below.
  const benchURL = new URL("bench-worker.js", PyWorker.baseURL);
  const benchWorker = () => new Worker(benchURL, {type: "module", name: "py-worker"});
  const engine = await PyWorker.CreateWebWorkerMLCEngine(benchWorker, model, {});
  marks.modelLoaded = now();
  const messages = [{role: "user", content: prompt}];
  const request = {messages, temperature: 0, ignore_eos: true, max_tokens: tokens, stream: true};
  const phase = {bootAndLoadEnd: performance.now()};

  // Through the proxy (the first run also gives the first-token time and warms up).
  const content = {request, modelId: [model]};
  const viaProxy = async () => {
    const times = [], chunks = [];
    const t0 = performance.now();
    for await (const chunk of await engine.chat.completions.create(request)) {
      times.push(performance.now() - t0);
      chunks.push(chunk);
      if (!marks.firstToken) marks.firstToken = now();
    }
    return {times, chunks, totalMs: performance.now() - t0};
  };
  // The same stream driven inside the worker; runs alternate so both see the same machine state.
  const inWorker = () => engine.sendRequest("workerLocalStream", content);
  await viaProxy();
  // A JS-only loop over the same kernels, in the same worker (its own load of the model).
  const record = engine.appConfig.model_list.find((r) => r.model_id === model);
  const jsLoop = () => engine.sendRequest("workerJsLoop", {record, prompt, maxTokens: tokens});
  const runs = {proxy: [], local: [], js: []};
  for (let i = 0; i < rounds; i++) {
    runs.proxy.push(await viaProxy());
    runs.local.push(await inWorker());
    runs.js.push(await jsLoop());
  }
  phase.generationEnd = performance.now();

  // Heartbeats: a bare postMessage round trip, answered by the worker without Python.
  const rtts = [];
  for (let i = 0; i < 20; i++) {
    const t = performance.now();
    await engine.sendRequest("heartbeat", {});
    rtts.push(performance.now() - t);
  }

  const timeline = await engine.sendRequest("workerTimeline", {});
  return {marks, timeline, runs, rtts, phase, longTasks: window.longTasks};
}"""


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c.get("choices"))


def usage_of(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    return next((c["usage"] for c in chunks if c.get("usage")), {})


def decode_rate(times: list[float], chunks: list[dict[str, Any]], tokens: int) -> float:
    """Tokens/s from the first chunk to the last: the decode loop as the consumer sees it."""
    deltas = [t for t, c in zip(times, chunks, strict=True) if c.get("choices")]
    first_tokens = 1  # the first chunk carries the first sampled token
    span = (deltas[-1] - deltas[0]) / 1000 if len(deltas) > 1 else 0.0
    return (tokens - first_tokens) / span if span > 0 else 0.0


def summarize(raw: dict[str, Any], model: str, tokens: int) -> dict[str, Any]:
    nav = raw["marks"]["navigation"]
    tl = raw["timeline"]

    def since(t: float | None) -> float | None:
        return None if t is None else round(t - nav, 1)

    runs = raw["runs"]
    first = runs["proxy"][0]["chunks"]
    n_tokens = usage_of(first).get("completion_tokens", tokens)
    proxy_rates = [decode_rate(r["times"], r["chunks"], n_tokens) for r in runs["proxy"]]
    local_rates = [decode_rate(r["times"], r["chunks"], n_tokens) for r in runs["local"]]
    js_rates = [r["decodeTokensPerS"] for r in runs["js"]]
    proxy_rate, local_rate, js_rate = (statistics.median(x) for x in (proxy_rates, local_rates, js_rates))
    n_chunks = max(1, len(first))
    pairs = zip(runs["proxy"], runs["local"], strict=True)
    relay = statistics.median(p["totalMs"] - q["totalMs"] for p, q in pairs)
    boot_end, gen_end = raw["phase"]["bootAndLoadEnd"], raw["phase"]["generationEnd"]
    long_tasks = raw["longTasks"]
    return {
        "model": model,
        "max_tokens": tokens,
        "rounds": len(runs["proxy"]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "boot_timeline_ms_from_navigation": {
            "worker_start": since(tl.get("workerStart")),
            "pyodide_ready": since(tl.get("pyodideReady")),
            "wheel_installed": since(tl.get("wheelInstalled")),
            "python_ready": since(tl.get("pythonReady")),
            "model_loaded": since(raw["marks"]["modelLoaded"]),
            "first_token": since(raw["marks"].get("firstToken")),
        },
        "stream": {
            "same_text_proxy_and_worker": all(
                text_of(r["chunks"]) == text_of(first) for r in runs["proxy"] + runs["local"]
            ),
            "completion_tokens": n_tokens,
            "chunks": n_chunks,
            "relay_ms_per_chunk": round(relay / n_chunks, 3),
            "heartbeat_rtt_ms_median": round(statistics.median(raw["rtts"]), 3),
            "decode_tokens_per_s_through_proxy": [round(x, 2) for x in proxy_rates],
            "decode_tokens_per_s_inside_worker": [round(x, 2) for x in local_rates],
            "proxy_cost_pct_of_median": round(100 * (1 - proxy_rate / local_rate), 2) if local_rate else None,
            "goal_proxy_cost_pct": 2,
        },
        "python_vs_js_loop": {
            "decode_tokens_per_s_python_engine": [round(x, 2) for x in local_rates],
            "decode_tokens_per_s_js_loop": [round(x, 2) for x in js_rates],
            "python_cost_pct_of_median": round(100 * (1 - local_rate / js_rate), 2) if js_rate else None,
            "goal_python_cost_pct": 2,
            "same_token_count": all(r["tokens"] == n_tokens for r in runs["js"]),
        },
        "main_thread_long_tasks": {
            "boot_and_load": sum(1 for t in long_tasks if t["start"] <= boot_end),
            "generation": sum(1 for t in long_tasks if boot_end < t["start"] <= gen_end),
            "all": [{"start_ms": round(t["start"], 1), "ms": round(t["duration"], 1)} for t in long_tasks],
            "goal": 0,
        },
    }


def run(model: str, tokens: int, prompt: str, rounds: int) -> dict[str, Any]:
    with serve.serving(ROOT / "site") as url, serve.chromium() as browser:
        page = browser.new_page()
        blocked = serve.guard_page(page, url, {"bare.html": BARE_PAGE})
        page.add_init_script(LONG_TASKS)
        page.goto(url + "bare.html")
        args = {"model": model, "tokens": tokens, "prompt": prompt, "rounds": rounds}
        raw: dict[str, Any] = page.evaluate(RUN, args)
        if blocked:
            raise SystemExit(f"non-local requests: {blocked}")
    return raw


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny-llama-q4f32_1")
    parser.add_argument("--tokens", type=int, default=160)
    parser.add_argument("--prompt", default="Tell me a story.")
    parser.add_argument("--rounds", type=int, default=3, help="alternating measured runs of each loop")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "browser.json")
    args = parser.parse_args()
    t0 = time.monotonic()
    raw = run(args.model, args.tokens, args.prompt, args.rounds)
    result = summarize(raw, args.model, args.tokens)
    result["wall_s"] = round(time.monotonic() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    brief = {k: v for k, v in result.items() if k != "main_thread_long_tasks"}
    brief["long_tasks"] = {k: v for k, v in result["main_thread_long_tasks"].items() if k != "all"}
    print(json.dumps(brief, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
