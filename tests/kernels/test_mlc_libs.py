"""The `mlc` backend on real MLC model libraries (../shared/mlc-libs/), each on the tvmjs it was
built for, picked from the library's own import section (js_glue/kernels/mlc/runtimes.js).

MLC's Qwen2-0.5B q4f32_1 library of web-llm's v0_2_48 folder (links with @mlc-ai/web-runtime
0.18.0-dev2 only) runs a random-weight model dir written from its own parameter list (all 24
layers, MLC's names, q4f32_1): logits after a prefill and after each decode step equal the NumPy
reference's on the same weights; greedy sample, rewind, decodeSteps and unload work; the record's
sha256 pin of the library is checked. After each unload no tvmjs buffer is left and no WebGPU
buffer of the run is alive. Deno on lavapipe. Skipped where ../shared/mlc-libs or
Deno is absent. A library needing a runtime we do not ship: tests/mlc/runtimes.test.js.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from py_worker.kernels import SamplingParams, grammar_spec
from py_worker.reference.bert import BertConfig, BertEncoder
from tests.kernels.test_tiny_model import PROMPT, Ref, assert_same_samples, rel_err
from tools import make_random_model
from tools.kernel_runners import MODELS, ROOT, Unavailable, deno_run
from tools.make_tiny_model import byte_level_tokenizer_json
from tools.mlc_format import dumps_json, write_model_dir
from tools.site import tvmjs_runtimes

LIBS = ROOT.parent / "shared/mlc-libs"
QWEN2 = "v0_2_48__Qwen2-0.5B-Instruct-q4f32_1-ctx4k_cs1k"
QWEN2_SHA256 = "338ab000a62274cb47fa0696aa244d4b1d73db4e6f144b429915d1cfe44d2e6a"
DECODE = [101, 32, 257]
PROMPT_TOKENS = 6
"""A short prefill: lavapipe runs this library's prefill kernels slowly (about 0.4 s a token)."""


def need_libs() -> None:
    if not (LIBS / f"{QWEN2}-webgpu.wasm").exists():
        pytest.skip(f"{LIBS} is absent (real MLC model libraries for tests; see its README.md)")


def tvmjs_urls() -> dict[str, str]:
    return {version: (lib / "index.js").as_uri() for version, lib in tvmjs_runtimes().items()}


def run(scenario: dict[str, Any]) -> dict[str, Any]:
    try:
        return deno_run({**scenario, "options": {"tvmjsURLs": tvmjs_urls(), **scenario.get("options", {})}})
    except Unavailable as e:
        pytest.skip(str(e))


def qwen2_model() -> str:
    out = MODELS / "zoo" / f"mlclib-{QWEN2}"
    if not (out / "tensor-cache.json").exists():
        make_random_model.build_from_meta(LIBS / "meta" / f"{QWEN2}.json", out)
    return str(out.relative_to(ROOT))


def assert_disposed(out: dict[str, Any]) -> None:
    """After the unload: tvmjs's WebGPU context held no buffer when its instance was disposed (the
    model's objects, its weights in the tensor cache and the VM's memory pool were all freed
    first), and every WebGPU buffer the run made is destroyed or on a destroyed device."""
    assert out["unloaded"] == {"buffers": 0, "bytes": 0}, out["unloaded"]
    counts = out["gpuBuffers"]
    assert counts["buffers"] > 0, counts  # the count saw tvmjs's buffers
    assert counts["devicesDestroyed"] >= 1, counts
    assert counts["live"] == 0, counts


def penalty_cases(logits: np.ndarray) -> list[SamplingParams]:
    """Greedy draws with logprobs (well conditioned on a 151936-token vocabulary, unlike a nucleus
    walk over near-uniform random logits), penalising the current top tokens (positive logits)
    and a few negative ones: a penalty applied in the wrong sense picks another token."""
    top = [int(t) for t in np.argsort(-logits)[:4]]
    low = [int(t) for t in np.argsort(logits)[:2]]
    h = [*top, top[0], *low]
    return [
        SamplingParams(temperature=0.0, repetition_penalty=1.5, history=h, logprobs=True, top_logprobs=5),
        SamplingParams(temperature=0.0, frequency_penalty=0.5, presence_penalty=0.4, history=h,
                       logit_bias={low[0]: 3.0}, logprobs=True, top_logprobs=5),
        SamplingParams(temperature=1.0, repetition_penalty=1.3, history=h, logprobs=True, top_logprobs=3,
                       uniforms=[0.0]),
    ]  # fmt: skip


