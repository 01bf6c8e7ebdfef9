"""Decode the tensors of an MLC model dir (host-only, numpy): shard records and q4 groups.

Shared by the reference backend and ``tools/mlc_format.py`` so the writer's round trip and the
loader read the format through one implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

GROUP = 32
"""Inputs per quantisation group (MLC's ``group_size``)."""

DTYPES: dict[str, np.dtype[Any]] = {
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "uint32": np.dtype("<u4"),
    "int32": np.dtype("<i4"),
    "uint8": np.dtype("u1"),
}


def dequantize_q4(q_weight: np.ndarray, q_scale: np.ndarray) -> np.ndarray:
    """``[out, in/8]`` uint32 words + ``[out, in/32]`` scales -> f32 ``[out, in]``, w = (q - 7) * s."""
    out_dim, words = q_weight.shape
    shifts = (np.arange(8, dtype=np.uint32) * 4)[None, None, :]
    q = (q_weight.astype(np.uint32)[:, :, None] >> shifts) & np.uint32(0xF)
    vals = q.reshape(out_dim, words * 8 // GROUP, GROUP).astype(np.float32) - np.float32(7.0)
    return (vals * q_scale.astype(np.float32)[:, :, None]).reshape(out_dim, words * 8)


def dequantize_tensors(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """f32 tensors by logical name (``x.q_weight`` + ``x.q_scale`` become ``x.weight``)."""
    out: dict[str, np.ndarray] = {}
    for name, array in tensors.items():
        if name.endswith(".q_scale"):
            continue
        if name.endswith(".q_weight"):
            base = name[: -len(".q_weight")]
            out[f"{base}.weight"] = dequantize_q4(array, tensors[f"{base}.q_scale"])
        else:
            out[name] = array.astype(np.float32)
    return out


def read_shard(blob: bytes, records: Iterable[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Decode one shard's tensors (``raw`` and MLC's ``f32-to-bf16``) into numpy arrays."""
    out: dict[str, np.ndarray] = {}
    for rec in records:
        start, nbytes = int(rec["byteOffset"]), int(rec["nbytes"])
        shape = tuple(int(d) for d in rec["shape"])
        chunk = blob[start : start + nbytes]
        if rec.get("format", "raw") == "f32-to-bf16":
            bits = np.frombuffer(chunk, dtype="<u2").astype(np.uint32) << np.uint32(16)
            out[str(rec["name"])] = bits.view(np.float32).reshape(shape)
        else:
            out[str(rec["name"])] = np.frombuffer(chunk, dtype=DTYPES[str(rec["dtype"])]).reshape(shape)
    return out


def cache_file(model_dir: Path) -> Path:
    """``tensor-cache.json``, or the older ``ndarray-cache.json`` name."""
    path = model_dir / "tensor-cache.json"
    return path if path.exists() else model_dir / "ndarray-cache.json"
