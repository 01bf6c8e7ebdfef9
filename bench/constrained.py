"""What a grammar costs per token: constrained vs free decoding of SmolLM2-135M-Instruct q4f32_1.

    .venv/bin/python bench/constrained.py [--runner deno chromium] [--rounds 3] [--steps-deno 24]
                                          [--steps-chromium 12] [--out bench/results]

Candidates, same prompt, greedy, alternating round by round (ABBA) in one run per runtime (Deno
on lavapipe, headless Chromium on SwiftShader; a fresh process / browser per run):

- ``free``: ``decodeSteps(n)`` as the engine runs it unconstrained: n steps in one submit, one
  readback;
- ``json``: the same after ``openGrammar`` of a JSON schema (an array of at least 40 short
  strings, so the grammar cannot end within the steps): each step is one submit and one readback,
  with @mlc-ai/web-xgrammar's bitmask (and the UTF-8 mask) uploaded before it.

Per run: prefill(prompt), [openGrammar], sample, decodeSteps(4) warm-up, decodeSteps(steps).
``decode_ms_per_token`` = seconds of the last call / tokens it returned (the harness's per-call
time, around the awaited kernel call in the worker). ``open_grammar_s`` is the first
openGrammar's seconds: the tokenizer info over the 49,152-id vocabulary and the schema's compile.
Output: <out>/constrained.json and .png; medians, min/max, json/free ratios. Timings are data.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

from py_worker.kernels import SamplingParams, grammar_spec  # noqa: E402
from tools.kernel_runners import chromium_page, deno_run  # noqa: E402

MODEL = "build/models/SmolLM2-135M-Instruct-q4f32_1"
CANDIDATES = ("free", "json")
WARM = 4
EOS = 2  # SmolLM2's <|im_end|>
SCHEMA = {"type": "array", "items": {"type": "string", "maxLength": 12}, "minItems": 40}
PROMPT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nList the names of forty animals, as a JSON array of strings.<|im_end|>\n"
    "<|im_start|>assistant\n"
)


def params(n: int, grammar: int | None) -> dict[str, Any]:
    return SamplingParams(temperature=0.0, uniforms=[0.0] * n, grammar=grammar).to_wire()


def scenario(ids: list[int], steps: int, constrained: bool) -> dict[str, Any]:
    g = 1 if constrained else None
    calls: list[list[Any]] = [["prefill", ids]]
    if constrained:
        calls.append(["openGrammar", grammar_spec("json_schema", json.dumps(SCHEMA), [EOS])])
    calls += [
        ["sample", params(1, g)],
        ["decodeSteps", WARM, params(WARM, g)],
        ["decodeSteps", steps, params(steps, g)],
    ]
    return {"record": {"model": MODEL, "overrides": {"context_window_size": 512}}, "calls": calls}


def measure(out: dict[str, Any], constrained: bool) -> dict[str, Any]:
    res = out["results"]
    for r in res:
        if "error" in r:
            raise RuntimeError(r["error"])
    last = res[-1]
    tokens = [res[-3]["value"]["token"]] + [s["token"] for s in res[-2]["value"] + last["value"]]
    return {
        "device": out["device"]["description"],
        "open_grammar_s": round(res[1]["seconds"], 3) if constrained else None,
        "decode_tokens": len(last["value"]),
        "decode_ms_per_token": round(1000 * last["seconds"] / len(last["value"]), 3),
        "tokens": tokens,
    }


def spread(xs: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(xs), 3), "min": round(min(xs), 3), "max": round(max(xs), 3)}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runtimes = list(result["summary"])
    fig, ax = plt.subplots(figsize=(6, 4))
    for j, c in enumerate(CANDIDATES):
        xs = [i + (j - 0.5) * 0.38 for i in range(len(runtimes))]
        s = [result["summary"][rt]["decode_ms_per_token"][c] for rt in runtimes]
        err = [[v["median"] - v["min"] for v in s], [v["max"] - v["median"] for v in s]]
        ax.bar(xs, [v["median"] for v in s], 0.38, yerr=err, capsize=3, label=c)
    for i, rt in enumerate(runtimes):
        m = result["summary"][rt]["decode_ms_per_token"]
        ax.text(i, m["json"]["max"] * 1.04, f"×{m['ratio_json_over_free']:.2f}", ha="center", fontsize=9)
    ax.set_xticks(range(len(runtimes)), runtimes)
    ax.set_ylabel("ms per decoded token (median, min-max)")
    ax.set_title("SmolLM2-135M q4f32_1: JSON-schema-constrained vs free decoding", fontsize=10)
    ax.legend()
    ax.margins(y=0.15)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runner", nargs="+", default=["deno", "chromium"], choices=["deno", "chromium"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps-deno", type=int, default=24)
    ap.add_argument("--steps-chromium", type=int, default=12)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results")
    args = ap.parse_args(argv)
    from tokenizers import Tokenizer

    ids = (
        Tokenizer.from_file(str(ROOT / MODEL / "tokenizer.json")).encode(PROMPT, add_special_tokens=False).ids
    )
    started, runs, pw = time.time(), [], None
    summary: dict[str, Any] = {}
    try:
        for runtime in args.runner:
            steps = args.steps_deno if runtime == "deno" else args.steps_chromium
            if runtime == "chromium":
                from playwright.sync_api import sync_playwright

                pw = sync_playwright().start()
            mine = []
            for k in range(args.rounds):
                for cand in CANDIDATES if k % 2 == 0 else CANDIDATES[::-1]:
                    sc = scenario(ids, steps, cand == "json")
                    if runtime == "deno":
                        out = deno_run(sc, timeout=900)
                    else:
                        assert pw is not None
                        with chromium_page(pw) as h:
                            out = h.run(sc)
                    row = {"runtime": runtime, "round": k, "candidate": cand, **measure(out, cand == "json")}
                    print(json.dumps({k2: v for k2, v in row.items() if k2 != "tokens"}), flush=True)
                    mine.append(row)
            per = {
                c: spread([r["decode_ms_per_token"] for r in mine if r["candidate"] == c]) for c in CANDIDATES
            }
            summary[runtime] = {
                "device": mine[0]["device"],
                "decode_ms_per_token": {
                    **per,
                    "ratio_json_over_free": round(per["json"]["median"] / per["free"]["median"], 3),
                },
                "open_grammar_s": spread([r["open_grammar_s"] for r in mine if r["candidate"] == "json"]),
            }
            runs += mine
    finally:
        if pw is not None:
            pw.stop()
    result = {
        "bench": "constrained",
        "model": MODEL,
        "schema": SCHEMA,
        "prompt_tokens": len(ids),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "seconds": round(time.time() - started, 1),
        "summary": summary,
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "constrained.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, path.with_suffix(".png"))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
