"""The NumPy reference backend: logits against transformers, KV cache semantics, the sampling rule."""

from __future__ import annotations

import asyncio
import hashlib
import math
import shutil
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from py_worker.errors import (
    ContextWindowSizeExceededError,
    EmbeddingUnsupportedModelError,
    IntegrityError,
    InvalidRequestFieldError,
    ModelLoadError,
    ModelNotLoadedError,
)
from py_worker.kernels import SamplingParams
from py_worker.reference import ReferenceKernels
from py_worker.reference.sampling import process_logits, sample
from tools import make_random_model, make_tiny_model
from tools.make_tiny_model import LlamaShape
from tools.mlc_format import read_model_dir, write_model_dir

T = TypeVar("T")
PROMPT = "<|im_start|>user\nWhat is 2+2? 😀<|im_end|>\n<|im_start|>assistant\n"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    out = {}
    for quantization in ("q0f32", "q4f32_1", "q4f16_1"):
        out[quantization] = root / quantization
        make_tiny_model.build(out[quantization], quantization)
    return out


def load(path: Path, **record: Any) -> tuple[ReferenceKernels, int]:
    kernels = ReferenceKernels()
    loaded = run(kernels.load({"model_id": "m", "model": str(path), **record}, lambda f, t: None))
    return kernels, loaded.handle


def prefill_logits(kernels: ReferenceKernels, handle: int, ids: list[int]) -> np.ndarray:
    run(kernels.prefill(handle, ids))
    return kernels.logits(handle)


# -- logits against an independent implementation (transformers) ----------------------------------


