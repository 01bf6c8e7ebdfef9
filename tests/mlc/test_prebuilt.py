"""py_worker.prebuilt: the app config of local defaults and MLC prebuilt models."""

from __future__ import annotations

import re

from py_worker import prebuilt
from py_worker.router import find_record


def test_default_model_leads_and_ids_are_unique() -> None:
    records = prebuilt.prebuilt_app_config()["model_list"]
    ids = [r["model_id"] for r in records]
    assert ids[0] == prebuilt.DEFAULT_MODEL_ID == "SmolLM2-135M-Instruct-Q4_1"
    assert len(ids) == len(set(ids))
    assert {"tiny-llama-q0f32", "all-MiniLM-L6-v2-q0f32"} <= set(ids)


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


def test_mlc_records_have_resolve_main_dirs_and_matching_libraries() -> None:
    assert len(prebuilt.MLC_PREBUILT) >= 5
    for record in prebuilt.MLC_PREBUILT:
        model_id = record["model_id"]
        assert record["model"] == f"https://huggingface.co/mlc-ai/{model_id}/resolve/main/"
        lib = record["model_lib"]
        assert lib.startswith(prebuilt.MODEL_LIB_PREFIX)
        assert lib.endswith("-webgpu.wasm")
        assert f"/{prebuilt.MODEL_LIB_VERSION}/" in lib
        quant = re.search(r"q\d+f\d+(_\d)?", model_id)
        assert quant is not None, (model_id, lib)
        assert quant.group(0) in lib, (model_id, lib)
        needs_f16 = "f16" in quant.group(0)
        assert (record.get("required_features") == ["shader-f16"]) == needs_f16, model_id
        assert record["model_type"] in ("LLM", "embedding")


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
