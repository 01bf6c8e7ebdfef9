"""The decode GEMV's workgroup layouts compared on one device (Deno's WebGPU).

    .venv/bin/python bench/gemv.py [--models qwen2-0.5b llama-3.2-1b] [--out bench/out] [--f16-math]

For each decode GEMV of the models' shapes (q4 weights, f32 scales; the RMSNorm input hook where the
model has it, SwiGLU's for down; qkv also with the RoPE + KV-append output hook, in the layouts that
hook accepts), bench/gemv.js times one dispatch in each layout of a grid (rows a
workgroup, rows a thread sharing one input read, groups a lane reads ahead) as the slope between k
and 5k dispatches in one submit, after checking the layout's output against the default layout's.
It reports µs a dispatch, the weights' GB/s, the empty dispatch's floor and the read meter.
``--f16-math``: f16 scales (q4f16_1), each layout timed with f32 arithmetic and with gemv.js's
f16Math, and each shape's f16-math default against its f32-math default (whether f16 pays).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DENO = ROOT / "node_modules/@deno/linux-x64-glibc/deno"

# (hidden, intermediate, vocabulary, (heads, kv heads, head dim)) of each model's decoder.
MODELS = {
    "qwen2-0.5b": (896, 4864, 151936, (14, 2, 64)),
    "llama-3.2-1b": (2048, 8192, 128256, (32, 8, 64)),
    "check": (1024, 1024, 2048, (16, 4, 64)),  # small enough for a CPU adapter, K wide enough for all layouts
}


def shapes(model: str) -> list[dict[str, Any]]:
    """The model's decode GEMVs with their hooks; qkv also with a plain output, o with a plain input."""
    h, inter, vocab, (heads, kv_heads, head_dim) = MODELS[model]
    qkv = (heads + 2 * kv_heads) * head_dim
    rope = {"heads": heads, "kvHeads": kv_heads, "headDim": head_dim}
    return [
        {"name": f"{model} qkv", "K": h, "N": qkv, "hook": "norm"},
        {"name": f"{model} qkv rope", "K": h, "N": qkv, "hook": "rope", "d": rope},
        {"name": f"{model} o", "K": h, "N": h, "hook": "plain"},
        {"name": f"{model} gate_up", "K": h, "N": 2 * inter, "hook": "norm"},
        {"name": f"{model} down", "K": inter, "N": h, "hook": "glu"},
        {"name": f"{model} lm_head", "K": h, "N": vocab, "hook": "norm"},
    ]


def layouts(K: int, N: int) -> list[dict[str, int]]:
    """Rows a workgroup x rows a thread x groups read ahead, where the lanes of a row fit K's groups."""
    groups = K // 32
    out = []
    for rows in (2, 4, 8, 16, 32, 64):
        for per in (1, 2, 4):
            lanes = 256 * per // rows
            if rows % per or lanes < 4 or lanes > 256 or lanes > groups or N % per or rows > N:
                continue
            for unroll in (1, 2):
                if lanes * unroll <= groups:
                    out.append({"rows": rows, "perThread": per, "unroll": unroll})
    return out


def run(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    try:
        proc = subprocess.run(
            [str(DENO), "run", "--allow-read", "--allow-env", str(ROOT / "bench/gemv.js"), f.name],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env={**os.environ, "DENO_NO_UPDATE_CHECK": "1"},
        )
    finally:
        os.unlink(f.name)
    if proc.returncode:
        raise RuntimeError(f"bench/gemv.js failed:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["qwen2-0.5b", "llama-3.2-1b"], choices=sorted(MODELS))
    ap.add_argument("--out", type=Path, default=ROOT / "bench/out")
    ap.add_argument("--tag", default="")
    ap.add_argument("--no-meter", action="store_true")
    ap.add_argument("--timeout", type=float, default=560)
    ap.add_argument("--f16-math", action="store_true", help="f16 scales; f32 and f16 arithmetic side by side")
    args = ap.parse_args(argv)
    specs = [dict(s, layouts=layouts(s["K"], s["N"])) for m in args.models for s in shapes(m)]
    result = run({"shapes": specs, "meter": not args.no_meter, "f16Math": args.f16_math}, args.timeout)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gemv{('_' + args.tag) if args.tag else ''}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    meter = result.get("meter") or {}
    read = meter.get("readGBps", 0)
    print(f"{result['device']}: empty dispatch {result['floorUs']:.2f} us; read meter {read:.0f} GB/s")
    for shape in result["results"]:
        rows = sorted(shape["rows"], key=lambda r: r["us"])
        defaults = {r["math"]: r for r in shape["rows"] if r["default"] is True}
        base = defaults["f32"]
        where = f"{shape['name']} K={shape['K']} N={shape['N']}"
        print(f"{where}: default {base['us']:.1f} us {base['GBps']:.0f} GB/s")
        if "f16" in defaults:
            f16 = defaults["f16"]
            speedup = f"{base['us'] / f16['us']:.2f}x the f32 math's"
            print(f"  f16 math default: {f16['us']:.1f} us ({speedup}), err {f16['errOfMax']:.1e} of max")
        for r in rows[:4]:
            lay = "rows {rows} x{perThread} u{unroll}".format(**r["layout"])
            speed = f"{r['us']:.1f} us {r['GBps']:.0f} GB/s ({base['us'] / r['us']:.2f}x)"
            print(f"  {lay} {r['math']} math: {speed} err {r['maxRelErr']:.1e} ({r['errOfMax']:.1e} of max)")
    print(path)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
