"""The MLC-format writer/reader, the q4 quantiser, the tiny model and the random-model generator."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from py_worker.reference.weights import dequantize_q4, dequantize_tensors
from tools import make_random_model, make_tiny_model
from tools.make_tiny_model import IM_END, IM_START, LlamaShape, byte_level_tokenizer_json
from tools.mlc_format import quantize_q4, read_model_dir, write_model_dir, write_tensor_cache

REPO = Path(__file__).resolve().parents[2]
TEXTS = ["hello world", "héllo 😀 wörld\n\t", "<|im_start|>user\nhi<|im_end|>\n", "日本語 🇺🇳", ""]


# -- quantiser ------------------------------------------------------------------------------------


def test_q4_packs_low_nibble_first_with_offset_seven() -> None:
    # One group whose max |w| is 7 -> scale 1, so q = w + 7 exactly.
    row = np.array([[j - 7 for j in range(15)] + [0] * 17], dtype=np.float32)
    q_weight, q_scale = quantize_q4(row)
    assert q_scale.tolist() == [[1.0]]
    assert q_weight.dtype == np.uint32
    assert q_weight.shape == (1, 4)
    assert int(q_weight[0, 0]) == sum(j << (4 * j) for j in range(8))
    assert int(q_weight[0, 1]) == sum((8 + j) << (4 * j) for j in range(7)) | (7 << 28)
    np.testing.assert_array_equal(dequantize_q4(q_weight, q_scale), row)


@pytest.mark.parametrize("scale_dtype", ["float32", "float16"])
def test_q4_round_trip_error_is_within_half_a_step(scale_dtype: str) -> None:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((48, 256)).astype(np.float32) * rng.uniform(0.01, 3, (48, 1)).astype(np.float32)
    w[3, 32:64] = 0.0  # an all-zero group must survive (scale 0)
    q_weight, q_scale = quantize_q4(w, scale_dtype)
    assert q_scale.dtype == np.dtype(scale_dtype)
    back = dequantize_q4(q_weight, q_scale)
    step = np.repeat(q_scale.astype(np.float32), 32, axis=1)
    slack = 7 * step * (2.0**-10 if scale_dtype == "float16" else 1e-6)  # f16-rounded scale may clip
    assert np.all(np.abs(back - w) <= step / 2 + slack + 1e-7)
    assert np.all(back[3, 32:64] == 0.0)
    nibbles = (q_weight[:, :, None] >> (np.arange(8, dtype=np.uint32) * 4)) & 0xF
    assert nibbles.max() <= 14


# -- writer / reader ------------------------------------------------------------------------------


def _dir_bytes(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


@pytest.mark.parametrize("quantization", ["q0f32", "q4f32_1", "q4f16_1"])
def test_tiny_model_is_reproducible_byte_for_byte(tmp_path: Path, quantization: str) -> None:
    make_tiny_model.main(["--out", str(tmp_path / "a"), "--quantization", quantization])
    make_tiny_model.main(["--out", str(tmp_path / "b"), "--quantization", quantization])
    a, b = _dir_bytes(tmp_path / "a"), _dir_bytes(tmp_path / "b")
    assert a == b
    assert set(a) == {"mlc-chat-config.json", "tensor-cache.json", "params_shard_0.bin", "tokenizer.json"}
    make_tiny_model.main(["--out", str(tmp_path / "c"), "--quantization", quantization, "--seed", "1"])
    assert _dir_bytes(tmp_path / "c")["params_shard_0.bin"] != a["params_shard_0.bin"]


def test_tensor_cache_json_records_digests_and_sorted_keys(tmp_path: Path) -> None:
    make_tiny_model.main(["--out", str(tmp_path), "--quantization", "q4f32_1"])
    raw = (tmp_path / "tensor-cache.json").read_text()
    cache = json.loads(raw)
    assert raw == json.dumps(cache, sort_keys=True, indent=2) + "\n"
    for shard in cache["records"]:
        blob = (tmp_path / shard["dataPath"]).read_bytes()
        assert shard["format"] == "raw-shard"
        assert shard["nbytes"] == len(blob)
        assert cache["metadata"]["sha256"][shard["dataPath"]] == hashlib.sha256(blob).hexdigest()
        for rec in shard["records"]:
            assert rec["format"] == "raw"
            assert rec["byteOffset"] % 4 == 0
            assert rec["byteOffset"] + rec["nbytes"] <= len(blob)
    names = [r["name"] for s in cache["records"] for r in s["records"]]
    assert "model.layers.0.self_attn.qkv_proj.q_weight" in names
    assert "model.layers.0.input_layernorm.weight" in names
    assert "lm_head.q_scale" in names


def test_shards_respect_the_limit_and_read_back_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    tensors = {f"t{i}": rng.standard_normal((i + 1, 37)).astype(np.float32) for i in range(40)}
    tensors["odd"] = np.arange(3, dtype=np.float16)  # 6 bytes: the next record must stay aligned
    tensors["big"] = rng.standard_normal((64, 64)).astype(np.float32)  # 16 KiB > limit: own shard
    cache = write_tensor_cache(tmp_path, tensors.items(), shard_limit=4096)
    assert len(cache["records"]) > 3
    for shard in cache["records"]:
        assert shard["nbytes"] <= 4096 or len(shard["records"]) == 1
    (tmp_path / "mlc-chat-config.json").write_text("{}")
    back = read_model_dir(tmp_path).tensors
    assert list(back) == list(tensors)
    for name, array in tensors.items():
        assert back[name].dtype == array.dtype
        np.testing.assert_array_equal(back[name], array)


def test_reader_dequantises_to_the_writers_weights(tmp_path: Path) -> None:
    params = make_tiny_model.tiny_params()
    for quantization in ("q0f32", "q4f32_1", "q4f16_1"):
        out = tmp_path / quantization
        make_tiny_model.build(out, quantization)
        model = read_model_dir(out)
        weights = model.weights()
        assert set(weights) == set(params)
        norm = model.tensors["model.norm.weight"]
        assert norm.dtype == (np.float16 if quantization == "q4f16_1" else np.float32)
        for name, w in params.items():
            if quantization == "q0f32":
                np.testing.assert_array_equal(weights[name], w)
            else:
                # Half a quantisation step of the row's largest group, at most.
                bound = np.abs(w).max(axis=-1, keepdims=True) / 7 / 2 * 1.01 + 1e-3
                assert np.all(np.abs(weights[name] - w) <= bound), name


def test_write_model_dir_takes_params_or_stored_not_both(tmp_path: Path) -> None:
    config = make_tiny_model.chat_config(make_tiny_model.TINY, "q0f32")
    with pytest.raises(ValueError, match="exactly one of params and stored"):
        write_model_dir(tmp_path, config, b"{}")


# -- tiny model config and tokenizer --------------------------------------------------------------


def test_tiny_chat_config_matches_the_spec(tmp_path: Path) -> None:
    make_tiny_model.build(tmp_path, "q0f32")
    config = json.loads((tmp_path / "mlc-chat-config.json").read_text())
    mc = config["model_config"]
    assert (mc["hidden_size"], mc["num_hidden_layers"], mc["num_attention_heads"]) == (64, 2, 4)
    assert (mc["num_key_value_heads"], mc["head_dim"], mc["intermediate_size"]) == (2, 16, 128)
    assert (mc["vocab_size"], mc["rope_theta"], mc["rms_norm_eps"]) == (512, 10000.0, 1e-5)
    assert mc["tie_word_embeddings"] is False
    assert (config["context_window_size"], config["prefill_chunk_size"]) == (256, 16)
    conv = config["conv_template"]
    assert conv["name"] == "chatml"
    assert conv["system_template"] == "<|im_start|>system\n{system_message}<|im_end|>\n"
    assert conv["roles"] == {"user": "<|im_start|>user", "assistant": "<|im_start|>assistant"}
    assert conv["seps"] == ["<|im_end|>\n"]
    assert conv["stop_str"] == ["<|im_end|>"]
    assert (conv["role_content_sep"], conv["role_empty_sep"]) == ("\n", "\n")
    assert conv["system_prefix_token_ids"] is None
    tok = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert conv["stop_token_ids"] == [tok.token_to_id("<|im_end|>")] == [IM_END]
    assert tok.token_to_id("<|im_start|>") == IM_START


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    path.write_bytes(byte_level_tokenizer_json())
    return path


def test_byte_level_tokenizer_round_trips_utf8_in_the_wheel(tokenizer_path: Path) -> None:
    tok = Tokenizer.from_file(str(tokenizer_path))
    assert tok.get_vocab_size() == 512
    for text in TEXTS:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert tok.decode(ids, skip_special_tokens=False) == text
        plain = text.replace("<|im_start|>", "").replace("<|im_end|>", "")
        if plain == text:
            assert ids == list(text.encode("utf-8"))  # one token per byte, id = byte
    assert tok.encode("<|im_end|>x", add_special_tokens=False).ids == [IM_END, ord("x")]
    assert tok.decode([0xF0, 0x9F]) == "\ufffd"  # an incomplete UTF-8 sequence


_NODE_LOADER = r"""
// @mlc-ai/web-tokenizers is a UMD bundle that needs CommonJS globals: compile it as CommonJS.
import { Module } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";
const [entry, tokPath, textsJson] = process.argv.slice(2);
const mod = new Module(entry);
mod.filename = entry;
mod.paths = Module._nodeModulePaths(path.dirname(entry));
mod._compile(readFileSync(entry, "utf8"), entry);
const buf = readFileSync(tokPath);
const bytes = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length);
const tok = await mod.exports.Tokenizer.fromJSON(bytes);
const cases = JSON.parse(textsJson).map((text) => {
  const ids = Array.from(tok.encode(text));
  return { ids, decoded: tok.decode(Int32Array.from(ids)) };
});
const partial = tok.decode(Int32Array.from([240, 159]));
console.log(JSON.stringify({ vocab: tok.getVocabSize(), cases, partial }));
"""


def test_web_tokenizers_agrees_with_the_wheel(tokenizer_path: Path, tmp_path: Path) -> None:
    entry = REPO / "node_modules/@mlc-ai/web-tokenizers/lib/index.js"
    node = shutil.which("node")
    if node is None or not entry.exists():
        pytest.skip("node or @mlc-ai/web-tokenizers not installed")
    script = tmp_path / "check.mjs"
    script.write_text(_NODE_LOADER)
    run = subprocess.run(
        [node, str(script), str(entry), str(tokenizer_path), json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    tok = Tokenizer.from_file(str(tokenizer_path))
    assert result["vocab"] == 512
    for text, case in zip(TEXTS, result["cases"], strict=True):
        assert case["ids"] == tok.encode(text, add_special_tokens=False).ids
        assert case["decoded"] == text
    assert result["partial"] == "\ufffd"


# -- random models --------------------------------------------------------------------------------

SMALL_QWEN = LlamaShape(
    model_type="qwen2",
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    intermediate_size=96,
    vocab_size=700,
    rope_theta=1e6,
    tie_word_embeddings=True,
)


def test_real_shapes_have_the_published_sizes() -> None:
    def count(shape: LlamaShape) -> int:
        return sum(int(np.prod(d)) for _, d in make_tiny_model.param_shapes(shape))

    shapes = make_random_model.SHAPES
    assert count(shapes["smollm2-135m"]) == 134_515_008  # SmolLM2-135M
    assert count(shapes["qwen2-0.5b"]) == 494_032_768  # Qwen2-0.5B
    assert count(shapes["llama-3.2-1b"]) == 1_235_814_400  # Llama-3.2-1B
    names = dict(make_tiny_model.param_shapes(shapes["qwen2-0.5b"]))
    assert names["model.layers.0.self_attn.c_attn.bias"] == ((14 + 2 * 2) * 64,)  # MLC's Qwen2 name
    assert "lm_head.weight" not in names


@pytest.mark.parametrize("quantization", ["q0f32", "q4f32_1", "q4f16_1"])
def test_random_tensors_are_valid_and_scaled(quantization: str) -> None:
    stored = dict(make_random_model.random_tensors(SMALL_QWEN, quantization, seed=3))
    expected = dict(make_tiny_model.param_shapes(SMALL_QWEN))
    weights = dequantize_tensors(stored)
    assert {k: v.shape for k, v in weights.items()} == expected
    for name, w in weights.items():
        if w.ndim == 2:
            assert 0.5 < float(w.std()) * np.sqrt(w.shape[1]) < 1.5, name
    for name, words in stored.items():
        if name.endswith(".q_weight"):
            nibbles = (words[:, :, None] >> (np.arange(8, dtype=np.uint32) * 4)) & 0xF
            assert nibbles.max() <= 14, name
            assert nibbles.min() == 0, name
    if quantization != "q0f32":
        assert stored["model.embed_tokens.q_weight"].dtype == np.uint32
        assert "model.embed_tokens.weight" not in stored


def test_make_random_model_cli_writes_a_loadable_dir(tmp_path: Path) -> None:
    make_random_model.main(["--shape", "tiny", "--quantization", "q4f16_1", "--out", str(tmp_path)])
    model = read_model_dir(tmp_path)
    assert model.config["quantization"] == "q4f16_1"
    assert model.tensors["lm_head.q_scale"].dtype == np.float16
    assert set(model.weights()) == set(make_tiny_model.tiny_params())
