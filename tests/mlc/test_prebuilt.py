"""py_worker.prebuilt: the app config of local defaults and MLC prebuilt models."""

from __future__ import annotations

import re
from typing import Any

from py_worker import prebuilt
from py_worker.prebuilt_lists import RELEASES
from py_worker.router import find_record
from tools.prebuilt_lists import shipped_runtimes
from tools.site import tvmjs_runtimes


def test_default_model_leads_and_ids_are_unique() -> None:
    records = prebuilt.prebuilt_app_config()["model_list"]
    ids = [r["model_id"] for r in records]
    assert ids[0] == prebuilt.DEFAULT_MODEL_ID == "SmolLM2-135M-Instruct-Q4_1"
    assert len(ids) == len(set(ids))
    assert {"tiny-llama-q0f32", "all-MiniLM-L6-v2-q0f32"} <= set(ids)


def test_the_default_gguf_opens_the_context_web_llm_gives_smollm2() -> None:
    default = find_record(prebuilt.prebuilt_app_config(), prebuilt.DEFAULT_MODEL_ID)
    webllm = {r["model_id"]: r for r in RELEASES[0]["model_list"] if r["model_id"].startswith("SmolLM2-135M")}
    assert webllm, "web-llm's newest list has no SmolLM2-135M record"
    windows = {r["overrides"]["context_window_size"] for r in webllm.values()}
    assert default["overrides"]["context_window_size"] in windows
    assert default["overrides"]["temperature"] == prebuilt.SMOLLM2_SAMPLING["temperature"]


def test_local_models_come_from_the_sites_own_origin() -> None:
    for record in prebuilt.LOCAL_MODELS:
        gguf = record["model"].endswith(".gguf")
        if gguf:
            assert record["model"].removeprefix("models/") in (prebuilt.DEFAULT_GGUF, prebuilt.MINILM_GGUF)
        else:
            assert record["model"] == f"models/{record['model_id']}/"
        assert "model_lib" not in record  # so backends.js runs them on wgsl
    kinds = {r["model_id"]: r["model_type"] for r in prebuilt.LOCAL_MODELS}
    assert kinds["all-MiniLM-L6-v2-q0f32"] == kinds["all-MiniLM-L6-v2-F32-gguf"] == "embedding"


def listed_by(tvmjs: str) -> dict[str, dict[str, Any]]:
    """web-llm's own records (as generated) of the release built on ``tvmjs``, by id."""
    release = next(r for r in RELEASES if r["tvmjs"] == tvmjs)
    return {r["model_id"]: r for r in release["model_list"]}


def test_mlc_records_name_hugging_face_repositories_and_matching_libraries() -> None:
    assert len(prebuilt.MLC_PREBUILT) >= 100
    for record in prebuilt.MLC_PREBUILT:
        model_id = record["model_id"]
        directory = re.sub(r"-(1k|b\d+)$", "", model_id)  # web-llm's context / batch variants
        assert record["model"] == f"https://huggingface.co/mlc-ai/{directory}"  # loader.js: its resolve/main/
        lib = record["model_lib"]
        folder = prebuilt.MODEL_LIB_FOLDERS[record["tvmjs_version"]]
        assert lib.startswith(f"{prebuilt.MODEL_LIB_URL_PREFIX}{folder}/"), (model_id, lib)
        assert lib.endswith("-webgpu.wasm")
        quant = re.search(r"q\d+f\d+(_\d)?", model_id)
        assert quant is not None, (model_id, lib)
        assert quant.group(0) in lib, (model_id, lib)
        assert record["model_type"] in ("LLM", "embedding")


def test_records_keep_what_web_llm_lists() -> None:
    """required_features, overrides, VRAM and the library are web-llm's own (an f16 record need not
    ask for shader-f16: web-llm asks for it on some only); embeddings pool by the first token."""
    kinds = {None: "LLM", 1: "embedding"}
    for record in prebuilt.MLC_PREBUILT:
        listed = listed_by(record["tvmjs_version"])[record["model_id"]]
        assert record["model_lib"] == listed["model_lib"]
        assert record["model"] == listed["model"]
        assert record.get("required_features") == listed.get("required_features")
        assert record.get("vram_required_MB") == listed.get("vram_required_MB")
        assert record["model_type"] == kinds[listed.get("model_type")]
        overrides = dict(listed.get("overrides", {}))
        if record["model_type"] == "embedding":
            overrides["pooling"] = "cls"
        assert record.get("overrides", {}) == overrides
        if record.get("required_features"):
            assert record["required_features"] == ["shader-f16"]
            assert "f16" in record["model_id"]


