"""Transformer building blocks in ``tvm.relax.frontend.nn`` over the tiled, quantized weights.

Parameter names declared here are the bundle's weight names; ``harness.engines.tvm.weights``
produces arrays under exactly these names. Linears call the hand-scheduled kernels of
``kernels.matmul`` (GEMV when the traced sequence length is the static 1 of ``decode``, GEMM
otherwise), or their thread-bound twins in ``kernels.matmul_gpu`` when the module is built with
``gpu=True`` (same signatures and weight layouts); everything else is ordinary relax ops that the
default lowering (plus dlight's GPU schedules on GPU targets) handles.
"""

from __future__ import annotations

import numpy as np
from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import Tensor, op
from tvm.relax.frontend.nn.llm.kv_cache import PagedKVCache

from harness.quantization import GROUP, LANES, PACK, QuantPreset

from .kernels import matmul, matmul_gpu

DTYPE = "float32"


class Linear(nn.Module):
    """y = x W^T (+ b) with W stored tiled (and 4-bit group-quantized for q4 presets)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, preset: QuantPreset, gpu: bool = False):
        matmul.check_shape(out_features, in_features, preset.quantized)
        self.in_features, self.out_features, self.preset = in_features, out_features, preset
        self.gpu = gpu  # thread-bound kernels (CUDA / OpenCL / Vulkan / Metal) instead of CPU ones
        tiles = out_features // LANES
        if preset.quantized:
            self.qweight = nn.Parameter((tiles, in_features // PACK, LANES), "uint32")
            self.qscale = nn.Parameter((tiles, in_features // GROUP, LANES), preset.scale_dtype)
        else:
            self.weight = nn.Parameter((tiles, in_features, LANES), DTYPE)
        # Kernels always add a bias; a bias-free layer adds a zero constant (N floats) so one
        # kernel signature serves every architecture.
        self.bias = nn.Parameter((out_features,), DTYPE) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        *lead, k = x.shape
        rows = 1
        for d in lead:
            rows = rows * d
        x2 = op.reshape(x, (rows, k))
        single_row = isinstance(rows, int) and rows == 1
        bias = self.bias if self.bias is not None else Tensor.from_const(np.zeros(self.out_features, DTYPE))
        n = self.out_features
        if self.preset.quantized:
            q4 = matmul_gpu.q4_matmul_gpu if self.gpu else matmul.q4_matmul
            func = q4(n, k, self.preset.scale_dtype, "one" if single_row else "many")
            weights = [self.qweight, self.qscale]
        else:
            f32 = matmul_gpu.f32_matmul_gpu if self.gpu else matmul.f32_matmul
            func = f32(n, k, "one" if single_row else "many")
            weights = [self.weight]
        name = ("gemv" if single_row else "gemm") + f"_{'q4' if self.preset.quantized else 'f32'}_{n}x{k}"
        y = op.tensor_ir_op(func, name, args=[x2, *weights, bias], out=Tensor.placeholder((rows, n), DTYPE))
        return op.reshape(y, (*lead, n))


class Embedding(nn.Module):
    """Token embedding stored like a Linear of shape [vocab, hidden], so a tied LM head reuses it."""

    def __init__(self, vocab_size: int, hidden_size: int, preset: QuantPreset, gpu: bool = False):
        self.table = Linear(hidden_size, vocab_size, bias=False, preset=preset, gpu=gpu)
        self.vocab_size, self.hidden_size = vocab_size, hidden_size

    def forward(self, ids: Tensor) -> Tensor:
        """ids [s] int32 -> [s, hidden]; dequantizes only the gathered rows."""
        table = self.table
        hidden = self.hidden_size

        if table.preset.quantized:

            def gather(words, scales, idx):
                from tvm import te, tirx

                def row_value(s, h):
                    tok = idx[s]
                    word = words[tok // LANES, h // PACK, tok % LANES]
                    nibble = tirx.Cast("int32", (word >> tirx.Cast("uint32", (h % PACK) * 4)) & tirx.const(15, "uint32"))
                    return tirx.Cast(DTYPE, nibble - 7) * tirx.Cast(DTYPE, scales[tok // LANES, h // GROUP, tok % LANES])

                return te.compute((idx.shape[0], hidden), row_value, name="embed_gather")

            return op.tensor_expr_op(gather, "embed_gather", [table.qweight, table.qscale, ids])

        def gather_f32(weight, idx):
            from tvm import te

            return te.compute((idx.shape[0], hidden), lambda s, h: weight[idx[s] // LANES, h, idx[s] % LANES], name="embed_gather")

        return op.tensor_expr_op(gather_f32, "embed_gather", [table.weight, ids])

    def as_lm_head(self, x: Tensor) -> Tensor:
        return self.table(x)


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        self.weight = nn.Parameter((size,), DTYPE)
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return op.rms_norm(x, self.weight, axes=[-1], epsilon=self.eps)


class LayerNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        self.weight = nn.Parameter((size,), DTYPE)
        self.bias = nn.Parameter((size,), DTYPE)
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return op.layer_norm(x, normalized_shape=x.shape[-1], weight=self.weight, bias=self.bias, eps=self.eps)


def make_norm(cfg, size: int) -> nn.Module:
    return RMSNorm(size, cfg.norm_eps) if cfg.norm == "rms" else LayerNorm(size, cfg.norm_eps)


class Attention(nn.Module):
    """Fused QKV projection; RoPE, cache append and attention happen in the paged KV cache."""

    def __init__(self, cfg, preset: QuantPreset, gpu: bool = False):
        d = cfg.head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, d
        self.kv_dtype = preset.kv_cache_dtype
        self.qkv_proj = Linear(cfg.hidden_size, (cfg.num_heads + 2 * cfg.num_kv_heads) * d, cfg.qkv_bias, preset, gpu)
        self.o_proj = Linear(cfg.num_heads * d, cfg.hidden_size, cfg.linear_bias, preset, gpu)

    def forward(self, x: Tensor, cache: PagedKVCache, layer_id: int) -> Tensor:
        b, s, _ = x.shape
        qkv = op.reshape(self.qkv_proj(x), (b, s, self.num_heads + 2 * self.num_kv_heads, self.head_dim))
        # The cache stores keys/values in the preset's KV dtype; attention computes in fp32 inside.
        out = cache.attention_with_fused_qkv(layer_id, qkv.astype(self.kv_dtype), self.num_heads, sm_scale=self.head_dim**-0.5).astype(DTYPE)
        return self.o_proj(op.reshape(out, (b, s, self.num_heads * self.head_dim)))


class MLP(nn.Module):
    """SwiGLU (gate and up fused in one matmul) or a plain two-layer MLP, SiLU or GELU."""

    def __init__(self, cfg, preset: QuantPreset, gpu: bool = False):
        self.gated, self.activation, self.inter = cfg.gated_mlp, cfg.activation, cfg.intermediate_size
        width = (2 if cfg.gated_mlp else 1) * cfg.intermediate_size
        self.up_proj = Linear(cfg.hidden_size, width, cfg.linear_bias, preset, gpu)
        self.down_proj = Linear(cfg.intermediate_size, cfg.hidden_size, cfg.linear_bias, preset, gpu)

    def _act(self, x: Tensor) -> Tensor:
        return op.silu(x) if self.activation == "silu" else op.gelu(x, approximate="tanh")

    def forward(self, x: Tensor) -> Tensor:
        h = self.up_proj(x)
        if self.gated:
            gate, up = op.split(h, 2, axis=-1)
            h = self._act(gate) * up
        else:
            h = self._act(h)
        return self.down_proj(h)


class DecoderLayer(nn.Module):
    def __init__(self, cfg, preset: QuantPreset, layer_id: int, gpu: bool = False):
        self.attn_norm = make_norm(cfg, cfg.hidden_size)
        self.attn = Attention(cfg, preset, gpu)
        self.mlp_norm = make_norm(cfg, cfg.hidden_size)
        self.mlp = MLP(cfg, preset, gpu)
        self.layer_id = layer_id

    def forward(self, x: Tensor, cache: PagedKVCache) -> Tensor:
        x = x + self.attn(self.attn_norm(x), cache, self.layer_id)
        return x + self.mlp(self.mlp_norm(x))
