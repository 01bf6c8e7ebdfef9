"""py_worker on a real GPU beside a JS-only loop and beside web-llm itself, one process, one run.

Runs bench/engine_gpu.js under Deno (WebGPU). Three sides take turns, round by round, on the
same prompt and the same token counts (greedy, ``ignore_eos``, ``--max-tokens`` generated):

- ``python``: ``MLCEngine(JsKernels(shim))`` streaming chat, py_worker in Pyodide over our WGSL
  kernels (the set the adapter picks: split-K "gpu" on a real GPU, "cpu" on lavapipe);
- ``js``: the same shim, model handle and batch schedule (py_worker/generate.py's) driven by a
  JS loop prefilling as many tokens as the engine did, so python vs js is the Python layer's cost;
- ``webllm``: web-llm 0.2.79's ``MLCEngine`` (bench/webllm_gpu.js) on MLC's own Qwen2-0.5B
  q4f32_1 library (v0_2_48, tvmjs 0.18.0-dev2 inside web-llm), ``--lib``.

Both engines load one model dir: random weights written from the library's own parameter list
(``tools/make_random_model --from-meta``: MLC's names, shapes and q4f32_1 words, all 24 layers,
the 151936-token vocabulary; the byte-level test tokenizer), so both read the same weights.
The parameter list is ``meta/<library>.json`` beside the library (the layout of mlc-libs/, found
under ``shared/`` beside the checkout or inside it unless ``--lib`` names the file).
Per side and round: prefill tok/s (prompt tokens over the time to the first token), decode tok/s
(the other tokens over the time after it), and the WebGPU calls counted by wrapping
``dispatchWorkgroups`` and ``queue.submit`` (the prefill's, and per decoded token). The report
has the medians over ``--rounds``, the Python cost in % of the JS loop, and python/js over
web-llm as ratios of that run's medians (and round by round). Needs only the standard library
(plus numpy when the model dir must be generated), so it also runs on the device machine's
plain python3. Writes bench/out/engine_gpu.json (``--copy-to`` too).

    python bench/engine_gpu.py [--lib L.wasm] [--max-tokens N] [--rounds R] [--prompt-words W]
                               [--warmup-tokens N] [--wheel W.whl] [--deno D] [--copy-to F]
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
LIB = "mlc-libs/v0_2_48__Qwen2-0.5B-Instruct-q4f32_1-ctx4k_cs1k-webgpu.wasm"
"""MLC's Qwen2-0.5B q4f32_1 library that web-llm 0.2.79 runs, under a ``shared/`` folder."""
SIDES = ("python", "js", "webllm")
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


def find_lib(given: str | None) -> Path:
    """The given library, else ``shared/`` beside the checkout (a developer's) or inside it (a device's)."""
    if given:
        return Path(given).resolve()
    for shared in (ROOT.parent / "shared", ROOT / "shared"):
        if (shared / LIB).exists():
            return shared / LIB
    raise FileNotFoundError(f"{LIB} is in neither {ROOT.parent / 'shared'} nor {ROOT / 'shared'}")


def ensure_model(lib: Path) -> Path:
    """The model dir of random weights from the library's parameter list (``meta/``), built if missing."""
    stem = lib.name.removesuffix("-webgpu.wasm")
    out = ROOT / "build/models/zoo" / f"mlclib-{stem}"
    if not (out / "tensor-cache.json").exists():
        meta = lib.parent / "meta" / f"{stem}.json"
        cmd = [sys.executable, "-m", "tools.make_random_model", "--from-meta", str(meta), "--out", str(out)]
        subprocess.run(cmd, cwd=ROOT, check=True)
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


KEYS = (
    "prefill_tok_s",
    "decode_tok_s",
    "decode_kernel_tok_s",
    "ttft_s",
    "dispatches_per_token",
    "submits_per_token",
)


def summary(rows: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """Median over rounds of one side's figures, with its prompt and completion lengths."""
    mine = [r for r in rows if r["kind"] == kind]
    out: dict[str, Any] = {k: statistics.median(r[k] for r in mine) for k in KEYS}
    out["prefill_dispatches"] = statistics.median(r["gpu_prefill"]["dispatches"] for r in mine)
    out["prefill_submits"] = statistics.median(r["gpu_prefill"]["submits"] for r in mine)
    out["prompt_tokens"] = sorted({r["prompt_tokens"] for r in mine})
    out["completion_tokens"] = sorted({r["completion_tokens"] for r in mine})
    return out


def versus(rows: list[dict[str, Any]], kind: str, medians: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``kind`` over web-llm: ratio of the medians, and round by round (the rounds alternate)."""
    mine = [r for r in rows if r["kind"] == kind]
    theirs = [r for r in rows if r["kind"] == "webllm"]
    out: dict[str, Any] = {}
    for key in ("decode_tok_s", "prefill_tok_s"):
        name = key.split("_")[0]
        out[f"{name}_x"] = medians[kind][key] / medians["webllm"][key]
        out[f"{name}_x_rounds"] = [a[key] / b[key] for a, b in zip(mine, theirs, strict=True)]
    return out


def report(raw: dict[str, Any], args: argparse.Namespace, model: Path, lib: Path) -> dict[str, Any]:
    """Medians of each side, the Python cost in % of the JS loop, and the ratios to web-llm."""
    medians = {kind: summary(raw["rounds"], kind) for kind in SIDES}
    py, js = medians["python"], medians["js"]
    return {
        "bench": "engine_gpu",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(),
        "device": raw["device"],
        "model": model.name,
        "model_lib": lib.name,
        "webllm_version": "0.2.79",
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        **medians,
        "python_cost_decode_pct": 100 * (1 - py["decode_tok_s"] / js["decode_tok_s"]),
        "python_cost_prefill_pct": 100 * (1 - py["prefill_tok_s"] / js["prefill_tok_s"]),
        "python_vs_webllm": versus(raw["rounds"], "python", medians),
        "js_vs_webllm": versus(raw["rounds"], "js", medians),
        "raw": raw,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib", help=f"the MLC model library web-llm runs (default: shared/{LIB})")
    ap.add_argument("--max-tokens", type=int, default=256, help="tokens each side generates a round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompt-words", type=int, default=PROMPT_WORDS)
    ap.add_argument("--warmup-tokens", type=int, default=16, help="tokens of each side's warm-up round")
    ap.add_argument("--pyodide", default=str(ROOT / "node_modules/pyodide"))
    ap.add_argument("--wheel")
    ap.add_argument("--deno")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--copy-to", type=Path)
    args = ap.parse_args()
    lib = find_lib(args.lib)
    model = ensure_model(lib)
    record = {"model_id": model.name, "model": str(model.relative_to(ROOT)) + "/"}
    config = {
        "pyodide": str(Path(args.pyodide).resolve()),
        "wheel": str(find_wheel(args.wheel).resolve()),
        "record": record,
        "prompt": prompt_text(args.prompt_words),
        "maxTokens": args.max_tokens,
        "rounds": args.rounds,
        "warmupTokens": args.warmup_tokens,
        "webllm": {"modelDir": str(model.resolve()), "modelLib": str(lib)},
    }
    result = report(run_deno(find_deno(args.deno), config, args.timeout), args, model, lib)
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
