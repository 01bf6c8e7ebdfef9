"""MLC's model zoo on the NumPy reference: MLC's real tensor names, and the reference against transformers.

Each architecture we run (py_worker/reference/architectures.py) gets a random-weight model dir
written with MLC's names (tools/make_random_model.py, ``tiny-<arch>``); the reference loads it
and its logits at every position must match transformers' (torch CPU, eager attention) built
from the same weights converted to HF's layout (q/k/v and gate/up split; Gemma's norms stored by
MLC as 1 + w, so HF gets w). For Qwen2 the tensor list we write must be the one MLC's own
library binds (``../shared/mlc-libs/meta/``), name for name, shape for shape, dtype for dtype.
A missing tensor and an architecture we do not run fail with named errors; the engine chats with
each architecture; ``py_worker.prebuilt.MLC_WGSL_ZOO`` names only web-llm ids we can run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from py_worker.errors import ModelLoadError, UnsupportedArchitectureError
from py_worker.reference import ReferenceKernels
from py_worker.reference.architectures import SUPPORTED, reference_weights
from py_worker.reference.llama import LlamaConfig, context_window
from tools import make_random_model
from tools.make_random_model import ZOO
from tools.make_tiny_model import LlamaShape
from tools.mlc_format import read_model_dir

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
META = REPO.parent / "shared/mlc-libs/meta"
QWEN2_META = "v0_2_48__Qwen2-0.5B-Instruct-{}-ctx4k_cs1k.json"
IDS = [72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33, 10, 256, 300, 7, 65, 66, 200]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def load(path: Path) -> tuple[ReferenceKernels, int]:
    kernels = ReferenceKernels()
    return kernels, run(kernels.load({"model_id": "m", "model": str(path)}, lambda f, t: None)).handle


# -- MLC's real names -----------------------------------------------------------------------------


@pytest.mark.parametrize("quantization", ["q4f32_1", "q0f32"])
def test_qwen2_tensors_are_the_ones_mlcs_library_binds(quantization: str) -> None:
    path = META / QWEN2_META.format(quantization)
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared/mlc-libs)")
    meta = json.loads(path.read_text())
    ours = list(make_random_model.stored_params(make_random_model.SHAPES["qwen2-0.5b"], quantization))
    assert ours == make_random_model.meta_params(meta)  # all 24 layers, in MLC's order
    assert ("model.layers.0.self_attn.c_attn.bias", (1152,), "float32") in ours


def test_a_model_written_from_the_meta_loads(tmp_path: Path) -> None:
    path = META / QWEN2_META.format("q4f32_1")
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared/mlc-libs)")
    make_random_model.build_from_meta(path, tmp_path, layers=1)
    stored = read_model_dir(tmp_path).tensors
    meta = json.loads(path.read_text())
    assert [(k, v.shape, str(v.dtype)) for k, v in stored.items()] == [
        (n, s, {"float32": "float32", "uint32": "uint32"}[d])
        for n, s, d in make_random_model.meta_params(meta, 1)
    ]
    kernels, handle = load(tmp_path)
    run(kernels.prefill(handle, IDS[:5]))
    logits = kernels.logits(handle)
    assert logits.shape == (151936,)
    assert np.isfinite(logits).all()


# -- the reference against transformers ------------------------------------------------------------


def hf_model(shape: LlamaShape, weights: dict[str, np.ndarray]) -> Any:
    """transformers' model of ``shape.model_type`` holding the reference-named ``weights``."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    mc = shape.model_config()
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": shape.rope_theta}
    scaling = mc.get("rope_scaling")
    if scaling:
        rope = {**{k: v for k, v in scaling.items() if k != "type"}, "rope_theta": shape.rope_theta}
    common: dict[str, Any] = {
        "hidden_size": shape.hidden_size,
        "intermediate_size": shape.intermediate_size,
        "num_attention_heads": shape.num_attention_heads,
        "num_key_value_heads": shape.num_key_value_heads,
        "num_hidden_layers": shape.num_hidden_layers,
        "vocab_size": shape.vocab_size,
        "rms_norm_eps": shape.rms_norm_eps,
        "tie_word_embeddings": shape.tie_word_embeddings,
        "max_position_embeddings": 1024,
        "rope_parameters": rope,
    }
    kind = shape.model_type
    if kind == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**common, head_dim=shape.head_dim))
    elif kind == "qwen2":
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common))
    elif kind == "qwen3":
        config = transformers.Qwen3Config(**common, head_dim=shape.head_dim, attention_bias=False)
        model = transformers.Qwen3ForCausalLM(config)
    elif kind == "phi3":
        rope["partial_rotary_factor"] = mc["partial_rotary_factor"]
        common.update(max_position_embeddings=mc["max_position_embeddings"])
        rope.pop("max_position_embeddings")
        config = transformers.Phi3Config(
            **common,
            original_max_position_embeddings=mc["original_max_position_embeddings"],
            pad_token_id=None,
            bos_token_id=None,
            eos_token_id=None,
        )
        model = transformers.Phi3ForCausalLM(config)
    elif kind == "gemma2":
        config = transformers.Gemma2Config(
            **common,
            head_dim=shape.head_dim,
            hidden_activation=mc["hidden_activation"],
            query_pre_attn_scalar=mc["query_pre_attn_scalar"],
            sliding_window=mc["sliding_window"],
            attn_logit_softcapping=mc["attn_logit_softcapping"],
            final_logit_softcapping=mc["final_logit_softcapping"],
        )
        model = transformers.Gemma2ForCausalLM(config)
    elif kind.startswith("gemma3"):
        pattern = mc["sliding_window_pattern"]
        layers = range(shape.num_hidden_layers)
        layer_types = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in layers]
        common["rope_parameters"] = {
            "full_attention": rope,
            "sliding_attention": {"rope_type": "default", "rope_theta": mc["rope_local_base_freq"]},
        }
        config = transformers.Gemma3TextConfig(
            **common,
            head_dim=shape.head_dim,
            hidden_activation=mc["hidden_activation"],
            query_pre_attn_scalar=mc["query_pre_attn_scalar"],
            sliding_window=mc["sliding_window"],
            layer_types=layer_types,
        )
        model = transformers.Gemma3ForCausalLM(config)
    else:
        raise AssertionError(kind)
    model.config._attn_implementation = "eager"
    state = hf_state(kind, shape, weights)
    missing, unexpected = model.load_state_dict(
        {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in state.items()},
        strict=False,
    )
    assert not unexpected, unexpected
    assert set(missing) <= ({"lm_head.weight"} if shape.tie_word_embeddings else set()), missing
    if shape.tie_word_embeddings:
        model.tie_weights()
    return model.eval()


