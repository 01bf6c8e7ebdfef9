"""ggml (GGUF) weight blocks -> f32, in NumPy: the twin of js_glue/kernels/wgsl/ggml.js (host only).

The WGSL kernels read a GGUF tensor's bytes exactly as they sit in the file and dequantise in
the shader; this module decodes the same bytes the same way, one small function per format,
so a kernel test can say what every weight should be without trusting the kernel. The layouts
are ggml's (``dequantize_row_*`` in llama.cpp's ggml-quants.c); the tests check them against
the ``gguf`` package's own decoders.

A GGUF tensor of ggml shape ``[cols, rows]`` is ``rows x cols`` row-major: each row is a run of
``cols / block_inputs`` blocks of ``block_bytes`` bytes. All block sizes are even, so a block
starts at a 2-byte boundary (not always a 4-byte one).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from py_worker.errors import ModelLoadError, UnsupportedWeightFormatError

F32, F16, Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K = 0, 1, 2, 3, 8, 12, 13, 14
"""The ggml type ids (``enum ggml_type``) the kernels read."""

BLOCKS: dict[int, tuple[int, int]] = {
    F32: (1, 4),
    F16: (1, 2),
    Q4_0: (32, 18),
    Q4_1: (32, 20),
    Q8_0: (32, 34),
    Q4_K: (256, 144),
    Q5_K: (256, 176),
    Q6_K: (256, 210),
}
"""``(block_inputs, block_bytes)`` of every supported type."""

NAMES: dict[int, str] = {
    **{F32: "F32", F16: "F16", Q4_0: "Q4_0", Q4_1: "Q4_1", Q8_0: "Q8_0"},
    **{Q4_K: "Q4_K", Q5_K: "Q5_K", Q6_K: "Q6_K"},
    # Known to ggml but not read here: named so the error says what the file holds.
    **{6: "Q5_0", 7: "Q5_1", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 15: "Q8_K", 16: "IQ2_XXS"},
    **{17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S"},
    **{23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M"},
    **{30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4"},
}
"""ggml's name of each type id (unknown ids are named ``type <id>``)."""

F16_FIELDS: dict[int, tuple[int, ...]] = {
    Q4_0: (0,),
    Q4_1: (0, 2),
    Q8_0: (0,),
    Q4_K: (0, 2),
    Q5_K: (0, 2),
    Q6_K: (208,),
}
"""Byte offsets of the f16 scales (and mins) inside a block: what random test blocks must keep finite."""


def type_name(ggml_type: int) -> str:
    return NAMES.get(ggml_type, f"type {ggml_type}")


def check_supported(ggml_type: int, tensor: str = "") -> tuple[int, int]:
    """``(block_inputs, block_bytes)`` of a type, or UnsupportedWeightFormatError naming the tensor."""
    if ggml_type not in BLOCKS:
        name = type_name(ggml_type)
        where = f"tensor {tensor!r} " if tensor else ""
        raise UnsupportedWeightFormatError(
            f"{where}uses ggml type {name} ({ggml_type}); supported: {', '.join(NAMES[t] for t in BLOCKS)}",
            tensor=tensor,
            ggml_type=ggml_type,
            type_name=name,
        )
    return BLOCKS[ggml_type]


def row_bytes(ggml_type: int, cols: int) -> int:
    """Bytes of one row of ``cols`` inputs (a whole number of blocks)."""
    inputs, nbytes = check_supported(ggml_type)
    return cols // inputs * nbytes


def _f16(blocks: np.ndarray, at: int) -> np.ndarray:
    """The f16 at byte ``at`` of every block, as f32 ``[n_blocks, 1]``."""
    return blocks[:, at : at + 2].copy().view("<f2").astype(np.float32)


def _f32_rows(blocks: np.ndarray) -> np.ndarray:
    """F32: 4 bytes per input."""
    return blocks.copy().view("<f4")


def _f16_rows(blocks: np.ndarray) -> np.ndarray:
    """F16: 2 bytes per input."""
    return blocks.copy().view("<f2").astype(np.float32)