def test_qwen2_v0_2_48_on_tvmjs_018_matches_the_reference() -> None:
    need_libs()
    model = qwen2_model()
    lib = str(Path("..") / "shared/mlc-libs" / f"{QWEN2}-webgpu.wasm")
    record = {"model_id": "qwen2-mlclib", "model": model, "model_lib": lib, "sha256": {lib: QWEN2_SHA256}}
    greedy = SamplingParams(temperature=0.0, uniforms=[0.0, 0.0]).to_wire()
    ref = Ref(model)
    ids = ref("tokenize", PROMPT)[:PROMPT_TOKENS]
    # The reference's whole path first (its greedy tokens are what the library must pick too).
    ref("prefill", ids)
    want = {"prefill": np.asarray(ref("logits"))}
    cases = penalty_cases(want["prefill"])
    want["cases"] = [ref("sample", c) for c in cases]
    for i, t in enumerate(DECODE):
        ref("decode", t)
        want[f"decode{i}"] = np.asarray(ref("logits"))
    ref("rewind", len(ids) + 1)
    ref("decode", DECODE[1])
    first = int(np.argmax(ref("logits")))
    chain, token = [], first
    for _ in range(2):
        ref("decode", token)
        token = int(np.argmax(ref("logits")))
        chain.append(token)
    # Constrained (rule step 0) through the mlc backend's host-side walk: the same ids as the reference.
    spec = grammar_spec("ebnf", 'root ::= [a-z]+ "."', [257])
    ref("open_grammar", spec)
    masked = SamplingParams(temperature=0.0, uniforms=[0.0, 0.0], grammar=1, logprobs=True, top_logprobs=3)
    want["masked"] = [ref("sample", masked), *ref("decode_steps", 2, masked)]

    calls: list[list[Any]] = []
    at: dict[str, int] = {}

    def add(name: str, *call: Any) -> None:
        at[name] = len(calls)
        calls.append(list(call))

    add("tokenize", "tokenize", PROMPT)
    add("prefill", "prefill", ids)
    add("prefill_logits", "logits")
    for i, c in enumerate(cases):
        add(f"case{i}", "sample", c.to_wire())
    for i, t in enumerate(DECODE):
        add(f"decode{i}", "decode", t)
        add(f"decode{i}_logits", "logits")
    add("greedy", "sample", greedy)
    add("rewind", "rewind", len(ids) + 1)  # keep the prompt and DECODE[0]
    add("redecode", "decode", DECODE[1])
    add("redecode_logits", "logits")  # DECODE[1]'s logits again
    add("first", "sample", greedy)
    add("steps", "decodeSteps", 2, greedy)
    add("grammar", "openGrammar", spec)
    add("masked", "sample", masked.to_wire())
    add("masked_steps", "decodeSteps", 2, masked.to_wire())
    add("stats", "stats")
    out = run({"record": record, "calls": calls, "countGpuBuffers": True})
    results = out["results"]
    for r in results:
        assert "error" not in r, r
    got = {name: results[i]["value"] for name, i in at.items()}
    assert got["tokenize"][:PROMPT_TOKENS] == ids
    texts = [text for _, text in out["progress"]]
    assert any(t.startswith("Loading GPU shader") for t in texts), texts  # tvmjs ran it, not our kernels
    timing = ", ".join(f"{c[0]} {r['seconds']:.1f}s" for c, r in zip(calls, results, strict=True))
    print(f"load {out['loadSeconds']:.1f}s; {timing}")

    errors = [rel_err(got["prefill_logits"], want["prefill"])]
    errors += [rel_err(got[f"decode{i}_logits"], want[f"decode{i}"]) for i in range(len(DECODE))]
    device = out["device"]["description"]
    print(f"qwen2 v0_2_48 q4f32_1 on tvmjs 0.18.0-dev2 ({device}): max rel err {max(errors):.2e}")
    assert max(errors) < 1e-4, errors
    # Penalties and bias through the library's kernels, in our rule's sense (v0_2_48's
    # apply_penalty_inplace is inverted; model.js probes and corrects it).
    for i, w in enumerate(want["cases"]):
        assert_same_samples([got[f"case{i}"]], [w], True)
    assert got["greedy"]["token"] == int(np.argmax(want[f"decode{len(DECODE) - 1}"]))
    assert rel_err(got["redecode_logits"], want["decode1"]) < 1e-4  # rewound, then the same token
    assert got["first"]["token"] == first
    assert [s["token"] for s in got["steps"]] == chain  # decodeSteps: the reference's greedy chain
    assert got["grammar"] == 1
    assert_same_samples([got["masked"], *got["masked_steps"]], want["masked"], True)
    assert got["stats"]["kv_length"] == len(ids) + 6
    assert_disposed(out)


SNOWFLAKE = "v0_2_80-head__snowflake-arctic-embed-s-q0f32-ctx512_cs512_batch4"