def test_every_tvmjs_version_is_a_shipped_runtime_with_its_release_folder() -> None:
    shipped = shipped_runtimes()
    assert [r["tvmjs"] for r in RELEASES] == shipped  # one release per runtime, newest first
    assert list(prebuilt.MLC_PREBUILT_BY_RUNTIME) == shipped
    assert {r["tvmjs_version"] for r in prebuilt.MLC_PREBUILT} <= set(shipped)
    assert set(tvmjs_runtimes()) == set(shipped)  # what the site copies (node_modules)
    assert list(prebuilt.MODEL_LIB_FOLDERS) == shipped
    assert prebuilt.MODEL_LIB_FOLDERS[shipped[0]] == prebuilt.MODEL_LIB_VERSION
    for tvmjs, records in prebuilt.MLC_PREBUILT_BY_RUNTIME.items():
        folder = prebuilt.MODEL_LIB_URL_PREFIX + prebuilt.MODEL_LIB_FOLDERS[tvmjs] + "/"
        assert records
        assert all(r["tvmjs_version"] == tvmjs and r["model_lib"].startswith(folder) for r in records)


def test_ids_are_unique_and_the_newest_release_listing_an_id_wins() -> None:
    ids = [r["model_id"] for r in prebuilt.MLC_PREBUILT]
    assert len(ids) == len(set(ids))
    lists = list(prebuilt.MLC_PREBUILT_BY_RUNTIME.values())
    assert set(ids) == {r["model_id"] for records in lists for r in records}
    for record in prebuilt.MLC_PREBUILT:
        newest = next(rs for rs in lists if any(r["model_id"] == record["model_id"] for r in rs))
        assert record in newest
    # Listed by every release, so the newest (web-llm 0.2.85, no "-ctx4k" in its names) wins:
    # 0.2.79 serves it with v0_2_48's Qwen2-0.5B ctx4k_cs1k library.
    qwen = next(r for r in prebuilt.MLC_PREBUILT if r["model_id"] == "Qwen2.5-0.5B-Instruct-q4f32_1-MLC")
    assert qwen["tvmjs_version"] == "0.27.0-dev0"
    assert qwen["model_lib"].endswith("/v0_2_84/base/Qwen2-0.5B-Instruct-q4f32_1_cs1k-webgpu.wasm")
    old = listed_by("0.18.0-dev2")["Qwen2.5-0.5B-Instruct-q4f32_1-MLC"]["model_lib"]
    assert old.endswith("/v0_2_48/Qwen2-0.5B-Instruct-q4f32_1-ctx4k_cs1k-webgpu.wasm")
    by_018 = {r["model_id"]: r for r in prebuilt.MLC_PREBUILT_BY_RUNTIME["0.18.0-dev2"]}
    assert by_018["Qwen2.5-0.5B-Instruct-q4f32_1-MLC"]["model_lib"] == old


def test_vlm_records_are_left_out() -> None:
    vlms = {r["model_id"] for rel in RELEASES for r in rel["model_list"] if r.get("model_type") == 2}
    assert "Phi-3.5-vision-instruct-q4f16_1-MLC" in vlms
    kept = {r["model_id"] for records in prebuilt.MLC_PREBUILT_BY_RUNTIME.values() for r in records}
    assert not vlms & kept


def test_every_id_resolves_through_the_router_and_offline_drops_mlc() -> None:
    config = prebuilt.prebuilt_app_config()
    for record in config["model_list"]:
        assert find_record(config, record["model_id"]) == record
    offline = prebuilt.prebuilt_app_config(include_mlc=False)["model_list"]
    assert [r["model_id"] for r in offline] == [r["model_id"] for r in prebuilt.LOCAL_MODELS]


def test_each_call_returns_a_fresh_copy() -> None:
    first = prebuilt.prebuilt_app_config()
    first["model_list"][0]["model"] = "elsewhere/"
    first["model_list"].pop()
    again = prebuilt.prebuilt_app_config()
    assert again["model_list"][0]["model"] == f"models/{prebuilt.DEFAULT_GGUF}"
    assert len(again["model_list"]) == len(prebuilt.LOCAL_MODELS) + len(prebuilt.MLC_PREBUILT)
