"""Quantization presets: quantize -> pack -> unpack -> dequantize round trips, and the tiled
layouts the matmul kernels read (``harness.engines.tvm.kernels.matmul`` / ``matmul_gpu``)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import UserError
from harness.quantization import (
    GROUP,
    LANES,
    MAX_INT,
    PACK,
    PRESETS,
    dequantize_q4,
    get_preset,
    pack_linear,
    pack_q4,
    quantize_q4,
    tile_f32,
    unpack_q4,
)

Q4 = [name for name, p in PRESETS.items() if p.quantized]
N, K = 48, 128


def _weights(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((N, K)).astype(np.float32) * rng.uniform(0.01, 3.0, (N, 1)).astype(
        np.float32
    )
    w[0, :GROUP] = 0.0  # an all-zero group (scale 0)
    w[1, GROUP : 2 * GROUP] = 0.125 * (np.arange(GROUP) % 15 - 7)  # step 1/8 exactly: lossless
    w[2, 5] = 40.0  # an outlier dominating its group
    return w


@pytest.mark.parametrize("name", Q4)
def test_q4_round_trip_error_is_at_most_half_a_step(name):
    preset = PRESETS[name]
    w = _weights()
    q, scale = quantize_q4(w, preset.scale_dtype)
    assert q.dtype == np.uint8 and q.shape == (N, K) and q.max() <= 2 * MAX_INT
    assert scale.dtype == np.dtype(preset.scale_dtype) and scale.shape == (N, K // GROUP)

    words, tiled_scale = pack_q4(q, scale)
    assert words.dtype == np.uint32 and words.shape == (N // LANES, K // PACK, LANES)
    assert tiled_scale.dtype == scale.dtype and tiled_scale.shape == (N // LANES, K // GROUP, LANES)
    q2, scale2 = unpack_q4(words, tiled_scale)
    np.testing.assert_array_equal(q2, q)
    np.testing.assert_array_equal(scale2, scale)

    err = np.abs(dequantize_q4(q2, scale2) - w).reshape(N, K // GROUP, GROUP)
    step = scale.astype(np.float32)[:, :, None]
    assert (err <= 0.5 * step * (1 + 1e-6) + 1e-7).all(), float((err - 0.5 * step).max())
    # the zero and on-grid groups are exact
    assert err[0, 0].max() == 0.0 and err[1, 1].max() == 0.0


@pytest.mark.parametrize("name", Q4)
def test_q4_tiled_layout_is_what_the_kernels_read(name):
    """words[t, w, l] holds column t*LANES+l's values k = 8w .. 8w+7, the j-th at bits 4j;
    scales[t, g, l] is that column's scale for group g."""
    q, scale = quantize_q4(_weights(1), PRESETS[name].scale_dtype)
    words, tiled_scale = pack_q4(q, scale)
    rng = np.random.default_rng(2)
    for _ in range(50):
        n, k = int(rng.integers(N)), int(rng.integers(K))
        t, lane = divmod(n, LANES)
        assert (int(words[t, k // PACK, lane]) >> (4 * (k % PACK))) & 15 == q[n, k]
        assert tiled_scale[t, k // GROUP, lane] == scale[n, k // GROUP]


def test_q0f32_tiling_is_exact():
    w = _weights()
    tiled = tile_f32(w)
    assert tiled.dtype == np.float32 and tiled.shape == (N // LANES, K, LANES)
    np.testing.assert_array_equal(tiled.transpose(0, 2, 1).reshape(N, K), w)
    assert tiled[1, 7, 3] == w[1 * LANES + 3, 7]
    assert pack_linear(w, PRESETS["q0f32"]).keys() == {"weight"}
    np.testing.assert_array_equal(pack_linear(w, PRESETS["q0f32"])["weight"], tiled)


@pytest.mark.parametrize("name", list(PRESETS))
def test_pack_linear_names_and_storage_per_preset(name):
    preset = get_preset(name)
    packed = pack_linear(_weights(), preset)
    nbytes = sum(a.nbytes for a in packed.values())
    assert nbytes == pytest.approx(preset.bytes_per_weight() * N * K)
    assert set(packed) == ({"qweight", "qscale"} if preset.quantized else {"weight"})


def test_unknown_preset_is_a_user_error():
    with pytest.raises(UserError, match="unknown quantization"):
        get_preset("q3f16_0")


def test_quantize_q4_in_row_blocks_equals_one_block(monkeypatch):
    """Blocks of rows (how an 8B embedding is quantized without GBs of temporaries) change
    nothing: the same codes and scales as the whole matrix at once, ragged last block included."""
    import numpy as np

    from harness import quantization

    w = np.random.default_rng(0).standard_normal((100, 256)).astype(np.float32)
    whole_q, whole_s = quantization.quantize_q4(w)
    monkeypatch.setattr(quantization, "QUANT_BLOCK_ELEMENTS", 7 * 256)  # 7 rows per block
    q, s = quantization.quantize_q4(w)
    assert np.array_equal(q, whole_q) and np.array_equal(s, whole_s)