def snowflake_params(meta: dict[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
    """Random f32 tensors for every parameter of the library, by its names and shapes."""
    rng = np.random.default_rng(seed)
    out = {}
    for p in meta["params"]:
        name, shape = str(p["name"]), tuple(int(d) for d in p["shape"])
        if "LayerNorm.weight" in name:
            v = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name.endswith(".bias"):
            v = 0.1 * rng.standard_normal(shape)
        elif "embeddings" in name:
            v = rng.standard_normal(shape)
        else:
            v = rng.standard_normal(shape) / np.sqrt(shape[1])
        out[name] = np.asarray(v, dtype=np.float32)
    return out


def snowflake_model(meta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    out = MODELS / "zoo" / f"mlclib-{SNOWFLAKE}"
    hidden, layers = 384, sum(1 for p in meta["params"] if p["name"].endswith("attention.self.qkv.weight"))
    config = {
        "model_type": "bert",
        "quantization": "q0f32",
        "model_config": {"hidden_size": hidden, "num_attention_heads": 12, "num_hidden_layers": layers,
                         "intermediate_size": 1536, "layer_norm_eps": 1e-12, "vocab_size": 30522},
        "context_window_size": int(meta["context_window_size"]),
        "prefill_chunk_size": int(meta["prefill_chunk_size"]),
        "pooling": "mean",
        "normalize": True,
        "cls_token_id": 101,
        "sep_token_id": 102,
        "tokenizer_files": ["tokenizer.json"],
    }  # fmt: skip
    if not (out / "tensor-cache.json").exists():
        write_model_dir(out, config, byte_level_tokenizer_json(), params=snowflake_params(meta))
    (out / "mlc-chat-config.json").write_bytes(dumps_json(config))
    return str(out.relative_to(ROOT)), config


def library_bert(
    meta: dict[str, Any], config: dict[str, Any], batch: list[list[int]], library_rule: bool
) -> np.ndarray:
    """NumPy BERT on snowflake_params over `[CLS] ids [SEP]` rows, mean-pooled and L2-normed.
    With `library_rule`, the library's attention: q pre-scaled by sqrt(head_dim) cancels the
    reference's 1/sqrt(head_dim); an all-ones mask attends to padding (id 0)."""
    rows = [[101, *row, 102] for row in batch]
    s = max(len(r) for r in rows)
    ids = np.zeros((len(rows), s), dtype=np.int64)
    mask = np.zeros((len(rows), s), dtype=np.float32)
    for r, row in enumerate(rows):
        ids[r, : len(row)], mask[r, : len(row)] = row, 1.0
    p = snowflake_params(meta)
    hd = config["model_config"]["hidden_size"] // config["model_config"]["num_attention_heads"]
    for i in range(config["model_config"]["num_hidden_layers"]):
        pre = f"encoder.layer.{i}.attention.self."
        w, b = np.split(p.pop(pre + "qkv.weight"), 3), np.split(p.pop(pre + "qkv.bias"), 3)
        for j, part in enumerate(("query", "key", "value")):
            scale = np.float32(np.sqrt(hd) if part == "query" and library_rule else 1)
            p[f"{pre}{part}.weight"], p[f"{pre}{part}.bias"] = w[j] * scale, b[j] * scale
    enc = BertEncoder(p, BertConfig.from_chat_config(config))
    h = enc.hidden_states(ids, np.ones_like(mask) if library_rule else mask).astype(np.float64)
    v = np.stack([h[r, : len(row)].mean(axis=0) for r, row in enumerate(rows)])
    return np.asarray(v / np.linalg.norm(v, axis=1, keepdims=True))


def test_snowflake_v0_2_80_on_tvmjs_024_matches_a_numpy_bert_with_its_attention_rule() -> None:
    """The library's attention: no 1/sqrt(head_dim) scale and no padding mask (padding keys are
    attended to), then mean pooling over each row's real tokens and L2 norm (our backend), on
    [CLS] ids [SEP] (our backend adds them from the config)."""
    need_libs()
    meta = json.loads((LIBS / "meta" / f"{SNOWFLAKE}.json").read_text())
    model, config = snowflake_model(meta)
    lib = str(Path("..") / "shared/mlc-libs" / f"{SNOWFLAKE}-webgpu.wasm")
    # The backend adds [CLS]/[SEP] (the config's 101/102) around each row, as the wgsl path does.
    batch = [[7592, 2088, 999, 42, 3000], [2023, 17]]
    record = {"model_id": "snowflake-mlclib", "model": model, "model_lib": lib, "model_type": "embedding"}
    out = run({"record": record, "calls": [["embed", batch]], "countGpuBuffers": True})
    assert "error" not in out["results"][0], out["results"][0]
    got = np.asarray(out["results"][0]["value"], dtype=np.float64)

    err = float(np.max(np.abs(got - library_bert(meta, config, batch, library_rule=True))))
    print(f"snowflake v0_2_80 on tvmjs 0.24.0-dev1 ({out['device']['description']}): max abs err {err:.2e}")
    assert err < 1e-4, err
    # The rule matters: a standard BERT (scaled, padding masked) gives other vectors.
    assert float(np.max(np.abs(got - library_bert(meta, config, batch, library_rule=False)))) > 1e-2
    assert_disposed(out)
