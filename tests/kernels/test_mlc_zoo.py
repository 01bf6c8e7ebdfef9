"""MLC-published model directories on the WGSL kernels vs the NumPy reference, per architecture.

Each model is a random-weight MLC dir written with MLC's own tensor names, shapes, dtypes and
config keys (tools/make_random_model.py): Qwen2 from the parameter list of MLC's own Qwen2-0.5B
library verbatim (../shared/mlc-libs/meta/, q4f32_1, every tensor of the first 2 of its 24 layers,
the full 151936-token vocabulary), and small ``tiny-<arch>`` decoders of Llama 3 (RoPE scaling),
Qwen2, Qwen3 (q/k norms), Phi-3 (fused names under ``transformer.h``, LongRoPE, partial rotary)
Gemma 2 (GeGLU, four norms, scaled embeddings, soft-caps) and Gemma 3 (``language_model.``
names, q/k/v as three linears, q/k norms, a sliding window of 8 keys on every other layer with
its own RoPE base, linear RoPE scaling on the others). Logits after a chunked prefill and
after each of 8 decode steps must match the reference (relative error < 1e-4: both sides compute
in f32 from the same f16/q4 values). q0f16 matrices stay f16 on an adapter with shader-f16
(lavapipe) and are widened elsewhere (SwiftShader). A missing tensor and an architecture we do
not run fail with named errors. Lavapipe (Deno, both kernel sets) and SwiftShader (Chromium).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from py_worker.reference.architectures import NAMINGS
from tests.kernels.test_tiny_model import DECODE_TOKENS, PROMPT, Ref, rel_err, values
from tools import make_random_model
from tools.kernel_runners import DENO, MODELS, ROOT, ChromiumHarness, Runner, Unavailable, deno_run

ZOO_DIR = MODELS / "zoo"
QWEN2_META = ROOT.parent / "shared/mlc-libs/meta/v0_2_48__Qwen2-0.5B-Instruct-q4f32_1-ctx4k_cs1k.json"
META_LAYERS = 2
"""Layers kept of the library's 24: each layer's tensors are the library's verbatim; 24 of them
would only make the test slower (the lm_head over 151936 rows dominates already)."""

CASES = [
    ("qwen2-0.5b-meta", "q4f32_1"),
    ("tiny-qwen2", "q0f32"),
    ("tiny-qwen2", "q0f16"),
    ("tiny-qwen2", "q4f16_1"),
    ("tiny-llama3", "q0f32"),
    ("tiny-llama3", "q0f16"),
    ("tiny-llama3", "q4f32_1"),
    ("tiny-llama3", "q4f16_1"),
    ("tiny-qwen3", "q0f32"),
    ("tiny-qwen3", "q4f16_1"),
    ("tiny-phi3", "q0f32"),
    ("tiny-phi3", "q4f16_1"),
    ("tiny-gemma2", "q0f32"),
    ("tiny-gemma2", "q4f16_1"),
    ("tiny-gemma3", "q0f32"),
    ("tiny-gemma3", "q0f16"),
    ("tiny-gemma3", "q4f16_1"),
]


def zoo_model(shape: str, quant: str) -> str:
    """The model dir (built on first use under build/models/zoo/), relative to the repo root."""
    out = ZOO_DIR / f"{shape}-{quant}"
    if not (out / "tensor-cache.json").exists():
        if shape == "qwen2-0.5b-meta":
            if not QWEN2_META.exists():
                pytest.skip(f"{QWEN2_META} is absent (../shared/mlc-libs)")
            make_random_model.build_from_meta(QWEN2_META, out, layers=META_LAYERS)
        else:
            make_random_model.build(shape, quant, out)
    return str(out.relative_to(ROOT))


@pytest.mark.parametrize(("shape", "quant"), CASES, ids=[f"{s}-{q}" for s, q in CASES])
def test_logits_prefill_and_8_decode_steps(runner: Runner, shape: str, quant: str) -> None:
    model = zoo_model(shape, quant)
    ref = Ref(model)
    ids = ref("tokenize", PROMPT)
    calls: list[list[Any]] = [["tokenize", PROMPT], ["prefill", ids], ["logits"]]
    for t in DECODE_TOKENS:
        calls += [["decode", t], ["logits"]]
    out = runner({"record": {"model": model}, "calls": [*calls, ["stats"]]})
    got = values(out)
    assert got[0] == ids
    ref("prefill", ids)
    errors = [rel_err(got[2], ref("logits"))]
    for i, t in enumerate(DECODE_TOKENS):
        ref("decode", t)
        errors.append(rel_err(got[4 + 2 * i], ref("logits")))
    print(f"{shape} {quant} on {out['device']['description']}: max rel err {max(errors):.2e}")
    assert max(errors) < 1e-4, errors
    stats = got[-1]
    assert stats["kv_length"] == len(ids) + len(DECODE_TOKENS)
    has_f16 = "shader-f16" in out["device"]["features"]
    assert stats["f16_weights"] == (1 if quant == "q0f16" and has_f16 else 0)
    assert stats["f16_scales"] == (1 if quant == "q4f16_1" and has_f16 else 0)


def test_gemma3_window_slides_past_whole_key_chunks(runner: Runner) -> None:
    """176 prompt tokens, then 8 decode steps: the 8-key window of the sliding layers lies past
    two whole 64-key chunks of the GPU kernels' split decode attention (which must weigh them 0)."""
    model = zoo_model("tiny-gemma3", "q4f16_1")
    ref = Ref(model)
    ids = ref("tokenize", PROMPT * 4)
    calls: list[list[Any]] = [["prefill", ids], ["logits"]]
    for t in DECODE_TOKENS:
        calls += [["decode", t], ["logits"]]
    got = values(runner({"record": {"model": model}, "calls": calls}))
    ref("prefill", ids)
    errors = [rel_err(got[1], ref("logits"))]
    for i, t in enumerate(DECODE_TOKENS):
        ref("decode", t)
        errors.append(rel_err(got[3 + 2 * i], ref("logits")))
    assert len(ids) > 2 * 64 + 8
    assert max(errors) < 1e-4, errors


