"""NumPy twin of the decode GEMV's f16 arithmetic (``f16Math`` in js_glue/kernels/wgsl/gemv.js).

MLC q4 weights with f16 scales (q4f16_1): inside each 32-input group the input, the weights
((nibble - 7) * scale, so the sums stay the size of x·w, as in MLC's own f16 kernels, instead of
1/scale times that), their products, each vec4 dot product and the group's sum of 8 dots are
float16, in the kernel's order (``((p0 + p1) + p2) + p3`` a dot, dots added left to right); the
groups of a row are added in float32, as the kernel's accumulator does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from py_worker.reference.weights import GROUP

Array = Any  # numpy.ndarray (numpy is untyped for mypy here)


@dataclass(frozen=True, eq=False)
class Q4F16:
    """A q4f16_1 matrix as the GEMV reads it: ``words`` uint32 [N, K/8], ``scales`` f16 [N, K/32]."""

    words: Array
    scales: Array

    def __matmul__(self, x: Array) -> Array:
        """``W @ x`` with f16 arithmetic inside each group: f32 [N]."""
        return q4_f16math_linear(x, self.words, self.scales)


def q4_f16math_linear(x: Array, words: Array, scales: Array) -> Array:
    """``x`` [K] (cast to float16 as the kernel casts each input vec4) -> f32 [N]."""
    n, k8 = words.shape
    groups = k8 * 8 // GROUP
    shifts = (np.arange(8, dtype=np.uint32) * 4)[None, None, :]
    nibbles = (words.astype(np.uint32)[:, :, None] >> shifts) & np.uint32(0xF)
    q = nibbles.astype(np.float16).reshape(n, groups, 8, 4) - np.float16(7.0)  # exact in f16
    w = q * np.asarray(scales).astype(np.float16)[:, :, None, None]  # dequantised, rounded to f16
    xh = np.asarray(x).astype(np.float16).reshape(1, groups, 8, 4)
    p = xh * w  # float16 products, each rounded
    dots = ((p[..., 0] + p[..., 1]) + p[..., 2]) + p[..., 3]  # [n, groups, 8] float16
    s = dots[..., 0]
    for c in range(1, 8):
        s = s + dots[..., c]
    return s.astype(np.float32).sum(axis=1, dtype=np.float32)
