"""Time to first token in a second tab: one engine shared by all tabs vs one worker per tab.

For each host kind ("worker": a module worker per tab; "shared": the SharedWorker host;
"service": the Service Worker host), in a fresh browser profile: tab 1 opens an engine and
streams one answer (warming up), then tab 2 opens and we time, from tab 2's request to open
its engine, until its first streamed chunk. Per-tab workers pay Pyodide's boot and the model's
load (from the browser cache) again; the shared hosts answer at once from the loaded engine.

    python bench/tabs.py [--model ID] [--rounds N] [--kinds worker,shared,service] [--out bench/out/tabs.json]

Needs a built site (./build.sh). Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
from tools import serve  # noqa: E402

PAGE = """<!doctype html><html><head><script type="module">
import * as proxy from "/proxy.js";
import { connect } from "/transport.js";
window.proxy = proxy; window.connect = connect; window.ready = true;
</script></head><body></body></html>"""

# Opens an engine on the chosen host and streams one answer; milliseconds from the call.
OPEN_AND_STREAM = """async ([kind, model, tokens]) => {
  const t0 = performance.now();
  const config = await (await fetch("/app-config.json")).json();
  for (const r of config.model_list) r.model = new URL(r.model, location.href).href;
  const engine = await proxy.CreateWebWorkerMLCEngine(() => connect(kind), model, {appConfig: config});
  const loaded = performance.now() - t0;
  const messages = [{role: "user", content: "Tell me about the sea."}];
  let first = null, n = 0;
  const stream = await engine.chat.completions.create({messages, stream: true, max_tokens: tokens,
    temperature: 0, ignore_eos: true});
  for await (const chunk of stream) { if (first === null) first = performance.now() - t0; n += 1; }
  window.engine = engine;
  return {engineReadyMs: loaded, firstTokenMs: first, doneMs: performance.now() - t0, chunks: n};
}"""


def second_tab(browser: Any, url: str, kind: str, model: str, tokens: int) -> dict[str, Any]:
    """One round in a fresh profile: tab 1 warms the host, tab 2 is measured."""
    context = browser.new_context()
    blocked: list[str] = []

    def route(r: Any) -> None:
        if not serve.is_local(r.request.url):
            blocked.append(r.request.url)
            r.abort()
        elif r.request.url == url + "tabs.html":
            r.fulfill(status=200, content_type="text/html", body=PAGE)
        else:
            r.continue_()

    context.route("**/*", route)
    try:
        tabs = []
        for _ in range(2):
            page = context.new_page()
            page.goto(url + "tabs.html")
            page.wait_for_function("window.ready === true")
            tabs.append(page)
        first = tabs[0].evaluate(OPEN_AND_STREAM, [kind, model, tokens])
        second = tabs[1].evaluate(OPEN_AND_STREAM, [kind, model, tokens])
    finally:
        context.close()
    if blocked:
        raise RuntimeError(f"requests left 127.0.0.1: {blocked}")
    return {"firstTab": first, "secondTab": second}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny-llama-q4f32_1")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--kinds", default="worker,shared,service")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "tabs.json")
    args = parser.parse_args()
    site = ROOT / "site"
    if not (site / "pyodide" / "pyodide-lock.json").exists():
        print("no built site: run ./build.sh", file=sys.stderr)
        return 2
    kinds = [k for k in args.kinds.split(",") if k]
    results: dict[str, Any] = {}
    with serve.serving(site) as url, serve.chromium() as browser:
        for kind in kinds:
            rounds = [second_tab(browser, url, kind, args.model, args.tokens) for _ in range(args.rounds)]
            ttft = [r["secondTab"]["firstTokenMs"] for r in rounds]
            results[kind] = {
                "secondTabFirstTokenMs": {
                    "median": statistics.median(ttft),
                    "min": min(ttft),
                    "max": max(ttft),
                },
                "rounds": rounds,
            }
            print(
                f"{kind:8s} second-tab time to first token: median {statistics.median(ttft):8.0f} ms",
                flush=True,
            )
    report = {
        "benchmark": "tabs",
        "what": "time to first token in a second tab (from opening its engine), per host kind",
        "model": args.model,
        "tokens": args.tokens,
        "rounds": args.rounds,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "browser": serve.CHROMIUM,
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
