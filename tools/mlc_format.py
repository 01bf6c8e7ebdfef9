"""Write and read MLC model directories (docs/CONTRACTS.md, "MLC model directory").

Host-only (numpy). The writer is deterministic: the same tensors and config give the same bytes
(sorted JSON keys, no timestamps, shards filled in the caller's tensor order), so a model dir can
be pinned by sha256 and rebuilt by CI.

Quantisation (MLC group quantisation, 4-bit symmetric, group size 32, per output row):
``scale = max|w| / 7`` over a group, ``q = clip(round(w / scale) + 7, 0, 14)``, eight 4-bit
values per uint32 with element j in bits 4j..4j+3, ``w ≈ (q - 7) * scale``. ``q`` is computed
from the scale as stored (f16-rounded for q4f16_1), so dequantising reproduces the writer's grid.
As in MLC, q4f16_1 stores the unquantised tensors (norms, biases) as float16, q4f32_1 as float32;
q0f32 and q0f16 store every tensor unquantised, as float32 and float16.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from py_worker.reference.weights import (
    DTYPES,
    GROUP,
    cache_file,
    dequantize_tensors,
    read_shard,
)

SHARD_LIMIT = 32 * 1024 * 1024
"""Most bytes in one ``params_shard_*.bin``; a single larger tensor gets a shard of its own."""

QUANTIZATIONS = ("q0f32", "q0f16", "q4f32_1", "q4f16_1")


def quantize_q4(w: np.ndarray, scale_dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """Group-quantise a ``[out, in]`` matrix to (``q_weight`` uint32 ``[out, in/8]``, ``q_scale``)."""
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2 or w.shape[1] % GROUP:
        raise ValueError(f"q4 needs a 2-D weight with in % {GROUP} == 0, got {w.shape}")
    out_dim, in_dim = w.shape
    groups = w.reshape(out_dim, in_dim // GROUP, GROUP)
    scale = (np.abs(groups).max(axis=2) / np.float32(7.0)).astype(DTYPES[scale_dtype])
    s32 = scale.astype(np.float32)[:, :, None]
    safe = np.where(s32 == 0, np.float32(1.0), s32)
    q = np.clip(np.round(groups / safe) + 7, 0, 14).astype(np.uint32).reshape(out_dim, in_dim // 8, 8)
    shifts = (np.arange(8, dtype=np.uint32) * 4)[None, None, :]
    packed = np.bitwise_or.reduce(q << shifts, axis=2).astype(np.uint32)
    return packed, scale


def is_quantizable(name: str, array: np.ndarray) -> bool:
    """MLC quantises every 2-D ``*.weight`` (linears, embedding, lm_head); norms and biases stay."""
    return name.endswith(".weight") and array.ndim == 2 and array.shape[1] % GROUP == 0


def quantize_params(params: Mapping[str, np.ndarray], quantization: str) -> dict[str, np.ndarray]:
    """Map f32 ``{name: array}`` to the stored tensors of ``quantization`` (order kept)."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}; known: {QUANTIZATIONS}")
    if quantization in ("q0f32", "q0f16"):
        dtype = np.float16 if quantization == "q0f16" else np.float32
        return {k: np.ascontiguousarray(v, dtype=dtype) for k, v in params.items()}
    scale_dtype = "float16" if quantization == "q4f16_1" else "float32"
    out: dict[str, np.ndarray] = {}
    for name, array in params.items():
        if is_quantizable(name, array):
            base = name[: -len(".weight")]
            out[f"{base}.q_weight"], out[f"{base}.q_scale"] = quantize_q4(array, scale_dtype)
        else:
            out[name] = np.ascontiguousarray(array, dtype=DTYPES[scale_dtype])
    return out


def _dtype_name(array: np.ndarray) -> str:
    for name, dt in DTYPES.items():
        if array.dtype == dt or array.dtype == dt.newbyteorder("="):
            return name
    raise ValueError(f"unsupported dtype {array.dtype}")