def _q4_0(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 (18 bytes): f16 d, qs[16]; input j in the low nibble of qs[j], j+16 in the high. (q-8)*d."""
    d, qs = _f16(blocks, 0), blocks[:, 2:18]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
    out: np.ndarray = (q - 8) * d
    return out


def _q4_1(blocks: np.ndarray) -> np.ndarray:
    """Q4_1 (20 bytes): f16 d, f16 m, qs[16] (nibbles as Q4_0). q*d + m."""
    d, m, qs = _f16(blocks, 0), _f16(blocks, 2), blocks[:, 4:20]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
    out: np.ndarray = q * d + m
    return out


def _q8_0(blocks: np.ndarray) -> np.ndarray:
    """Q8_0 (34 bytes): f16 d, int8 qs[32]. q*d."""
    q = blocks[:, 2:34].copy().view(np.int8).astype(np.float32)
    out: np.ndarray = q * _f16(blocks, 0)
    return out


def _scale_min_k4(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ggml's get_scale_min_k4: 12 bytes -> 8 six-bit scales and 8 six-bit mins, each ``[n, 8]``.

    Sub-blocks 0..3 keep their low 6 bits in bytes 0..3 (scale) and 4..7 (min); sub-blocks 4..7
    take their low 4 bits from bytes 8..11 (scale low nibble, min high nibble) and their top 2
    bits from the spare top bits of bytes 0..3 (scale) and 4..7 (min).
    """
    lo, mid, hi = packed[:, 0:4], packed[:, 4:8], packed[:, 8:12]
    scale = np.concatenate([lo & 63, (hi & 0x0F) | ((lo >> 6) << 4)], axis=1)
    mins = np.concatenate([mid & 63, (hi >> 4) | ((mid >> 6) << 4)], axis=1)
    return scale.astype(np.float32), mins.astype(np.float32)


def _k_scales(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K / Q5_K: d*scale and dmin*min per 32-input sub-block, each ``[n, 8, 1]``."""
    scale, mins = _scale_min_k4(blocks[:, 4:16])
    return (_f16(blocks, 0) * scale)[:, :, None], (_f16(blocks, 2) * mins)[:, :, None]


def _q4_k(blocks: np.ndarray) -> np.ndarray:
    """Q4_K (144 bytes): f16 d, f16 dmin, scales[12], qs[128]. Sub-block j (32 inputs) is the
    low (j even) or high (j odd) nibble of qs[32*(j//2) : +32]; value = d*sc[j]*q - dmin*m[j]."""
    n = blocks.shape[0]
    qs = blocks[:, 16:144].reshape(n, 4, 1, 32)
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=2).reshape(n, 8, 32).astype(np.float32)
    d, dm = _k_scales(blocks)
    out: np.ndarray = (d * q - dm).reshape(n, 256)
    return out


def _q5_k(blocks: np.ndarray) -> np.ndarray:
    """Q5_K (176 bytes): d, dmin, scales[12], qh[32], qs[128]. Q4_K's nibbles plus a fifth bit:
    input l of sub-block j has bit j of qh[l] as its bit 4."""
    n = blocks.shape[0]
    qh = blocks[:, 16:48].reshape(n, 1, 32)
    qs = blocks[:, 48:176].reshape(n, 4, 1, 32)
    low = np.concatenate([qs & 0x0F, qs >> 4], axis=2).reshape(n, 8, 32)
    high = (qh >> np.arange(8, dtype=np.uint8).reshape(1, 8, 1)) & 1
    q = (low | (high << 4)).astype(np.float32)
    d, dm = _k_scales(blocks)
    out: np.ndarray = (d * q - dm).reshape(n, 256)
    return out


def _q6_k(blocks: np.ndarray) -> np.ndarray:
    """Q6_K (210 bytes): ql[128], qh[64], int8 scales[16], f16 d. Half h (128 inputs) holds 4
    sub-blocks r: low 4 bits from ql[64h + 32*(r%2) + l] (nibble r//2), top 2 bits from
    qh[32h + l] >> 2r; every 16 inputs have their own scale. value = d*scale*(q - 32)."""
    n = blocks.shape[0]
    ql = blocks[:, 0:128].reshape(n, 2, 1, 2, 32)  # [half, nibble, r % 2, l]
    qh = blocks[:, 128:192].reshape(n, 2, 1, 32)  # [half, r, l]
    scale = blocks[:, 192:208].copy().view(np.int8).astype(np.float32)
    low = np.concatenate([ql & 0x0F, ql >> 4], axis=2).reshape(n, 2, 4, 32)
    high = (qh >> (2 * np.arange(4, dtype=np.uint8)).reshape(1, 1, 4, 1)) & 3
    q = ((low | (high << 4)).astype(np.int8) - 32).astype(np.float32).reshape(n, 16, 16)
    d = (_f16(blocks, 208) * scale)[:, :, None]
    out: np.ndarray = (d * q).reshape(n, 256)
    return out


DECODERS: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    F32: _f32_rows,
    F16: _f16_rows,
    Q4_0: _q4_0,
    Q4_1: _q4_1,
    Q8_0: _q8_0,
    Q4_K: _q4_k,
    Q5_K: _q5_k,
    Q6_K: _q6_k,
}
"""Per type: uint8 ``[n_blocks, block_bytes]`` -> f32 ``[n_blocks, block_inputs]``."""


def dequantize(raw: np.ndarray, ggml_type: int, rows: int, cols: int, tensor: str = "") -> np.ndarray:
    """A GGUF tensor's raw bytes (ggml shape ``[cols, rows]``) -> f32 ``[rows, cols]``."""
    inputs, nbytes = check_supported(ggml_type, tensor)
    data = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    if cols % inputs or data.size != rows * (cols // inputs) * nbytes:
        raise ModelLoadError(
            f"tensor {tensor!r}: {data.size} bytes do not hold {rows} x {cols} {type_name(ggml_type)}",
            tensor=tensor,
        )
    blocks = data.reshape(rows * cols // inputs, nbytes)
    return DECODERS[ggml_type](blocks).reshape(rows, cols)


def random_raw(rng: np.random.Generator, ggml_type: int, rows: int, cols: int) -> np.ndarray:
    """Random bytes of a valid ``rows x cols`` tensor, uint8 ``[rows, row_bytes]``, for tests.

    Quant bytes are uniform; every f16 scale is a normal (never subnormal, inf or NaN) half of
    either sign in [0.01, 0.1), so decoders that flush subnormals still agree exactly.
    """
    inputs, nbytes = check_supported(ggml_type)
    if ggml_type in (F32, F16):
        values = rng.uniform(-2.0, 2.0, size=(rows, cols))
        return values.astype("<f4" if ggml_type == F32 else "<f2").view(np.uint8)
    blocks = rng.integers(0, 256, size=(rows * cols // inputs, nbytes), dtype=np.uint8)
    for at in F16_FIELDS[ggml_type]:
        halves = rng.uniform(0.01, 0.1, size=blocks.shape[0]) * rng.choice([-1.0, 1.0], blocks.shape[0])
        blocks[:, at : at + 2] = halves.astype("<f2").view(np.uint8).reshape(-1, 2)
    return blocks.reshape(rows, -1)
