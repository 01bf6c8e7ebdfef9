"""The config defaults (a key absent from mlc-chat-config.json) are the same in Python and in
the WGSL kernels: ``llamaDims`` in js_glue/kernels/llama.js is read as text and compared with
py_worker/kernels.py's constants, which the engine and the NumPy reference use."""

from __future__ import annotations

import re
from pathlib import Path

from py_worker import kernels, model
from py_worker.reference.llama import LlamaConfig, context_window

LLAMA_JS = Path(__file__).resolve().parents[2] / "js_glue" / "kernels" / "llama.js"


def js_default(key: str) -> float:
    """The default of ``key`` in llamaDims: ``top("key", N)`` or ``pick("key", N)``."""
    found = re.findall(rf'\b(?:top|pick)\("{key}",\s*([0-9.eE+-]+)\)', LLAMA_JS.read_text())
    assert len(found) == 1, f"llama.js should give {key} one default, found {found}"
    return float(found[0])


def test_llama_js_defaults_match_python() -> None:
    assert js_default("context_window_size") == kernels.DEFAULT_CONTEXT_WINDOW
    assert js_default("prefill_chunk_size") == kernels.DEFAULT_PREFILL_CHUNK
    assert js_default("rms_norm_eps") == kernels.DEFAULT_RMS_NORM_EPS


def test_python_sides_use_the_same_defaults() -> None:
    assert (model.DEFAULT_CONTEXT_WINDOW, model.DEFAULT_PREFILL_CHUNK) == (
        kernels.DEFAULT_CONTEXT_WINDOW,
        kernels.DEFAULT_PREFILL_CHUNK,
    )
    bare = {
        "model_type": "llama",
        "model_config": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "vocab_size": 256,
        },
    }
    cfg = LlamaConfig.from_chat_config(bare)
    assert cfg.rms_norm_eps == kernels.DEFAULT_RMS_NORM_EPS
    assert cfg.context_window_size == context_window(bare) == kernels.DEFAULT_CONTEXT_WINDOW
