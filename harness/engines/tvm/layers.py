"""Transformer building blocks in ``tvm.relax.frontend.nn`` over the tiled, quantized weights.

Parameter names declared here are the bundle's weight names; ``harness.engines.tvm.weights``
produces arrays under exactly these names. Linears call the hand-scheduled kernels of
``kernels.matmul`` (GEMV when the traced sequence length is the static 1 of ``decode``, GEMM
otherwise), their thread-bound twins in ``kernels.matmul_gpu`` when the module is built with
``kernels="gpu"`` (same signatures and weight layouts), or the integer dot-product kernels of
``kernels.matmul_int8`` (``kernels="avx512-vnni"`` / ``"avx-vnni"`` / ``"avx2"`` /
``"neon-dot"``, for presets with int8 activations, over their own weight layout); everything else
is ordinary relax ops that the default lowering (plus dlight's GPU schedules on GPU targets)
handles.
"""

from __future__ import annotations

import numpy as np
from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import Tensor, op
from tvm.relax.frontend.nn.llm.kv_cache import PagedKVCache

from harness.quantization import GROUP, LANES, PACK, QuantPreset

from .kernels import attention as attention_kernels
from .kernels import elementwise, matmul, matmul_gpu, matmul_int8

DTYPE = "float32"


def _row_count(x: Tensor):
    """The rows of x [..., width]: an int where every leading dimension is static."""
    rows = 1
    for d in x.shape[:-1]:
        rows = rows * d
    return rows


def _rows(x: Tensor) -> tuple[Tensor, bool]:
    """x [..., width] as a 2-D [rows, width] tensor, and whether it is statically one row. The
    model's residual stream is already 2-D (``DecoderLM._body``): no reshape then."""
    rows = _row_count(x)
    flat = x if len(x.shape) == 2 else op.reshape(x, (rows, x.shape[-1]))
    return flat, isinstance(rows, int) and rows == 1


def _unrows(y: Tensor, lead: list) -> Tensor:
    """A kernel's 2-D output [rows, width] back in the input's leading dimensions ``lead``."""
    return y if len(lead) == 1 else op.reshape(y, (*lead, y.shape[-1]))