def hf_state(kind: str, shape: LlamaShape, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The reference's names -> HF's: split fused q|k|v and gate|up (Phi-3 keeps them fused)."""
    q_rows = shape.num_attention_heads * shape.head_dim
    kv_rows = shape.num_key_value_heads * shape.head_dim
    gemma = {  # Gemma 2's and 3's norms, by the reference's name; MLC stored 1 + w
        "input_layernorm": "input_layernorm",
        "attn_output_norm": "post_attention_layernorm",
        "post_attention_layernorm": "pre_feedforward_layernorm",
        "mlp_output_norm": "post_feedforward_layernorm",
        **({"q_norm": "q_norm", "k_norm": "k_norm"} if kind.startswith("gemma3") else {}),
    }
    state: dict[str, np.ndarray] = {}
    for name, w in weights.items():
        stem, leaf = name.rsplit(".", 1)
        parent, last = stem.rsplit(".", 1) if "." in stem else ("", stem)
        if last == "qkv_proj" and kind != "phi3":
            q, k, v = w[:q_rows], w[q_rows : q_rows + kv_rows], w[q_rows + kv_rows :]
            state.update(
                {f"{parent}.q_proj.{leaf}": q, f"{parent}.k_proj.{leaf}": k, f"{parent}.v_proj.{leaf}": v}
            )
        elif last == "gate_up_proj" and kind != "phi3":
            half = shape.intermediate_size
            state.update({f"{parent}.gate_proj.{leaf}": w[:half], f"{parent}.up_proj.{leaf}": w[half:]})
        elif kind.startswith("gemma") and (last in gemma or name == "model.norm.weight"):
            state[f"{parent}.{gemma.get(last, last)}.{leaf}"] = w - np.float32(1.0)
        else:
            state[name] = w
    return state


@pytest.mark.parametrize("shape_name", sorted(ZOO))
def test_reference_matches_transformers_at_every_position(tmp_path: Path, shape_name: str) -> None:
    torch = pytest.importorskip("torch")
    shape = ZOO[shape_name]
    make_random_model.build(shape_name, "q0f32", tmp_path, seed=3)
    model_dir = read_model_dir(tmp_path)
    weights = reference_weights(model_dir.config, model_dir.weights())
    with torch.no_grad():
        expected = hf_model(shape, weights)(torch.tensor([IDS])).logits[0].numpy()
    kernels, handle = load(tmp_path)
    got = []
    for token in IDS:  # one token at a time: every position goes through the KV cache
        run(kernels.decode(handle, token))
        got.append(kernels.logits(handle))
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(np.stack(got), expected, atol=2e-5 * scale, rtol=1e-4)
    fresh, h2 = load(tmp_path)
    run(fresh.prefill(h2, IDS))  # prefill_chunk_size 16: two chunks
    np.testing.assert_allclose(fresh.logits(h2), expected[-1], atol=2e-5 * scale, rtol=1e-4)


def test_gemma2_soft_caps_bind_on_the_test_model(tmp_path: Path) -> None:
    """The tiny Gemma 2's caps are low enough that the test above sees them work."""
    make_random_model.build("tiny-gemma2", "q0f32", tmp_path, seed=3)
    kernels, handle = load(tmp_path)
    run(kernels.prefill(handle, IDS))
    cap = ZOO["tiny-gemma2"].extra["final_logit_softcapping"]
    assert float(np.abs(kernels.logits(handle)).max()) > 0.5 * cap


@pytest.mark.parametrize("quantization", ["q0f16", "q4f16_1", "q4f32_1"])
def test_other_quantizations_load_under_the_same_names(tmp_path: Path, quantization: str) -> None:
    make_random_model.build("tiny-qwen3", quantization, tmp_path)
    stored = read_model_dir(tmp_path).tensors
    if quantization == "q0f16":
        assert {str(v.dtype) for v in stored.values()} == {"float16"}
    else:
        assert stored["model.layers.0.self_attn.c_attn.q_weight"].dtype == np.uint32
        norm_dtype = np.float16 if quantization == "q4f16_1" else np.float32
        assert stored["model.layers.0.self_attn.q_norm.weight"].dtype == norm_dtype
    kernels, handle = load(tmp_path)
    run(kernels.prefill(handle, IDS))
    assert np.isfinite(kernels.logits(handle)).all()


# -- named refusals --------------------------------------------------------------------------------


def test_a_missing_tensor_is_named(tmp_path: Path) -> None:
    make_random_model.build("tiny-qwen2", "q4f32_1", tmp_path)
    cache_path = tmp_path / "tensor-cache.json"
    cache = json.loads(cache_path.read_text())
    records = cache["records"][0]["records"]
    cache["records"][0]["records"] = [
        r for r in records if r["name"] != "model.layers.1.self_attn.c_attn.q_weight"
    ]
    cache["metadata"].pop("sha256")
    cache_path.write_text(json.dumps(cache))
    with pytest.raises(ModelLoadError) as err:
        load(tmp_path)
    assert err.value.fields["tensor"] == "model.layers.1.self_attn.c_attn.q_weight"
    assert "model.layers.1.self_attn.c_attn.q_weight" in str(err.value)


def test_our_old_qwen2_naming_is_refused_by_name(tmp_path: Path) -> None:
    """A Qwen2 dir with Llama's ``qkv_proj`` is not what MLC publishes: the loader names what it lacks."""
    make_random_model.build("tiny-qwen2", "q0f32", tmp_path)
    cache_path = tmp_path / "tensor-cache.json"
    cache_path.write_text(cache_path.read_text().replace(".c_attn.", ".qkv_proj."))
    with pytest.raises(ModelLoadError) as err:
        load(tmp_path)
    assert err.value.fields["tensor"] == "model.layers.0.self_attn.c_attn.weight"


def test_an_architecture_we_do_not_run_is_named(tmp_path: Path) -> None:
    make_random_model.build("tiny-qwen2", "q0f32", tmp_path)
    config_path = tmp_path / "mlc-chat-config.json"
    config_path.write_text(config_path.read_text().replace('"model_type": "qwen2"', '"model_type": "rwkv6"'))
    with pytest.raises(UnsupportedArchitectureError) as err:
        load(tmp_path)
    assert err.value.fields["architecture"] == "rwkv6"
    assert set(SUPPORTED) <= set(err.value.fields["supported"])


# -- configs as MLC writes them --------------------------------------------------------------------


def test_sliding_windows_cap_the_kv_cache() -> None:
    gemma = {
        "context_window_size": 8192,
        "model_config": {"sliding_window": 4096, "context_window_size": 8192},
    }
    assert context_window(gemma) == 4096
    mistral = {
        "context_window_size": -1,
        "model_config": {"sliding_window_size": 4096, "context_window_size": -1},
    }
    assert context_window(mistral) == 4096
    llama = {
        "context_window_size": 4096,
        "sliding_window_size": -1,
        "model_config": {"context_window_size": 131072},
    }
    assert context_window(llama) == 4096
    # Gemma 3 attends within its window layer by layer: the cache keeps the whole context.
    gemma3 = {
        "model_type": "gemma3_text",
        "context_window_size": 4096,
        "sliding_window_size": 512,
        "model_config": {"text_config": {"sliding_window_size": 512}, "sliding_window_size": 512},
    }
    assert context_window(gemma3) == 4096


def test_gemma3_names_and_nested_config_are_mlcs(tmp_path: Path) -> None:
    """gemma3_model.py's tree: ``language_model.`` prefix, three attention linears, six norms per layer."""
    shape = ZOO["tiny-gemma3"]
    names = [n for n, _, _ in make_random_model.stored_params(shape, "q4f16_1")]
    layer = [n.removeprefix("language_model.model.layers.0.") for n in names if ".layers.0." in n]
    assert layer == [
        *(f"self_attn.{x}_proj.{y}" for x in "qkvo" for y in ("q_weight", "q_scale")),
        "self_attn.q_norm.weight",
        "self_attn.k_norm.weight",
        *(f"mlp.{x}.{y}" for x in ("gate_up_proj", "down_proj") for y in ("q_weight", "q_scale")),
        *(f"{x}.weight" for x in ("input_layernorm", "post_attention_layernorm")),
        *(f"{x}.weight" for x in ("pre_feedforward_layernorm", "post_feedforward_layernorm")),
    ]
    embed = "language_model.model.embed_tokens"
    assert names[:2] == [f"{embed}.q_weight", f"{embed}.q_scale"]
    assert names[-1] == "language_model.model.norm.weight"  # no lm_head: tied
    make_random_model.build("tiny-gemma3", "q0f32", tmp_path)
    config = json.loads((tmp_path / "mlc-chat-config.json").read_text())
    text = config["model_config"]["text_config"]
    assert text["hidden_size"] == shape.hidden_size
    assert "hidden_size" not in config["model_config"]
    assert text["kwargs"]["rope_local_base_freq"] == 10000.0
    assert text["kwargs"]["sliding_window_pattern"] == 2
    cfg = LlamaConfig.from_chat_config(config)
    assert (cfg.sliding_window, cfg.sliding_layers, cfg.rope_local_theta) == (8, (0,), 10000.0)
    assert (cfg.rope_theta, cfg.vocab_size, cfg.attn_scale) == (1e6, 512, 64**-0.5)
    assert cfg.attn_softcap is None
    assert cfg.final_softcap is None


def test_llama_reads_position_embedding_base() -> None:
    config = {"model_type": "llama", "model_config": {**ZOO["tiny-llama3"].model_config()}}
    cfg = LlamaConfig.from_chat_config(config)
    assert cfg.rope_theta == 500000.0
    assert cfg.rope_scaling is not None
    assert "rope_theta" not in config["model_config"]


# -- the prebuilt zoo ------------------------------------------------------------------------------


def test_the_wgsl_zoo_names_hf_dirs_of_architectures_we_run() -> None:
    from py_worker import prebuilt

    ids = [r["model_id"] for r in prebuilt.MLC_WGSL_ZOO]
    assert len(ids) == len(set(ids)) >= 100
    for record in prebuilt.MLC_WGSL_ZOO:
        model_id = record["model_id"]
        assert (
            record["model"] == f"https://huggingface.co/mlc-ai/{model_id.removesuffix('-1k')}/resolve/main/"
        )
        assert record["backend"] == "wgsl"
        assert "model_lib" not in record
        assert "required_features" not in record
        assert prebuilt.MLC_WGSL_ZOO_ARCHITECTURES[model_id] in SUPPORTED
        quant = next(q for q in ("q4f16_1", "q4f32_1", "q0f16", "q0f32") if q in model_id)
        assert f"-{quant}-MLC" in model_id
    plain = prebuilt.prebuilt_app_config()["model_list"]
    zoo = prebuilt.prebuilt_app_config(wgsl_zoo=True)["model_list"]
    zoo_ids = [r["model_id"] for r in zoo]
    assert len(zoo_ids) == len(set(zoo_ids))
    assert zoo_ids[0] == prebuilt.DEFAULT_MODEL_ID
    assert set(zoo_ids) == {r["model_id"] for r in plain} | set(ids)
    by_id = {r["model_id"]: r for r in zoo}
    assert by_id["Qwen2.5-0.5B-Instruct-q4f16_1-MLC"]["backend"] == "wgsl"  # was an mlc record
    assert "model_lib" in by_id["snowflake-arctic-embed-m-q0f32-MLC-b4"]  # BERT-like: still mlc


@pytest.mark.parametrize("shape_name", sorted(ZOO))
def test_the_engine_chats_with_each_architecture(tmp_path: Path, shape_name: str) -> None:
    """MLCEngine over the reference: the dir's chat config (ChatML template, stop ids) drives a chat."""
    from py_worker.engine import MLCEngine

    make_random_model.build(shape_name, "q4f16_1", tmp_path)
    app_config = {"model_list": [{"model_id": shape_name, "model": str(tmp_path), "model_type": "LLM"}]}

    async def chat() -> Any:
        engine = MLCEngine(ReferenceKernels(), app_config)
        await engine.reload(shape_name)
        messages = [{"role": "user", "content": "Hi there"}]
        return await engine.chat.completions.create(messages=messages, max_tokens=6, seed=1)

    reply = run(chat())
    assert reply["usage"]["completion_tokens"] >= 1
    assert reply["choices"][0]["finish_reason"] in ("stop", "length")
