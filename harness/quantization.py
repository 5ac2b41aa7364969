"""Named quantization presets, MLC-LLM style, and the packing that implements them.

``q4f16_1`` int4 symmetric, group 32 along K, fp16 scales (MLC's preset, the study's setting)
``q4f16_1a8`` q4f16_1's weights and scales, activations quantized to int8 per group of 32 (one
            fp32 scale each, llama.cpp's Q8_0) so that matmuls run on integer dot products
``q4f32_1`` the same grouping with fp32 scales
``q0f32``   no quantization, fp32 weights

Activations are float32 on CPU targets for every preset but ``q4f16_1a8`` (fp16 arithmetic is
slow on x86 and on ARM cores without FP16 vector support); the preset decides how weights and
the KV cache are stored (fp16 KV cache for the f16 presets). ``q4f16_1a8`` changes the numerics
(int8 inputs to every linear layer), which is why it is a preset of its own, named in every
record: ``q4f16_1`` stays the float-activation path MLC defines.

Packing: W[N, K] -> per group of 32 along K, scale = max|w| / 7, q = round(w / scale) + 7 in
[0, 14], eight q per uint32 word (k-th value at bits 4*(k % 8)), and the tiled layout
``[N / LANES, K / 8, LANES]`` that the kernels in ``harness.engines.tvm.kernels.matmul`` read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LANES = 16
GROUP = 32
PACK = 8
MAX_INT = 7


@dataclass(frozen=True)
class QuantPreset:
    name: str
    bits: int  # 4 or 0 (none)
    group_size: int
    scale_dtype: str  # storage dtype of the scales
    description: str
    activations: str = "float32"  # "int8": linears quantize their input (kernels.matmul_int8)

    @property
    def quantized(self) -> bool:
        return self.bits == 4

    @property
    def kv_cache_dtype(self) -> str:
        """The "f16" presets keep the KV cache in fp16, as MLC's do: at long contexts decode
        reads the whole cache every token, so its bytes matter as much as the weights'."""
        return "float16" if self.scale_dtype == "float16" else "float32"

    def bytes_per_weight(self) -> float:
        """Storage bytes per weight element, scales included."""
        if not self.quantized:
            return 4.0
        return 0.5 + np.dtype(self.scale_dtype).itemsize / self.group_size


PRESETS: dict[str, QuantPreset] = {
    "q4f16_1": QuantPreset(
        "q4f16_1", 4, GROUP, "float16", "int4 symmetric, group 32, fp16 scales (MLC's preset)"
    ),
    "q4f16_1a8": QuantPreset(
        "q4f16_1a8",
        4,
        GROUP,
        "float16",
        "int4 symmetric, group 32, fp16 scales; int8 activations per group of 32 (integer dot"
        " products)",
        "int8",
    ),
    "q4f32_1": QuantPreset(
        "q4f32_1", 4, GROUP, "float32", "int4 symmetric, group 32, fp32 scales and compute"
    ),
    "q0f32": QuantPreset("q0f32", 0, 0, "float32", "no quantization, fp32 weights"),
}


def float_twin(preset: QuantPreset) -> QuantPreset:
    """The float-activation preset with the same weights: what an int8-activation preset
    compiles to on a target without integer dot products."""
    return PRESETS["q4f16_1"] if preset.activations == "int8" else preset


def get_preset(name: str) -> QuantPreset:
    from harness.errors import UserError

    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(
            f"unknown quantization {name!r}; choose one of {', '.join(PRESETS)}"
        ) from None