def dumps_json(obj: Any) -> bytes:
    """The one JSON spelling the writer uses: sorted keys, 2-space indent, trailing newline."""
    return (json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_tensor_cache(
    out_dir: Path, tensors: Iterable[tuple[str, np.ndarray]], shard_limit: int = SHARD_LIMIT
) -> dict[str, Any]:
    """Write ``params_shard_*.bin`` and ``tensor-cache.json``; returns the cache JSON object.

    ``tensors`` is consumed one at a time (a generator keeps a large model out of memory).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    digests: dict[str, str] = {}
    blob = bytearray()
    entries: list[dict[str, Any]] = []
    totals = [0, 0]  # logical parameter count (a q_weight word holds 8), stored bytes

    def flush() -> None:
        data_path = f"params_shard_{len(records)}.bin"
        (out_dir / data_path).write_bytes(bytes(blob))
        digests[data_path] = hashlib.sha256(blob).hexdigest()
        records.append(
            {"dataPath": data_path, "format": "raw-shard", "nbytes": len(blob), "records": entries}
        )

    for name, array in tensors:
        raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        if entries and len(blob) + len(raw) > shard_limit:
            flush()
            blob, entries = bytearray(), []
        entries.append(
            {
                "name": name,
                "shape": [int(d) for d in array.shape],
                "dtype": _dtype_name(array),
                "format": "raw",
                "byteOffset": len(blob),
                "nbytes": len(raw),
            }
        )
        blob += raw + bytes(_aligned(len(raw)) - len(raw))
        totals[0] += _logical_size(name, array)
        totals[1] += len(raw)
    if entries:
        flush()
    cache = {
        "metadata": {
            "ParamSize": totals[0],
            "ParamBytes": totals[1],
            "BitsPerParam": round(totals[1] * 8 / max(totals[0], 1), 4),
            "sha256": digests,
        },
        "records": records,
    }
    (out_dir / "tensor-cache.json").write_bytes(dumps_json(cache))
    return cache


def _logical_size(name: str, array: np.ndarray) -> int:
    """Parameters a stored tensor represents: a q_weight word holds 8, scales count as none."""
    if name.endswith(".q_scale"):
        return 0
    return int(array.size) * (8 if name.endswith(".q_weight") else 1)


def _aligned(n: int) -> int:
    """Records start on 4-byte boundaries (WebGPU copies need 4-byte sizes and offsets)."""
    return (n + 3) // 4 * 4


def write_model_dir(
    out_dir: str | Path,
    chat_config: Mapping[str, Any],
    tokenizer_json: bytes,
    params: Mapping[str, np.ndarray] | None = None,
    stored: Iterable[tuple[str, np.ndarray]] | None = None,
    shard_limit: int = SHARD_LIMIT,
) -> dict[str, Any]:
    """Write a complete MLC model dir; returns the tensor-cache JSON.

    Give either f32 ``params`` (quantised here per ``chat_config["quantization"]``) or
    ``stored``: tensors already in stored form (q_weight/q_scale), e.g. generated directly.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("params_shard_*.bin"):
        stale.unlink()
    if (params is None) == (stored is None):
        raise ValueError("give exactly one of params and stored")
    if params is not None:
        stored = quantize_params(params, str(chat_config["quantization"])).items()
    assert stored is not None
    cache = write_tensor_cache(out, stored, shard_limit)
    config = dict(chat_config)
    config.setdefault("tokenizer_files", ["tokenizer.json"])
    (out / "mlc-chat-config.json").write_bytes(dumps_json(config))
    (out / "tokenizer.json").write_bytes(tokenizer_json)
    return cache


@dataclass
class ModelDir:
    """A read MLC model dir: its chat config, cache JSON and stored tensors (as written)."""

    config: dict[str, Any]
    cache: dict[str, Any]
    tensors: dict[str, np.ndarray]

    def weights(self) -> dict[str, np.ndarray]:
        """f32 tensors by logical name: ``x.q_weight`` + ``x.q_scale`` become ``x.weight``."""
        return dequantize_tensors(self.tensors)


def shard_digest_errors(model_dir: Path, cache: Mapping[str, Any]) -> list[str]:
    """Data paths whose sha256 differs from ``metadata.sha256`` (empty when all match)."""
    expected = cache.get("metadata", {}).get("sha256", {})
    return [
        path
        for path, digest in expected.items()
        if hashlib.sha256((model_dir / path).read_bytes()).hexdigest() != digest
    ]


def read_model_dir(
    model_dir: str | Path, on_shard: Callable[[int, int, str], None] | None = None
) -> ModelDir:
    """Read every shard; ``on_shard(i, n, dataPath)`` is called after each (for progress)."""
    root = Path(model_dir)
    config = json.loads((root / "mlc-chat-config.json").read_text("utf-8"))
    cache = json.loads(cache_file(root).read_text("utf-8"))
    tensors: dict[str, np.ndarray] = {}
    shards = cache["records"]
    for i, shard in enumerate(shards):
        tensors.update(read_shard((root / shard["dataPath"]).read_bytes(), shard["records"]))
        if on_shard is not None:
            on_shard(i + 1, len(shards), str(shard["dataPath"]))
    return ModelDir(config, cache, tensors)