def hf_logits(weights: dict[str, np.ndarray], shape: LlamaShape, ids: list[int]) -> np.ndarray:
    """All-position logits of transformers' Llama/Qwen2 built from the same (unfused) weights."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    common = {
        "hidden_size": shape.hidden_size,
        "intermediate_size": shape.intermediate_size,
        "num_attention_heads": shape.num_attention_heads,
        "num_key_value_heads": shape.num_key_value_heads,
        "num_hidden_layers": shape.num_hidden_layers,
        "vocab_size": shape.vocab_size,
        "rms_norm_eps": shape.rms_norm_eps,
        "rope_theta": shape.rope_theta,
        "tie_word_embeddings": shape.tie_word_embeddings,
        "max_position_embeddings": 1024,
    }
    if shape.model_type == "qwen2":
        config = transformers.Qwen2Config(**common)
        model = transformers.Qwen2ForCausalLM(config)
    else:
        config = transformers.LlamaConfig(**common, head_dim=shape.head_dim)
        model = transformers.LlamaForCausalLM(config)
    model.config._attn_implementation = "eager"
    q_rows = shape.num_attention_heads * shape.head_dim
    kv_rows = shape.num_key_value_heads * shape.head_dim
    state = {}
    for name, w in weights.items():
        fused = next((f for f in (".qkv_proj.", ".c_attn.") if f in name), None)  # c_attn: MLC's Qwen2
        if fused:
            kind = name.rsplit(".", 1)[1]
            stem = name.split(fused)[0]
            q, k, v = w[:q_rows], w[q_rows : q_rows + kv_rows], w[q_rows + kv_rows :]
            state.update({f"{stem}.q_proj.{kind}": q, f"{stem}.k_proj.{kind}": k, f"{stem}.v_proj.{kind}": v})
        elif ".gate_up_proj." in name:
            stem = name.split(".gate_up_proj.")[0]
            half = shape.intermediate_size
            state.update({f"{stem}.gate_proj.weight": w[:half], f"{stem}.up_proj.weight": w[half:]})
        else:
            state[name] = w
    missing, unexpected = model.load_state_dict(
        {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in state.items()},
        strict=False,
    )
    assert not unexpected
    assert set(missing) <= ({"lm_head.weight"} if shape.tie_word_embeddings else set())
    if shape.tie_word_embeddings:
        model.tie_weights()
    model.eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


@pytest.mark.parametrize("quantization", ["q0f32", "q4f32_1", "q4f16_1"])
def test_tiny_logits_match_transformers_at_every_position(models: dict[str, Path], quantization: str) -> None:
    kernels, handle = load(models[quantization])
    ids = run(kernels.tokenize(handle, PROMPT))
    expected = hf_logits(read_model_dir(models[quantization]).weights(), make_tiny_model.TINY, ids)
    got = []
    for token in ids:  # decode one token at a time: every position goes through the KV cache
        run(kernels.decode(handle, token))
        got.append(kernels.logits(handle))
    np.testing.assert_allclose(np.stack(got), expected, atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(prefill_logits(*load(models[quantization]), ids), expected[-1], atol=2e-4)


def test_qwen2_bias_and_tied_embeddings_match_transformers(tmp_path: Path) -> None:
    shape = LlamaShape(
        model_type="qwen2", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, intermediate_size=96, vocab_size=512, rope_theta=1e6, rms_norm_eps=1e-6,
        tie_word_embeddings=True, context_window_size=128, prefill_chunk_size=8,
    )
    rng = np.random.default_rng(5)
    stored = dict(make_random_model.random_tensors(shape, "q0f32", seed=4))
    for name in stored:
        if name.endswith("c_attn.bias"):
            stored[name] = rng.standard_normal(stored[name].shape).astype(np.float32)
    config = make_tiny_model.chat_config(shape, "q0f32")
    write_model_dir(tmp_path, config, make_tiny_model.byte_level_tokenizer_json(), stored=stored.items())
    kernels, handle = load(tmp_path)
    ids = list(range(40, 70))
    expected = hf_logits(stored, shape, ids)
    np.testing.assert_allclose(prefill_logits(kernels, handle, ids), expected[-1], atol=2e-4, rtol=1e-4)
    run(kernels.decode(handle, 99))
    np.testing.assert_allclose(kernels.logits(handle), hf_logits(stored, shape, [*ids, 99])[-1], atol=2e-4)


# -- KV cache semantics ---------------------------------------------------------------------------


def test_prefill_in_chunks_equals_one_prefill(models: dict[str, Path]) -> None:
    ids = list(range(60, 100))
    one = prefill_logits(*load(models["q0f32"], overrides={"prefill_chunk_size": 64}), ids)
    chunked_by_backend = prefill_logits(*load(models["q0f32"]), ids)  # config: chunks of 16
    kernels, handle = load(models["q0f32"])
    for piece in (ids[:5], ids[5:12], ids[12:]):
        run(kernels.prefill(handle, piece))
    np.testing.assert_allclose(chunked_by_backend, one, atol=1e-5)
    np.testing.assert_allclose(kernels.logits(handle), one, atol=1e-5)
    assert run(kernels.stats(handle))["kv_length"] == 40


def test_decode_after_rewind_equals_fresh(models: dict[str, Path]) -> None:
    a, b, c = list(b"Hello "), list(b"world, and more"), list(b"there")
    kernels, handle = load(models["q4f32_1"])
    run(kernels.prefill(handle, a + b))
    run(kernels.rewind(handle, len(a)))
    with pytest.raises(RuntimeError):
        kernels.logits(handle)  # the logits of the dropped tokens are gone
    run(kernels.prefill(handle, c))
    fresh = prefill_logits(*load(models["q4f32_1"]), a + c)
    np.testing.assert_allclose(kernels.logits(handle), fresh, atol=1e-5)
    with pytest.raises(InvalidRequestFieldError):
        run(kernels.rewind(handle, len(a + c) + 1))


def test_reset_clears_the_cache(models: dict[str, Path]) -> None:
    kernels, handle = load(models["q0f32"])
    first = prefill_logits(kernels, handle, list(b"abc"))
    run(kernels.prefill(handle, list(b"def")))
    run(kernels.reset(handle))
    np.testing.assert_allclose(prefill_logits(kernels, handle, list(b"abc")), first, atol=1e-6)


def test_decode_steps_equals_decode_then_sample(models: dict[str, Path]) -> None:
    uniforms = [0.11, 0.93, 0.42, 0.57, 0.05, 0.77]
    params = SamplingParams(
        temperature=0.8, top_p=0.9, frequency_penalty=0.5, presence_penalty=0.3, repetition_penalty=1.3,
        logit_bias={ord("a"): 2.0}, history=[ord("x")], uniforms=[0.3], logprobs=True, top_logprobs=2,
    )
    kernels, handle = load(models["q0f32"])
    run(kernels.prefill(handle, list(b"Once upon")))
    first = run(kernels.sample(handle, params))
    steps = run(kernels.decode_steps(handle, 6, SamplingParams(**{**params.__dict__, "uniforms": uniforms})))
    assert run(kernels.stats(handle))["kv_length"] == len(b"Once upon") + 6

    manual_k, manual_h = load(models["q0f32"])
    run(manual_k.prefill(manual_h, list(b"Once upon")))
    token = run(manual_k.sample(manual_h, params)).token
    assert token == first.token
    history = list(params.history)
    expected = []
    for u in uniforms:
        run(manual_k.decode(manual_h, token))
        step_params = SamplingParams(**{**params.__dict__, "history": history})
        picked = sample(manual_k.logits(manual_h), step_params, u)
        expected.append(picked)
        history.append(picked.token)
        token = picked.token
    assert [s.token for s in steps] == [s.token for s in expected]
    assert [s.logprob for s in steps] == pytest.approx([s.logprob for s in expected])


def test_same_uniforms_give_same_ids_and_other_uniforms_differ(models: dict[str, Path]) -> None:
    def draw(uniforms: list[float]) -> list[int]:
        kernels, handle = load(models["q0f32"])
        run(kernels.prefill(handle, list(b"The")))
        params = SamplingParams(temperature=1.5, uniforms=uniforms[:1])
        first = run(kernels.sample(handle, params)).token
        rest = run(kernels.decode_steps(handle, len(uniforms) - 1, SamplingParams(temperature=1.5,
                                                                                  uniforms=uniforms[1:])))
        return [first, *(s.token for s in rest)]

    rng = np.random.default_rng(0)
    u1, u2 = rng.random(12).tolist(), rng.random(12).tolist()
    assert draw(u1) == draw(u1)
    assert draw(u1) != draw(u2)


def test_decode_steps_needs_a_sample_first(models: dict[str, Path]) -> None:
    kernels, handle = load(models["q0f32"])
    run(kernels.prefill(handle, list(b"hi")))
    with pytest.raises(InvalidRequestFieldError):
        run(kernels.decode_steps(handle, 2, SamplingParams(uniforms=[0.1, 0.2])))
    run(kernels.sample(handle, SamplingParams(temperature=0)))
    with pytest.raises(InvalidRequestFieldError):
        run(kernels.decode_steps(handle, 3, SamplingParams(uniforms=[0.1, 0.2])))
    assert run(kernels.decode_steps(handle, 0, SamplingParams())) == []


def test_greedy_text_of_the_tiny_model_does_not_collapse(models: dict[str, Path]) -> None:
    kernels, handle = load(models["q0f32"])
    run(kernels.prefill(handle, run(kernels.tokenize(handle, PROMPT))))
    greedy = SamplingParams(temperature=0, uniforms=[0.0] * 31)
    tokens = [run(kernels.sample(handle, greedy)).token]
    tokens += [s.token for s in run(kernels.decode_steps(handle, 31, greedy))]
    assert len(set(tokens)) >= 8
    assert max(tokens.count(t) for t in set(tokens)) <= 12


def test_context_window_override_is_enforced(models: dict[str, Path]) -> None:
    kernels, handle = load(models["q0f32"], overrides={"context_window_size": 20})
    run(kernels.prefill(handle, list(range(20))))
    with pytest.raises(ContextWindowSizeExceededError):
        run(kernels.decode(handle, 1))


# -- the sampling rule on hand-made logits -------------------------------------------------------


def logits_of(probs: list[float]) -> np.ndarray:
    return np.log(np.asarray(probs, dtype=np.float64)).astype(np.float32)


def test_greedy_takes_the_lowest_id_among_equal_maxima() -> None:
    logits = np.array([1.0, 3.0, 3.0, 2.0], dtype=np.float32)
    assert sample(logits, SamplingParams(temperature=0), 0.9).token == 1
    assert sample(logits, SamplingParams(temperature=0, logit_bias={2: 0.5}), 0.9).token == 2


def test_penalties_follow_the_rule() -> None:
    logits = np.array([2.0, -2.0, 1.0, 0.5], dtype=np.float32)
    params = SamplingParams(repetition_penalty=2.0, frequency_penalty=0.5, presence_penalty=0.25,
                            history=[0, 0, 1], logit_bias={3: -1.0})
    # id 0: 2 / 2 - (0.5 * 2 + 0.25); id 1: -2 * 2 - (0.5 + 0.25); id 2 untouched; id 3 biased only.
    np.testing.assert_array_equal(process_logits(logits, params), [-0.25, -4.75, 1.0, -0.5])


def test_bias_is_applied_before_the_repetition_penalty() -> None:
    logits = np.array([-1.0, 0.0], dtype=np.float32)
    params = SamplingParams(repetition_penalty=2.0, history=[0], logit_bias={0: 3.0})
    assert process_logits(logits, params)[0] == pytest.approx(1.0)  # (-1 + 3) / 2, not -1 * 2 + 3


def test_nucleus_is_walked_by_ascending_id() -> None:
    logits = logits_of([0.125, 0.125, 0.25, 0.5])
    params = SamplingParams(temperature=1.0, top_p=0.6)  # takes ids 3 then 2: nucleus {2, 3}, mass 0.75
    assert sample(logits, params, 0.30).token == 2  # 0.25 > 0.225
    assert sample(logits, params, 0.34).token == 3  # 0.25 <= 0.255
    assert sample(logits, params, 0.0).token == 2
    assert sample(logits, params, 0.999999).token == 3


def test_nucleus_includes_every_tie_of_the_cut_off() -> None:
    logits = logits_of([0.125, 0.5, 0.25, 0.125])
    params = SamplingParams(temperature=1.0, top_p=0.8)  # 0.5 + 0.25 + 0.125 reaches 0.8; cut-off 0.125
    assert sample(logits, params, 0.01).token == 0  # id 0 ties with the cut-off, so it is in
    tight = SamplingParams(temperature=1.0, top_p=0.5)  # the first id alone reaches 0.5
    assert {sample(logits, tight, u).token for u in (0.0, 0.5, 0.99)} == {1}


def test_top_p_one_keeps_every_id_and_temperature_sharpens() -> None:
    logits = logits_of([0.1, 0.2, 0.3, 0.4])
    full = SamplingParams(temperature=1.0, top_p=1.0)
    assert [sample(logits, full, u).token for u in (0.05, 0.15, 0.45, 0.95)] == [0, 1, 2, 3]
    cold = SamplingParams(temperature=0.25, top_p=1.0)  # p ∝ p^4: 1, 16, 81, 256 of 354
    assert sample(logits, cold, 0.03).token == 1  # 1/354 <= 0.03 < 17/354
    assert sample(logits, cold, 0.20).token == 2


def test_logprobs_use_temperature_or_one_when_greedy() -> None:
    logits = np.array([0.0, 1.0, 2.0, 2.0], dtype=np.float32)
    greedy = sample(logits, SamplingParams(temperature=0, logprobs=True, top_logprobs=3), 0.0)
    norm = math.log(1 + math.e + 2 * math.e**2)
    assert greedy.token == 2
    assert greedy.logprob == pytest.approx(2 - norm)
    assert [t for t, _ in greedy.top_logprobs] == [2, 3, 1]
    assert greedy.top_logprobs[2][1] == pytest.approx(1 - norm)
    hot = sample(logits, SamplingParams(temperature=2.0, logprobs=True, top_logprobs=1), 0.0)
    norm2 = math.log(1 + math.e**0.5 + 2 * math.e)
    assert hot.token == 0
    assert hot.logprob == pytest.approx(0 - norm2)
    assert hot.top_logprobs == [(2, pytest.approx(1 - norm2))]
    assert sample(logits, SamplingParams(temperature=0), 0.0).logprob is None


# -- loading, tokenizer, errors -------------------------------------------------------------------


def test_load_reports_progress_and_applies_overrides(models: dict[str, Path]) -> None:
    reports: list[tuple[float, str]] = []
    kernels = ReferenceKernels()
    loaded = run(kernels.load({"model": str(models["q0f32"]), "overrides": {"context_window_size": 64}},
                              lambda f, t: reports.append((f, t))))
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert reports[0][1] == "Start to fetch params"
    assert any(t.startswith("Loading model from cache[1/1]") for _, t in reports)
    assert loaded.config["context_window_size"] == 64
    assert loaded.config["model_config"]["hidden_size"] == 64


def test_corrupt_shard_or_wrong_pin_raises_integrity_error(models: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(models["q0f32"], bad)
    blob = bytearray((bad / "params_shard_0.bin").read_bytes())
    blob[100] ^= 0xFF
    (bad / "params_shard_0.bin").write_bytes(bytes(blob))
    with pytest.raises(IntegrityError) as err:
        load(bad)
    assert err.value.fields["file"] == "params_shard_0.bin"
    with pytest.raises(IntegrityError):
        load(models["q0f32"], sha256={"tokenizer.json": "0" * 64})
    digest = hashlib.sha256((models["q0f32"] / "tokenizer.json").read_bytes()).hexdigest()
    load(models["q0f32"], sha256={"tokenizer.json": digest})


def test_unknown_model_type_and_missing_dir_fail_to_load(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError):
        load(models["q0f32"], overrides={"model_type": "mamba"})
    with pytest.raises(ModelLoadError):
        load(tmp_path / "nowhere")


def test_tokenizer_round_trips_and_replaces_partial_utf8(models: dict[str, Path]) -> None:
    kernels, handle = load(models["q0f32"])
    text = "naïve 😀 <|im_end|>"
    ids = run(kernels.tokenize(handle, text))
    assert ids[-1] == make_tiny_model.IM_END
    assert ids[:6] == list(b"na\xc3\xafve")
    assert run(kernels.detokenize(handle, ids)) == text
    emoji = list("😀".encode())
    assert run(kernels.detokenize(handle, emoji[:2])) == "\ufffd"
    assert run(kernels.detokenize(handle, emoji)) == "😀"


def test_embed_and_unknown_handles_raise_named_errors(models: dict[str, Path]) -> None:
    kernels, handle = load(models["q0f32"])
    with pytest.raises(EmbeddingUnsupportedModelError):
        run(kernels.embed(handle, [[1, 2, 3]]))
    run(kernels.unload(handle))
    with pytest.raises(ModelNotLoadedError):
        run(kernels.prefill(handle, [1]))


def test_stats_count_tokens(models: dict[str, Path]) -> None:
    kernels, handle = load(models["q0f32"])
    run(kernels.prefill(handle, list(range(10))))
    run(kernels.sample(handle, SamplingParams(temperature=0)))
    run(kernels.decode_steps(handle, 3, SamplingParams(temperature=0, uniforms=[0.0] * 3)))
    stats = run(kernels.stats(handle))
    assert (stats["prefill_tokens"], stats["decode_tokens"], stats["kv_length"]) == (10, 3, 13)
    assert stats["prefill_seconds"] > 0
    assert stats["decode_seconds"] > 0