def quantize_q4(w: np.ndarray, scale_dtype: str = "float16") -> tuple[np.ndarray, np.ndarray]:
    """W[N, K] float -> (q uint8 [N, K] in [0, 14], scales [N, K/32]).

    Rows are quantized a block at a time so that the float temporaries stay a few MB even for an
    8B model's 128k x 4096 embedding (which alone is 2 GB in fp32)."""
    n, k = w.shape
    q = np.empty((n, k), dtype=np.uint8)
    scales = np.empty((n, k // GROUP), dtype=scale_dtype)
    rows = max(1, QUANT_BLOCK_ELEMENTS // k)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        q[start:stop], scales[start:stop] = _quantize_rows(w[start:stop], scale_dtype)
    return q, scales


QUANT_BLOCK_ELEMENTS = 1 << 22  # weights per block of rows in quantize_q4 (16 MB of fp32)


def _quantize_rows(w: np.ndarray, scale_dtype: str) -> tuple[np.ndarray, np.ndarray]:
    n, k = w.shape
    groups = w.reshape(n, k // GROUP, GROUP).astype(np.float32)
    scale = np.abs(groups).max(axis=2) / MAX_INT
    scale = scale.astype(scale_dtype).astype(np.float32)  # quantize against the stored scale
    safe = np.where(scale == 0, 1.0, scale)
    q = np.clip(np.rint(groups / safe[:, :, None]) + MAX_INT, 0, 2 * MAX_INT).astype(np.uint8)
    return q.reshape(n, k), scale.astype(scale_dtype)


def dequantize_q4(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    n, k = q.shape
    return (
        (q.astype(np.float32) - MAX_INT).reshape(n, k // GROUP, GROUP)
        * scale.astype(np.float32)[:, :, None]
    ).reshape(n, k)


def pack_q4(q: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q [N, K], scale [N, K/32]) -> tiled (words [N/L, K/8, L] uint32, scales [N/L, K/32, L])."""
    n, k = q.shape
    words = np.zeros((n, k // PACK), dtype=np.uint32)
    for j in range(PACK):
        words |= q[:, j::PACK].astype(np.uint32) << np.uint32(4 * j)
    tiled_words = np.ascontiguousarray(
        words.reshape(n // LANES, LANES, k // PACK).transpose(0, 2, 1)
    )
    tiled_scale = np.ascontiguousarray(
        scale.reshape(n // LANES, LANES, k // GROUP).transpose(0, 2, 1)
    )
    return tiled_words, tiled_scale


def unpack_q4(words: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_q4`."""
    tiles, kw, lanes = words.shape
    flat = words.transpose(0, 2, 1).reshape(tiles * lanes, kw)
    q = np.zeros((tiles * lanes, kw * PACK), dtype=np.uint8)
    for j in range(PACK):
        q[:, j::PACK] = (flat >> np.uint32(4 * j)) & np.uint32(15)
    s = scale.transpose(0, 2, 1).reshape(tiles * lanes, -1)
    return q, s


def tile_f32(w: np.ndarray) -> np.ndarray:
    """W[N, K] -> [N/L, K, L] float32 for the unquantized kernels."""
    n, k = w.shape
    return np.ascontiguousarray(
        w.astype(np.float32).reshape(n // LANES, LANES, k).transpose(0, 2, 1)
    )


def pack_linear(w: np.ndarray, preset: QuantPreset) -> dict[str, np.ndarray]:
    """A linear weight W[N, K] in the parameter names the engine's ``Linear`` declares."""
    if preset.quantized:
        q, s = quantize_q4(w, preset.scale_dtype)
        words, scales = (pack_q4_a8 if preset.activations == "int8" else pack_q4)(q, s)
        return {"qweight": words, "qscale": scales}
    return {"weight": tile_f32(w)}


def pack_q4_a8(q: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q [N, K], scale [N, K/32]) -> (bytes [N/L, K/32, 256] uint8, scales [N/L, K/32, L]) in
    the layout the integer dot-product kernels read (``kernels.matmul_int8``): per tile and
    group, [step j 0..3][half 0..1][column 0..7][kk 0..3], step j in the low nibble and step
    j + 4 in the high one, where k = 32 g + 4 step + kk."""
    n, k = q.shape
    tiles, groups = n // LANES, k // GROUP
    # axes of the reshape: tile, half, column, group, nibble (step // 4), step % 4, kk
    split = q.reshape(tiles, 2, LANES // 2, groups, 2, 4, 4).transpose(0, 3, 5, 1, 2, 6, 4)
    nibbles = split[..., 0] | (split[..., 1] << 4)
    tiled_scale = np.ascontiguousarray(scale.reshape(tiles, LANES, groups).transpose(0, 2, 1))
    return np.ascontiguousarray(nibbles.reshape(tiles, groups, GROUP * LANES // 2)), tiled_scale