def shader_count(out: dict[str, Any]) -> int:
    texts = [t for _, t in out["progress"] if t.startswith("Loading GPU shader modules[")]
    return int(texts[-1].split("/")[1].split("]")[0])


@pytest.mark.parametrize(("shape", "quant"), [("tiny-qwen2", "q4f32_1"), ("tiny-llama3", "q0f16")])
def test_tensors_larger_than_a_binding_are_split(runner: Runner, shape: str, quant: str) -> None:
    """With an 8 KiB cap every large weight (the embedding, the q|k|v bias too) is split into row ranges."""
    model = zoo_model(shape, quant)
    ref = Ref(model)
    ids = ref("tokenize", PROMPT)[:20]
    calls: list[list[Any]] = [["prefill", ids], ["logits"], ["decode", 65], ["logits"]]
    whole = runner({"record": {"model": model}, "calls": calls})
    split = runner({"record": {"model": model}, "calls": calls, "options": {"maxBindingBytes": 8192}})
    assert shader_count(split) > shader_count(whole) + 8  # one lookup and one lm_head part per range
    got = values(split)
    ref("prefill", ids)
    errors = [rel_err(got[1], ref("logits"))]
    ref("decode", 65)
    errors.append(rel_err(got[3], ref("logits")))
    assert max(errors) < 1e-4, errors


def test_js_and_python_name_tables_agree() -> None:
    """llama.js's MLC_NAMES and architectures.py's NAMINGS are one table in two languages."""
    if not DENO.exists():
        pytest.skip("npm @deno/linux-x64-glibc is not installed")
    script = "import { MLC_NAMES } from './js_glue/kernels/llama.js'; console.log(JSON.stringify(MLC_NAMES));"
    proc = subprocess.run([str(DENO), "eval", script], capture_output=True, text=True, cwd=ROOT, check=True)
    js = json.loads(proc.stdout)
    assert set(js) == set(NAMINGS)
    for arch, n in NAMINGS.items():
        j = js[arch]
        assert list(j["roles"].items()) == list(n.roles.items()), arch  # same roles, same order
        assert (j["embed"], j["layer"], j["final_norm"], j["lm_head"]) == (
            n.embed,
            n.layer,
            n.final_norm,
            n.lm_head,
        )
        assert set(j.get("biases", [])) == set(n.biases), arch
        assert set(j.get("optionalBiases", [])) == set(n.optional_biases), arch
        assert bool(j.get("alwaysTied")) == n.always_tied, arch


