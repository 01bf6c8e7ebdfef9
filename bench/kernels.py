"""Prefill and decode tokens/s of the WGSL kernels, one comparison per run: JSON + a PNG plot.

    .venv/bin/python bench/kernels.py [--runner chromium deno] [--model smollm2 qwen2-0.5b ...]
                                      [--prompt 32] [--steps 8] [--kernels cpu|gpu] [--tag cpu]
                                      [--kv-cache default|f16|f32] [--f16-math default|on|off]

Models: ``smollm2`` (tools/convert_smollm2.py) or a random-weight shape of
tools/make_random_model.py (``qwen2-0.5b``, ``llama-3.2-1b``, ...), each ``q4f32_1`` unless
``--quant`` says otherwise. Per model and runner it times: a prefill of ``--prompt`` tokens, the
GPU-resident loop (``decodeSteps(steps)``, second call, greedy) and the one-step path
(``decode`` + ``sample``, one sync per token). It also reports the weight bytes read per decoded
token and the achieved weight bandwidth, against the device's copy and read bandwidth (measured
as slopes, tools/bandwidth.js) and its published peak. ``--profile`` adds the GPU time
of each dispatch of the timed decodeSteps call, per token (Deno, timestamp queries). Timings
are data, never pass/fail thresholds.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

from tools.kernel_runners import chromium_page, deno_run  # noqa: E402

PEAK_GB_S = {"H200": 4800.0}
"""Published memory bandwidth (NVIDIA's H200 datasheet: 4.8 TB/s HBM3e), by a name in the
adapter's description."""
WEBLLM_CHROMIUM_QWEN2 = {"decode": 0.02, "prefill": 0.16}
"""web-llm 0.2.79, Qwen2-0.5B q4f32_1, headless Chromium on SwiftShader, this machine
(measured in an earlier run)."""
WEBLLM_H200_QWEN2 = {"decode": 7.9, "prefill": 1440.0}
"""web-llm 0.2.79, Qwen2-0.5B (best of q4f16_1/q4f32_1), Deno WebGPU on an NVIDIA
H200 (measured in an earlier run)."""


def model_dir(name: str, quant: str) -> str:
    """Relative model dir, built on first use (conversion and generation are cached)."""
    if name == "smollm2":
        rel = f"build/models/SmolLM2-135M-Instruct-{quant}"
        cmd = ["tools/convert_smollm2.py", "--out", "build/models", "--quantization", quant]
    else:
        rel = f"build/models/random-{name}-{quant}"
        cmd = ["tools/make_random_model.py", "--shape", name, "--quantization", quant, "--out", rel]
    if not (ROOT / rel / "tensor-cache.json").exists():
        subprocess.run([sys.executable, *cmd], cwd=ROOT, check=True)
    return rel


def weight_bytes(rel: str) -> int:
    """Bytes of all weights (every decoded token reads each once; a tied embedding twice is not counted)."""
    meta = json.loads((ROOT / rel / "tensor-cache.json").read_text())
    return sum(int(r["nbytes"]) for r in meta["records"])


def scenario(
    rel: str,
    prompt: int,
    steps: int,
    one_steps: int,
    kernels: str | None,
    profile: bool = False,
    kv_f16: bool | None = None,
    f16_math: bool | None = None,
) -> dict[str, Any]:
    greedy = {"temperature": 0.0, "top_p": 1.0, "uniforms": [0.0] * steps, "history": [], "logit_bias": []}
    ids = [(37 * i + 11) % 500 for i in range(prompt)]
    calls: list[list[Any]] = [
        ["prefill", ids],
        ["sample", greedy],
        ["decodeSteps", steps, greedy],
        ["decodeSteps", steps, greedy],
    ]
    for _ in range(one_steps):
        calls += [["decode", 65], ["sample", greedy]]
    ctx = prompt + 2 * steps + one_steps + 8
    options = {"kernels": kernels, "kvF16": kv_f16, "f16Math": f16_math}
    return {
        "record": {"model": rel, "overrides": {"context_window_size": ctx, "prefill_chunk_size": prompt}},
        "calls": calls,
        "bandwidthMiB": 256,
        "options": {k: v for k, v in options.items() if v is not None},
        "profileGpu": profile,
        "countGpuCalls": True,
    }


def per_token(profile: dict[str, Any], steps: int) -> dict[str, Any]:
    """A decodeSteps call's GPU profile as milliseconds per decoded token, largest first."""
    kernels = sorted(profile["kernels"].items(), key=lambda kv: -kv[1]["ms"])
    busy = sum(k["ms"] for _, k in kernels)
    return {
        "busy_ms_per_token": round(busy / steps, 4),
        "gap_ms_per_token": round(profile["gapMs"] / steps, 4),
        "passes_per_token": profile["passes"] / steps,
        "untimed": profile["untimed"],
        "kernels": {
            name: {"per_token": k["n"] / steps, "ms_per_token": round(k["ms"] / steps, 5)}
            for name, k in kernels
        },
    }


def measure(out: dict[str, Any], prompt: int, steps: int, wbytes: int) -> dict[str, Any]:
    res = out["results"]
    for r in res:
        if "error" in r:
            raise RuntimeError(r["error"])
    secs = [r["seconds"] for r in res]
    bw = out.get("bandwidth")
    one = [secs[i] + secs[i + 1] for i in range(4, len(secs), 2)]
    loop_tps = steps / secs[3]
    peak = next((v for k, v in PEAK_GB_S.items() if k in out["device"]["description"]), None)
    achieved = wbytes * loop_tps / 1e9
    prof = res[3].get("profile")
    return {
        "device": out["device"]["description"],
        # What the model ran with (createKernels' kvF16 and f16Math as they took effect).
        "f16_kv": out["stats"].get("f16_kv"),
        "f16_math": out["stats"].get("f16_math"),
        "load_s": round(out["loadSeconds"], 3),
        "prefill_tokens": prompt,
        "prefill_tok_s": round(prompt / secs[0], 4),
        "decode_loop_tok_s": round(loop_tps, 4),
        "decode_one_step_tok_s": round(len(one) / sum(one), 4) if one else None,
        # The loop's one submit splits its time: the CPU recording every step's commands, then
        # the GPU running them and the readback.
        "decode_loop_record_ms_per_token": round(1000 * res[3]["recordSeconds"] / steps, 4)
        if "recordSeconds" in res[3]
        else None,
        "dispatches_per_token": res[3]["gpu"]["dispatches"] / steps if "gpu" in res[3] else None,
        "weight_bytes": wbytes,
        "weight_GB_s_loop": round(wbytes * loop_tps / 1e9, 3),
        "copy_GB_s": round(bw["copyGBps"], 2) if bw else None,
        "read_GB_s": round(bw["readGBps"], 2) if bw else None,
        "fraction_of_copy": round(wbytes * loop_tps / bw["copyGBps"] / 1e9, 4) if bw else None,
        "fraction_of_read": round(wbytes * loop_tps / bw["readGBps"] / 1e9, 4) if bw else None,
        "sync_ms": round(bw["syncMs"], 3) if bw else None,
        "peak_GB_s": peak,
        "fraction_of_peak": round(achieved / peak, 4) if peak else None,
        **({"profile": per_token(prof, steps)} if prof else {}),
    }


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['model']}\n{r['runner']}" for r in rows]
    keys = [
        ("prefill_tok_s", "prefill"),
        ("decode_loop_tok_s", "decode (GPU loop)"),
        ("decode_one_step_tok_s", "decode (one step)"),
    ]
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(rows)), 4.5))
    width = 0.8 / len(keys)
    for k, (key, name) in enumerate(keys):
        xs = [i + (k - 1) * width for i in range(len(rows))]
        ax.bar(xs, [r.get(key) or 0 for r in rows], width, label=name)
    for i, r in enumerate(rows):
        anchor = None
        if r["model"].startswith("qwen2-0.5b") and r["runner"] == "chromium":
            anchor = WEBLLM_CHROMIUM_QWEN2
        elif r["model"].startswith("qwen2-0.5b") and "H200" in r["device"]:
            anchor = WEBLLM_H200_QWEN2
        for key, val in (anchor or {}).items():
            ax.hlines(val, i - 0.4, i + 0.4, colors="k", linestyles="dashed")
            ax.text(i - 0.4, val * 1.08, f"web-llm {key}", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("tokens / s")
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_title("py_worker WGSL kernels")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runner", nargs="+", default=["chromium", "deno"], choices=["chromium", "deno"])
    ap.add_argument("--model", nargs="+", default=["smollm2", "qwen2-0.5b"])
    ap.add_argument("--quant", nargs="+", default=["q4f32_1"])
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--one-steps", type=int, default=2)
    ap.add_argument("--kernels", choices=["cpu", "gpu"], default=None, help="default: by adapter")
    ap.add_argument("--profile", action="store_true", help="GPU time per dispatch (Deno, timestamp-query)")
    kv_help = "KV cache type (createKernels kvF16); default: the backend's, f16 where a GPU has shader-f16"
    ap.add_argument("--kv-cache", choices=["default", "f16", "f32"], default="default", help=kv_help)
    math_help = "f16 arithmetic in q4f16_1's decode GEMVs (createKernels f16Math); default: the backend's"
    ap.add_argument("--f16-math", choices=["default", "on", "off"], default="default", help=math_help)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/out")
    ap.add_argument("--tag", default="cpu", help="output name: <out>/kernels_<tag>.json and .png")
    ap.add_argument("--replot", type=Path, help="only redraw the PNG of an earlier kernels_<tag>.json")
    args = ap.parse_args(argv)
    if args.replot:
        plot(json.loads(args.replot.read_text())["rows"], args.replot.with_suffix(".png"))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for name in args.model:
        for quant in args.quant:
            rel = model_dir(name, quant)
            kv = {"f16": True, "f32": False}.get(args.kv_cache)
            math = {"on": True, "off": False}.get(args.f16_math)
            sc = scenario(rel, args.prompt, args.steps, args.one_steps, args.kernels, args.profile, kv, math)
            for runner in args.runner:
                if runner == "deno":
                    out = deno_run(sc, timeout=3600)
                else:
                    with chromium_page() as h:
                        out = h.run(sc)
                row = {
                    "model": f"{name}-{quant}",
                    "runner": runner,
                    **measure(out, args.prompt, args.steps, weight_bytes(rel)),
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
    result = {
        "bench": "kernels",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(),
        "cpus": platform.processor() or platform.machine(),
        "webllm_chromium_qwen2_0.5b": WEBLLM_CHROMIUM_QWEN2,
        "webllm_h200_qwen2_0.5b": WEBLLM_H200_QWEN2,
        "rows": rows,
    }
    stem = args.out / f"kernels_{args.tag}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    plot(rows, stem.with_suffix(".png"))
    print(f"wrote {stem}.json and {stem}.png")


if __name__ == "__main__":
    main()
