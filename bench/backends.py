"""The two ways a GGUF runs without a GPU: llama.cpp in WebAssembly (`wasm`) vs our WGSL kernels on
Chromium's software adapter (`wgsl` on SwiftShader), through the whole stack, side by side.

    .venv/bin/python bench/backends.py [--rounds 2] [--tokens 24] [--out bench/results]

SmolLM2-135M-Instruct's Q4_1 GGUF (the site's default model), the same chat prompt, greedy,
`ignore_eos`, streamed through the proxy. Per round each backend gets a fresh browser and
profile (ABBA order): load, then one warm-up answer, then the measured one. Reported per run:
load seconds (CreateWebWorkerMLCEngine to ready: fetch from the local server, parse, upload or
hand to llama.cpp, compile), and the engine's own usage.extra figures of the measured answer
(prefill and decode tokens per second, time to first token). Output: <out>/backends.json and
.png; medians, min/max, wasm/wgsl ratios. Timings are data, never pass/fail thresholds.
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

MODEL = "SmolLM2-135M-Instruct-Q4_1"
BACKENDS = ("wasm", "wgsl")
METRICS = ("load_s", "prefill_tokens_per_s", "decode_tokens_per_s", "time_to_first_token_s")
BARE_PAGE = '<!doctype html><html><head><script src="/py-worker.js"></script></head><body></body></html>'
PROMPT = (
    "Plan a relaxed three-day trip to Lisbon for three friends who like old neighbourhoods and cheap food."
)

RUN = """async ({model, backend, tokens, prompt}) => {
  const appConfig = await PyWorker.defaultAppConfig();
  for (const r of appConfig.model_list) r.backend = backend;
  const progress = [];
  const t0 = performance.now();
  const initProgressCallback = (r) => progress.push(r.text);
  const engine = await PyWorker.CreateWebWorkerMLCEngine(model, {appConfig, initProgressCallback});
  const load_s = (performance.now() - t0) / 1000;
  const request = {messages: [{role: "user", content: prompt}], temperature: 0, ignore_eos: true,
    max_tokens: tokens, stream: true, stream_options: {include_usage: true}};
  let usage = null, text = "";
  for (let i = 0; i < 2; i++) {
    text = "";
    for await (const chunk of await engine.chat.completions.create(request)) {
      if (chunk.usage) usage = chunk.usage;
      text += chunk.choices[0]?.delta?.content || "";
    }
  }
  return {load_s, usage, text, last: progress[progress.length - 1]};
}"""


def one(backend: str, tokens: int) -> dict[str, Any]:
    with serve.serving(ROOT / "site") as url, serve.chromium() as browser:
        page = browser.new_page()
        blocked = serve.guard_page(page, url, {"bare.html": BARE_PAGE})
        page.goto(url + "bare.html")
        raw: dict[str, Any] = page.evaluate(
            RUN, {"model": MODEL, "backend": backend, "tokens": tokens, "prompt": PROMPT}
        )
    if blocked:
        raise SystemExit(f"non-local requests: {blocked}")
    extra = raw["usage"]["extra"]
    return {
        "backend": backend,
        "load_s": round(raw["load_s"], 3),
        **{k: round(float(extra[k]), 4) for k in METRICS[1:]},
        "completion_tokens": raw["usage"]["completion_tokens"],
        "loaded_as": raw["last"],
        "text": raw["text"],
    }


def spread(xs: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(xs), 4), "min": round(min(xs), 4), "max": round(max(xs), 4)}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.6 * len(METRICS), 3.6))
    for ax, metric in zip(axes, METRICS, strict=True):
        s = [result["summary"][metric][b] for b in BACKENDS]
        err = [[v["median"] - v["min"] for v in s], [v["max"] - v["median"] for v in s]]
        ax.bar(BACKENDS, [v["median"] for v in s], yerr=err, capsize=3, color=["tab:green", "tab:blue"])
        ax.set_title(
            f"{metric}\n×{result['summary'][metric]['ratio_wasm_over_wgsl']:.2f} wasm/wgsl", fontsize=9
        )
    fig.suptitle(f"{MODEL} on a 2-core machine: llama.cpp (wasm) vs WGSL on SwiftShader", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results")
    args = ap.parse_args(argv)
    started, runs = time.time(), []
    for k in range(args.rounds):
        for backend in BACKENDS if k % 2 == 0 else BACKENDS[::-1]:
            row = {"round": k, **one(backend, args.tokens)}
            print(json.dumps({key: v for key, v in row.items() if key != "text"}), flush=True)
            runs.append(row)
    summary: dict[str, Any] = {}
    for metric in METRICS:
        per = {b: spread([r[metric] for r in runs if r["backend"] == b]) for b in BACKENDS}
        summary[metric] = {
            **per,
            "ratio_wasm_over_wgsl": round(per["wasm"]["median"] / per["wgsl"]["median"], 3),
        }
    result = {
        "bench": "backends",
        "model": MODEL,
        "tokens": args.tokens,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "seconds": round(time.time() - started, 1),
        "summary": summary,
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "backends.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, path.with_suffix(".png"))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