def gemma3_1b_chat_config(release: str) -> dict[str, Any]:
    """gemma-3-1b-it's mlc-chat-config.json as MLC's gen_config writes it (numbers from its HF config).

    "2025-03": Gemma3TextConfig had a ``sliding_window`` field and no top-level window;
    "2025-06": the field became ``sliding_window_size`` (HF's ``sliding_window`` stays in kwargs)
    and Gemma3Config gained its own ``sliding_window_size``.
    """
    text: dict[str, Any] = {
        "hidden_size": 1152, "intermediate_size": 6912, "num_hidden_layers": 26, "attention_bias": False,
        "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256, "rms_norm_eps": 1e-6,
        "hidden_activation": "gelu_pytorch_tanh", "position_embedding_base": 1000000,
        "context_window_size": 8192, "prefill_chunk_size": 8192, "query_pre_attn_scalar": 256,
        "kwargs": {"attn_logit_softcapping": None, "final_logit_softcapping": None,
                   "max_position_embeddings": 32768, "rope_local_base_freq": 10000, "rope_scaling": None,
                   "sliding_window_pattern": 6, "model_type": "gemma3_text"},
    }  # fmt: skip
    mc: dict[str, Any] = {
        "text_config": text, "vocab_size": 262144, "tensor_parallel_shards": 1, "max_batch_size": 1,
        "context_window_size": 8192, "prefill_chunk_size": 8192,
    }  # fmt: skip
    if release == "2025-03":
        text["sliding_window"] = 512
        mc["sliding_window_size"] = -1
    else:
        text.update(sliding_window_size=512, rope_scaling=None)
        text["kwargs"]["sliding_window"] = 512
        mc["sliding_window_size"] = 512
    return {
        "model_type": "gemma3_text", "quantization": "q4f16_1", "model_config": mc, "vocab_size": 262144,
        "context_window_size": 4096, "sliding_window_size": mc["sliding_window_size"],
        "prefill_chunk_size": 1024,
    }  # fmt: skip


@pytest.mark.parametrize("release", ["2025-03", "2025-06"])
def test_gemma3_1b_config_reads_the_same_in_js_and_python(release: str) -> None:
    """Both loaders read MLC's nested Gemma 3 config alike: 22 sliding layers of 512 keys, 4 global."""
    if not DENO.exists():
        pytest.skip("npm @deno/linux-x64-glibc is not installed")
    from py_worker.reference.llama import LlamaConfig, context_window

    config = gemma3_1b_chat_config(release)
    script = (
        "import { llamaDims } from './js_glue/kernels/llama.js';"
        f"console.log(JSON.stringify(llamaDims({json.dumps(config)})));"
    )
    proc = subprocess.run([str(DENO), "eval", script], capture_output=True, text=True, cwd=ROOT, check=True)
    js = json.loads(proc.stdout)
    py = LlamaConfig.from_chat_config(config)
    sliding = [i for i, s in enumerate(js["slidingLayers"]) if s]
    assert sliding == list(py.sliding_layers)
    assert [i for i in range(26) if i not in sliding] == [5, 11, 17, 23]
    assert js["window"] == py.sliding_window == 512
    assert js["localTheta"] == py.rope_local_theta == 10000
    assert js["theta"] == py.rope_theta == 1e6
    assert js["ctx"] == context_window(config) == 4096  # the cache is not capped at the window
    assert (js["hidden"], js["heads"], js["kvHeads"], js["headDim"], js["layers"]) == (1152, 4, 1, 256, 26)
    assert js["vocab"] == py.vocab_size == 262144
    assert js["inter"] == py.intermediate_size == 6912
    assert js["attnScale"] == py.attn_scale == 256**-0.5
    assert (js["attnSoftcap"], js["finalSoftcap"], js["ropeScaling"]) == (0, 0, None)
    assert (py.attn_softcap, py.final_softcap, py.rope_scaling) == (None, None, None)
    assert js["act"] == "gelu_tanh"
    assert js["tied"]
    assert js["embedScale"] == 1152**0.5


