"""py_worker/reference/ggml.py against the gguf package's own decoders, format by format.

Random blocks (uniform quant bytes, finite f16 scales) of several rows must decode to exactly
what ``gguf.quants.dequantize`` gives; a type we do not read raises UnsupportedWeightFormatError
naming the tensor and the type.
"""

from __future__ import annotations

import numpy as np
import pytest

from py_worker.errors import ModelLoadError, UnsupportedWeightFormatError
from py_worker.reference import ggml

gguf = pytest.importorskip("gguf")

COLS = {ggml.F32: 96, ggml.F16: 96, ggml.Q4_0: 96, ggml.Q4_1: 96, ggml.Q8_0: 96}
COLS.update({ggml.Q4_K: 768, ggml.Q5_K: 768, ggml.Q6_K: 768})


@pytest.mark.parametrize("ggml_type", list(ggml.BLOCKS), ids=ggml.type_name)
def test_dequantize_equals_gguf_package(ggml_type: int) -> None:
    rng = np.random.default_rng(ggml_type)
    rows, cols = 7, COLS[ggml_type]
    raw = ggml.random_raw(rng, ggml_type, rows, cols)
    assert raw.shape == (rows, ggml.row_bytes(ggml_type, cols))
    ours = ggml.dequantize(raw, ggml_type, rows, cols)
    theirs = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType(ggml_type)).reshape(rows, cols)
    assert ours.dtype == np.float32
    assert ours.shape == (rows, cols)
    assert np.isfinite(ours).all()
    np.testing.assert_array_equal(ours, theirs)
    # Not all zero or constant: the random bytes exercise every bit of the layout.
    assert len(np.unique(ours)) > cols // 2


def test_block_table_matches_gguf_package() -> None:
    for t, sizes in ggml.BLOCKS.items():
        assert gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(t)] == sizes
        assert gguf.GGMLQuantizationType(t).name == ggml.type_name(t)


def test_unsupported_type_is_named() -> None:
    with pytest.raises(UnsupportedWeightFormatError) as e:
        ggml.dequantize(np.zeros(22, np.uint8), 6, 1, 32, tensor="blk.0.attn_q.weight")
    assert isinstance(e.value, ModelLoadError)
    assert e.value.fields == {"tensor": "blk.0.attn_q.weight", "ggml_type": 6, "type_name": "Q5_0"}
    assert "Q5_0" in e.value.message
    assert "blk.0.attn_q.weight" in e.value.message
    with pytest.raises(UnsupportedWeightFormatError) as e:
        ggml.check_supported(99)
    assert e.value.fields == {"tensor": "", "ggml_type": 99, "type_name": "type 99"}


def test_wrong_byte_count_is_a_load_error() -> None:
    with pytest.raises(ModelLoadError, match="do not hold"):
        ggml.dequantize(np.zeros(35, np.uint8), ggml.Q8_0, 1, 32, tensor="t")