class Linear(nn.Module):
    """y = x W^T (+ b) with W stored tiled (and 4-bit group-quantized for q4 presets)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool,
        preset: QuantPreset,
        kernels: str = "float",
    ):
        matmul.check_shape(out_features, in_features, preset.quantized)
        self.in_features, self.out_features, self.preset = in_features, out_features, preset
        # "float" (CPU), "gpu" (thread-bound: CUDA / OpenCL / Vulkan / Metal), or the ISA of the
        # integer dot-product kernels (matmul_int8.ISAS), which int8-activation presets need.
        self.kernels = kernels
        self.int8 = preset.activations == "int8"
        if self.int8 and kernels not in matmul_int8.ISAS:
            raise ValueError(f"{preset.name} needs integer dot-product kernels, not {kernels!r}")
        tiles = out_features // LANES
        if self.int8:
            self.qweight = nn.Parameter(
                (tiles, in_features // GROUP, matmul_int8.TILE_BYTES), "uint8"
            )
            self.qscale = nn.Parameter((tiles, in_features // GROUP, LANES), preset.scale_dtype)
        elif preset.quantized:
            self.qweight = nn.Parameter((tiles, in_features // PACK, LANES), "uint32")
            self.qscale = nn.Parameter((tiles, in_features // GROUP, LANES), preset.scale_dtype)
        else:
            self.weight = nn.Parameter((tiles, in_features, LANES), DTYPE)
        # Kernels always add a bias; a bias-free layer adds a zero constant (N floats) so one
        # kernel signature serves every architecture.
        self.bias = nn.Parameter((out_features,), DTYPE) if bias else None

    def fuses(self, x: Tensor, norm: nn.Module | None = None) -> bool:
        """Whether this layer's kernel for ``x`` takes the ops around it in (the int8 decode
        GEMV, ``matmul_int8.q4_gemv_a8_fused``): ``norm`` (an RMSNorm) before it, SwiGLU before
        it, the residual connection after it."""
        rows = _row_count(x)
        one_row = isinstance(rows, int) and rows == 1
        plain_in = norm is None or (getattr(norm, "fusable", False) and x.dtype == DTYPE)
        return self.int8 and one_row and plain_in

    def forward(
        self,
        x: Tensor,
        norm: nn.Module | None = None,
        residual: Tensor | None = None,
        swiglu: bool = False,
        out_dtype: str = DTYPE,
    ) -> Tensor:
        """y = norm(x) W^T (+ b) (+ residual), as ``out_dtype``, from x of any float dtype.
        ``swiglu``: x is [gate | up] and the layer's input silu(gate) * up (only where
        ``fuses``; the MLP runs it as its own kernel elsewhere)."""
        if self.fuses(x, norm):
            return self._fused(x, norm, residual, swiglu, out_dtype)
        if swiglu:
            raise ValueError("SwiGLU folds into the int8 decode GEMV only")
        if x.dtype != DTYPE:
            x = x.astype(DTYPE)
        y = self._matmul(x if norm is None else norm(x))
        y = y if residual is None else residual + y
        return y if out_dtype == DTYPE else y.astype(out_dtype)

    def _fused(
        self, x: Tensor, norm, residual: Tensor | None, swiglu: bool, out_dtype: str
    ) -> Tensor:
        *lead, _ = x.shape
        x2, _ = _rows(x)
        n, k = self.out_features, self.in_features
        source = "swiglu" if swiglu else "rms_norm" if norm is not None else None
        func = matmul_int8.q4_gemv_a8_fused(
            n,
            k,
            self.preset.scale_dtype,
            self.kernels,
            source,
            residual is not None,
            norm.eps if norm is not None else 0.0,
            x.dtype,
            out_dtype,
        )
        unused = Tensor.from_const(np.zeros(1, DTYPE))  # the signature's absent norm/residual
        folded = {
            "norm": norm is not None,
            "swiglu": swiglu,
            "res": residual is not None,
            f"from_{x.dtype}": x.dtype != DTYPE,
            f"to_{out_dtype}": out_dtype != DTYPE,
        }
        name = f"gemv_q4a8_{n}x{k}" + "".join(f"_{op_}" for op_, on in folded.items() if on)
        y = op.tensor_ir_op(
            func,
            name,
            args=[
                x2,
                unused if norm is None else norm.weight,
                self.qweight,
                self.qscale,
                self._bias(),
                unused if residual is None else _rows(residual)[0],
            ],
            out=Tensor.placeholder((x2.shape[0], n), out_dtype),
        )
        return _unrows(y, lead)

    def _bias(self) -> Tensor:
        return (
            self.bias
            if self.bias is not None
            else Tensor.from_const(np.zeros(self.out_features, DTYPE))
        )

    def _matmul(self, x: Tensor) -> Tensor:
        *lead, k = x.shape
        x2, single_row = _rows(x)
        bias = self._bias()
        n, variant = self.out_features, "one" if single_row else "many"
        gpu = self.kernels == "gpu"
        if self.int8:
            func = matmul_int8.q4_matmul_a8(n, k, self.preset.scale_dtype, variant, self.kernels)
            weights, kind = [self.qweight, self.qscale], "q4a8"
        elif self.preset.quantized:
            q4 = matmul_gpu.q4_matmul_gpu if gpu else matmul.q4_matmul
            func = q4(n, k, self.preset.scale_dtype, variant)
            weights, kind = [self.qweight, self.qscale], "q4"
        else:
            f32 = matmul_gpu.f32_matmul_gpu if gpu else matmul.f32_matmul
            func = f32(n, k, variant)
            weights, kind = [self.weight], "f32"
        name = ("gemv" if single_row else "gemm") + f"_{kind}_{n}x{k}"
        y = op.tensor_ir_op(
            func, name, args=[x2, *weights, bias], out=Tensor.placeholder((x2.shape[0], n), DTYPE)
        )
        return _unrows(y, lead)


class Embedding(nn.Module):
    """Token embedding stored like a Linear of shape
    [vocab, hidden], so a tied LM head reuses it."""

    def __init__(
        self, vocab_size: int, hidden_size: int, preset: QuantPreset, kernels: str = "float"
    ):
        self.table = Linear(hidden_size, vocab_size, bias=False, preset=preset, kernels=kernels)
        self.vocab_size, self.hidden_size = vocab_size, hidden_size

    def forward(self, ids: Tensor) -> Tensor:
        """ids [s] int32 -> [s, hidden]; dequantizes only the gathered rows."""
        table = self.table
        hidden = self.hidden_size

        if table.int8:
            return op.tensor_expr_op(
                _gather_a8(hidden), "embed_gather", [table.qweight, table.qscale, ids]
            )

        if table.preset.quantized:

            def gather(words, scales, idx):
                from tvm import te, tirx

                def row_value(s, h):
                    tok = idx[s]
                    word = words[tok // LANES, h // PACK, tok % LANES]
                    nibble = tirx.Cast(
                        "int32",
                        (word >> tirx.Cast("uint32", (h % PACK) * 4)) & tirx.const(15, "uint32"),
                    )
                    return tirx.Cast(DTYPE, nibble - 7) * tirx.Cast(
                        DTYPE, scales[tok // LANES, h // GROUP, tok % LANES]
                    )

                return te.compute((idx.shape[0], hidden), row_value, name="embed_gather")

            return op.tensor_expr_op(gather, "embed_gather", [table.qweight, table.qscale, ids])

        def gather_f32(weight, idx):
            from tvm import te

            return te.compute(
                (idx.shape[0], hidden),
                lambda s, h: weight[idx[s] // LANES, h, idx[s] % LANES],
                name="embed_gather",
            )

        return op.tensor_expr_op(gather_f32, "embed_gather", [table.weight, ids])

    def as_lm_head(self, x: Tensor) -> Tensor:
        return self.table(x)


def _gather_a8(hidden: int):
    """Rows of an embedding table packed for the integer kernels (``pack_q4_a8``'s layout)."""

    def gather(packed, scales, idx):
        from tvm import te, tirx

        def row_value(s, h):
            tok = idx[s]
            col, k = tok % LANES, h % GROUP
            step, kk = k // 4, k % 4
            byte = packed[
                tok // LANES, h // GROUP, (step % 4) * 64 + (col // 8) * 32 + (col % 8) * 4 + kk
            ]
            nibble = tirx.Cast(
                "int32", (byte >> tirx.Cast("uint8", (step // 4) * 4)) & tirx.const(15, "uint8")
            )
            return tirx.Cast(DTYPE, nibble - 7) * tirx.Cast(
                DTYPE, scales[tok // LANES, h // GROUP, col]
            )

        return te.compute((idx.shape[0], hidden), row_value, name="embed_gather")

    return gather


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float, kernels: str = "float"):
        self.weight = nn.Parameter((size,), DTYPE)
        self.eps, self.cpu = eps, kernels != "gpu"
        self.fusable = self.cpu  # the int8 decode GEMV can compute it (Linear.fuses)

    def forward(self, x: Tensor) -> Tensor:
        if not self.cpu:
            return op.rms_norm(x, self.weight, axes=[-1], epsilon=self.eps)
        x2, one = _rows(x)
        y = op.tensor_ir_op(
            elementwise.rms_norm(x.shape[-1], self.eps, one),
            "rms_norm_cpu",
            args=[x2, self.weight],
            out=Tensor.placeholder(x2.shape, DTYPE),
        )
        return _unrows(y, x.shape[:-1])


class LayerNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        self.weight = nn.Parameter((size,), DTYPE)
        self.bias = nn.Parameter((size,), DTYPE)
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return op.layer_norm(
            x, normalized_shape=x.shape[-1], weight=self.weight, bias=self.bias, eps=self.eps
        )


def make_norm(cfg, size: int, kernels: str = "float") -> nn.Module:
    return (
        RMSNorm(size, cfg.norm_eps, kernels) if cfg.norm == "rms" else LayerNorm(size, cfg.norm_eps)
    )


class Attention(nn.Module):
    """Fused QKV projection; RoPE, cache append and attention happen in the paged KV cache."""

    def __init__(self, cfg, preset: QuantPreset, kernels: str = "float", windowed: bool = False):
        d = cfg.head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, d
        self.kv_dtype = preset.kv_cache_dtype
        scale = cfg.attn_scale if cfg.attn_scale is not None else d**-0.5
        # The sign tells our CPU kernels to mask this layer to the sliding window (the cache
        # passes them sm_scale and nothing else per layer; see kernels.attention).
        self.sm_scale = scale * (attention_kernels.WINDOWED if windowed else 1.0)
        self.qkv_proj = Linear(
            cfg.hidden_size,
            (cfg.num_heads + 2 * cfg.num_kv_heads) * d,
            cfg.qkv_bias,
            preset,
            kernels,
        )
        self.o_proj = Linear(cfg.num_heads * d, cfg.hidden_size, cfg.linear_bias, preset, kernels)

    def forward(
        self,
        x: Tensor,
        cache: PagedKVCache,
        layer_id: int,
        norm: nn.Module | None = None,
        residual: Tensor | None = None,
    ) -> Tensor:
        """Attention over norm(x) (+ residual): x [tokens, hidden] (one sequence; the cache takes
        [batch, tokens, heads, head_dim]) or [batch, tokens, hidden]."""
        *lead, _ = x.shape
        b, s = (1, *lead) if len(lead) == 1 else lead
        # The cache takes and gives the preset's KV dtype (attention computes in fp32 inside);
        # the projections convert on either side (in their own kernels in decode).
        qkv = op.reshape(
            self.qkv_proj(x, norm=norm, out_dtype=self.kv_dtype),
            (b, s, self.num_heads + 2 * self.num_kv_heads, self.head_dim),
        )
        out = cache.attention_with_fused_qkv(layer_id, qkv, self.num_heads, sm_scale=self.sm_scale)
        return self.o_proj(
            op.reshape(out, (*lead, self.num_heads * self.head_dim)), residual=residual
        )


class MLP(nn.Module):
    """SwiGLU (gate and up fused in one matmul) or a plain two-layer MLP, SiLU or GELU."""

    def __init__(self, cfg, preset: QuantPreset, kernels: str = "float"):
        self.gated, self.activation, self.inter = (
            cfg.gated_mlp,
            cfg.activation,
            cfg.intermediate_size,
        )
        self.cpu = kernels != "gpu"
        width = (2 if cfg.gated_mlp else 1) * cfg.intermediate_size
        self.up_proj = Linear(cfg.hidden_size, width, cfg.linear_bias, preset, kernels)
        self.down_proj = Linear(
            cfg.intermediate_size, cfg.hidden_size, cfg.linear_bias, preset, kernels
        )

    def _act(self, x: Tensor) -> Tensor:
        return op.silu(x) if self.activation == "silu" else op.gelu(x, approximate="tanh")

    def forward(
        self, x: Tensor, norm: nn.Module | None = None, residual: Tensor | None = None
    ) -> Tensor:
        """The MLP of norm(x) (+ residual)."""
        h = self.up_proj(x, norm=norm)
        swiglu = self.gated and self.activation == "silu" and self.cpu
        if swiglu and self.down_proj.fuses(h):
            return self.down_proj(h, residual=residual, swiglu=True)
        if swiglu:
            h2, one = _rows(h)
            out = op.tensor_ir_op(
                elementwise.swiglu(self.inter, one),
                "swiglu_cpu",
                args=[h2],
                out=Tensor.placeholder((h2.shape[0], self.inter), DTYPE),
            )
            return self.down_proj(_unrows(out, h.shape[:-1]), residual=residual)
        if self.gated:
            gate, up = op.split(h, 2, axis=-1)
            h = self._act(gate) * up
        else:
            h = self._act(h)
        return self.down_proj(h, residual=residual)


class DecoderLayer(nn.Module):
    """Pre-norm block; with four norms per layer (Gemma 2) also a norm on each sublayer's output
    before it joins the residual stream."""

    def __init__(self, cfg, preset: QuantPreset, layer_id: int, kernels: str = "float"):
        windowed = cfg.window_applies() and layer_id in cfg.sliding_layers
        self.attn_norm = make_norm(cfg, cfg.hidden_size, kernels)
        self.attn = Attention(cfg, preset, kernels, windowed)
        self.mlp_norm = make_norm(cfg, cfg.hidden_size, kernels)
        self.mlp = MLP(cfg, preset, kernels)
        sandwich = cfg.norms_per_layer == 4
        self.post_attn_norm = make_norm(cfg, cfg.hidden_size, kernels) if sandwich else None
        self.post_mlp_norm = make_norm(cfg, cfg.hidden_size, kernels) if sandwich else None
        self.layer_id = layer_id

    def forward(self, x: Tensor, cache: PagedKVCache) -> Tensor:
        # Norms and residual connections go to the linear layers, whose int8 decode GEMVs do
        # them in their own kernel (Linear.fuses); a post-norm sits between a sublayer and its
        # residual add, so with one the add stays here.
        if self.post_attn_norm is None:
            x = self.attn(x, cache, self.layer_id, norm=self.attn_norm, residual=x)
        else:
            attn = self.attn(x, cache, self.layer_id, norm=self.attn_norm)
            x = x + self.post_attn_norm(attn)
        if self.post_mlp_norm is None:
            return self.mlp(x, norm=self.mlp_norm, residual=x)
        return x + self.post_mlp_norm(self.mlp(x, norm=self.mlp_norm))
