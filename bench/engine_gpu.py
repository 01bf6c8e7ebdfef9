"""What the Python engine costs on a real GPU: py_worker in Pyodide vs a JS-only loop, one process.

Runs bench/engine_gpu.js under Deno (WebGPU): the same shim, model handle and batch schedule
(py_worker/generate.py's) are driven alternately by ``MLCEngine(JsKernels(shim))`` streaming
chat and by a JS loop, so the decode/prefill difference is the Python layer's cost. Needs only
the standard library (plus numpy when the random model must be generated), so it also runs on
the device machine's plain python3. Writes bench/out/engine_gpu.json (``--copy-to`` too).

    python bench/engine_gpu.py [--shape qwen2-0.5b] [--wheel W.whl] [--deno D] [--copy-to F]
"""

from __future__ import annotations

import argparse
import glob
import json
import lzma
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WEBLLM_DECODE_TOK_S = 7.9
"""web-llm's best decode, Qwen2-0.5B, Deno WebGPU on an H200, measured in an earlier run."""
WEBLLM_PREFILL_TOK_S = 1440.0
"""web-llm's prefill on the same setup (measured in an earlier run)."""
PROMPT_WORDS = 80
"""Words of the user prompt: with the random models' byte-level tokenizer, about 500 tokens."""


def find_deno(given: str | None) -> Path:
    """The npm Deno binary, else the colleague's compressed copy (.dev/deno.xz) unpacked to /tmp."""
    if given:
        return Path(given)
    npm = ROOT / "node_modules/@deno/linux-x64-glibc/deno"
    if npm.exists():
        return npm
    packed, out = ROOT / ".dev/deno.xz", Path(tempfile.gettempdir()) / "deno-engine-gpu"
    if not out.exists():
        with lzma.open(packed) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
        out.chmod(0o755)
    return out


def find_wheel(given: str | None) -> Path:
    """The given wheel, else a fresh build of this checkout (needs `build` + hatchling)."""
    if given:
        return Path(given)
    out = Path(tempfile.mkdtemp(prefix="py_worker_wheel_"))
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return Path(glob.glob(str(out / "py_worker-*.whl"))[0])


def ensure_model(shape: str, quantization: str) -> Path:
    """The random-weight model of that shape (tools/make_random_model.py), built if missing."""
    out = ROOT / "build/models" / f"random-{shape}-{quantization}"
    if not (out / "tensor-cache.json").exists():
        cmd = [sys.executable, "-m", "tools.make_random_model", "--shape", shape]
        subprocess.run([*cmd, "--quantization", quantization, "--out", str(out)], cwd=ROOT, check=True)
    return out


def prompt_text(words: int) -> str:
    """A deterministic plain-English prompt of ``words`` words."""
    vocab = [
        "the",
        "engine",
        "streams",
        "tokens",
        "from",
        "a",
        "model",
        "running",
        "on",
        "the",
        "graphics",
        "card",
        "while",
        "python",
        "routes",
    ]
    return " ".join(vocab[(i * 7) % len(vocab)] for i in range(words))


def run_deno(deno: Path, config: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run bench/engine_gpu.js on ``config``; its progress goes to our stderr, its result is returned."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
    env = {**os.environ, "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", tempfile.gettempdir())}
    cmd = [str(deno), "run", "--allow-read", "--allow-env", "--location", "http://127.0.0.1/"]
    try:
        proc = subprocess.run(
            [*cmd, str(ROOT / "bench/engine_gpu.js"), f.name],
            stdout=subprocess.PIPE,
            text=True,
            timeout=timeout,
            env=env,
            cwd=ROOT,
        )
    finally:
        os.unlink(f.name)
    if proc.returncode != 0:
        raise RuntimeError(f"deno failed ({proc.returncode})")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def summary(rows: list[dict[str, Any]], kind: str) -> dict[str, float]:
    """Median over rounds of one side's figures."""
    mine = [r for r in rows if r["kind"] == kind]
    keys = ("prefill_tok_s", "decode_tok_s", "decode_kernel_tok_s", "ttft_s")
    return {k: statistics.median(r[k] for r in mine) for k in keys}


def report(raw: dict[str, Any], args: argparse.Namespace, model: Path) -> dict[str, Any]:
    """Medians of each side, the Python cost in % of the JS loop, and the ratios to web-llm."""
    py, js = summary(raw["rounds"], "python"), summary(raw["rounds"], "js")
    return {
        "bench": "engine_gpu",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(),
        "device": raw["device"],
        "model": model.name,
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "python": py,
        "js": js,
        "python_cost_decode_pct": 100 * (1 - py["decode_tok_s"] / js["decode_tok_s"]),
        "python_cost_prefill_pct": 100 * (1 - py["prefill_tok_s"] / js["prefill_tok_s"]),
        "python_vs_webllm_decode_x": py["decode_tok_s"] / WEBLLM_DECODE_TOK_S,
        "python_vs_webllm_prefill_x": py["prefill_tok_s"] / WEBLLM_PREFILL_TOK_S,
        "webllm": {"decode_tok_s": WEBLLM_DECODE_TOK_S, "prefill_tok_s": WEBLLM_PREFILL_TOK_S},
        "raw": raw,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="qwen2-0.5b")
    ap.add_argument("--quantization", default="q4f32_1")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompt-words", type=int, default=PROMPT_WORDS)
    ap.add_argument("--pyodide", default=str(ROOT / "node_modules/pyodide"))
    ap.add_argument("--wheel")
    ap.add_argument("--deno")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--copy-to", type=Path)
    args = ap.parse_args()
    model = ensure_model(args.shape, args.quantization)
    record = {"model_id": model.name, "model": str(model.relative_to(ROOT)) + "/"}
    config = {
        "pyodide": str(Path(args.pyodide).resolve()),
        "wheel": str(find_wheel(args.wheel).resolve()),
        "record": record,
        "prompt": prompt_text(args.prompt_words),
        "maxTokens": args.max_tokens,
        "rounds": args.rounds,
        "warmupTokens": 16,
    }
    result = report(run_deno(find_deno(args.deno), config, args.timeout), args, model)
    out = ROOT / "bench/out"
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=1)
    (out / "engine_gpu.json").write_text(text)
    if args.copy_to:
        args.copy_to.parent.mkdir(parents=True, exist_ok=True)
        args.copy_to.write_text(text)
    print(json.dumps({k: v for k, v in result.items() if k != "raw"}, indent=1))


if __name__ == "__main__":
    main()