# -- named refusals --------------------------------------------------------------------------------


def broken_copies(tmp: Path) -> dict[str, str]:
    """A Qwen2 dir lacking one tensor and one of an architecture we do not run, under build/."""
    src = ROOT / zoo_model("tiny-qwen2", "q4f32_1")
    out: dict[str, str] = {}
    for kind in ("missing", "arch"):
        dst = tmp / kind
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)
        out[kind] = str(dst.relative_to(ROOT))
    cache_path = tmp / "missing/tensor-cache.json"
    cache = json.loads(cache_path.read_text())
    shard = cache["records"][0]
    shard["records"] = [r for r in shard["records"] if r["name"] != "model.layers.1.mlp.down_proj.q_scale"]
    cache_path.write_text(json.dumps(cache))
    config_path = tmp / "arch/mlc-chat-config.json"
    config_path.write_text(config_path.read_text().replace('"model_type": "qwen2"', '"model_type": "rwkv6"'))
    return out


def check_refusals(errors: dict[str, tuple[str, str]]) -> None:
    name, message = errors["missing"]
    assert name == "ModelLoadError", message
    assert "model.layers.1.mlp.down_proj.q_scale" in message, message
    name, message = errors["arch"]
    assert name == "UnsupportedArchitectureError", message
    assert "rwkv6" in message, message
    assert "qwen3" in message, message


def test_refusals_are_named_on_lavapipe() -> None:
    dirs = broken_copies(ZOO_DIR / "broken-deno")
    errors = {}
    for kind, model in dirs.items():
        try:
            deno_run({"record": {"model": model}, "calls": []})
        except Unavailable as e:
            pytest.skip(str(e))
        except RuntimeError as e:  # the scenario's load threw: Deno prints the uncaught error
            line = next(x for x in str(e).splitlines() if "Uncaught" in x)
            name, message = line.split("Uncaught (in promise) ", 1)[1].split(": ", 1)
            errors[kind] = (name, message)
        else:
            raise AssertionError(f"{model} loaded")
    check_refusals(errors)


def test_refusals_are_named_on_swiftshader(chromium: ChromiumHarness) -> None:
    dirs = broken_copies(ZOO_DIR / "broken-chromium")
    records = [{"model": dirs["missing"]}, {"model": dirs["arch"]}]
    out = chromium.call("loads", {"options": {**chromium.options(), "cache": "none"}, "records": records})
    check_refusals({k: (r["error"]["name"], r["error"]["message"]) for k, r in zip(dirs, out, strict=True)})


def test_a_decoder_recorded_as_an_embedding_model_is_refused_by_name() -> None:
    """The engine serves a record with model_type "embedding" by embeddings.create alone, which
    only an encoder answers on wgsl: such a record of a decoder dir fails its load by name, instead
    of loading a decoder nothing could use."""
    record = {"model": zoo_model("tiny-qwen2", "q4f32_1"), "model_type": "embedding"}
    try:
        deno_run({"record": record, "calls": []})
    except Unavailable as e:
        pytest.skip(str(e))
    except RuntimeError as e:  # the scenario's load threw: Deno prints the uncaught error
        line = next(x for x in str(e).splitlines() if "Uncaught" in x)
        name, message = line.split("Uncaught (in promise) ", 1)[1].split(": ", 1)
        assert name == "UnsupportedArchitectureError", message
        assert "embedding" in message, message
        assert "bert" in message, message
    else:
        raise AssertionError("a decoder loaded as an embedding model")
